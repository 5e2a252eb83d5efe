#include "smtp_upstream.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conn.h"
#include "line.h"
#include "log.h"
#include "proxy_context.h"

#define SMTP_UPSTREAM_REPLY_LINE_MAX 2048
#define SMTP_UPSTREAM_REPLY_MAX (64 * 1024)
#define SMTP_UPSTREAM_CONNECT_TIMEOUT_MS (30 * 1000)
/* RFC 5321 4.5.3.2: a client waits 5 minutes for the greeting and most replies, 10 for the
 * reply to the end of data. */
#define SMTP_UPSTREAM_REPLY_TIMEOUT_MS (5 * 60 * 1000)
#define SMTP_UPSTREAM_DATA_END_TIMEOUT_MS (10 * 60 * 1000)

enum smtp_upstream_state {
    SMTP_UPSTREAM_STATE_NEW,
    SMTP_UPSTREAM_STATE_TOKEN,
    SMTP_UPSTREAM_STATE_CONNECT, /* token, resolve, connect, implicit TLS */
    SMTP_UPSTREAM_STATE_GREETING,
    SMTP_UPSTREAM_STATE_EHLO,
    SMTP_UPSTREAM_STATE_STARTTLS,
    SMTP_UPSTREAM_STATE_STARTTLS_TLS, /* handshake after STARTTLS */
    SMTP_UPSTREAM_STATE_EHLO_TLS,
    SMTP_UPSTREAM_STATE_AUTH,         /* "AUTH XOAUTH2" sent, 334 expected */
    SMTP_UPSTREAM_STATE_AUTH_RESP,    /* response sent, 235 expected */
    SMTP_UPSTREAM_STATE_AUTH_ERRCHAL, /* error challenge answered, final failure expected */
    SMTP_UPSTREAM_STATE_READY,
    SMTP_UPSTREAM_STATE_REPLY, /* a command or the end of data awaits its reply */
    SMTP_UPSTREAM_STATE_DATA,  /* message bytes flow, no reply expected yet */
    SMTP_UPSTREAM_STATE_QUIT,
    SMTP_UPSTREAM_STATE_DEAD
};

static const char *const smtp_upstream_state_names[] = {
    "new",          "token",    "connect", "greeting",  "ehlo",         "starttls",
    "starttls-tls", "ehlo-tls", "auth",    "auth-resp", "auth-errchal", "ready",
    "reply",        "data",     "quit",    "dead"};

struct smtp_upstream {
    struct upstream_base base; /* first: upstream_release() frees through it */
    enum smtp_upstream_state state;
    int has_starttls, has_xoauth2, has_oauthbearer;
    int has_pipelining; /* RFC 2920: commands may be sent before earlier replies came */
    unsigned replies_due; /* SMTP_UPSTREAM_STATE_REPLY: replies still to come, in the order sent */
    size_t reply_len;
    int reply_lines;
    smtp_upstream_reply_cb reply_cb;
    smtp_upstream_event_cb event_cb;
    struct conn *client; /* smtp_upstream_set_client */
    char reply
        [SMTP_UPSTREAM_REPLY_MAX]; /* last: not zeroed at creation, only reply_len bytes count */
};

static void smtp_upstream_enter_state(struct smtp_upstream *up, enum smtp_upstream_state st);
static void smtp_upstream_token_ready(struct upstream_base *b);
static void smtp_upstream_finished(struct upstream_base *b, enum upstream_failure f);
static void smtp_upstream_connected(struct upstream_base *b);
static void smtp_upstream_starttls_done(struct upstream_base *b);
static void smtp_upstream_readable(struct upstream_base *b);
static void smtp_upstream_lost(struct upstream_base *b, const char *why);
static void smtp_upstream_drained(struct upstream_base *b);
static void smtp_upstream_process(struct smtp_upstream *up);
static void smtp_upstream_send_auth(struct smtp_upstream *up);
static void smtp_upstream_connection_lost(struct smtp_upstream *up, const char *why);

static const struct upstream_ops smtp_upstream_ops = {
    smtp_upstream_token_ready,   smtp_upstream_finished, smtp_upstream_connected,
    smtp_upstream_starttls_done, smtp_upstream_readable, smtp_upstream_lost,
    smtp_upstream_drained};

#define smtp_upstream_login_done(up, ...) upstream_login_done(&(up)->base, __VA_ARGS__)

int smtp_reply_line_parse(const char *line, size_t len, int *last)
{
    if (len < 3 || !isdigit((unsigned char)line[0]) || !isdigit((unsigned char)line[1]) ||
        !isdigit((unsigned char)line[2]))
        return -1;
    int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    if (code < 100 || code > 599)
        return -1;
    if (len == 3 || line[3] == ' ')
        *last = 1;
    else if (line[3] == '-')
        *last = 0;
    else
        return -1;
    return code;
}

static void smtp_upstream_enter_state(struct smtp_upstream *up, enum smtp_upstream_state st)
{
    if (up->state == st)
        return;
    upstream_log_state(&up->base, smtp_upstream_state_names[up->state],
                       smtp_upstream_state_names[st]);
    up->state = st;
}

struct smtp_upstream *smtp_upstream_new(struct proxy_context *ctx,
                                        const struct config_account *acct, const char *sid,
                                        smtp_upstream_event_cb event_cb, void *arg)
{
    /* Zeroing the 64 KB reply buffer cost more than the rest of a login (callgrind). */
    struct smtp_upstream *up = malloc(sizeof *up);
    if (up == NULL)
        return NULL;
    memset(up, 0, offsetof(struct smtp_upstream, reply));
    upstream_base_init(&up->base, ctx, acct, &acct->provider->smtp, "smtp", sid, &smtp_upstream_ops,
                       arg, SMTP_UPSTREAM_CONNECT_TIMEOUT_MS, SMTP_UPSTREAM_REPLY_TIMEOUT_MS);
    up->event_cb = event_cb;
    up->state = SMTP_UPSTREAM_STATE_NEW;
    return up;
}

int smtp_upstream_ready(const struct smtp_upstream *up)
{
    return up->state == SMTP_UPSTREAM_STATE_READY;
}

int smtp_upstream_can_pipeline(const struct smtp_upstream *up)
{
    return up->has_pipelining && up->base.conn != NULL &&
           (up->state == SMTP_UPSTREAM_STATE_READY ||
            (up->state == SMTP_UPSTREAM_STATE_REPLY && up->replies_due > 0));
}

void smtp_upstream_login(struct smtp_upstream *up, smtp_upstream_login_cb cb)
{
    /* Accounts whose submit list starts with ews or graph never get here: submit.c answers
     * their transactions and comes here only for an smtp fallback. */
    smtp_upstream_enter_state(up, SMTP_UPSTREAM_STATE_CONNECT);
    upstream_begin_login(&up->base, cb);
}

static void smtp_upstream_token_ready(struct upstream_base *b)
{
    smtp_upstream_send_auth((struct smtp_upstream *)b);
}

static void smtp_upstream_finished(struct upstream_base *b, enum upstream_failure f)
{
    smtp_upstream_enter_state((struct smtp_upstream *)b, f == UPSTREAM_OK
                                                             ? SMTP_UPSTREAM_STATE_READY
                                                             : SMTP_UPSTREAM_STATE_DEAD);
}

/* Sends word, an optional argument and CRLF as one command line. */
static void smtp_upstream_send_line(struct smtp_upstream *up, const char *word, const char *arg)
{
    char line[600];
    int n = snprintf(line, sizeof line, "%s%s%s\r\n", word, arg ? " " : "", arg ? arg : "");
    if (n > 0 && (size_t)n < sizeof line)
        conn_write(up->base.conn, line, (size_t)n);
}

static void smtp_upstream_send_auth(struct smtp_upstream *up)
{
    int bearer = up->base.acct->mechanism == CONFIG_MECH_OAUTHBEARER;
    if (bearer && !up->has_oauthbearer && up->has_xoauth2)
        log_warn(up->base.sid, "event=upstream_mechanism account=%s note=\"server does not "
                 "advertise OAUTHBEARER; trying it anyway\"", up->base.acct->name);
    smtp_upstream_enter_state(up, SMTP_UPSTREAM_STATE_AUTH);
    conn_set_timeout(up->base.conn, SMTP_UPSTREAM_REPLY_TIMEOUT_MS);
    smtp_upstream_send_line(up, "AUTH", upstream_mechanism(&up->base));
}

/* A printable, shortened copy of the reply for log lines. */
static const char *smtp_upstream_reply_for_log(struct smtp_upstream *up, char *out, size_t outsz)
{
    size_t n = up->reply_len;
    while (n > 0 && (up->reply[n - 1] == '\r' || up->reply[n - 1] == '\n'))
        n--;
    return log_quote(out, outsz, up->reply, n);
}

static void smtp_upstream_parse_ehlo(struct smtp_upstream *up)
{
    up->has_starttls = up->has_xoauth2 = up->has_oauthbearer = up->has_pipelining = 0;
    const char *p = up->reply;
    const char *end = up->reply + up->reply_len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t len = eol ? (size_t)(eol - p) : (size_t)(end - p);
        if (len > 0 && p[len - 1] == '\r')
            len--;
        if (len > 4) {
            char kw[SMTP_UPSTREAM_REPLY_LINE_MAX];
            size_t kl = len - 4 < sizeof kw - 1 ? len - 4 : sizeof kw - 1;
            for (size_t i = 0; i < kl; i++)
                kw[i] = (char)toupper((unsigned char)p[4 + i]);
            kw[kl] = '\0';
            if (strcmp(kw, "STARTTLS") == 0)
                up->has_starttls = 1;
            if (strcmp(kw, "PIPELINING") == 0)
                up->has_pipelining = 1;
            if (strncmp(kw, "AUTH ", 5) == 0 || strncmp(kw, "AUTH=", 5) == 0) {
                for (char *t = strtok(kw + 5, " "); t != NULL; t = strtok(NULL, " ")) {
                    if (strcmp(t, "XOAUTH2") == 0)
                        up->has_xoauth2 = 1;
                    else if (strcmp(t, "OAUTHBEARER") == 0)
                        up->has_oauthbearer = 1;
                }
            }
        }
        p = eol ? eol + 1 : end;
    }
}

static void smtp_upstream_after_ehlo(struct smtp_upstream *up, int code)
{
    char why[300];
    if (code != 250) {
        smtp_upstream_login_done(up, UPSTREAM_FAIL_PROTOCOL, "EHLO refused: %s",
                                 smtp_upstream_reply_for_log(up, why, sizeof why));
        return;
    }
    smtp_upstream_parse_ehlo(up);
    if (up->base.ep->tls == CONFIG_TLS_STARTTLS && !conn_is_tls(up->base.conn)) {
        if (!up->has_starttls) {
            smtp_upstream_login_done(
                up, UPSTREAM_FAIL_TLS,
                "server does not offer STARTTLS (refusing to send a token in clear)");
            return;
        }
        smtp_upstream_enter_state(up, SMTP_UPSTREAM_STATE_STARTTLS);
        smtp_upstream_send_line(up, "STARTTLS", NULL);
        return;
    }
    if (!up->has_xoauth2 && !up->has_oauthbearer) {
        smtp_upstream_login_done(up, UPSTREAM_FAIL_PROTOCOL,
                                 "server offers neither AUTH XOAUTH2 nor OAUTHBEARER");
        return;
    }
    smtp_upstream_send_auth(up);
}

static void smtp_upstream_auth_rejected(struct smtp_upstream *up, int code)
{
    char why[300];
    smtp_upstream_reply_for_log(up, why, sizeof why);
    if (code >= 400 && code < 500) {
        smtp_upstream_login_done(up, UPSTREAM_FAIL_AUTH, "temporary authentication failure: %s",
                                 why);
        return;
    }
    smtp_upstream_enter_state(up, SMTP_UPSTREAM_STATE_TOKEN);
    upstream_token_rejected(&up->base, why);
}

static void smtp_upstream_handle_reply(struct smtp_upstream *up, int code)
{
    char why[300];
    switch (up->state) {
    case SMTP_UPSTREAM_STATE_GREETING:
        if (code != 220) {
            smtp_upstream_login_done(up, UPSTREAM_FAIL_PROTOCOL, "greeting: %s",
                                     smtp_upstream_reply_for_log(up, why, sizeof why));
            return;
        }
        smtp_upstream_enter_state(up, SMTP_UPSTREAM_STATE_EHLO);
        smtp_upstream_send_line(up, "EHLO", up->base.ctx->hostname);
        return;
    case SMTP_UPSTREAM_STATE_EHLO:
    case SMTP_UPSTREAM_STATE_EHLO_TLS:
        smtp_upstream_after_ehlo(up, code);
        return;
    case SMTP_UPSTREAM_STATE_STARTTLS:
        if (code != 220) {
            smtp_upstream_login_done(up, UPSTREAM_FAIL_TLS, "STARTTLS refused: %s",
                                     smtp_upstream_reply_for_log(up, why, sizeof why));
            return;
        }
        /* RFC 3207: nothing the server sent before the handshake may be trusted. */
        smtp_upstream_enter_state(up, SMTP_UPSTREAM_STATE_STARTTLS_TLS);
        upstream_starttls(&up->base);
        return;
    case SMTP_UPSTREAM_STATE_AUTH:
        if (code == 334) {
            smtp_upstream_enter_state(up, SMTP_UPSTREAM_STATE_AUTH_RESP);
            upstream_send_sasl(&up->base, "");
            return;
        }
        if (code >= 500 && code != 535) {
            smtp_upstream_login_done(up, UPSTREAM_FAIL_PROTOCOL, "AUTH %s refused: %s",
                                     upstream_mechanism(&up->base),
                                     smtp_upstream_reply_for_log(up, why, sizeof why));
            return;
        }
        smtp_upstream_auth_rejected(up, code);
        return;
    case SMTP_UPSTREAM_STATE_AUTH_RESP:
        if (code == 235) {
            log_info(up->base.sid, "event=upstream_login account=%s server=%s:%u mechanism=%s",
                     up->base.acct->name, up->base.ep->host, (unsigned)up->base.ep->port,
                     upstream_mechanism(&up->base));
            smtp_upstream_login_done(up, UPSTREAM_OK, "ok");
            return;
        }
        if (code == 334) {
            /* Gmail's error challenge: a base64 JSON status; the client must answer before
             * the server sends its final failure. */
            const char *b64 = up->reply + 4;
            size_t blen = up->reply_len > 4 ? up->reply_len - 4 : 0;
            const char *answer = upstream_error_challenge(&up->base, b64, blen);
            smtp_upstream_enter_state(up, SMTP_UPSTREAM_STATE_AUTH_ERRCHAL);
            smtp_upstream_send_line(up, answer, NULL);
            return;
        }
        smtp_upstream_auth_rejected(up, code);
        return;
    case SMTP_UPSTREAM_STATE_AUTH_ERRCHAL:
        smtp_upstream_auth_rejected(up, code >= 400 ? code : 535);
        return;
    case SMTP_UPSTREAM_STATE_REPLY: {
        smtp_upstream_reply_cb cb = up->reply_cb;
        if (up->replies_due > 0)
            up->replies_due--;
        if (code == 421)
            up->replies_due = 0; /* nothing more comes; the session answers for the rest */
        if (up->replies_due == 0) {
            up->reply_cb = NULL;
            smtp_upstream_enter_state(up, SMTP_UPSTREAM_STATE_READY);
            conn_set_timeout(up->base.conn, 0);
        }
        if (code == 421) {
            /* The server is closing; the session learns it from this reply, and the next
             * transaction logs in again. */
            smtp_upstream_enter_state(up, SMTP_UPSTREAM_STATE_DEAD);
        }
        if (cb != NULL && !up->base.detached)
            cb(up->base.arg, code, up->reply, up->reply_len);
        return;
    }
    case SMTP_UPSTREAM_STATE_QUIT:
        upstream_close_conn(&up->base, 0);
        smtp_upstream_enter_state(up, SMTP_UPSTREAM_STATE_DEAD);
        return;
    default:
        log_warn(up->base.sid, "event=upstream_unexpected account=%s state=%s reply=%s",
                 up->base.acct->name, smtp_upstream_state_names[up->state],
                 smtp_upstream_reply_for_log(up, why, sizeof why));
        smtp_upstream_connection_lost(up, "unexpected reply");
        return;
    }
}

static void smtp_upstream_process(struct smtp_upstream *up)
{
    struct conn *c;
    while ((c = up->base.conn) != NULL && c->in_len > 0) {
        size_t len, used;
        enum line_result r = line_next(c->in, c->in_len, SMTP_UPSTREAM_REPLY_LINE_MAX, &len, &used);
        if (r == LINE_AGAIN)
            return;
        if (r == LINE_TOO_LONG) {
            smtp_upstream_connection_lost(up, "reply line too long");
            return;
        }
        int last = 0;
        int code = smtp_reply_line_parse(c->in, len, &last);
        if (code < 0 || up->reply_len + len + 2 > sizeof up->reply) {
            smtp_upstream_connection_lost(up, "malformed reply");
            return;
        }
        memcpy(up->reply + up->reply_len, c->in, len);
        memcpy(up->reply + up->reply_len + len, "\r\n", 2);
        up->reply_len += len + 2;
        up->reply_lines++;
        conn_consume(c, used);
        if (!last)
            continue;
        smtp_upstream_handle_reply(up, code);
        up->reply_len = 0;
        up->reply_lines = 0;
        if (up->base.detached || up->base.conn == NULL)
            return;
    }
}

static int smtp_upstream_logging_in(const struct smtp_upstream *up)
{
    return up->state >= SMTP_UPSTREAM_STATE_TOKEN && up->state <= SMTP_UPSTREAM_STATE_AUTH_ERRCHAL;
}

static void smtp_upstream_connection_lost(struct smtp_upstream *up, const char *why)
{
    enum smtp_upstream_state st = up->state;
    upstream_close_conn(&up->base, 0);
    if (smtp_upstream_logging_in(up)) {
        upstream_lost_during_login(&up->base, why, smtp_upstream_state_names[st]);
        return;
    }
    smtp_upstream_enter_state(up, SMTP_UPSTREAM_STATE_DEAD);
    if (up->base.detached)
        return;
    if (st == SMTP_UPSTREAM_STATE_REPLY) {
        smtp_upstream_reply_cb cb = up->reply_cb;
        up->reply_cb = NULL;
        up->replies_due = 0; /* one call for all: the session answers for the rest */
        if (cb != NULL)
            cb(up->base.arg, 0, why, strlen(why));
    } else if (st == SMTP_UPSTREAM_STATE_READY || st == SMTP_UPSTREAM_STATE_DATA) {
        if (up->event_cb != NULL)
            up->event_cb(up->base.arg, SMTP_UPSTREAM_LOST);
    }
}

static void smtp_upstream_connected(struct upstream_base *b)
{
    smtp_upstream_enter_state((struct smtp_upstream *)b, SMTP_UPSTREAM_STATE_GREETING);
}

static void smtp_upstream_starttls_done(struct upstream_base *b)
{
    struct smtp_upstream *up = (struct smtp_upstream *)b;
    /* RFC 3207: forget everything learned before TLS and ask again. */
    smtp_upstream_enter_state(up, SMTP_UPSTREAM_STATE_EHLO_TLS);
    smtp_upstream_send_line(up, "EHLO", b->ctx->hostname);
}

static void smtp_upstream_readable(struct upstream_base *b)
{
    struct smtp_upstream *up = (struct smtp_upstream *)b;
    /* A pipelined group's replies (250, 250, 354) usually arrive in one read: relay them in
     * one write, not one segment and one wake-up of the client each. The client's conn
     * outlives this call even if the session drops this upstream meanwhile. */
    struct conn *client = up->client;
    int corked = client != NULL && conn_cork(client);
    smtp_upstream_process(up);
    if (corked)
        conn_uncork(client);
}

static void smtp_upstream_lost(struct upstream_base *b, const char *why)
{
    smtp_upstream_connection_lost((struct smtp_upstream *)b, why);
}

static void smtp_upstream_drained(struct upstream_base *b)
{
    struct smtp_upstream *up = (struct smtp_upstream *)b;
    if (up->event_cb != NULL)
        up->event_cb(b->arg, SMTP_UPSTREAM_DRAINED);
}

void smtp_upstream_command(struct smtp_upstream *up, const char *line, size_t len,
                           smtp_upstream_reply_cb cb)
{
    upstream_hold(&up->base);
    struct conn *c = up->base.conn;
    /* RFC 2920: behind a command whose reply is still due, only with PIPELINING and the same
     * callback, which gets the replies in the order the commands went. */
    int behind = up->state == SMTP_UPSTREAM_STATE_REPLY && up->has_pipelining &&
                 up->replies_due > 0 && up->reply_cb == cb;
    if ((up->state != SMTP_UPSTREAM_STATE_READY && !behind) || c == NULL) {
        cb(up->base.arg, 0, "not connected", 13);
    } else {
        up->reply_cb = cb;
        up->replies_due = behind ? up->replies_due + 1 : 1;
        if (!behind)
            smtp_upstream_enter_state(up, SMTP_UPSTREAM_STATE_REPLY);
        conn_set_timeout(c, SMTP_UPSTREAM_REPLY_TIMEOUT_MS);
        /* One write, so that a pipelined group leaves in as few segments as possible. */
        char buf[1024];
        int r;
        if (len + 2 <= sizeof buf) {
            memcpy(buf, line, len);
            memcpy(buf + len, "\r\n", 2);
            r = conn_write(c, buf, len + 2);
        } else {
            r = conn_write(c, line, len) != 0 || conn_write(c, "\r\n", 2) != 0 ? -1 : 0;
        }
        if (r != 0)
            smtp_upstream_connection_lost(up, "write failed");
    }
    upstream_release(&up->base);
}

int smtp_upstream_write(struct smtp_upstream *up, const char *buf, size_t len)
{
    if (up->base.conn == NULL ||
        (up->state != SMTP_UPSTREAM_STATE_READY && up->state != SMTP_UPSTREAM_STATE_DATA))
        return -1;
    smtp_upstream_enter_state(up, SMTP_UPSTREAM_STATE_DATA);
    if (conn_write(up->base.conn, buf, len) != 0)
        return -1;
    return 0;
}

void smtp_upstream_expect_reply(struct smtp_upstream *up, smtp_upstream_reply_cb cb)
{
    upstream_hold(&up->base);
    if (up->base.conn == NULL || up->state != SMTP_UPSTREAM_STATE_DATA) {
        cb(up->base.arg, 0, "not connected", 13);
    } else {
        up->reply_cb = cb;
        up->replies_due = 1;
        smtp_upstream_enter_state(up, SMTP_UPSTREAM_STATE_REPLY);
        conn_set_timeout(up->base.conn, SMTP_UPSTREAM_DATA_END_TIMEOUT_MS);
        smtp_upstream_process(up);
    }
    upstream_release(&up->base);
}

size_t smtp_upstream_backlog(const struct smtp_upstream *up)
{
    return up->base.conn != NULL ? up->base.conn->out_pending : 0;
}

struct conn *smtp_upstream_conn(const struct smtp_upstream *up) { return up->base.conn; }

void smtp_upstream_set_client(struct smtp_upstream *up, struct conn *client)
{
    up->client = client;
}

int smtp_upstream_congested(const struct smtp_upstream *up)
{
    return up->base.conn != NULL && up->base.conn->above_high;
}

void smtp_upstream_free(struct smtp_upstream *up, int polite)
{
    if (up == NULL)
        return;
    upstream_detach(&up->base);
    if (up->base.conn != NULL) {
        if (polite && up->state == SMTP_UPSTREAM_STATE_READY) {
            conn_write(up->base.conn, "QUIT\r\n", 6);
            upstream_close_conn(&up->base, 1);
        } else {
            upstream_close_conn(&up->base, 0);
        }
    }
    upstream_destroy(&up->base);
}
