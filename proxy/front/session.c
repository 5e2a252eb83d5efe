/* session: shared plumbing of the SMTP, IMAP and POP3 fronts, see session.h. */
#include "session.h"

#include <openssl/crypto.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "authlimit.h"
#include "config.h"
#include "localauth.h"
#include "log.h"
#include "network_match.h"
#include "token.h"

#define SESSION_AUTH_FAIL_DELAY_MS 1000

static struct session *session_of_conn(struct conn *c)
{
    return (struct session *)(void *)((char *)c - offsetof(struct session, conn));
}

static struct session *session_of_relay(struct relay *r)
{
    return (struct session *)(void *)((char *)r - offsetof(struct session, relay));
}

static void session_handle_closed(struct session *s)
{
    if (--s->open_handles > 0)
        return;
    if (s->relaying)
        log_info(s->sid, "event=disconnect account=%s bytes_from_client=%llu "
                 "bytes_from_server=%llu", s->acct != NULL ? s->acct->name : "-",
                 (unsigned long long)s->relay.bytes[RELAY_CLIENT],
                 (unsigned long long)s->relay.bytes[RELAY_SERVER]);
    else
        log_info(s->sid, "event=disconnect");
    if (s->relaying) {
        s->slog.bytes_in = s->relay.bytes[RELAY_CLIENT];
        s->slog.bytes_out = s->relay.bytes[RELAY_SERVER];
    }
    session_log_end(&s->slog, uv_now(s->ctx->loop));
    struct config *cfg = s->cfg;
    struct admission adm = s->adm;
    s->ctx->session_remove(s->ctx, &s->link);
    OPENSSL_cleanse(s, sizeof *s);
    free(s);
    admission_release(&adm); /* last: the listener may go with its last place */
    config_release(cfg); /* may free (and cleanse) a configuration a reload replaced */
}

static void session_conn_closed_cb(struct conn *c) { session_handle_closed(session_of_conn(c)); }

/* The conn of a session whose set-up failed is closed: nothing else was started. */
static void session_unstarted_closed_cb(struct conn *c) { free(session_of_conn(c)); }

static void session_timer_closed_cb(uv_handle_t *h) { session_handle_closed(h->data); }

static void session_upstream_closed_cb(struct conn *c)
{
    struct session *s = session_of_relay(c->data);
    free(c);
    session_handle_closed(s);
}

/* The check of this session no longer counts as in flight (authlimit.h); once only. */
static void session_auth_check_end(struct session *s)
{
    if (!s->auth_counted)
        return;
    s->auth_counted = 0;
    authlimit_check_end(s->conn.peer, s->login_user);
}

void session_close(struct session *s, int flush)
{
    if (s->closing)
        return;
    s->closing = 1;
    if (s->auth_req != NULL) {
        localauth_cancel(s->auth_req);
        s->auth_req = NULL;
    }
    session_auth_check_end(s);
    sasl_server_clear(&s->sasl);
    OPENSSL_cleanse(s->login_user, sizeof s->login_user);
    OPENSSL_cleanse(s->password, sizeof s->password);
    s->ops->closing(s);
    uv_close((uv_handle_t *)&s->delay_timer, session_timer_closed_cb);
    if (s->relaying) {
        if (flush)
            relay_stop(&s->relay, "session closed");
        else
            relay_abort(&s->relay);
    } else if (flush) {
        conn_close_after_flush(&s->conn, session_conn_closed_cb);
    } else {
        conn_close(&s->conn, session_conn_closed_cb);
    }
}

/* The line in buf (room for n + CRLF) goes out with its CRLF. */
static void session_send_line(struct session *s, char *buf, size_t n)
{
    buf[n++] = '\r';
    buf[n++] = '\n';
    conn_write(&s->conn, buf, n);
}

void session_send(struct session *s, const char *fmt, ...)
{
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 2, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n <= sizeof buf - 3) {
        session_send_line(s, buf, (size_t)n);
        return;
    }
    /* Longer than the stack buffer, e.g. an IMAP "OK [CAPABILITY ...]" with the provider's
     * whole list: cut, the client would read a different capability list (or a broken line),
     * so the whole line is formatted again on the heap. */
    char *big = malloc((size_t)n + 3);
    if (big == NULL) {
        log_error(s->sid, "event=reply_failed reason=\"out of memory for a %d-byte line\"", n);
        session_close(s, 0);
        return;
    }
    va_start(ap, fmt);
    int m = vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    if (m == n)
        session_send_line(s, big, (size_t)n);
    free(big);
}

void session_process(struct session *s)
{
    if (s->processing) {
        s->process_again = 1;
        return;
    }
    s->processing = 1;
    do {
        s->process_again = 0;
        /* A client that does not read its replies: its commands wait in the bounded input
         * buffer until CONN_EV_DRAINED. */
        if (s->closing || s->relaying || s->conn.above_high)
            break;
        s->ops->input(s);
    } while (s->process_again);
    s->processing = 0;
}

/* 1 for the alerts a client sends when it does not accept the server's certificate
 * (RFC 8446 section 6.2; RFC 5246 section 7.2.2). */
static int session_alert_refuses_cert(int alert)
{
    switch (alert) {
    case SSL_AD_BAD_CERTIFICATE:
    case SSL_AD_UNSUPPORTED_CERTIFICATE:
    case SSL_AD_CERTIFICATE_REVOKED:
    case SSL_AD_CERTIFICATE_EXPIRED:
    case SSL_AD_CERTIFICATE_UNKNOWN:
    case SSL_AD_UNKNOWN_CA:
        return 1;
    default:
        return 0;
    }
}

/* event=tls_failed: which listener, which side gave up (the fatal alert and who sent it), and
 * for a client that refused our certificate what to check, because the reason OpenSSL gives
 * ("tlsv1 alert unknown ca") reads as if xoauthd had a problem with the client. */
static void session_log_tls_failed(struct session *s)
{
    const struct conn *c = &s->conn;
    char alert[160] = "";
    if (c->tls_alert != 0)
        snprintf(alert, sizeof alert, " alert=\"%s\"", SSL_alert_desc_string_long(c->tls_alert));
    /* A client that goes away without an alert is an end of file, not a failed handshake:
     * without an alert from the peer, it was xoauthd's side that refused. */
    log_warn(s->sid, "event=tls_failed%s listener=%s peer=%s gave_up=%s%s reason=\"%s\"%s",
             s->ops->log_proto, s->lp->cfg->name, c->peer,
             c->tls_alert_from_peer ? "client" : "xoauthd", alert, c->error,
             c->tls_alert_from_peer && session_alert_refuses_cert(c->tls_alert)
                 ? " hint=\"the client rejected xoauthd's certificate: check that the name it "
                   "connects to is in the certificate's subjectAltName (many clients ignore "
                   "IP-address SANs) and that the client trusts the issuing CA\""
                 : "");
}

void session_starttls(struct session *s)
{
    conn_discard_input(&s->conn);
    if (conn_tls_start(&s->conn, s->lp->tls, 0, NULL) != 0) {
        session_log_tls_failed(s);
        session_close(s, 0);
    }
}

void session_log_upstream_failure(struct session *s, enum upstream_failure f,
                                  const char *reason)
{
    log_error(s->sid, "event=upstream_login_failed%s account=%s class=%s reason=\"%s\"",
              s->ops->log_proto, s->acct != NULL ? s->acct->name : "-",
              upstream_failure_name(f), reason);
    session_log_result(&s->slog, "upstream_failed");
    stats_upstream_error(upstream_failure_name(f));
}

void session_upstream_failed(struct session *s, enum upstream_failure f, const char *reason)
{
    session_log_upstream_failure(s, f, reason);
    s->acct = NULL;
}

static void session_link_shutdown(struct session_link *link)
{
    struct session *s = (struct session *)link;
    if (s->closing)
        return;
    if (s->relaying) {
        /* Nothing can be said inside a relayed stream (it may be in the middle of a literal):
         * both sides are closed once what is queued has been written. */
        relay_stop(&s->relay, "shutdown");
        return;
    }
    if (s->ops->shutdown != NULL) {
        s->ops->shutdown(s);
        return;
    }
    session_send(s, "%s", s->ops->shutdown_line);
    session_close(s, 1);
}

static void session_link_abort(struct session_link *link)
{
    struct session *s = (struct session *)link;
    if (s->relaying && !s->closing) {
        s->closing = 1;
        s->ops->closing(s);
        uv_close((uv_handle_t *)&s->delay_timer, session_timer_closed_cb);
    }
    if (s->relaying) {
        relay_abort(&s->relay);
        return;
    }
    if (!s->closing && s->ops->aborting != NULL)
        s->ops->aborting(s);
    session_close(s, 0);
    /* One that was already closing waits for its goodbye to be written, and a client that does
     * not read would keep it (and the loop, and the process) forever: close now. */
    conn_close(&s->conn, session_conn_closed_cb);
}

static void session_conn_event_cb(struct conn *c, enum conn_event ev)
{
    struct session *s = session_of_conn(c);
    if (s->closing)
        return;
    if (s->ops->client_event != NULL && s->ops->client_event(s, ev))
        return;
    switch (ev) {
    case CONN_EV_READ:
        session_process(s);
        break;
    case CONN_EV_TLS_DONE:
        s->ops->tls_ready(s);
        if (s->lp->cfg->tls == CONFIG_TLS_IMPLICIT)
            s->ops->greeting(s);
        session_process(s);
        break;
    case CONN_EV_TLS_FAILED:
        session_log_tls_failed(s);
        session_close(s, 0);
        break;
    case CONN_EV_EOF:
    case CONN_EV_ERROR:
        if (ev == CONN_EV_ERROR)
            log_info(s->sid, "event=client_error reason=\"%s\"", c->error);
        session_close(s, 0);
        break;
    case CONN_EV_TIMEOUT:
        log_info(s->sid, "event=client_timeout protocol=%s", s->ops->proto);
        session_log_result(&s->slog, "timeout");
        session_send(s, "%s", s->ops->timeout_line);
        session_close(s, 1);
        break;
    case CONN_EV_DRAINED:
        session_process(s);
        break;
    case CONN_EV_CONNECTED:
    case CONN_EV_CONNECT_FAILED:
        break;
    }
}

int session_accept(struct session *s, const struct listen_point *lp, uv_os_sock_t fd,
                   const struct sockaddr_storage *peer, const struct admission *adm,
                   const struct session_ops *ops, uint64_t idle_ms)
{
    struct proxy_context *ctx = lp->ctx;
    const struct config_listen *l = lp->cfg;
    s->ctx = ctx;
    s->lp = lp;
    s->adm = *adm;
    s->ops = ops;
    if (l->idle_timeout != 0) /* the listener's own idle_timeout replaces the default */
        idle_ms = (uint64_t)l->idle_timeout * 1000;
    s->link.shutdown = session_link_shutdown;
    s->link.abort = session_link_abort;
    ctx->session_id(ctx, s->sid, sizeof s->sid);
    if (conn_init(&s->conn, ctx->loop, session_conn_event_cb, s) != 0 ||
        uv_timer_init(ctx->loop, &s->delay_timer) != 0) {
        /* A handle conn_init made is in the loop already: s may go only from its close
         * callback (libuv's rule), and it was never listed anywhere. */
        close(fd);
        admission_release(&s->adm);
        conn_close(&s->conn, session_unstarted_closed_cb);
        return -1;
    }
    s->delay_timer.data = s;
    s->open_handles = 2;
    s->cfg = config_hold(ctx->cfg);
    ctx->session_add(ctx, &s->link);
    if (conn_accept_fd(&s->conn, fd, peer) != 0) {
        close(fd);
        session_close(s, 0);
        return -1;
    }
    session_log_begin(&s->slog, &s->link, ops->stats_proto, s->sid, s->conn.peer,
                      uv_now(ctx->loop));
    log_info(s->sid, "event=connect%s peer=%s listener=%s", ops->log_proto, s->conn.peer,
             l->name);
    if (s->adm.refused) {
        log_warn(s->sid, "event=refused peer=%s reason=\"listener %s: too many connections "
                 "(max_connections or max_connections_per_ip)\"", s->conn.peer, l->name);
        session_log_result(&s->slog, "refused");
        if (l->tls != CONFIG_TLS_IMPLICIT) {
            if (ops->busy != NULL)
                ops->busy(s);
            else
                session_send(s, "%s", ops->busy_line);
        }
        session_close(s, 1);
        return 0;
    }
    conn_set_timeout(&s->conn, idle_ms);
    conn_read_start(&s->conn);
    if (l->tls == CONFIG_TLS_IMPLICIT) {
        if (conn_tls_start(&s->conn, lp->tls, 0, NULL) != 0)
            session_close(s, 0);
        return 0;
    }
    /* A client that wrote before the greeting finds its bytes buffered, answered in order. */
    ops->greeting(s);
    return 0;
}

int session_accept_failed(uv_os_sock_t fd, const struct admission *adm)
{
    struct admission place = *adm;
    close(fd);
    admission_release(&place);
    return -1;
}

int session_plaintext_auth_ok(const struct session *s)
{
    if (conn_is_tls(&s->conn))
        return 1;
    switch (s->lp->cfg->allow_plaintext_auth) {
    case CONFIG_PLAINTEXT_ALWAYS:
        return 1;
    case CONFIG_PLAINTEXT_NEVER:
        return 0;
    case CONFIG_PLAINTEXT_LOOPBACK:
        return conn_peer_is_loopback(&s->conn);
    }
    return 0;
}

int session_allowlisted_login(struct session *s)
{
    struct sockaddr_storage ss;
    if (conn_peer_sockaddr(&s->conn, &ss) != 0)
        return -1;
    const struct config_account *acct =
        network_match_account(s->lp->cfg->allow_networks, s->lp->cfg->n_allow_networks, &ss);
    if (acct == NULL)
        return -1;
    if (s->acct != acct)
        log_info(s->sid, "event=allowlisted peer=%s account=%s", s->conn.peer, acct->name);
    s->acct = acct;
    session_log_login(&s->slog, NULL, acct);
    return 0;
}

static void session_auth_delay_cb(uv_timer_t *t)
{
    struct session *s = t->data;
    s->auth_cb(s, s->auth_busy ? -1 : 0);
}

/* The delay ends SESSION_AUTH_FAIL_DELAY_MS after the request began, however long the check
 * took (or whether it ran at all): a locked login, which skips the hash, is answered at the
 * same moment as a wrong password. */
static void session_auth_fail_later(struct session *s)
{
    OPENSSL_cleanse(s->password, sizeof s->password);
    OPENSSL_cleanse(s->login_user, sizeof s->login_user);
    uint64_t spent = uv_now(s->ctx->loop) - s->auth_start_ms;
    uint64_t wait = spent < SESSION_AUTH_FAIL_DELAY_MS ? SESSION_AUTH_FAIL_DELAY_MS - spent : 0;
    uv_timer_start(&s->delay_timer, session_auth_delay_cb, wait, 0);
}

static void session_auth_log_failure(struct session *s, const char *reason, const char *extra)
{
    char user[128];
    session_log_result(&s->slog, "auth_failed");
    stats_auth_failure();
    log_warn(s->sid, "event=auth_failed%s peer=%s user=%s reason=\"%s\"%s", s->ops->log_proto,
             s->conn.peer, log_quote(user, sizeof user, s->login_user, strlen(s->login_user)),
             reason, extra);
}

/* A locked login: refused without a hash (nothing about the password is learnt or counted),
 * logged with when the lock ends. */
static void session_auth_locked(struct session *s, uint64_t left_ms)
{
    char until[96], when[32];
    struct tm tm;
    time_t end = time(NULL) + (time_t)((left_ms + 999) / 1000);
    if (gmtime_r(&end, &tm) == NULL || strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(when, sizeof when, "-");
    snprintf(until, sizeof until, " until=%s seconds_left=%llu", when,
             (unsigned long long)((left_ms + 999) / 1000));
    session_auth_log_failure(s, "locked", until);
    session_auth_fail_later(s);
}

static void session_auth_verify_cb(void *arg, int result)
{
    struct session *s = arg;
    s->auth_req = NULL;
    session_auth_check_end(s);
    if (result == 1 && s->auth_candidate != NULL) {
        /* The lock may have been set while this check ran (by the other checks in flight):
         * a right password then is refused like any locked login, or the lock would only
         * hold back guesses that had not started yet. */
        uint64_t left = s->auth_exempt ? 0
                        : authlimit_lock_left(s->conn.peer, s->login_user, uv_now(s->ctx->loop));
        if (left != 0) {
            session_auth_locked(s, left);
            return;
        }
        s->acct = s->auth_candidate;
        log_info(s->sid, "event=local_login%s peer=%s account=%s", s->ops->log_proto,
                 s->conn.peer, s->acct->name);
        session_log_login(&s->slog, s->login_user, s->acct);
        if (!s->auth_exempt)
            authlimit_succeeded(s->conn.peer, s->login_user);
        OPENSSL_cleanse(s->login_user, sizeof s->login_user);
        /* docs/protocol-notes.md, "Tokens at rest": the token store is encrypted under a key
         * derived from this (now verified) password. */
        token_unlock(s->ctx->tokens, s->acct, s->password, strlen(s->password));
        OPENSSL_cleanse(s->password, sizeof s->password);
        s->auth_cb(s, 1);
        return;
    }
    if (result == LOCALAUTH_BUSY) {
        /* Not a failure of the client's: not counted, not a fail2ban line. */
        char user[128];
        s->auth_busy = 1;
        log_warn(s->sid, "event=auth_deferred%s peer=%s user=%s reason=\"too many password "
                 "checks in flight\"", s->ops->log_proto, s->conn.peer,
                 log_quote(user, sizeof user, s->login_user, strlen(s->login_user)));
        session_log_result(&s->slog, "auth_busy");
        session_auth_fail_later(s);
        return;
    }
    if (!s->auth_exempt)
        authlimit_failed(s->conn.peer, s->login_user, uv_now(s->ctx->loop));
    session_auth_log_failure(s, result < 0 ? "malformed password hash in the configuration"
                             : s->auth_candidate == NULL ? "unknown user" : "wrong password", "");
    /* The delay slows guessing; the client cannot tell an unknown user from a wrong password. */
    session_auth_fail_later(s);
}

/* 1 when the peer is in auth_lockout_exempt. */
static int session_auth_exempt(struct session *s)
{
    struct sockaddr_storage ss;
    const struct config *cfg = s->ctx->cfg;
    return cfg->n_auth_lockout_exempt > 0 && conn_peer_sockaddr(&s->conn, &ss) == 0 &&
           network_match_any(cfg->auth_lockout_exempt, cfg->n_auth_lockout_exempt, &ss);
}

void session_auth_configure(const struct config *cfg)
{
    authlimit_configure(cfg->auth_lockout_failures, (uint64_t)cfg->auth_lockout_window * 1000,
                        (uint64_t)cfg->auth_lockout_duration * 1000);
}

void session_check_password(struct session *s, const char *user, const char *password,
                            session_auth_cb cb)
{
    /* An unknown user pays for one full hash too, so that timing does not reveal which names
     * exist; no password matches the dummy. */
    snprintf(s->login_user, sizeof s->login_user, "%s", user);
    snprintf(s->password, sizeof s->password, "%s", password);
    s->auth_cb = cb;
    s->auth_busy = 0;
    s->auth_start_ms = uv_now(s->ctx->loop);
    s->auth_exempt = session_auth_exempt(s);
    uint64_t left = s->auth_exempt ? 0 : authlimit_start_left(s->conn.peer, user, s->auth_start_ms);
    if (left != 0) {
        s->auth_candidate = NULL;
        session_auth_locked(s, left);
        return;
    }
    const struct config_account *acct = config_find_account_by_local_user(s->ctx->cfg, user);
    const char *hash = localauth_dummy_hash();
    if (acct != NULL && acct->local_password != NULL)
        hash = acct->local_password;
    else
        acct = NULL;
    s->auth_candidate = acct;
    /* A known client address goes ahead of guessers in the queue of checks (and a guesser at
     * that address is stopped by its address lock). */
    int urgent = !s->auth_exempt && authlimit_known(s->conn.peer, user);
    if (!s->auth_exempt) {
        /* Before the queue: a refusal for load calls back at once, and that ends it. */
        authlimit_check_begin(s->conn.peer, user, s->auth_start_ms);
        s->auth_counted = 1;
    }
    struct localauth_req *req = localauth_verify_async_queue(s->ctx->loop, hash, password,
                                                             strlen(password), urgent,
                                                             session_auth_verify_cb, s);
    if (req != NULL)
        s->auth_req = req;
}

static void session_relay_end_cb(void *arg, const char *why)
{
    struct session *s = arg;
    log_info(s->sid, "event=relay_end protocol=%s account=%s reason=\"%s\"", s->ops->proto,
             s->acct != NULL ? s->acct->name : "-", why);
    if (!s->closing) {
        s->closing = 1;
        s->ops->closing(s);
        uv_close((uv_handle_t *)&s->delay_timer, session_timer_closed_cb);
    }
}

void session_start_relay(struct session *s, struct conn *upstream, uint64_t client_idle_ms)
{
    if (s->lp->cfg->idle_timeout != 0)
        client_idle_ms = (uint64_t)s->lp->cfg->idle_timeout * 1000;
    s->relaying = 1;
    s->open_handles++; /* the provider's conn closes through session_upstream_closed_cb */
    log_info(s->sid, "event=relay_start protocol=%s account=%s server=%s", s->ops->proto,
             s->acct->name, upstream->peer);
    relay_start(&s->relay, &s->conn, session_conn_closed_cb, upstream,
                session_upstream_closed_cb, client_idle_ms, session_relay_end_cb, s);
}
