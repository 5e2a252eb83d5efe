/* config_values: parsers of single configuration values (config_values.c). The ones taking a
 * loader report a bad value themselves, as "FILE:LINE: bad value ... for key 'K' in [S]". */
#ifndef XOAUTHD_CONFIG_VALUES_H
#define XOAUTHD_CONFIG_VALUES_H

#include <stddef.h>
#include <stdint.h>

#include "config_loader.h"

int config_is_space(char c);
/* Trims spaces and tabs in place; returns the new start. */
char *config_trim(char *s);
/* The index of v in the NULL-terminated names, or -1. */
int config_enum(const char *v, const char *const *names, int *out);
/* Decimal digits only, from min to max. 0 or -1. */
int config_uint(const char *v, unsigned long long min, unsigned long long max,
                unsigned long long *out);
/* yes/true/on/1 or no/false/off/0. */
int config_bool(const char *v, int *out);
/* Section and account names end up in file names (token store) and log lines. */
int config_name_ok(const char *s);
int config_key_ok(const char *s, size_t n);
/* "90", "90s", "10m", "2h", "1d" (n bytes at s) in seconds, from 1 to max. */
int config_duration(const char *s, size_t n, unsigned long long max, unsigned *out);
/* Splits "host:port" or "[v6]:port"; numeric: the host must be an IP address. On error *why
 * says what is expected. *host is malloc'ed. */
int config_hostport(struct config_loader *ld, const char *v, int numeric, char **host,
                    uint16_t *port, const char **why);
/* The host of an http(s) URL (without brackets): 1 for https, 0 for http, -1 when v is not
 * such a URL. */
int config_url_host(const char *v, char *host, size_t hostsz);

void config_unknown_key(struct config_loader *ld, const struct config_section *sec,
                        const struct config_kv *kv);
/* A token/EWS/Graph URL: https, or http to a loopback host only. */
void config_url(struct config_loader *ld, const struct config_section *sec,
                const struct config_kv *kv, char **dst);
/* "host:port starttls|implicit|none"; an empty value removes the endpoint. */
void config_endpoint(struct config_loader *ld, const struct config_section *sec,
                     const struct config_kv *kv, struct config_endpoint *ep);
/* "CIDR[, CIDR...] -> ACCOUNT" appended to l->allow_networks; marks ld->named. */
void config_allow_networks(struct config_loader *ld, const struct config_section *sec,
                           const struct config_kv *kv, struct config_listen *l, int *named);
/* "CIDR[, CIDR...]" appended to *list. */
void config_cidr_list(struct config_loader *ld, const struct config_section *sec,
                      const struct config_kv *kv, struct config_allow_network **list,
                      size_t *n_list);
/* "addr, *@domain, <>" appended to a->allowed_senders. */
void config_allowed_senders(struct config_loader *ld, const struct config_section *sec,
                            const struct config_kv *kv, struct config_account *a);
/* "smtp", "graph, smtp": up to three distinct submission paths. */
void config_submit(struct config_loader *ld, const struct config_section *sec,
                   const struct config_kv *kv, struct config_account *a);

#endif
