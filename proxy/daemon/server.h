/* server: the running daemon's shared state — loop, configuration, HTTP client, token manager,
 * TLS contexts, listeners and the list of live sessions — and its orderly shutdown.
 *
 * Shutdown order matters for "never lose a message": listeners close first, idle sessions are
 * told 421 and closed, sessions in the middle of a transaction finish it (bounded by a grace
 * timer), and only then do the token manager and HTTP client go, so that uv_loop_close()
 * finds no handle left. */
#ifndef XOAUTHD_SERVER_H
#define XOAUTHD_SERVER_H

#include <openssl/ssl.h>
#include <sys/queue.h>
#include <uv.h>

#include "config.h"
#include "http.h"
#include "proxy_context.h"
#include "token.h"

struct listener;
struct control;
struct metrics;

/* A configuration superseded by a reload (reload.h), with its providers' TLS contexts: kept
 * while something still holds it (config_hold: sessions, token entries), freed with it. */
struct server_gen {
    struct config *cfg;
    SSL_CTX **provider_tls;
    SLIST_ENTRY(server_gen) entry;
};

struct server {
    struct proxy_context ctx; /* what sessions see of the server (proxy_context.h); first */
    SSL_CTX **provider_tls; /* parallel to cfg->providers; created on first use */
    struct listener **listeners;
    size_t n_listeners;
    LIST_HEAD(, session_link) sessions;
    size_t n_sessions;
    uint64_t next_session_id;
    int shutting_down;
    uv_signal_t sig_term, sig_int;
    uv_signal_t sig_hup;          /* reload (reload.c) */
    SLIST_HEAD(, server_gen) old_gens; /* superseded configurations still held, newest first */
    unsigned reloads;
    uint64_t started_ms;          /* uv_now at start, for uptime */
    uv_timer_t grace_timer;
    struct control *control;      /* `xoauthd status` socket (control.h), NULL when off */
    struct metrics *metrics;      /* /metrics (metrics.h), NULL when off */
};

/* The server whose context ctx is. */
struct server *server_of_context(struct proxy_context *ctx);

/* Frees what is left after the loop ran dry, including every configuration (the server owns
 * the one it was started with from server_init on). */
void server_free(struct server *srv);

/* The session list is empty during a shutdown: the token manager, the HTTP client and the
 * provider TLS contexts go, and the loop can run dry. */
void server_finish(struct server *srv);

/* Closes a handle of struct server that was initialised (libuv set its loop: the struct
 * starts zeroed) and is not closing yet: what a failed server_init left half done is skipped. */
void server_close_handle(uv_handle_t *h);

/* Sets up what is common to every start: the context and its callbacks, the session list,
 * the host name. */
void server_setup(struct server *srv, uv_loop_t *loop, struct config *cfg);

SSL_CTX *server_provider_tls(struct server *srv, const struct config_provider *prov);

/* The switch of a reload: cfg (held once, by the caller until now) with ptls, its providers'
 * TLS slots, becomes the configuration in use; the old one moves into gen (allocated by the
 * caller, so that nothing can fail here) and goes, cleansed, when its last holder lets go. */
void server_switch_config(struct server *srv, struct config *cfg, SSL_CTX **ptls,
                          struct server_gen *gen);


#endif
