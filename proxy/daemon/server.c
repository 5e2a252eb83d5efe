#include "server.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "stats.h"
#include "tls.h"

static void server_handle_closed_cb(uv_handle_t *h) { (void)h; }

void server_close_handle(uv_handle_t *h)
{
    if (h->loop != NULL && !uv_is_closing(h))
        uv_close(h, server_handle_closed_cb);
}

struct server *server_of_context(struct proxy_context *ctx)
{
    return (struct server *)(void *)((char *)ctx - offsetof(struct server, ctx));
}

static void server_session_add(struct proxy_context *ctx, struct session_link *link)
{
    struct server *srv = server_of_context(ctx);
    LIST_INSERT_HEAD(&srv->sessions, link, entry);
    srv->n_sessions++;
}

static void server_session_remove(struct proxy_context *ctx, struct session_link *link)
{
    struct server *srv = server_of_context(ctx);
    LIST_REMOVE(link, entry);
    srv->n_sessions--;
    if (srv->shutting_down && srv->n_sessions == 0)
        server_finish(srv);
}

static void server_session_id(struct proxy_context *ctx, char *out, size_t outsz)
{
    struct server *srv = server_of_context(ctx);
    snprintf(out, outsz, "%04x-%llu", (unsigned)(getpid() & 0xffff),
             (unsigned long long)++srv->next_session_id);
}

/* Index of prov in cfg's providers, or -1 (it may belong to a configuration before a reload). */
static long server_provider_index(const struct config *cfg, const struct config_provider *prov)
{
    uintptr_t p = (uintptr_t)prov, base = (uintptr_t)cfg->providers;
    if (p < base || p >= base + cfg->n_providers * sizeof *prov)
        return -1;
    return (long)((p - base) / sizeof *prov);
}

SSL_CTX *server_provider_tls(struct server *srv, const struct config_provider *prov)
{
    SSL_CTX **slots = srv->provider_tls;
    long i = server_provider_index(srv->ctx.cfg, prov);
    for (struct server_gen *g = SLIST_FIRST(&srv->old_gens); i < 0 && g != NULL;
         g = SLIST_NEXT(g, entry)) {
        slots = g->provider_tls;
        i = server_provider_index(g->cfg, prov);
    }
    if (i < 0)
        return NULL;
    if (slots[i] == NULL) {
        slots[i] = tls_client_ctx_new(prov->ca_file, prov->tls_verify, stderr);
        if (slots[i] == NULL)
            log_error(NULL, "event=tls_setup_failed provider=%s", prov->name);
    }
    return slots[i];
}

static SSL_CTX *server_context_provider_tls(struct proxy_context *ctx,
                                            const struct config_provider *prov)
{
    return server_provider_tls(server_of_context(ctx), prov);
}

void server_setup(struct server *srv, uv_loop_t *loop, struct config *cfg)
{
    memset(srv, 0, sizeof *srv);
    srv->ctx.loop = loop;
    srv->ctx.cfg = cfg;
    srv->ctx.provider_tls = server_context_provider_tls;
    srv->ctx.session_add = server_session_add;
    srv->ctx.session_remove = server_session_remove;
    srv->ctx.session_id = server_session_id;
    LIST_INIT(&srv->sessions);
    SLIST_INIT(&srv->old_gens);
    if (gethostname(srv->ctx.hostname, sizeof srv->ctx.hostname - 1) != 0 ||
        srv->ctx.hostname[0] == '\0')
        snprintf(srv->ctx.hostname, sizeof srv->ctx.hostname, "xoauthd");
}

static void server_free_provider_tls(SSL_CTX **slots, size_t n)
{
    for (size_t i = 0; slots != NULL && i < n; i++) {
        if (slots[i] != NULL)
            SSL_CTX_free(slots[i]);
        slots[i] = NULL;
    }
}

/* config's on_free for a superseded configuration: its generation goes with it. */
static void server_gen_freed(struct config *cfg, void *arg)
{
    struct server *srv = arg;
    struct server_gen *g;
    SLIST_FOREACH(g, &srv->old_gens, entry) {
        if (g->cfg != cfg)
            continue;
        SLIST_REMOVE(&srv->old_gens, g, server_gen, entry);
        server_free_provider_tls(g->provider_tls, cfg->n_providers);
        free(g->provider_tls);
        free(g);
        return;
    }
}

void server_switch_config(struct server *srv, struct config *cfg, SSL_CTX **ptls,
                          struct server_gen *gen)
{
    struct config *old = srv->ctx.cfg;
    gen->cfg = old;
    gen->provider_tls = srv->provider_tls;
    SLIST_INSERT_HEAD(&srv->old_gens, gen, entry);
    old->on_free = server_gen_freed;
    old->on_free_arg = srv;
    /* Whoever holds old may look things up in cfg from now on (session.h). */
    config_supersede(old, cfg);
    srv->ctx.cfg = cfg;
    srv->provider_tls = ptls;
    token_manager_set_config(srv->ctx.tokens, cfg); /* accounts changed for new token requests */
    config_release(old); /* the server's hold: old lives on only for those still using it */
}

void server_finish(struct server *srv)
{
    if (srv->ctx.tokens != NULL) {
        token_manager_free(srv->ctx.tokens);
        srv->ctx.tokens = NULL;
    }
    if (srv->ctx.http != NULL) {
        http_close(srv->ctx.http);
        srv->ctx.http = NULL;
    }
    server_close_handle((uv_handle_t *)&srv->grace_timer);
    server_free_provider_tls(srv->provider_tls, srv->ctx.cfg->n_providers);
    struct server_gen *g;
    SLIST_FOREACH(g, &srv->old_gens, entry)
        server_free_provider_tls(g->provider_tls, g->cfg->n_providers);
    log_info(NULL, "event=stopped");
}

void server_free(struct server *srv)
{
    free(srv->provider_tls);
    free(srv->listeners);
    srv->provider_tls = NULL;
    srv->listeners = NULL;
    /* Every session and token entry is gone: this frees the configuration in use, and with
     * it (config_supersede) any superseded one still waiting for it. */
    config_release(srv->ctx.cfg);
    srv->ctx.cfg = NULL;
    if (!SLIST_EMPTY(&srv->old_gens))
        log_error(NULL, "event=internal_error reason=\"a superseded configuration is still "
                  "held at exit\"");
    stats_reset();
}
