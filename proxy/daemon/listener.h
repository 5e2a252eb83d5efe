/* listener: one bound socket per [listen NAME] section, with its TLS context and limits.
 * New connections become protocol sessions; when the listener's connection limit is reached the
 * session is refused with the protocol's "too busy" reply instead of being left to hang. */
#ifndef XOAUTHD_LISTENER_H
#define XOAUTHD_LISTENER_H

#include <openssl/ssl.h>
#include <sys/queue.h>
#include <uv.h>

#include "config.h"

struct server;
struct conn;
struct proxy_pending;

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
    const struct config_listen *cfg;
    SSL_CTX *tls; /* NULL when tls = none */
    /* Connections admitted and not yet closed, each counted once (what max_connections
     * bounds): sessions, and PROXY protocol connections still sending their header, whose
     * place goes to the session they become (listener_admit). */
    unsigned active;
    int closing;
    /* PROXY protocol (proxy_accept.c): connections still sending their header, and the
     * socket handed to the session being created right now (listener_conn_accept). The
     * listener lives until both its admitted connections and this list are gone. */
    LIST_HEAD(, proxy_pending) pending;
    int handoff;
    int handoff_admitted; /* the handed-off socket brings its place in active with it */
    uv_os_sock_t handoff_fd;
    struct sockaddr_storage handoff_peer;
    int handoff_has_peer;
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
/* Stops accepting; the struct is freed once the handle closed. */
void listener_close(struct listener *l);
/* Counts a new connection in l->active, or takes over the place of the PROXY protocol
 * connection being handed off (l->handoff_admitted), so that it is counted once. */
void listener_admit(struct listener *l);
/* The one release path: a connection of l is gone; admitted = 1 when it held a place in
 * l->active (listener_admit, or a PROXY connection not handed off). Frees a closed listener
 * with nothing left. */
void listener_connection_closed(struct listener *l, int admitted);
/* Creates the protocol session for the connection handed off in l->handoff_fd (every accepted
 * socket goes this way; stream is unused then and may be NULL). */
void listener_start_session(struct listener *l, uv_stream_t *stream);
/* What sessions call instead of conn_accept(): takes the socket handed off by the listener
 * (accepted here, or after a PROXY protocol header). 0 or -1. */
int listener_conn_accept(struct listener *l, struct conn *c, uv_stream_t *stream);
/* Counts c's client address; 0, or -1 when the address already has max_connections_per_ip
 * sessions (the caller refuses it with its "too busy" reply). Call once per accepted session. */
int listener_peer_admit(struct listener *l, struct conn *c);
/* Undoes listener_peer_admit; harmless for a connection that was never counted. */
void listener_peer_release(struct listener *l, struct conn *c);
/* 1 when addr is in one of the n networks (IPv4 clients of a dual-stack socket included). */
int listener_addr_in_networks(const struct config_allow_network *nets, size_t n,
                              const struct sockaddr_storage *addr);
/* The account a client from addr acts as without logging in (allow_networks), or NULL. */
const struct config_account *listener_allowed_account(const struct listener *l,
                                                      const struct sockaddr_storage *addr);

#endif
