#include "server_lifecycle.h"

#include <stdio.h>
#include <stdlib.h>

#include "accept_table.h"
#include "control.h"
#include "imap_session.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "pop3_session.h"
#include "privileges.h"
#include "reload.h"
#include "sd_notify.h"
#include "smtp_session.h"

static void server_signal_cb(uv_signal_t *h, int signum);

static int server_signal_setup(struct server *srv, uv_signal_t *h, int signum)
{
    int r = uv_signal_init(srv->ctx.loop, h);
    if (r != 0)
        return r;
    h->data = srv;
    return uv_signal_start(h, server_signal_cb, signum);
}

/* On failure the caller runs server_shutdown() and the loop to release what was set up. */
int server_init(struct server *srv, uv_loop_t *loop, struct config *cfg,
                const struct privileges *priv)
{
    server_setup(srv, loop, cfg);
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
    srv->provider_tls = calloc(cfg->n_providers ? cfg->n_providers : 1, sizeof *srv->provider_tls);
    srv->listeners = calloc(cfg->n_listens ? cfg->n_listens : 1, sizeof *srv->listeners);
    if (srv->provider_tls == NULL || srv->listeners == NULL)
        return -1;
    accept_table_register(CONFIG_PROTO_SMTP, smtp_session_accept);
    accept_table_register(CONFIG_PROTO_IMAP, imap_session_accept);
    accept_table_register(CONFIG_PROTO_POP3, pop3_session_accept);
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
    srv->ctx.http = http_new(loop);
    if (srv->ctx.http == NULL)
        return -1;
    srv->ctx.tokens = token_manager_new(loop, srv->ctx.http, cfg);
    if (srv->ctx.tokens == NULL)
        return -1;
    return 0;
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
    uv_timer_start(&srv->grace_timer, server_grace_cb,
                   (uint64_t)srv->ctx.cfg->shutdown_timeout * 1000, 0);
    struct session_link *l = LIST_FIRST(&srv->sessions);
    while (l != NULL) {
        struct session_link *next = LIST_NEXT(l, entry);
        l->shutdown(l);
        l = next;
    }
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
