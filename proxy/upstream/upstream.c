#include "upstream.h"

#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "proxy_context.h"
#include "sasl.h"
#include "token.h"

struct upstream_resolve {
    uv_getaddrinfo_t req;
    upstream_resolve_cb cb;
    void *arg;
    int cancelled;
    char host[256];
};

static void upstream_resolve_done_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct upstream_resolve *r = req->data;
    if (!r->cancelled) {
        if (status != 0) {
            char reason[320];
            snprintf(reason, sizeof reason, "cannot resolve %s: %s", r->host, uv_strerror(status));
            r->cb(r->arg, NULL, reason);
        } else {
            r->cb(r->arg, res, NULL);
        }
    }
    if (res != NULL)
        uv_freeaddrinfo(res);
    free(r);
}

struct upstream_resolve *upstream_resolve_start(uv_loop_t *loop, const char *host, uint16_t port,
                                                upstream_resolve_cb cb, void *arg)
{
    struct upstream_resolve *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->cb = cb;
    r->arg = arg;
    r->req.data = r;
    snprintf(r->host, sizeof r->host, "%s", host);
    char service[8];
    snprintf(service, sizeof service, "%u", (unsigned)port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (uv_getaddrinfo(loop, &r->req, upstream_resolve_done_cb, r->host, service, &hints) != 0) {
        free(r);
        return NULL;
    }
    return r;
}

void upstream_resolve_cancel(struct upstream_resolve *r)
{
    /* uv_cancel may fail when the lookup already runs; the flag covers that case. */
    r->cancelled = 1;
    uv_cancel((uv_req_t *)&r->req);
}

const char *upstream_failure_name(enum upstream_failure f)
{
    switch (f) {
    case UPSTREAM_OK: return "ok";
    case UPSTREAM_FAIL_TOKEN: return "token";
    case UPSTREAM_FAIL_CONNECT: return "connect";
    case UPSTREAM_FAIL_TLS: return "tls";
    case UPSTREAM_FAIL_PROTOCOL: return "protocol";
    case UPSTREAM_FAIL_AUTH: return "auth";
    }
    return "?";
}

/* ---- the shared base ------------------------------------------------------------------------ */

static void upstream_conn_event_cb(struct conn *c, enum conn_event ev);
static void upstream_token_cb(void *arg, enum token_status st, const char *token);
static void upstream_resolved_cb(void *arg, const struct addrinfo *ai, const char *reason);
static void upstream_connect(struct upstream_base *b);
static void upstream_try_next(struct upstream_base *b, const char *why);
static void upstream_fetch_token(struct upstream_base *b);

void upstream_base_init(struct upstream_base *b, struct proxy_context *ctx,
                        const struct config_account *acct, const struct config_endpoint *ep,
                        const char *proto, const char *sid, const struct upstream_ops *ops,
                        void *arg, uint64_t connect_ms, uint64_t reply_ms)
{
    b->connect_timeout_ms = connect_ms;
    b->reply_timeout_ms = reply_ms;
    b->ctx = ctx;
    b->acct = acct;
    b->ep = ep;
    b->proto = proto;
    b->ops = ops;
    b->arg = arg;
    snprintf(b->sid, sizeof b->sid, "%s", sid);
}

void upstream_hold(struct upstream_base *b) { b->in_callback++; }

void upstream_release(struct upstream_base *b)
{
    if (--b->in_callback == 0 && b->detached)
        free(b);
}

void upstream_log_state(const struct upstream_base *b, const char *from, const char *to)
{
    log_debug(b->sid, "event=upstream_state protocol=%s account=%s from=%s to=%s", b->proto,
              b->acct->name, from, to);
}

void upstream_clear_token(struct upstream_base *b)
{
    if (b->token != NULL) {
        OPENSSL_cleanse(b->token, strlen(b->token));
        free(b->token);
        b->token = NULL;
    }
}

static void upstream_conn_closed_cb(struct conn *c) { free(c); }

void upstream_close_conn(struct upstream_base *b, int flush)
{
    if (b->conn == NULL)
        return;
    b->conn->data = NULL;
    if (flush)
        conn_close_after_flush(b->conn, upstream_conn_closed_cb);
    else
        conn_close(b->conn, upstream_conn_closed_cb);
    b->conn = NULL;
}

struct conn *upstream_take_conn(struct upstream_base *b)
{
    struct conn *c = b->conn;
    b->conn = NULL;
    if (c != NULL)
        c->data = NULL;
    return c;
}

void upstream_detach(struct upstream_base *b)
{
    b->detached = 1;
    if (b->token_wait != NULL)
        token_wait_cancel(b->token_wait);
    b->token_wait = NULL;
    if (b->resolve != NULL)
        upstream_resolve_cancel(b->resolve);
    b->resolve = NULL;
    upstream_clear_token(b);
}

void upstream_destroy(struct upstream_base *b)
{
    b->detached = 1;
    if (b->in_callback == 0)
        free(b);
}

void upstream_login_done(struct upstream_base *b, enum upstream_failure f, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    upstream_clear_token(b);
    if (f != UPSTREAM_OK)
        upstream_close_conn(b, 0);
    b->ops->finished(b, f);
    upstream_login_cb cb = b->login_cb;
    b->login_cb = NULL;
    if (cb != NULL && !b->detached)
        cb(b->arg, f, reason);
}

void upstream_lost_during_login(struct upstream_base *b, const char *why, const char *state)
{
    upstream_login_done(b, b->handshaking ? UPSTREAM_FAIL_TLS : UPSTREAM_FAIL_CONNECT,
                        "%s (while in state %s)", why, state);
}

void upstream_begin_login(struct upstream_base *b, upstream_login_cb cb)
{
    b->login_cb = cb;
    b->token_forced = 0;
    upstream_hold(b);
    if (!b->ep->present)
        upstream_login_done(b, UPSTREAM_FAIL_PROTOCOL, "provider %s has no %s endpoint configured",
                            b->acct->provider->name, b->proto);
    else
        upstream_fetch_token(b);
    upstream_release(b);
}

/* SMTP (relay, or the fallback of submit = graph, smtp) has smtp_scope; IMAP and POP3 the
 * account's scope. */
static const char *upstream_scope(const struct upstream_base *b)
{
    return strcmp(b->proto, "smtp") == 0 ? config_account_scope(b->acct, CONFIG_SUBMIT_SMTP)
                                         : b->acct->scope;
}

/* Asks the token manager (again, after a rejection). */
static void upstream_fetch_token(struct upstream_base *b)
{
    upstream_hold(b);
    struct token_wait *w = token_get_scope(b->ctx->tokens, b->acct, upstream_scope(b), 0, b->sid,
                                           upstream_token_cb, b);
    if (w != NULL && !b->detached)
        b->token_wait = w;
    upstream_release(b);
}

static void upstream_token_cb(void *arg, enum token_status st, const char *token)
{
    struct upstream_base *b = arg;
    upstream_hold(b);
    b->token_wait = NULL;
    upstream_clear_token(b);
    if (st != TOKEN_OK) {
        /* The token manager has logged what the admin should do. */
        upstream_login_done(b, UPSTREAM_FAIL_TOKEN, "no access token (%s)",
                            token_status_name(st));
    } else if ((b->token = strdup(token)) == NULL) {
        upstream_login_done(b, UPSTREAM_FAIL_TOKEN, "out of memory");
    } else if (b->conn != NULL) {
        b->ops->token_ready(b); /* a retry on the connection that is still open */
    } else {
        upstream_connect(b);
    }
    upstream_release(b);
}

void upstream_token_rejected(struct upstream_base *b, const char *why)
{
    if (b->token_forced) {
        upstream_login_done(b, UPSTREAM_FAIL_AUTH,
                            "token rejected again after a refresh: %s (check that the token's "
                            "user is %s and that the app has the mail scope)",
                            why, b->acct->username);
        return;
    }
    /* A cached token can die early (revoked, password change, a Continuous Access Evaluation
     * event): one more token, not a loop. Every session that held it is rejected at about the
     * same time; the token manager refreshes once for all of them, and a session whose token
     * was replaced meanwhile just gets the new one. */
    log_info(b->sid, "event=upstream_token_rejected protocol=%s account=%s reply=%s "
             "action=refresh", b->proto, b->acct->name, why);
    b->token_forced = 1;
    token_rejected(b->ctx->tokens, b->acct, upstream_scope(b), b->token, b->sid);
    upstream_clear_token(b);
    upstream_fetch_token(b);
}

/* Resolves the endpoint and connects (every address in turn, see upstream_try_next); once
 * connected, implicit TLS runs when the endpoint says so, then ops->connected. Failures end the
 * login. */
static void upstream_connect(struct upstream_base *b)
{
    /* The connect timeout starts once the addresses are known; until then the resolver's own
     * limits apply. */
    b->resolve = upstream_resolve_start(b->ctx->loop, b->ep->host, b->ep->port,
                                        upstream_resolved_cb, b);
    if (b->resolve == NULL)
        upstream_login_done(b, UPSTREAM_FAIL_CONNECT, "cannot resolve %s", b->ep->host);
}

static int upstream_addr_usable(const struct addrinfo *a)
{
    return (a->ai_family == AF_INET && a->ai_addrlen >= sizeof(struct sockaddr_in)) ||
           (a->ai_family == AF_INET6 && a->ai_addrlen >= sizeof(struct sockaddr_in6));
}

/* The next address of family after *cur (from *cur itself when it matches), or NULL. */
static const struct addrinfo *upstream_next_of(const struct addrinfo *cur, int family)
{
    while (cur != NULL && !(cur->ai_family == family && upstream_addr_usable(cur)))
        cur = cur->ai_next;
    return cur;
}

size_t upstream_order_addrs(const struct addrinfo *ai, union upstream_addr *out, size_t max)
{
    const struct addrinfo *first = ai;
    while (first != NULL && !upstream_addr_usable(first))
        first = first->ai_next;
    if (first == NULL)
        return 0;
    /* RFC 8305 section 4: "the first address family [...] should be followed by an address of
     * the other address family", so one broken family costs one attempt, not all of them. */
    int fam[2] = {first->ai_family, first->ai_family == AF_INET6 ? AF_INET : AF_INET6};
    const struct addrinfo *q[2] = {upstream_next_of(ai, fam[0]), upstream_next_of(ai, fam[1])};
    size_t n = 0;
    for (int turn = 0; n < max && (q[0] != NULL || q[1] != NULL); turn ^= 1) {
        if (q[turn] == NULL)
            continue;
        memset(&out[n], 0, sizeof out[n]);
        memcpy(&out[n], q[turn]->ai_addr,
               fam[turn] == AF_INET ? sizeof out[n].in4 : sizeof out[n].in6);
        n++;
        q[turn] = upstream_next_of(q[turn]->ai_next, fam[turn]);
    }
    return n;
}

static void upstream_resolved_cb(void *arg, const struct addrinfo *ai, const char *reason)
{
    struct upstream_base *b = arg;
    upstream_hold(b);
    b->resolve = NULL;
    if (ai == NULL) {
        upstream_login_done(b, UPSTREAM_FAIL_CONNECT, "%s", reason);
    } else if ((b->n_addrs = upstream_order_addrs(ai, b->addrs, UPSTREAM_MAX_ADDRS)) == 0) {
        upstream_login_done(b, UPSTREAM_FAIL_CONNECT, "%s has no IPv4 or IPv6 address",
                            b->ep->host);
    } else {
        b->next_addr = 0;
        b->connect_deadline = uv_now(b->ctx->loop) + b->connect_timeout_ms;
        upstream_try_next(b, NULL);
    }
    upstream_release(b);
}

/* Starts one attempt at the next address: 1 when it runs, 0 when it failed at once (why in
 * err), -1 when the login was ended. */
static int upstream_attempt(struct upstream_base *b, char *err, size_t errsz)
{
    const union upstream_addr *a = &b->addrs[b->next_addr++];
    uint64_t now = uv_now(b->ctx->loop);
    uint64_t left = b->connect_deadline > now ? b->connect_deadline - now : 0;
    if (left == 0) { /* the connect timeout is used up: no address left gets a turn */
        snprintf(err, errsz, "connect to %s: timed out", b->ep->host);
        b->next_addr = b->n_addrs;
        return 0;
    }
    b->conn = malloc(sizeof *b->conn);
    if (b->conn == NULL) {
        upstream_login_done(b, UPSTREAM_FAIL_CONNECT, "out of memory");
        return -1;
    }
    if (conn_init(b->conn, b->ctx->loop, upstream_conn_event_cb, b) != 0) {
        upstream_login_done(b, UPSTREAM_FAIL_CONNECT, "cannot create socket");
        return -1;
    }
    /* The last address may use the rest of the budget; the others must leave room. */
    if (b->next_addr < b->n_addrs && left > UPSTREAM_ATTEMPT_TIMEOUT_MS)
        left = UPSTREAM_ATTEMPT_TIMEOUT_MS;
    conn_set_timeout(b->conn, left);
    if (conn_connect(b->conn, &a->sa) != 0) {
        snprintf(err, errsz, "%s", b->conn->error);
        upstream_close_conn(b, 0);
        return 0;
    }
    b->connecting = 1;
    return 1;
}

/* Tries the addresses left, in order, after the previous attempt failed with why (NULL: the
 * first attempt). Ends the login when none is left. */
static void upstream_try_next(struct upstream_base *b, const char *why)
{
    char err[256], q[300];
    snprintf(err, sizeof err, "%s", why != NULL ? why : "");
    while (b->next_addr < b->n_addrs) {
        if (err[0] != '\0')
            log_info(b->sid, "event=upstream_connect_failed protocol=%s account=%s reason=%s "
                     "action=next_address", b->proto, b->acct->name,
                     log_quote(q, sizeof q, err, strlen(err)));
        if (upstream_attempt(b, err, sizeof err) != 0)
            return;
    }
    if (b->n_addrs > 1)
        upstream_login_done(b, UPSTREAM_FAIL_CONNECT, "%s (every one of %zu addresses failed)",
                            err, b->n_addrs);
    else
        upstream_login_done(b, UPSTREAM_FAIL_CONNECT, "%s", err);
}

/* The attempt on b->conn failed: its socket goes, the next address gets its turn. */
static void upstream_attempt_failed(struct upstream_base *b, const char *why)
{
    char copy[256]; /* why may live in the conn that goes now */
    snprintf(copy, sizeof copy, "%s", why);
    b->connecting = 0;
    upstream_close_conn(b, 0);
    upstream_try_next(b, copy);
}

static int upstream_tls_start(struct upstream_base *b)
{
    SSL_CTX *ctx = b->ctx->provider_tls(b->ctx, b->acct->provider);
    b->handshaking = 1;
    if (ctx == NULL || conn_tls_start(b->conn, ctx, 1, b->ep->host) != 0) {
        upstream_login_done(b, UPSTREAM_FAIL_TLS, "cannot set up TLS to %s", b->ep->host);
        return -1;
    }
    return 0;
}

void upstream_starttls(struct upstream_base *b)
{
    /* RFC 3207 section 4.2 / RFC 2595 section 3.1: nothing the server sent before the
     * handshake may be trusted (a man in the middle could have appended it). */
    conn_discard_input(b->conn);
    upstream_tls_start(b);
}

static void upstream_conn_event_held(struct upstream_base *b, struct conn *c, enum conn_event ev)
{
    char why[200];
    switch (ev) {
    case CONN_EV_CONNECTED:
        b->connecting = 0;
        conn_read_start(c);
        conn_set_timeout(c, b->reply_timeout_ms);
        if (b->ep->tls == CONFIG_TLS_IMPLICIT)
            upstream_tls_start(b);
        else
            b->ops->connected(b);
        return;
    case CONN_EV_CONNECT_FAILED:
        upstream_attempt_failed(b, c->error);
        return;
    case CONN_EV_TLS_DONE:
        b->handshaking = 0;
        if (b->ep->tls == CONFIG_TLS_IMPLICIT)
            b->ops->connected(b);
        else
            b->ops->starttls_done(b);
        if (b->conn != NULL && !b->detached)
            b->ops->readable(b);
        return;
    case CONN_EV_TLS_FAILED:
        upstream_login_done(b, UPSTREAM_FAIL_TLS, "%s", c->error);
        return;
    case CONN_EV_READ:
        b->ops->readable(b);
        return;
    case CONN_EV_DRAINED:
        if (b->ops->drained != NULL && !b->detached)
            b->ops->drained(b);
        return;
    case CONN_EV_EOF:
        b->ops->lost(b, "connection closed by server");
        return;
    case CONN_EV_ERROR:
        snprintf(why, sizeof why, "%s", c->error);
        b->ops->lost(b, why);
        return;
    case CONN_EV_TIMEOUT:
        if (b->connecting) {
            snprintf(why, sizeof why, "connect to %s: timed out", c->peer);
            upstream_attempt_failed(b, why);
            return;
        }
        snprintf(why, sizeof why, "timed out waiting for %s", b->ep->host);
        b->ops->lost(b, why);
        return;
    }
}

static void upstream_conn_event_cb(struct conn *c, enum conn_event ev)
{
    struct upstream_base *b = c->data;
    if (b == NULL)
        return;
    upstream_hold(b);
    upstream_conn_event_held(b, c, ev);
    upstream_release(b);
}

const char *upstream_mechanism(const struct upstream_base *b)
{
    return b->acct->mechanism == CONFIG_MECH_OAUTHBEARER ? "OAUTHBEARER" : "XOAUTH2";
}

int upstream_send_sasl(struct upstream_base *b, const char *prefix)
{
    char *resp;
    if (b->acct->mechanism == CONFIG_MECH_OAUTHBEARER)
        resp = sasl_oauthbearer_response(b->acct->username, b->ep->host, b->ep->port, b->token);
    else
        resp = sasl_xoauth2_response(b->acct->username, b->token);
    if (resp == NULL) {
        upstream_login_done(b, UPSTREAM_FAIL_AUTH, "out of memory");
        return -1;
    }
    size_t pl = strlen(prefix), n = strlen(resp);
    /* One write for prefix, response and CRLF: the bytes are cleansed when it completes. */
    char *buf = malloc(pl + n + 2);
    if (buf != NULL) {
        memcpy(buf, prefix, pl);
        memcpy(buf + pl, resp, n);
        memcpy(buf + pl + n, "\r\n", 2);
        conn_write(b->conn, buf, pl + n + 2);
        OPENSSL_cleanse(buf, pl + n + 2);
        free(buf);
    }
    sasl_secret_free(resp);
    if (buf == NULL) {
        upstream_login_done(b, UPSTREAM_FAIL_AUTH, "out of memory");
        return -1;
    }
    return 0;
}

const char *upstream_error_challenge(struct upstream_base *b, const char *b64, size_t len)
{
    char detail[256], quoted[300];
    while (len > 0 && (b64[len - 1] == '\r' || b64[len - 1] == '\n' || b64[len - 1] == ' '))
        len--;
    sasl_describe_challenge(b64, len, detail, sizeof detail);
    log_info(b->sid, "event=upstream_error_challenge protocol=%s account=%s detail=%s", b->proto,
             b->acct->name, log_quote(quoted, sizeof quoted, detail, strlen(detail)));
    return sasl_error_challenge_answer(b->acct->mechanism == CONFIG_MECH_OAUTHBEARER);
}
