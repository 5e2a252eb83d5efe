/* proxy_accept: the first moments of a connection on a listener with proxy_protocol = yes.
 *
 * The connection is accepted here, its source checked against proxy_trusted (anyone else could
 * claim any address, and allow_networks lets some addresses send without a password), and the
 * PROXY header read without reading one octet past it (proxy_protocol.h): with implicit TLS the
 * client's ClientHello follows at once and belongs to the session. Then the socket is handed
 * back (hand_off) with the client's address from the header, to become a protocol session. A
 * header that does not arrive within PROXY_ACCEPT_TIMEOUT_MS, or is malformed, closes the
 * connection: nothing was said to the client yet, and nothing can be said before the header. */
#ifndef XOAUTHD_PROXY_ACCEPT_H
#define XOAUTHD_PROXY_ACCEPT_H

#include <sys/queue.h>
#include <sys/socket.h>
#include <uv.h>

#include "admission.h"
#include "config.h"

#define PROXY_ACCEPT_TIMEOUT_MS (10 * 1000)

struct proxy_pending;

/* One listener's connections still sending their header; set loop, cfg and the callbacks
 * before the first proxy_accept_start. */
struct proxy_accept {
    uv_loop_t *loop;
    const struct config_listen *cfg;
    LIST_HEAD(, proxy_pending) pending;
    int closing;                   /* proxy_accept_close_all ran: nothing is handed off */
    /* The header is complete: fd (a descriptor of the caller's from now on) with the client's
     * address (NULL for a LOCAL header: the socket's own peer), and the place it held, which
     * passes with it (admission.h). */
    void (*hand_off)(struct proxy_accept *pa, uv_os_sock_t fd,
                     const struct sockaddr_storage *peer, struct admission *adm);
    /* A pending connection is gone (after its place, if it still had one, was given back). */
    void (*gone)(struct proxy_accept *pa);
};

/* Takes over fd, a connection the listener accepted, and adm, the place the listener gave it.
 * Problems are logged. */
void proxy_accept_start(struct proxy_accept *pa, uv_os_sock_t fd, struct admission *adm);
/* Closes every connection still sending its header (listener closing). */
void proxy_accept_close_all(struct proxy_accept *pa);

#endif
