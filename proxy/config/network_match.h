/* network_match: is a client address in one of the configured networks (allow_networks,
 * proxy_trusted, auth_lockout_exempt)? IPv4 clients of a dual-stack socket (::ffff:a.b.c.d)
 * match IPv4 networks. */
#ifndef XOAUTHD_NETWORK_MATCH_H
#define XOAUTHD_NETWORK_MATCH_H

#include <stddef.h>
#include <sys/socket.h>

#include "config.h"

/* 1 when addr is in one of the n networks. */
int network_match_any(const struct config_allow_network *nets, size_t n,
                      const struct sockaddr_storage *addr);
/* The account of the first of the n networks that holds addr (allow_networks), or NULL. */
const struct config_account *network_match_account(const struct config_allow_network *nets,
                                                   size_t n, const struct sockaddr_storage *addr);

#endif
