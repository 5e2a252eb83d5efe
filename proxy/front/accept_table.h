/* accept_table: which function turns an accepted connection into a session, per protocol.
 * The fronts' accept functions are registered at start (server_lifecycle.c) and the listener
 * looks its protocol up here, so that the listener needs no protocol's header and no session
 * needs the listener's. */
#ifndef XOAUTHD_ACCEPT_TABLE_H
#define XOAUTHD_ACCEPT_TABLE_H

#include <openssl/ssl.h>
#include <sys/socket.h>
#include <uv.h>

#include "admission.h"
#include "config.h"
#include "proxy_context.h"

/* What a session knows of the listener that accepted it. The listener outlives every
 * connection it admitted (it goes once the last place is given back). */
struct listen_point {
    struct proxy_context *ctx;
    const struct config_listen *cfg;
    SSL_CTX *tls; /* NULL when tls = none */
};

/* Makes a session of fd, a connected socket; peer is the client's address (from the socket,
 * or from a PROXY header), NULL when unknown; adm is its place, already decided
 * (admission.h). The function owns fd and the place from the call on, whatever it returns:
 * 0, or -1 when the session could not be set up (fd is closed and the place given back). */
typedef int (*session_accept_fn)(const struct listen_point *lp, uv_os_sock_t fd,
                                 const struct sockaddr_storage *peer,
                                 const struct admission *adm);

void accept_table_register(enum config_protocol proto, session_accept_fn fn);
/* The function registered for proto, or NULL. */
session_accept_fn accept_table_lookup(enum config_protocol proto);

#endif
