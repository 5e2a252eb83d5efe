#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "privileges.h"
#include "reload.h"
#include "sd_notify.h"
#include "stats.h"
#include "tls.h"


static void server_signal_cb(uv_signal_t *h, int signum);
static void server_finish(struct server *srv);

static void server_handle_closed_cb(uv_handle_t *h) { (void)h; }

/* A handle of struct server is initialised once libuv set its loop (the struct starts
 * zeroed), and closed once: what a failed server_init left half done is skipped. */
static void server_close_handle(uv_handle_t *h)
{
    if (h->loop != NULL && !uv_is_closing(h))
        uv_close(h, server_handle_closed_cb);
}

static int server_signal_setup(struct server *srv, uv_signal_t *h, int signum)
{
    int r = uv_signal_init(srv->loop, h);
    if (r != 0)
        return r;
    h->data = srv;
    return uv_signal_start(h, server_signal_cb, signum);
}

void server_session_add(struct server *srv, struct session_link *link)
{
    LIST_INSERT_HEAD(&srv->sessions, link, entry);
    srv->n_sessions++;
}

void server_session_remove(struct server *srv, struct session_link *link)
{
    LIST_REMOVE(link, entry);
    srv->n_sessions--;
    if (srv->shutting_down && srv->n_sessions == 0)
        server_finish(srv);
}

void server_session_id(struct server *srv, char *out, size_t outsz)
{
    snprintf(out, outsz, "%04x-%llu", (unsigned)(getpid() & 0xffff),
             (unsigned long long)++srv->next_session_id);
}

/* On failure the caller runs server_shutdown() and the loop to release what was set up. */
int server_init(struct server *srv, uv_loop_t *loop, struct config *cfg,
                const struct privileges *priv)
{
    memset(srv, 0, sizeof *srv);
    srv->loop = loop;
    srv->cfg = cfg;
    LIST_INIT(&srv->sessions);
    SLIST_INIT(&srv->old_gens);
    /* These handles exist first so that server_shutdown() can undo a half-done init (it
     * closes only the handles that were initialised). */
    int r = uv_timer_init(loop, &srv->grace_timer);
    srv->grace_timer.data = srv;
    if (r == 0)
        r = server_signal_setup(srv, &srv->sig_term, SIGTERM);
    if (r == 0)
        r = server_signal_setup(srv, &srv->sig_int, SIGINT);
    if (r == 0)
        r = server_signal_setup(srv, &srv->sig_hup, SIGHUP);
    if (r != 0) {
        fprintf(stderr, "xoauthd: cannot set up timers and signal handlers: %s\n",
                uv_strerror(r));
        return -1;
    }
    srv->started_ms = uv_now(loop);
    if (gethostname(srv->hostname, sizeof srv->hostname - 1) != 0 || srv->hostname[0] == '\0')
        snprintf(srv->hostname, sizeof srv->hostname, "xoauthd");
    srv->provider_tls = calloc(cfg->n_providers ? cfg->n_providers : 1, sizeof *srv->provider_tls);
    srv->listeners = calloc(cfg->n_listens ? cfg->n_listens : 1, sizeof *srv->listeners);
    if (srv->provider_tls == NULL || srv->listeners == NULL)
        return -1;
    int failed = 0;
    for (size_t i = 0; i < cfg->n_listens; i++) {
        srv->listeners[srv->n_listeners] = listener_new(srv, &cfg->listens[i], NULL);
        if (srv->listeners[srv->n_listeners] == NULL)
            failed = 1;
        else
            srv->n_listeners++;
    }
    if (failed)
        return -1;
    /* Status and metrics (control.h, metrics.h): a control socket that cannot be made is only
     * a warning; a metrics address the admin asked for must work. */
    char *cpath = control_socket_path(cfg);
    if (cpath != NULL)
        srv->control = control_new(srv, cpath);
    if (srv->control != NULL && priv != NULL)
        privileges_give(priv, cpath); /* the daemon removes it at exit, its user may connect */
    free(cpath);
    if (cfg->metrics_host != NULL) {
        srv->metrics = metrics_new(srv, cfg->metrics_host, cfg->metrics_port);
        if (srv->metrics == NULL)
            return -1;
    }
    /* Everything privileged is open now. The token manager comes after the drop: its store
     * jobs run on the thread pool and create files in state_dir, which must belong to the
     * user the daemon runs as, not to root. */
    if (priv != NULL && privileges_drop(priv, stderr) != 0)
        return -1;
    srv->http = http_new(loop);
    if (srv->http == NULL)
        return -1;
    srv->tokens = token_manager_new(loop, srv->http, cfg);
    if (srv->tokens == NULL)
        return -1;
    return 0;
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
    long i = server_provider_index(srv->cfg, prov);
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
    struct config *old = srv->cfg;
    gen->cfg = old;
    gen->provider_tls = srv->provider_tls;
    SLIST_INSERT_HEAD(&srv->old_gens, gen, entry);
    old->on_free = server_gen_freed;
    old->on_free_arg = srv;
    /* Whoever holds old may look things up in cfg from now on (session.h). */
    config_supersede(old, cfg);
    srv->cfg = cfg;
    srv->provider_tls = ptls;
    token_manager_set_config(srv->tokens, cfg); /* accounts changed for new token requests */
    config_release(old); /* the server's hold: old lives on only for those still using it */
}

static void server_finish(struct server *srv)
{
    if (srv->tokens != NULL) {
        token_manager_free(srv->tokens);
        srv->tokens = NULL;
    }
    if (srv->http != NULL) {
        http_close(srv->http);
        srv->http = NULL;
    }
    server_close_handle((uv_handle_t *)&srv->grace_timer);
    server_free_provider_tls(srv->provider_tls, srv->cfg->n_providers);
    struct server_gen *g;
    SLIST_FOREACH(g, &srv->old_gens, entry)
        server_free_provider_tls(g->provider_tls, g->cfg->n_providers);
    log_info(NULL, "event=stopped");
}

static void server_grace_cb(uv_timer_t *t)
{
    struct server *srv = t->data;
    log_warn(NULL, "event=shutdown_grace_over sessions=%zu", srv->n_sessions);
    struct session_link *l = LIST_FIRST(&srv->sessions);
    while (l != NULL) {
        struct session_link *next = LIST_NEXT(l, entry);
        l->abort(l);
        l = next;
    }
}

void server_shutdown(struct server *srv)
{
    if (srv->shutting_down)
        return;
    srv->shutting_down = 1;
    log_info(NULL, "event=shutdown sessions=%zu", srv->n_sessions);
    sd_notify_send("STOPPING=1\nSTATUS=finishing transactions in flight");
    server_close_handle((uv_handle_t *)&srv->sig_term);
    server_close_handle((uv_handle_t *)&srv->sig_int);
    server_close_handle((uv_handle_t *)&srv->sig_hup);
    for (size_t i = 0; i < srv->n_listeners; i++)
        listener_close(srv->listeners[i]);
    control_close(srv->control);
    metrics_close(srv->metrics);
    srv->control = NULL;
    srv->metrics = NULL;
    if (srv->n_sessions == 0) {
        server_finish(srv);
        return;
    }
    uv_timer_start(&srv->grace_timer, server_grace_cb, (uint64_t)srv->cfg->shutdown_timeout * 1000,
                   0);
    struct session_link *l = LIST_FIRST(&srv->sessions);
    while (l != NULL) {
        struct session_link *next = LIST_NEXT(l, entry);
        l->shutdown(l);
        l = next;
    }
}

void server_free(struct server *srv)
{
    free(srv->provider_tls);
    free(srv->listeners);
    srv->provider_tls = NULL;
    srv->listeners = NULL;
    /* Every session and token entry is gone: this frees the configuration in use, and with
     * it (config_supersede) any superseded one still waiting for it. */
    config_release(srv->cfg);
    srv->cfg = NULL;
    if (!SLIST_EMPTY(&srv->old_gens))
        log_error(NULL, "event=internal_error reason=\"a superseded configuration is still "
                  "held at exit\"");
    stats_reset();
}

static void server_signal_cb(uv_signal_t *h, int signum)
{
    struct server *srv = h->data;
    log_info(NULL, "event=signal signal=%s",
             signum == SIGTERM ? "TERM" : signum == SIGHUP ? "HUP" : "INT");
    if (signum == SIGHUP) {
        if (!srv->shutting_down)
            reload_run(srv);
        return;
    }
    server_shutdown(srv);
}
