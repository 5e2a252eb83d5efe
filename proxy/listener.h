/* listener: one bound socket per [listen NAME] section, with its TLS context and limits.
 * New connections become protocol sessions; when the listener's connection limit is reached the
 * session is refused with the protocol's "too busy" reply instead of being left to hang. */
#ifndef XOAUTHD_LISTENER_H
#define XOAUTHD_LISTENER_H

#include <openssl/ssl.h>
#include <uv.h>

#include "config.h"

struct server;

struct listener {
    uv_tcp_t tcp;
    struct server *srv;
    const struct config_listen *cfg;
    SSL_CTX *tls; /* NULL when tls = none */
    unsigned active; /* sessions accepted and not yet closed */
    int closing;
};

/* Binds and listens. Errors go to stderr naming the listener. NULL on failure. */
struct listener *listener_new(struct server *srv, const struct config_listen *cfg);
/* Stops accepting; the struct is freed once the handle closed. */
void listener_close(struct listener *l);
void listener_session_closed(struct listener *l);
/* The account a client from addr acts as without logging in (allow_networks), or NULL. */
const struct config_account *listener_allowed_account(const struct listener *l,
                                                      const struct sockaddr_storage *addr);

#endif
