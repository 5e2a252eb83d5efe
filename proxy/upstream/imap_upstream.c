/* imap_upstream: the IMAP client towards the provider, see imap_upstream.h. */
#include "imap_upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap_parse.h"
#include "line.h"
#include "log.h"

/* a response line; capability lists are a few hundred bytes */
#define IMAP_UPSTREAM_LINE_MAX (32 * 1024)
/* A capability list is usually a few hundred bytes; a provider with many extensions may pass
 * 4 KiB, and the client must get the whole list in the OK of its login (session_send). */
#define IMAP_UPSTREAM_CAPS_MAX (16 * 1024)
#define IMAP_UPSTREAM_CONNECT_TIMEOUT_MS (30 * 1000)
#define IMAP_UPSTREAM_REPLY_TIMEOUT_MS (2 * 60 * 1000)

enum imap_upstream_state {
    IMAP_UPSTREAM_STATE_NEW,
    IMAP_UPSTREAM_STATE_TOKEN,   /* waiting for a refreshed token */
    IMAP_UPSTREAM_STATE_CONNECT, /* token, resolve, connect, implicit TLS */
    IMAP_UPSTREAM_STATE_GREETING,
    IMAP_UPSTREAM_STATE_CAPABILITY, /* CAPABILITY sent before login */
    IMAP_UPSTREAM_STATE_STARTTLS,
    IMAP_UPSTREAM_STATE_STARTTLS_TLS,
    IMAP_UPSTREAM_STATE_AUTH,      /* AUTHENTICATE without initial response, "+" expected */
    IMAP_UPSTREAM_STATE_AUTH_RESP, /* response sent: the tagged result or an error challenge */
    IMAP_UPSTREAM_STATE_AUTH_ERRCHAL, /* error challenge answered, the tagged NO expected */
    IMAP_UPSTREAM_STATE_POSTCAP,      /* logged in, CAPABILITY sent because the OK carried none */
    IMAP_UPSTREAM_STATE_READY,
    IMAP_UPSTREAM_STATE_DEAD
};

static const char *const imap_upstream_state_names[] = {
    "new",  "token",     "connect",      "greeting", "capability", "starttls", "starttls-tls",
    "auth", "auth-resp", "auth-errchal", "postcap",  "ready",      "dead"};

struct imap_upstream {
    struct upstream_base base; /* first: upstream_release() frees through it */
    enum imap_upstream_state state;
    unsigned tag_seq;
    char tag[16];              /* of the command in flight */
    char caps[IMAP_UPSTREAM_CAPS_MAX]; /* the server's latest capability list */
    int have_caps;
    char client_caps[IMAP_UPSTREAM_CAPS_MAX];
    char ok_text[512];
};

static void imap_upstream_token_ready(struct upstream_base *b);
static void imap_upstream_finished(struct upstream_base *b, enum upstream_failure f);
static void imap_upstream_connected(struct upstream_base *b);
static void imap_upstream_starttls_done(struct upstream_base *b);
static void imap_upstream_readable(struct upstream_base *b);
static void imap_upstream_lost(struct upstream_base *b, const char *why);
static void imap_upstream_send_auth(struct imap_upstream *up);

static const struct upstream_ops imap_upstream_ops = {imap_upstream_token_ready,
                                                      imap_upstream_finished,
                                                      imap_upstream_connected,
                                                      imap_upstream_starttls_done,
                                                      imap_upstream_readable,
                                                      imap_upstream_lost,
                                                      NULL};

static void imap_upstream_enter_state(struct imap_upstream *up, enum imap_upstream_state st)
{
    if (up->state == st)
        return;
    upstream_log_state(&up->base, imap_upstream_state_names[up->state],
                       imap_upstream_state_names[st]);
    up->state = st;
}

struct imap_upstream *imap_upstream_new(struct proxy_context *ctx,
                                        const struct config_account *acct, const char *sid,
                                        void *arg)
{
    struct imap_upstream *up = calloc(1, sizeof *up);
    if (up == NULL)
        return NULL;
    upstream_base_init(&up->base, ctx, acct, &acct->provider->imap, "imap", sid, &imap_upstream_ops,
                       arg, IMAP_UPSTREAM_CONNECT_TIMEOUT_MS, IMAP_UPSTREAM_REPLY_TIMEOUT_MS);
    up->state = IMAP_UPSTREAM_STATE_NEW;
    return up;
}

void imap_upstream_login(struct imap_upstream *up, upstream_login_cb cb)
{
    imap_upstream_enter_state(up, IMAP_UPSTREAM_STATE_CONNECT);
    upstream_begin_login(&up->base, cb);
}

const char *imap_upstream_capability(const struct imap_upstream *up) { return up->client_caps; }

const char *imap_upstream_ok_text(const struct imap_upstream *up) { return up->ok_text; }

struct conn *imap_upstream_take_conn(struct imap_upstream *up)
{
    return upstream_take_conn(&up->base);
}

void imap_upstream_free(struct imap_upstream *up)
{
    if (up == NULL)
        return;
    upstream_detach(&up->base);
    upstream_close_conn(&up->base, 0);
    upstream_destroy(&up->base);
}

/* Sends "TAG command" with a fresh tag. */
static void imap_upstream_command(struct imap_upstream *up, const char *command)
{
    snprintf(up->tag, sizeof up->tag, "x%u", ++up->tag_seq);
    char line[128];
    int n = snprintf(line, sizeof line, "%s %s\r\n", up->tag, command);
    conn_write(up->base.conn, line, (size_t)n);
}

static void imap_upstream_token_ready(struct upstream_base *b)
{
    imap_upstream_send_auth((struct imap_upstream *)b);
}

static void imap_upstream_finished(struct upstream_base *b, enum upstream_failure f)
{
    imap_upstream_enter_state((struct imap_upstream *)b, f == UPSTREAM_OK
                                                             ? IMAP_UPSTREAM_STATE_READY
                                                             : IMAP_UPSTREAM_STATE_DEAD);
}

static void imap_upstream_connected(struct upstream_base *b)
{
    imap_upstream_enter_state((struct imap_upstream *)b, IMAP_UPSTREAM_STATE_GREETING);
}

static void imap_upstream_starttls_done(struct upstream_base *b)
{
    struct imap_upstream *up = (struct imap_upstream *)b;
    /* RFC 9051 section 6.2.1: "the client MUST discard cached information about server
     * capabilities" once TLS is up; ask again. */
    up->have_caps = 0;
    imap_upstream_enter_state(up, IMAP_UPSTREAM_STATE_CAPABILITY);
    imap_upstream_command(up, "CAPABILITY");
}

static void imap_upstream_lost(struct upstream_base *b, const char *why)
{
    struct imap_upstream *up = (struct imap_upstream *)b;
    upstream_lost_during_login(b, why, imap_upstream_state_names[up->state]);
}

static void imap_upstream_remember_caps(struct imap_upstream *up, const char *caps, size_t len)
{
    if (len >= sizeof up->caps)
        len = sizeof up->caps - 1;
    memcpy(up->caps, caps, len);
    up->caps[len] = '\0';
    up->have_caps = 1;
}

static const char *imap_upstream_quote(const char *line, size_t len, char *out, size_t outsz)
{
    return log_quote(out, outsz, line, len);
}

/* What to do once the pre-login capabilities are known. */
static void imap_upstream_after_caps(struct imap_upstream *up)
{
    const char *caps = up->caps;
    size_t clen = strlen(caps);
    if (up->base.ep->tls == CONFIG_TLS_STARTTLS && !conn_is_tls(up->base.conn)) {
        if (!imap_capability_has(caps, clen, "STARTTLS")) {
            upstream_login_done(&up->base, UPSTREAM_FAIL_TLS, "server does not offer STARTTLS "
                                "(refusing to send a token in clear)");
            return;
        }
        imap_upstream_enter_state(up, IMAP_UPSTREAM_STATE_STARTTLS);
        imap_upstream_command(up, "STARTTLS");
        return;
    }
    int x = imap_capability_has(caps, clen, "AUTH=XOAUTH2");
    int ob = imap_capability_has(caps, clen, "AUTH=OAUTHBEARER");
    if (!x && !ob) {
        upstream_login_done(&up->base, UPSTREAM_FAIL_PROTOCOL,
                            "server offers neither AUTH=XOAUTH2 nor AUTH=OAUTHBEARER");
        return;
    }
    if (up->base.acct->mechanism == CONFIG_MECH_OAUTHBEARER && !ob)
        log_warn(up->base.sid, "event=upstream_mechanism protocol=imap account=%s note=\"server "
                 "does not advertise OAUTHBEARER; trying it anyway\"", up->base.acct->name);
    imap_upstream_send_auth(up);
}

static void imap_upstream_send_auth(struct imap_upstream *up)
{
    char prefix[80];
    snprintf(up->tag, sizeof up->tag, "x%u", ++up->tag_seq);
    int sasl_ir = imap_capability_has(up->caps, strlen(up->caps), "SASL-IR");
    /* The pre-login list must not reach the client: only a list sent with or after the login
     * (an untagged CAPABILITY, as Gmail sends, or the OK's code) counts from here on. */
    up->have_caps = 0;
    if (sasl_ir) {
        /* RFC 4959: the initial response rides on the command line, one round trip less. */
        snprintf(prefix, sizeof prefix, "%s AUTHENTICATE %s ", up->tag,
                 upstream_mechanism(&up->base));
        imap_upstream_enter_state(up, IMAP_UPSTREAM_STATE_AUTH_RESP);
        upstream_send_sasl(&up->base, prefix);
        return;
    }
    snprintf(prefix, sizeof prefix, "%s AUTHENTICATE %s\r\n", up->tag,
             upstream_mechanism(&up->base));
    imap_upstream_enter_state(up, IMAP_UPSTREAM_STATE_AUTH);
    conn_write(up->base.conn, prefix, strlen(prefix));
}

static void imap_upstream_logged_in(struct imap_upstream *up)
{
    imap_capability_filter(up->caps, strlen(up->caps), up->client_caps, sizeof up->client_caps);
    log_info(up->base.sid, "event=upstream_login protocol=imap account=%s server=%s:%u "
             "mechanism=%s", up->base.acct->name, up->base.ep->host,
             (unsigned)up->base.ep->port, upstream_mechanism(&up->base));
    conn_set_timeout(up->base.conn, 0);
    upstream_login_done(&up->base, UPSTREAM_OK, "ok");
}

/* The tagged result of AUTHENTICATE. text starts after "OK " / "NO " / "BAD ". */
static void imap_upstream_auth_result(struct imap_upstream *up, const char *status,
                                      const char *text, size_t tlen, const char *line, size_t len)
{
    char why[300];
    if (strcasecmp(status, "OK") == 0) {
        const char *arg;
        size_t alen;
        if (imap_response_code(text, tlen, "CAPABILITY", &arg, &alen)) {
            imap_upstream_remember_caps(up, arg, alen);
            const char *close = memchr(text, ']', tlen);
            size_t skip = (size_t)(close - text) + 1;
            while (skip < tlen && text[skip] == ' ')
                skip++;
            text += skip;
            tlen -= skip;
        }
        snprintf(up->ok_text, sizeof up->ok_text, "%.*s", (int)(tlen < 400 ? tlen : 400), text);
        if (!up->have_caps) {
            imap_upstream_enter_state(up, IMAP_UPSTREAM_STATE_POSTCAP);
            imap_upstream_command(up, "CAPABILITY");
            return;
        }
        imap_upstream_logged_in(up);
        return;
    }
    imap_upstream_quote(line, len, why, sizeof why);
    if (strcasecmp(status, "BAD") == 0) {
        upstream_login_done(&up->base, UPSTREAM_FAIL_PROTOCOL, "AUTHENTICATE %s refused: %s",
                            upstream_mechanism(&up->base), why);
        return;
    }
    const char *arg;
    size_t alen;
    if (imap_response_code(text, tlen, "UNAVAILABLE", &arg, &alen) ||
        imap_response_code(text, tlen, "SERVERBUG", &arg, &alen)) {
        /* RFC 5530: a temporary failure that is not about the credentials. */
        upstream_login_done(&up->base, UPSTREAM_FAIL_AUTH, "temporary authentication failure: %s",
                            why);
        return;
    }
    imap_upstream_enter_state(up, IMAP_UPSTREAM_STATE_TOKEN);
    upstream_token_rejected(&up->base, why);
}

/* One response line from the server (CRLF stripped). */
static void imap_upstream_handle_line(struct imap_upstream *up, const char *line, size_t len)
{
    char why[300];
    const char *arg;
    size_t alen;
    if (len >= 1 && line[0] == '+') {
        const char *b64 = len > 2 ? line + 2 : line + len;
        size_t blen = len > 2 ? len - 2 : 0;
        if (up->state == IMAP_UPSTREAM_STATE_AUTH) {
            imap_upstream_enter_state(up, IMAP_UPSTREAM_STATE_AUTH_RESP);
            upstream_send_sasl(&up->base, "");
        } else if (up->state == IMAP_UPSTREAM_STATE_AUTH_RESP) {
            /* Gmail's error challenge: a base64 JSON status; the client must answer before the
             * server sends its tagged NO. */
            const char *answer = upstream_error_challenge(&up->base, b64, blen);
            char ans[16];
            int n = snprintf(ans, sizeof ans, "%s\r\n", answer);
            imap_upstream_enter_state(up, IMAP_UPSTREAM_STATE_AUTH_ERRCHAL);
            conn_write(up->base.conn, ans, (size_t)n);
        } else {
            upstream_login_done(&up->base, UPSTREAM_FAIL_PROTOCOL, "unexpected continuation: %s",
                                imap_upstream_quote(line, len, why, sizeof why));
        }
        return;
    }
    if (len >= 2 && line[0] == '*' && line[1] == ' ') {
        const char *t = line + 2;
        size_t tl = len - 2;
        if (up->state == IMAP_UPSTREAM_STATE_GREETING) {
            if (tl >= 3 && strncasecmp(t, "OK ", 3) == 0) {
                if (imap_response_code(t + 3, tl - 3, "CAPABILITY", &arg, &alen)) {
                    imap_upstream_remember_caps(up, arg, alen);
                    imap_upstream_after_caps(up);
                } else {
                    imap_upstream_enter_state(up, IMAP_UPSTREAM_STATE_CAPABILITY);
                    imap_upstream_command(up, "CAPABILITY");
                }
                return;
            }
            /* PREAUTH would skip our login, BYE refuses us: neither gives a mailbox the token
             * opened. */
            upstream_login_done(&up->base, UPSTREAM_FAIL_PROTOCOL, "greeting: %s",
                                imap_upstream_quote(line, len, why, sizeof why));
            return;
        }
        if (tl >= 11 && strncasecmp(t, "CAPABILITY ", 11) == 0) {
            imap_upstream_remember_caps(up, t + 11, tl - 11);
            return;
        }
        if (tl >= 4 && strncasecmp(t, "BYE ", 4) == 0) {
            upstream_login_done(&up->base, UPSTREAM_FAIL_CONNECT, "server said: %s",
                                imap_upstream_quote(line, len, why, sizeof why));
            return;
        }
        return; /* other untagged data during login (ALERTs, ENABLED...) is not ours */
    }
    size_t taglen = strlen(up->tag);
    if (taglen == 0 || len <= taglen + 1 || memcmp(line, up->tag, taglen) != 0 ||
        line[taglen] != ' ') {
        upstream_login_done(&up->base, UPSTREAM_FAIL_PROTOCOL, "unexpected response: %s",
                            imap_upstream_quote(line, len, why, sizeof why));
        return;
    }
    const char *st = line + taglen + 1;
    size_t rest = len - taglen - 1;
    char status[4] = "";
    size_t sl = 0;
    while (sl < rest && sl < 3 && st[sl] != ' ') {
        status[sl] = st[sl];
        sl++;
    }
    status[sl] = '\0';
    const char *text = st + sl;
    size_t tlen = rest - sl;
    if (tlen > 0 && text[0] == ' ') {
        text++;
        tlen--;
    }
    int ok = strcasecmp(status, "OK") == 0;
    switch (up->state) {
    case IMAP_UPSTREAM_STATE_CAPABILITY:
        if (!ok || !up->have_caps) {
            upstream_login_done(&up->base, UPSTREAM_FAIL_PROTOCOL, "CAPABILITY failed: %s",
                                imap_upstream_quote(line, len, why, sizeof why));
            return;
        }
        imap_upstream_after_caps(up);
        return;
    case IMAP_UPSTREAM_STATE_STARTTLS:
        if (!ok) {
            upstream_login_done(&up->base, UPSTREAM_FAIL_TLS, "STARTTLS refused: %s",
                                imap_upstream_quote(line, len, why, sizeof why));
            return;
        }
        imap_upstream_enter_state(up, IMAP_UPSTREAM_STATE_STARTTLS_TLS);
        upstream_starttls(&up->base);
        return;
    case IMAP_UPSTREAM_STATE_AUTH:
    case IMAP_UPSTREAM_STATE_AUTH_RESP:
    case IMAP_UPSTREAM_STATE_AUTH_ERRCHAL:
        imap_upstream_auth_result(up, status, text, tlen, line, len);
        return;
    case IMAP_UPSTREAM_STATE_POSTCAP:
        if (!ok || !up->have_caps) {
            upstream_login_done(&up->base, UPSTREAM_FAIL_PROTOCOL,
                                "CAPABILITY after login failed: %s",
                                imap_upstream_quote(line, len, why, sizeof why));
            return;
        }
        imap_upstream_logged_in(up);
        return;
    default:
        upstream_login_done(&up->base, UPSTREAM_FAIL_PROTOCOL,
                            "unexpected response in state "
                            "%s: %s",
                            imap_upstream_state_names[up->state],
                            imap_upstream_quote(line, len, why, sizeof why));
        return;
    }
}

static void imap_upstream_readable(struct upstream_base *b)
{
    struct imap_upstream *up = (struct imap_upstream *)b;
    struct conn *c;
    /* Once logged in the rest of the input belongs to the relay. */
    while ((c = b->conn) != NULL && c->in_len > 0 && up->state != IMAP_UPSTREAM_STATE_READY &&
           up->state != IMAP_UPSTREAM_STATE_DEAD && !b->detached && !b->handshaking) {
        size_t len, used;
        enum line_result r = line_next(c->in, c->in_len, IMAP_UPSTREAM_LINE_MAX, &len, &used);
        if (r == LINE_AGAIN)
            return;
        if (r == LINE_TOO_LONG) {
            upstream_login_done(b, UPSTREAM_FAIL_PROTOCOL, "response line too long");
            return;
        }
        char line[IMAP_UPSTREAM_LINE_MAX];
        memcpy(line, c->in, len);
        conn_consume(c, used);
        imap_upstream_handle_line(up, line, len);
    }
}
