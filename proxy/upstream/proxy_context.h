/* proxy_context: what the layers below the daemon need of the running daemon, and nothing
 * more: the loop, the configuration in use, the HTTP client, the token manager, the host name
 * for greetings and EHLO, the TLS context for a provider's servers, and the session list that
 * shutdown and `xoauthd status` walk. The daemon's struct server embeds one and fills it in
 * (server.h); sessions, upstream logins and submissions get a pointer to it, so that none of
 * them includes a daemon header, and each can be built and tested with a context of its own. */
#ifndef XOAUTHD_PROXY_CONTEXT_H
#define XOAUTHD_PROXY_CONTEXT_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <sys/queue.h>
#include <uv.h>

struct config;
struct config_provider;
struct http;
struct token_manager;
struct session_log;

/* Every session embeds this so that the daemon can shut them all down and list them. */
struct session_link {
    LIST_ENTRY(session_link) entry; /* in the server's sessions */
    void (*shutdown)(struct session_link *link); /* finish politely, then close */
    void (*abort)(struct session_link *link);    /* close now */
    struct session_log *slog;                    /* what status shows (session_log.h) */
};

struct proxy_context {
    uv_loop_t *loop;
    struct config *cfg;           /* the configuration in use; a reload replaces it */
    struct http *http;
    struct token_manager *tokens;
    char hostname[256];
    /* The client TLS context for prov's servers (created on first use); NULL on failure. */
    SSL_CTX *(*provider_tls)(struct proxy_context *ctx, const struct config_provider *prov);
    /* A session starts (link is listed for shutdown and status) and is completely gone
     * (which may finish a shutdown). */
    void (*session_add)(struct proxy_context *ctx, struct session_link *link);
    void (*session_remove)(struct proxy_context *ctx, struct session_link *link);
    /* A short unique id for log lines ("a3f2-17"). */
    void (*session_id)(struct proxy_context *ctx, char *out, size_t outsz);
};

#endif
