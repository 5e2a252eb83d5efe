/* proxy_accept: the first moments of a connection on a listener with proxy_protocol = yes.
 *
 * The connection is accepted here, its source checked against proxy_trusted (anyone else could
 * claim any address, and allow_networks lets some addresses send without a password), and the
 * PROXY header read without reading one octet past it (proxy_protocol.h): with implicit TLS the
 * client's ClientHello follows at once and belongs to the session. Then the socket is handed to
 * the protocol session (listener_conn_accept) with the client's address from the header. A
 * header that does not arrive within PROXY_ACCEPT_TIMEOUT_MS, or is malformed, closes the
 * connection: nothing was said to the client yet, and nothing can be said before the header. */
#ifndef XOAUTHD_PROXY_ACCEPT_H
#define XOAUTHD_PROXY_ACCEPT_H

#include <uv.h>

struct listener;

#define PROXY_ACCEPT_TIMEOUT_MS (10 * 1000)

/* Takes over fd, a connection the listener accepted. Problems are logged. */
void proxy_accept_start(struct listener *l, uv_os_sock_t fd);
/* Closes every connection still sending its header (listener closing). */
void proxy_accept_close_all(struct listener *l);

#endif
