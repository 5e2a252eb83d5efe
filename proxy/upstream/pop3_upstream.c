/* pop3_upstream: the POP3 client towards the provider, see pop3_upstream.h. */
#include "pop3_upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "line.h"
#include "log.h"

/* RFC 2449: responses up to 512 octets; a challenge is longer */
#define POP3_UPSTREAM_LINE_MAX 4096
#define POP3_UPSTREAM_CONNECT_TIMEOUT_MS (30 * 1000)
/* RFC 1939 has no client timer; the server's autologout timer is at least 10 minutes. */
#define POP3_UPSTREAM_REPLY_TIMEOUT_MS (2 * 60 * 1000)

enum pop3_upstream_state {
    POP3_UPSTREAM_STATE_NEW,
    POP3_UPSTREAM_STATE_TOKEN,   /* waiting for a refreshed token */
    POP3_UPSTREAM_STATE_CONNECT, /* token, resolve, connect, implicit TLS */
    POP3_UPSTREAM_STATE_GREETING,
    POP3_UPSTREAM_STATE_CAPA,      /* CAPA sent, "+OK" or "-ERR" expected */
    POP3_UPSTREAM_STATE_CAPA_LIST, /* inside the multi-line CAPA answer */
    POP3_UPSTREAM_STATE_STLS,
    POP3_UPSTREAM_STATE_STLS_TLS,
    POP3_UPSTREAM_STATE_AUTH,         /* "AUTH XOAUTH2" sent, "+" expected */
    POP3_UPSTREAM_STATE_AUTH_RESP,    /* response sent, "+OK" (or an error challenge) expected */
    POP3_UPSTREAM_STATE_AUTH_ERRCHAL, /* error challenge answered, "-ERR" expected */
    POP3_UPSTREAM_STATE_READY,
    POP3_UPSTREAM_STATE_DEAD
};

static const char *const pop3_upstream_state_names[] = {
    "new",      "token", "connect",   "greeting",     "capa",  "capa-list", "stls",
    "stls-tls", "auth",  "auth-resp", "auth-errchal", "ready", "dead"};

struct pop3_upstream {
    struct upstream_base base; /* first: upstream_release() frees through it */
    enum pop3_upstream_state state;
    int capa_known; /* CAPA answered +OK */
    int has_stls, has_xoauth2, has_oauthbearer;
    char ok_text[512];
};

static void pop3_upstream_token_ready(struct upstream_base *b);
static void pop3_upstream_finished(struct upstream_base *b, enum upstream_failure f);
static void pop3_upstream_connected(struct upstream_base *b);
static void pop3_upstream_starttls_done(struct upstream_base *b);
static void pop3_upstream_readable(struct upstream_base *b);
static void pop3_upstream_lost(struct upstream_base *b, const char *why);
static void pop3_upstream_send_auth(struct pop3_upstream *up);

static const struct upstream_ops pop3_upstream_ops = {pop3_upstream_token_ready,
                                                      pop3_upstream_finished,
                                                      pop3_upstream_connected,
                                                      pop3_upstream_starttls_done,
                                                      pop3_upstream_readable,
                                                      pop3_upstream_lost,
                                                      NULL};

static void pop3_upstream_enter_state(struct pop3_upstream *up, enum pop3_upstream_state st)
{
    if (up->state == st)
        return;
    upstream_log_state(&up->base, pop3_upstream_state_names[up->state],
                       pop3_upstream_state_names[st]);
    up->state = st;
}

struct pop3_upstream *pop3_upstream_new(struct proxy_context *ctx,
                                        const struct config_account *acct, const char *sid,
                                        void *arg)
{
    struct pop3_upstream *up = calloc(1, sizeof *up);
    if (up == NULL)
        return NULL;
    upstream_base_init(&up->base, ctx, acct, &acct->provider->pop3, "pop3", sid, &pop3_upstream_ops,
                       arg, POP3_UPSTREAM_CONNECT_TIMEOUT_MS, POP3_UPSTREAM_REPLY_TIMEOUT_MS);
    up->state = POP3_UPSTREAM_STATE_NEW;
    return up;
}

void pop3_upstream_login(struct pop3_upstream *up, upstream_login_cb cb)
{
    pop3_upstream_enter_state(up, POP3_UPSTREAM_STATE_CONNECT);
    upstream_begin_login(&up->base, cb);
}

const char *pop3_upstream_ok_text(const struct pop3_upstream *up) { return up->ok_text; }

struct conn *pop3_upstream_take_conn(struct pop3_upstream *up)
{
    return upstream_take_conn(&up->base);
}

void pop3_upstream_free(struct pop3_upstream *up)
{
    if (up == NULL)
        return;
    upstream_detach(&up->base);
    upstream_close_conn(&up->base, 0);
    upstream_destroy(&up->base);
}

static void pop3_upstream_send(struct pop3_upstream *up, const char *line)
{
    char buf[64];
    int n = snprintf(buf, sizeof buf, "%s\r\n", line);
    conn_write(up->base.conn, buf, (size_t)n);
}

static void pop3_upstream_token_ready(struct upstream_base *b)
{
    pop3_upstream_send_auth((struct pop3_upstream *)b);
}

static void pop3_upstream_finished(struct upstream_base *b, enum upstream_failure f)
{
    pop3_upstream_enter_state((struct pop3_upstream *)b, f == UPSTREAM_OK
                                                             ? POP3_UPSTREAM_STATE_READY
                                                             : POP3_UPSTREAM_STATE_DEAD);
}

static void pop3_upstream_connected(struct upstream_base *b)
{
    pop3_upstream_enter_state((struct pop3_upstream *)b, POP3_UPSTREAM_STATE_GREETING);
}

static void pop3_upstream_capa(struct pop3_upstream *up)
{
    up->capa_known = up->has_stls = up->has_xoauth2 = up->has_oauthbearer = 0;
    pop3_upstream_enter_state(up, POP3_UPSTREAM_STATE_CAPA);
    pop3_upstream_send(up, "CAPA");
}

static void pop3_upstream_starttls_done(struct upstream_base *b)
{
    /* RFC 2595 section 4: what CAPA said before TLS is void; ask again. */
    pop3_upstream_capa((struct pop3_upstream *)b);
}

static void pop3_upstream_lost(struct upstream_base *b, const char *why)
{
    struct pop3_upstream *up = (struct pop3_upstream *)b;
    upstream_lost_during_login(b, why, pop3_upstream_state_names[up->state]);
}

static void pop3_upstream_send_auth(struct pop3_upstream *up)
{
    char line[32];
    snprintf(line, sizeof line, "AUTH %s", upstream_mechanism(&up->base));
    pop3_upstream_enter_state(up, POP3_UPSTREAM_STATE_AUTH);
    pop3_upstream_send(up, line);
}

/* One line of the CAPA list: "STLS", "SASL PLAIN XOAUTH2 ...". */
static void pop3_upstream_capa_line(struct pop3_upstream *up, const char *line, size_t len)
{
    if (len == 4 && strncasecmp(line, "STLS", 4) == 0) {
        up->has_stls = 1;
        return;
    }
    if (len < 5 || strncasecmp(line, "SASL ", 5) != 0)
        return;
    size_t i = 5;
    while (i < len) {
        size_t start = i;
        while (i < len && line[i] != ' ')
            i++;
        if (i - start == 7 && strncasecmp(line + start, "XOAUTH2", 7) == 0)
            up->has_xoauth2 = 1;
        if (i - start == 11 && strncasecmp(line + start, "OAUTHBEARER", 11) == 0)
            up->has_oauthbearer = 1;
        while (i < len && line[i] == ' ')
            i++;
    }
}

static void pop3_upstream_after_capa(struct pop3_upstream *up)
{
    if (up->base.ep->tls == CONFIG_TLS_STARTTLS && !conn_is_tls(up->base.conn)) {
        if (up->capa_known && !up->has_stls) {
            upstream_login_done(&up->base, UPSTREAM_FAIL_TLS, "server does not offer STLS "
                                "(refusing to send a token in clear)");
            return;
        }
        pop3_upstream_enter_state(up, POP3_UPSTREAM_STATE_STLS);
        pop3_upstream_send(up, "STLS");
        return;
    }
    if (up->capa_known && !up->has_xoauth2 && !up->has_oauthbearer) {
        upstream_login_done(&up->base, UPSTREAM_FAIL_PROTOCOL,
                            "server offers neither SASL XOAUTH2 nor OAUTHBEARER");
        return;
    }
    if (up->base.acct->mechanism == CONFIG_MECH_OAUTHBEARER && up->capa_known &&
        !up->has_oauthbearer)
        log_warn(up->base.sid, "event=upstream_mechanism protocol=pop3 account=%s note=\"server "
                 "does not advertise OAUTHBEARER; trying it anyway\"", up->base.acct->name);
    pop3_upstream_send_auth(up);
}

static void pop3_upstream_auth_failed(struct pop3_upstream *up, const char *line, size_t len)
{
    char why[300];
    log_quote(why, sizeof why, line, len);
    /* RFC 3206: [SYS/TEMP] and [IN-USE] are temporary and not about the credentials. */
    if ((len >= 15 && strncasecmp(line, "-ERR [SYS/TEMP]", 15) == 0) ||
        (len >= 13 && strncasecmp(line, "-ERR [IN-USE]", 13) == 0)) {
        upstream_login_done(&up->base, UPSTREAM_FAIL_AUTH, "temporary failure: %s", why);
        return;
    }
    pop3_upstream_enter_state(up, POP3_UPSTREAM_STATE_TOKEN);
    upstream_token_rejected(&up->base, why);
}

static void pop3_upstream_handle_line(struct pop3_upstream *up, const char *line, size_t len)
{
    char why[300];
    int ok = len >= 3 && strncasecmp(line, "+OK", 3) == 0 && (len == 3 || line[3] == ' ');
    int cont = len >= 1 && line[0] == '+' && !ok;
    switch (up->state) {
    case POP3_UPSTREAM_STATE_GREETING:
        if (!ok) {
            upstream_login_done(&up->base, UPSTREAM_FAIL_PROTOCOL, "greeting: %s",
                                log_quote(why, sizeof why, line, len));
            return;
        }
        pop3_upstream_capa(up);
        return;
    case POP3_UPSTREAM_STATE_CAPA:
        if (ok) {
            up->capa_known = 1;
            pop3_upstream_enter_state(up, POP3_UPSTREAM_STATE_CAPA_LIST);
        } else {
            pop3_upstream_after_capa(up); /* no CAPA (RFC 1939 servers): try anyway */
        }
        return;
    case POP3_UPSTREAM_STATE_CAPA_LIST:
        if (len == 1 && line[0] == '.')
            pop3_upstream_after_capa(up);
        else
            pop3_upstream_capa_line(up, line, len);
        return;
    case POP3_UPSTREAM_STATE_STLS:
        if (!ok) {
            upstream_login_done(&up->base, UPSTREAM_FAIL_TLS, "STLS refused: %s",
                                log_quote(why, sizeof why, line, len));
            return;
        }
        pop3_upstream_enter_state(up, POP3_UPSTREAM_STATE_STLS_TLS);
        upstream_starttls(&up->base);
        return;
    case POP3_UPSTREAM_STATE_AUTH:
        if (cont) {
            pop3_upstream_enter_state(up, POP3_UPSTREAM_STATE_AUTH_RESP);
            upstream_send_sasl(&up->base, "");
            return;
        }
        upstream_login_done(&up->base, UPSTREAM_FAIL_PROTOCOL, "AUTH %s refused: %s",
                            upstream_mechanism(&up->base), log_quote(why, sizeof why, line, len));
        return;
    case POP3_UPSTREAM_STATE_AUTH_RESP:
        if (ok) {
            snprintf(up->ok_text, sizeof up->ok_text, "%.*s",
                     (int)(len > 4 ? (len - 4 < 400 ? len - 4 : 400) : 0), line + 4);
            log_info(up->base.sid, "event=upstream_login protocol=pop3 account=%s server=%s:%u "
                     "mechanism=%s", up->base.acct->name, up->base.ep->host,
                     (unsigned)up->base.ep->port, upstream_mechanism(&up->base));
            conn_set_timeout(up->base.conn, 0);
            upstream_login_done(&up->base, UPSTREAM_OK, "ok");
            return;
        }
        if (cont) {
            /* Gmail's error challenge: answer it, then the server sends its -ERR. */
            const char *answer = upstream_error_challenge(&up->base, len > 2 ? line + 2 : "",
                                                          len > 2 ? len - 2 : 0);
            pop3_upstream_enter_state(up, POP3_UPSTREAM_STATE_AUTH_ERRCHAL);
            pop3_upstream_send(up, answer);
            return;
        }
        pop3_upstream_auth_failed(up, line, len);
        return;
    case POP3_UPSTREAM_STATE_AUTH_ERRCHAL:
        pop3_upstream_auth_failed(up, line, len);
        return;
    default:
        upstream_login_done(&up->base, UPSTREAM_FAIL_PROTOCOL, "unexpected reply in state %s: %s",
                            pop3_upstream_state_names[up->state],
                            log_quote(why, sizeof why, line, len));
        return;
    }
}

static void pop3_upstream_readable(struct upstream_base *b)
{
    struct pop3_upstream *up = (struct pop3_upstream *)b;
    struct conn *c;
    /* Once logged in the rest of the input belongs to the relay. */
    while ((c = b->conn) != NULL && c->in_len > 0 && up->state != POP3_UPSTREAM_STATE_READY &&
           up->state != POP3_UPSTREAM_STATE_DEAD && !b->detached && !b->handshaking) {
        size_t len, used;
        enum line_result r = line_next(c->in, c->in_len, POP3_UPSTREAM_LINE_MAX, &len, &used);
        if (r == LINE_AGAIN)
            return;
        if (r == LINE_TOO_LONG) {
            upstream_login_done(b, UPSTREAM_FAIL_PROTOCOL, "reply line too long");
            return;
        }
        char line[POP3_UPSTREAM_LINE_MAX];
        memcpy(line, c->in, len);
        conn_consume(c, used);
        pop3_upstream_handle_line(up, line, len);
    }
}
