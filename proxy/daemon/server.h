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
#include "token.h"

struct listener;
struct control;
struct metrics;

/* Every session type embeds this so the server can shut them all down. */
struct session_link {
    LIST_ENTRY(session_link) entry; /* in the server's sessions */
    void (*shutdown)(struct session_link *link); /* finish politely, then close */
    void (*abort)(struct session_link *link);    /* close now */
    struct session_log *slog;                    /* what status shows (session_log.h) */
};

/* A configuration superseded by a reload (reload.h), with its providers' TLS contexts: kept
 * while something still holds it (config_hold: sessions, token entries), freed with it. */
struct server_gen {
    struct config *cfg;
    SSL_CTX **provider_tls;
    SLIST_ENTRY(server_gen) entry;
};

struct server {
    uv_loop_t *loop;
    struct config *cfg;
    struct http *http;
    struct token_manager *tokens;
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
    char hostname[256];
};

struct privileges;

/* Sets up everything for cfg: binds the listeners, the control socket and the metrics port,
 * then drops privileges as priv says (privileges.h; NULL = keep them), then starts the rest.
 * Errors go to stderr. 0 or -1. */
int server_init(struct server *srv, uv_loop_t *loop, struct config *cfg,
                const struct privileges *priv);
/* Starts an orderly shutdown (also what SIGTERM/SIGINT do). */
void server_shutdown(struct server *srv);

/* Frees what is left after the loop ran dry, including every configuration (the server owns
 * the one it was started with from server_init on). */
void server_free(struct server *srv);

SSL_CTX *server_provider_tls(struct server *srv, const struct config_provider *prov);

/* The switch of a reload: cfg (held once, by the caller until now) with ptls, its providers'
 * TLS slots, becomes the configuration in use; the old one moves into gen (allocated by the
 * caller, so that nothing can fail here) and goes, cleansed, when its last holder lets go. */
void server_switch_config(struct server *srv, struct config *cfg, SSL_CTX **ptls,
                          struct server_gen *gen);

void server_session_add(struct server *srv, struct session_link *link);
/* Called by a session when it is completely gone; may finish the shutdown. */
void server_session_remove(struct server *srv, struct session_link *link);
/* A short unique id for log lines ("a3f2-17"). */
void server_session_id(struct server *srv, char *out, size_t outsz);

#endif
