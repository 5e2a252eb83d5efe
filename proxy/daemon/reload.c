#include "reload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "authlimit.h"
#include "config.h"
#include "config_perms.h"
#include "listener.h"
#include "log.h"
#include "sd_notify.h"
#include "server.h"
#include "session.h"
#include "tls.h"
#include "token.h"

/* Logs every line a loader or checker printed, then frees the text. */
static void reload_log_errors(char *text)
{
    if (text == NULL)
        return;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char q[600];
        log_error(NULL, "event=reload_error message=%s", log_quote(q, sizeof q, line,
                                                                     strlen(line)));
    }
    free(text);
}

static struct listener *reload_find_listener(struct server *srv, const struct config_listen *lc)
{
    for (size_t i = 0; i < srv->n_listeners; i++) {
        struct listener *l = srv->listeners[i];
        if (l == NULL)
            continue;
        const struct config_listen *cur = l->point.cfg;
        if (cur->port == lc->port && strcmp(cur->host, lc->host) == 0)
            return l;
    }
    return NULL;
}

int reload_run(struct server *srv)
{
    struct config *cfg = NULL;
    struct listener **fresh = NULL;
    SSL_CTX **tls = NULL, **ptls = NULL;
    struct server_gen *gen = NULL;
    char *errs = NULL;
    size_t errlen = 0;
    size_t n = 0;
    sd_notify_send("RELOADING=1\nSTATUS=reloading the configuration");
    log_info(NULL, "event=reload config=%s", srv->ctx.cfg->path);
    FILE *err = open_memstream(&errs, &errlen);
    if (err == NULL)
        goto refuse;
    cfg = config_load(srv->ctx.cfg->path, err);
    if (cfg != NULL && (token_config_check(cfg, err) != 0 || config_perms_check(cfg, err) != 0)) {
        config_free(cfg);
        cfg = NULL;
    }
    fclose(err);
    reload_log_errors(errs);
    errs = NULL;
    if (cfg == NULL)
        goto refuse;
    /* The user was switched once at start; it cannot be switched again. */
    if ((cfg->user == NULL) != (srv->ctx.cfg->user == NULL) ||
        (cfg->user != NULL && strcmp(cfg->user, srv->ctx.cfg->user) != 0) ||
        (cfg->group == NULL) != (srv->ctx.cfg->group == NULL) ||
        (cfg->group != NULL && strcmp(cfg->group, srv->ctx.cfg->group) != 0))
        log_warn(NULL, "event=reload_note message=\"user/group changed: takes effect at the "
                 "next restart\"");

    /* Everything that can fail happens before the switch. */
    n = cfg->n_listens;
    fresh = calloc(n ? n : 1, sizeof *fresh);
    tls = calloc(n ? n : 1, sizeof *tls);
    ptls = calloc(cfg->n_providers ? cfg->n_providers : 1, sizeof *ptls);
    gen = calloc(1, sizeof *gen);
    if (fresh == NULL || tls == NULL || ptls == NULL || gen == NULL)
        goto refuse;
    for (size_t i = 0; i < n; i++) {
        const struct config_listen *lc = &cfg->listens[i];
        struct listener *old = reload_find_listener(srv, lc);
        if (old == NULL) {
            /* listener_new reports FILE:LINE problems on stderr itself. */
            int lerr = 0;
            fresh[i] = listener_new(srv, lc, &lerr);
            if (fresh[i] == NULL) {
                /* After the privilege drop (privileges.h) a port below 1024 is out of reach. */
                int priv_port = lerr == UV_EACCES && geteuid() != 0;
                log_error(NULL, "event=reload_error message=\"cannot open [listen %s] on %s "
                          "port %u: %s%s\"", lc->name, lc->host, (unsigned)lc->port,
                          lerr != 0 ? uv_strerror(lerr) : "set-up failed",
                          priv_port ? "; the daemon no longer runs as root, so a privileged "
                          "port needs a restart (or CAP_NET_BIND_SERVICE)" : "");
                goto refuse;
            }
        } else if (lc->tls != CONFIG_TLS_NONE) {
            tls[i] = tls_server_ctx_new(lc->tls_cert, lc->tls_key, stderr);
            if (tls[i] == NULL) {
                log_error(NULL, "event=reload_error message=\"[listen %s]: TLS set-up failed\"",
                          lc->name);
                goto refuse;
            }
        }
    }

    /* The switch. */
    struct listener **kept = calloc(n ? n : 1, sizeof *kept);
    if (kept == NULL)
        goto refuse;
    for (size_t i = 0; i < n; i++) {
        const struct config_listen *lc = &cfg->listens[i];
        if (fresh[i] != NULL) {
            kept[i] = fresh[i];
            continue;
        }
        struct listener *l = reload_find_listener(srv, lc);
        listener_reconfigure(l, lc, tls[i]);
        tls[i] = NULL;
        kept[i] = l;
    }
    for (size_t i = 0; i < srv->n_listeners; i++) {
        struct listener *l = srv->listeners[i];
        int still = 0;
        for (size_t j = 0; j < n; j++)
            still |= kept[j] == l;
        if (!still) {
            log_info(NULL, "event=listener_closed listener=%s reason=\"removed by reload\"",
                     l->point.cfg->name);
            listener_close(l);
        }
    }
    free(srv->listeners);
    srv->listeners = kept;
    srv->n_listeners = n;
    server_switch_config(srv, cfg, ptls, gen);
    srv->reloads++;
    /* The lockout starts afresh with the new limits (`xoauthd unlock` clears one entry). */
    session_auth_configure(cfg);
    authlimit_reset();
    log_set_level(cfg->log_level);
    log_set_syslog(cfg->log_syslog);
    free(fresh);
    free(tls);
    log_info(NULL, "event=reloaded config=%s listeners=%zu accounts=%zu", cfg->path, n,
             cfg->n_accounts);
    sd_notify_sendf("READY=1\nSTATUS=serving %zu listeners, %zu accounts (reloaded)", n,
                    cfg->n_accounts);
    return 0;

refuse:
    reload_log_errors(errs);
    for (size_t i = 0; fresh != NULL && i < n; i++)
        if (fresh[i] != NULL)
            listener_close(fresh[i]);
    for (size_t i = 0; tls != NULL && i < n; i++)
        if (tls[i] != NULL)
            SSL_CTX_free(tls[i]);
    free(fresh);
    free(tls);
    free(ptls);
    free(gen);
    config_free(cfg);
    log_error(NULL, "event=reload_refused config=%s note=\"the running configuration stays in "
              "use\"", srv->ctx.cfg->path);
    sd_notify_send("READY=1\nSTATUS=reload refused; running the previous configuration");
    return -1;
}
