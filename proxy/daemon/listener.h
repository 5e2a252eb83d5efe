/* listener: one bound socket per [listen NAME] section, with its TLS context and limits.
 * New connections become protocol sessions; when the listener's connection limit is reached the
 * session is refused with the protocol's "too busy" reply instead of being left to hang. */
#ifndef XOAUTHD_LISTENER_H
#define XOAUTHD_LISTENER_H

#include <openssl/ssl.h>
#include <uv.h>

#include "accept_table.h"
#include "admission.h"
#include "config.h"
#include "proxy_accept.h"

struct server;

/* Sessions per client address, kept only when max_connections_per_ip is set. */
struct listener_peer {
    char addr[64];
    unsigned n;
};

/* Accepting pauses this long after the first EMFILE/ENFILE of an episode, doubling up to the
 * maximum while descriptors stay short (listener.c). */
#define LISTENER_BACKOFF_MIN_MS 100u
#define LISTENER_BACKOFF_MAX_MS 2000u

struct listener {
    /* The listening socket is ours, watched with uv_poll (not uv_listen): see listener.c for
     * why, when descriptors run out. */
    uv_os_sock_t fd;
    uv_poll_t poll;
    uv_timer_t backoff_timer;
    unsigned open_handles;
    struct server *srv;
    /* Its configuration section and TLS context (NULL when tls = none): what its sessions see
     * of it (accept_table.h). */
    struct listen_point point;
    /* Connections admitted and not yet gone, each counted once (what max_connections
     * bounds): sessions, and PROXY protocol connections still sending their header, whose
     * place (admission.h) goes to the session they become. The listener lives until every
     * place was given back and no PROXY connection is left. */
    unsigned active;
    int closing;
    struct proxy_accept proxy; /* connections still sending their PROXY header */
    struct listener_peer *peers;
    size_t n_peers, cap_peers;
    /* Descriptors ran out (EMFILE/ENFILE): accepting is paused for backoff_ms and connections
     * wait in the kernel's backlog; backoff_ms is 0 again after an accept succeeded. */
    int paused;
    unsigned backoff_ms;
    uint64_t episode_start_ms;     /* first failure of the current episode; 0 = none */
    uint64_t emfile_logged_ms;     /* last accept_paused log line (rate limit) */
    unsigned emfile_suppressed;    /* episodes not logged since */
};

/* Binds and listens. Errors go to stderr naming the listener; *err (may be NULL) gets the
 * libuv error code (UV_EACCES for a privileged port after the drop). NULL on failure. */
struct listener *listener_new(struct server *srv, const struct config_listen *cfg, int *err);
/* A reload keeps the socket of a listener whose address stays: lc is its section now, and
 * tls (NULL for none) its new TLS context, which replaces the old one. */
void listener_reconfigure(struct listener *l, const struct config_listen *lc, SSL_CTX *tls);
/* Stops accepting; the struct is freed once the handle closed and every place is back. */
void listener_close(struct listener *l);

#endif
