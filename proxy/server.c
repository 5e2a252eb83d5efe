#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "listener.h"
#include "log.h"
#include "tls.h"

#define SERVER_GRACE_MS (30 * 1000)

static void server_signal_cb(uv_signal_t *h, int signum);
static void server_finish(struct server *srv);

void server_session_add(struct server *srv, struct session_link *link)
{
    link->next = srv->sessions.next;
    link->prev = &srv->sessions;
    srv->sessions.next->prev = link;
    srv->sessions.next = link;
    srv->n_sessions++;
}

void server_session_remove(struct server *srv, struct session_link *link)
{
    link->prev->next = link->next;
    link->next->prev = link->prev;
    link->next = link->prev = NULL;
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
int server_init(struct server *srv, uv_loop_t *loop, struct config *cfg)
{
    memset(srv, 0, sizeof *srv);
    srv->loop = loop;
    srv->cfg = cfg;
    srv->sessions.next = srv->sessions.prev = &srv->sessions;
    /* These handles exist first so that server_shutdown() can undo a half-done init. */
    uv_signal_init(loop, &srv->sig_term);
    uv_signal_init(loop, &srv->sig_int);
    srv->sig_term.data = srv->sig_int.data = srv;
    uv_signal_start(&srv->sig_term, server_signal_cb, SIGTERM);
    uv_signal_start(&srv->sig_int, server_signal_cb, SIGINT);
    uv_timer_init(loop, &srv->grace_timer);
    srv->grace_timer.data = srv;
    if (gethostname(srv->hostname, sizeof srv->hostname - 1) != 0 || srv->hostname[0] == '\0')
        snprintf(srv->hostname, sizeof srv->hostname, "xoauthd");
    srv->provider_tls = calloc(cfg->n_providers ? cfg->n_providers : 1, sizeof *srv->provider_tls);
    srv->listeners = calloc(cfg->n_listens ? cfg->n_listens : 1, sizeof *srv->listeners);
    if (srv->provider_tls == NULL || srv->listeners == NULL)
        return -1;
    srv->http = http_new(loop);
    if (srv->http == NULL)
        return -1;
    srv->tokens = token_manager_new(loop, srv->http, cfg);
    if (srv->tokens == NULL)
        return -1;
    int failed = 0;
    for (size_t i = 0; i < cfg->n_listens; i++) {
        if (cfg->listens[i].protocol != CONFIG_PROTO_SMTP) {
            log_warn(NULL, "event=listener_skipped listener=%s reason=\"protocol %s is not "
                     "supported by this version yet\"", cfg->listens[i].name,
                     config_protocol_name(cfg->listens[i].protocol));
            continue;
        }
        srv->listeners[srv->n_listeners] = listener_new(srv, &cfg->listens[i]);
        if (srv->listeners[srv->n_listeners] == NULL)
            failed = 1;
        else
            srv->n_listeners++;
    }
    if (failed)
        return -1;
    return 0;
}

SSL_CTX *server_provider_tls(struct server *srv, const struct config_provider *prov)
{
    size_t i = (size_t)(prov - srv->cfg->providers);
    if (i >= srv->cfg->n_providers)
        return NULL;
    if (srv->provider_tls[i] == NULL) {
        srv->provider_tls[i] = tls_client_ctx_new(prov->ca_file, prov->tls_verify, stderr);
        if (srv->provider_tls[i] == NULL)
            log_error(NULL, "event=tls_setup_failed provider=%s", prov->name);
    }
    return srv->provider_tls[i];
}

static void server_handle_closed_cb(uv_handle_t *h) { (void)h; }

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
    if (!uv_is_closing((uv_handle_t *)&srv->grace_timer))
        uv_close((uv_handle_t *)&srv->grace_timer, server_handle_closed_cb);
    for (size_t i = 0; i < srv->cfg->n_providers; i++) {
        if (srv->provider_tls[i] != NULL)
            SSL_CTX_free(srv->provider_tls[i]);
        srv->provider_tls[i] = NULL;
    }
    log_info(NULL, "event=stopped");
}

static void server_grace_cb(uv_timer_t *t)
{
    struct server *srv = t->data;
    log_warn(NULL, "event=shutdown_grace_over sessions=%zu", srv->n_sessions);
    struct session_link *l = srv->sessions.next;
    while (l != &srv->sessions) {
        struct session_link *next = l->next;
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
    uv_close((uv_handle_t *)&srv->sig_term, server_handle_closed_cb);
    uv_close((uv_handle_t *)&srv->sig_int, server_handle_closed_cb);
    for (size_t i = 0; i < srv->n_listeners; i++)
        listener_close(srv->listeners[i]);
    if (srv->n_sessions == 0) {
        server_finish(srv);
        return;
    }
    uv_timer_start(&srv->grace_timer, server_grace_cb, SERVER_GRACE_MS, 0);
    struct session_link *l = srv->sessions.next;
    while (l != &srv->sessions) {
        struct session_link *next = l->next;
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
}

static void server_signal_cb(uv_signal_t *h, int signum)
{
    struct server *srv = h->data;
    log_info(NULL, "event=signal signal=%s", signum == SIGTERM ? "TERM" : "INT");
    server_shutdown(srv);
}
