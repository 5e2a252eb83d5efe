/* token_cert_cache: the client certificates of the token manager's accounts (client_certificate,
 * client_key; RFC 7523 client assertions, token_client_credentials.c). They are read when the
 * configuration is (re)loaded, before the loop serves anyone: file reads never happen on a busy
 * loop, and a broken certificate shows up in the start-up log, once. An account the
 * configuration did not list (unit tests) is loaded on first use. */
#ifndef XOAUTHD_TOKEN_CERT_CACHE_H
#define XOAUTHD_TOKEN_CERT_CACHE_H

#include <stddef.h>

#include "config.h"

/* A client certificate and its private key, loaded once (token_grant.h passes it to grants). */
struct token_client_cert;

/* Loads a PEM certificate and its PEM private key (RSA: Microsoft signs client assertions with
 * RS256) and checks that they belong together. Returns NULL with err filled on failure.
 * Blocking file reads: call at start-up or from the CLI, not on a busy loop. */
struct token_client_cert *token_client_cert_load(const char *cert_path, const char *key_path,
                                                 char *err, size_t errsz);
void token_client_cert_free(struct token_client_cert *c);

struct token_cert_slot;
struct token_cert_cache {
    struct token_cert_slot *slots;
};

/* Drops what the cache holds and loads the certificate of every client_credentials account of
 * cfg that names one (failures are logged and remembered). */
void token_cert_cache_load(struct token_cert_cache *c, const struct config *cfg);
/* The loaded certificate of acct, loading it when it is not cached. NULL with *err when
 * unusable. */
const struct token_client_cert *token_cert_cache_get(struct token_cert_cache *c,
                                                     const struct config_account *acct,
                                                     const char **err);
void token_cert_cache_clear(struct token_cert_cache *c);

#endif
