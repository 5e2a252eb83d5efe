/* listener: one bound socket per [listen NAME] section, with its TLS context and limits.
 * New connections become protocol sessions; when the listener's connection limit is reached the
 * session is refused with the protocol's "too busy" reply instead of being left to hang. */
#ifndef XOAUTHD_LISTENER_H
#define XOAUTHD_LISTENER_H

#include <openssl/ssl.h>
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

struct listener {
    uv_tcp_t tcp;
    struct server *srv;
    const struct config_listen *cfg;
    SSL_CTX *tls; /* NULL when tls = none */
    unsigned active; /* sessions accepted and not yet closed */
    int closing;
    /* PROXY protocol (proxy_accept.c): connections still sending their header, and the
     * socket handed to the session being created right now (listener_conn_accept). */
    struct proxy_pending *pending;
    int handoff;
    uv_os_sock_t handoff_fd;
    struct sockaddr_storage handoff_peer;
    int handoff_has_peer;
    struct listener_peer *peers;
    size_t n_peers, cap_peers;
    uint64_t emfile_logged_ms; /* last accept_failed log line (rate limit) */
    unsigned emfile_suppressed;
};

/* Binds and listens. Errors go to stderr naming the listener. NULL on failure. */
struct listener *listener_new(struct server *srv, const struct config_listen *cfg);
/* Stops accepting; the struct is freed once the handle closed. */
void listener_close(struct listener *l);
void listener_session_closed(struct listener *l);
/* Creates the protocol session for a connection waiting on stream (or handed off). */
void listener_start_session(struct listener *l, uv_stream_t *stream);
/* What sessions call instead of conn_accept(): takes the connection from the listening socket,
 * or the one a PROXY protocol header was read from. 0 or -1. */
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
