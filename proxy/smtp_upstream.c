#include "smtp_upstream.h"

#include <ctype.h>
#include <stdarg.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conn.h"
#include "line.h"
#include "log.h"
#include "sasl.h"
#include "server.h"
#include "token.h"

#define UP_REPLY_LINE_MAX 2048
#define UP_REPLY_MAX (64 * 1024)
#define UP_CONNECT_TIMEOUT_MS (30 * 1000)
/* RFC 5321 4.5.3.2: a client waits 5 minutes for the greeting and most replies, 10 for the
 * reply to the end of data. */
#define UP_REPLY_TIMEOUT_MS (5 * 60 * 1000)
#define UP_DATA_END_TIMEOUT_MS (10 * 60 * 1000)

enum up_state {
    UP_S_NEW,
    UP_S_TOKEN,
    UP_S_RESOLVE,
    UP_S_CONNECT,
    UP_S_TLS,          /* implicit TLS handshake */
    UP_S_GREETING,
    UP_S_EHLO,
    UP_S_STARTTLS,
    UP_S_STARTTLS_TLS, /* handshake after STARTTLS */
    UP_S_EHLO_TLS,
    UP_S_AUTH,         /* "AUTH XOAUTH2" sent, 334 expected */
    UP_S_AUTH_RESP,    /* response sent, 235 expected */
    UP_S_AUTH_ERRCHAL, /* error challenge answered, final failure expected */
    UP_S_READY,
    UP_S_REPLY,        /* a command or the end of data awaits its reply */
    UP_S_DATA,         /* message bytes flow, no reply expected yet */
    UP_S_QUIT,
    UP_S_DEAD
};

static const char *const up_state_names[] = {
    "new", "token", "resolve", "connect", "tls", "greeting", "ehlo", "starttls",
    "starttls-tls", "ehlo-tls", "auth", "auth-resp", "auth-errchal", "ready", "reply", "data",
    "quit", "dead"};

struct smtp_upstream {
    struct server *srv;
    const struct config_account *acct;
    const struct config_endpoint *ep;
    char sid[32];
    enum up_state state;
    struct conn *conn; /* heap: it outlives us while it closes */
    struct upstream_resolve *resolve;
    struct token_wait *token_wait;
    char *token; /* secret */
    int token_forced; /* the token was refreshed once already after a rejection */
    int has_starttls, has_xoauth2, has_oauthbearer;
    char reply[UP_REPLY_MAX];
    size_t reply_len;
    int reply_lines;
    smtp_upstream_login_cb login_cb;
    smtp_upstream_reply_cb reply_cb;
    smtp_upstream_event_cb event_cb;
    void *arg;
    int detached; /* smtp_upstream_free was called */
    int in_callback;
};

static void up_enter_state(struct smtp_upstream *up, enum up_state st);
static void up_conn_event_cb(struct conn *c, enum conn_event ev);
static void up_conn_closed_cb(struct conn *c);
static void up_token_cb(void *arg, enum token_status st, const char *token);
static void up_resolve_cb(void *arg, const struct addrinfo *ai, const char *reason);
static void up_login_done(struct smtp_upstream *up, enum upstream_failure f, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void up_process(struct smtp_upstream *up);
static void up_send_auth(struct smtp_upstream *up);
static void up_connection_lost(struct smtp_upstream *up, const char *why);

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

/* Callbacks into the session may free the upstream; every entry point holds it so that the
 * memory stays valid until the outermost one returns. */
static void up_hold(struct smtp_upstream *up) { up->in_callback++; }

static void up_release(struct smtp_upstream *up)
{
    if (--up->in_callback == 0 && up->detached)
        free(up);
}

static void up_enter_state(struct smtp_upstream *up, enum up_state st)
{
    if (up->state == st)
        return;
    log_debug(up->sid, "event=upstream_state account=%s from=%s to=%s", up->acct->name,
              up_state_names[up->state], up_state_names[st]);
    up->state = st;
}

struct smtp_upstream *smtp_upstream_new(struct server *srv, const struct config_account *acct,
                                        const char *sid, smtp_upstream_event_cb event_cb,
                                        void *arg)
{
    struct smtp_upstream *up = calloc(1, sizeof *up);
    if (up == NULL)
        return NULL;
    up->srv = srv;
    up->acct = acct;
    up->ep = &acct->provider->smtp;
    snprintf(up->sid, sizeof up->sid, "%s", sid);
    up->event_cb = event_cb;
    up->arg = arg;
    up->state = UP_S_NEW;
    return up;
}

int smtp_upstream_ready(const struct smtp_upstream *up) { return up->state == UP_S_READY; }

static void up_clear_token(struct smtp_upstream *up)
{
    if (up->token != NULL) {
        OPENSSL_cleanse(up->token, strlen(up->token));
        free(up->token);
        up->token = NULL;
    }
}

static void up_close_conn(struct smtp_upstream *up)
{
    if (up->conn != NULL) {
        up->conn->data = NULL;
        conn_close(up->conn, up_conn_closed_cb);
        up->conn = NULL;
    }
}

static void up_conn_closed_cb(struct conn *c) { free(c); }

void smtp_upstream_login(struct smtp_upstream *up, smtp_upstream_login_cb cb)
{
    up->login_cb = cb;
    up->token_forced = 0;
    up_hold(up);
    int smtp_allowed = 0;
    for (size_t i = 0; i < up->acct->n_submit; i++)
        smtp_allowed |= up->acct->submit[i] == CONFIG_SUBMIT_SMTP;
    if (!smtp_allowed && up->acct->n_submit > 0) {
        up_login_done(up, UPSTREAM_FAIL_PROTOCOL,
                      "account %s has submit = ews/graph, which this version cannot do yet; "
                      "add smtp to its submit list",
                      up->acct->name);
    } else if (!up->ep->present) {
        up_login_done(up, UPSTREAM_FAIL_PROTOCOL, "provider %s has no smtp endpoint configured",
                      up->acct->provider->name);
    } else {
        up_enter_state(up, UP_S_TOKEN);
        struct token_wait *w = token_get(up->srv->tokens, up->acct, 0, up->sid, up_token_cb, up);
        if (w != NULL && !up->detached)
            up->token_wait = w;
    }
    up_release(up);
}

static void up_token_cb_held(struct smtp_upstream *up, enum token_status st, const char *token);

static void up_token_cb(void *arg, enum token_status st, const char *token)
{
    struct smtp_upstream *up = arg;
    up_hold(up);
    up_token_cb_held(up, st, token);
    up_release(up);
}

static void up_token_cb_held(struct smtp_upstream *up, enum token_status st, const char *token)
{
    up->token_wait = NULL;
    if (st != TOKEN_OK) {
        /* The token manager has logged what the admin should do. */
        up_login_done(up, UPSTREAM_FAIL_TOKEN, "no access token (%s)", token_status_name(st));
        return;
    }
    up_clear_token(up);
    up->token = strdup(token);
    if (up->token == NULL) {
        up_login_done(up, UPSTREAM_FAIL_TOKEN, "out of memory");
        return;
    }
    if (up->conn != NULL && up->state == UP_S_TOKEN) {
        /* Retry after a rejected token, on the connection that is still open. */
        up_send_auth(up);
        return;
    }
    up_enter_state(up, UP_S_RESOLVE);
    up->resolve = upstream_resolve_start(up->srv->loop, up->ep->host, up->ep->port, up_resolve_cb,
                                         up);
    if (up->resolve == NULL)
        up_login_done(up, UPSTREAM_FAIL_CONNECT, "cannot resolve %s", up->ep->host);
}

static void up_resolve_cb_held(struct smtp_upstream *up, const struct addrinfo *ai,
                              const char *reason);

static void up_resolve_cb(void *arg, const struct addrinfo *ai, const char *reason)
{
    struct smtp_upstream *up = arg;
    up_hold(up);
    up_resolve_cb_held(up, ai, reason);
    up_release(up);
}

static void up_resolve_cb_held(struct smtp_upstream *up, const struct addrinfo *ai,
                              const char *reason)
{
    up->resolve = NULL;
    if (ai == NULL) {
        up_login_done(up, UPSTREAM_FAIL_CONNECT, "%s", reason);
        return;
    }
    up->conn = malloc(sizeof *up->conn);
    if (up->conn == NULL) {
        up_login_done(up, UPSTREAM_FAIL_CONNECT, "out of memory");
        return;
    }
    if (conn_init(up->conn, up->srv->loop, up_conn_event_cb, up) != 0) {
        up_login_done(up, UPSTREAM_FAIL_CONNECT, "cannot create socket");
        return;
    }
    /* The first address only: a second attempt needs a fresh socket, and the providers'
     * submission hosts answer on every address they publish. */
    up_enter_state(up, UP_S_CONNECT);
    conn_set_timeout(up->conn, UP_CONNECT_TIMEOUT_MS);
    if (conn_connect(up->conn, ai->ai_addr) != 0)
        up_login_done(up, UPSTREAM_FAIL_CONNECT, "%s", up->conn->error);
}

static void up_login_done(struct smtp_upstream *up, enum upstream_failure f, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    up_clear_token(up);
    if (f != UPSTREAM_OK) {
        up_close_conn(up);
        up_enter_state(up, UP_S_DEAD);
    } else {
        up_enter_state(up, UP_S_READY);
    }
    smtp_upstream_login_cb cb = up->login_cb;
    up->login_cb = NULL;
    if (cb != NULL && !up->detached)
        cb(up->arg, f, reason);
}

static int up_tls_start(struct smtp_upstream *up)
{
    SSL_CTX *ctx = server_provider_tls(up->srv, up->acct->provider);
    if (ctx == NULL || conn_tls_start(up->conn, ctx, 1, up->ep->host) != 0) {
        up_login_done(up, UPSTREAM_FAIL_TLS, "cannot set up TLS to %s", up->ep->host);
        return -1;
    }
    return 0;
}

/* Sends word, an optional argument and CRLF as one command line. */
static void up_send_line(struct smtp_upstream *up, const char *word, const char *arg)
{
    char line[600];
    int n = snprintf(line, sizeof line, "%s%s%s\r\n", word, arg ? " " : "", arg ? arg : "");
    if (n > 0 && (size_t)n < sizeof line)
        conn_write(up->conn, line, (size_t)n);
}

static void up_send_auth(struct smtp_upstream *up)
{
    int bearer = up->acct->mechanism == CONFIG_MECH_OAUTHBEARER;
    if (bearer && !up->has_oauthbearer && up->has_xoauth2)
        log_warn(up->sid, "event=upstream_mechanism account=%s note=\"server does not advertise "
                 "OAUTHBEARER; trying it anyway\"", up->acct->name);
    up_enter_state(up, UP_S_AUTH);
    conn_set_timeout(up->conn, UP_REPLY_TIMEOUT_MS);
    up_send_line(up, "AUTH", bearer ? "OAUTHBEARER" : "XOAUTH2");
}

static void up_send_auth_response(struct smtp_upstream *up)
{
    char *resp;
    if (up->acct->mechanism == CONFIG_MECH_OAUTHBEARER)
        resp = sasl_oauthbearer_response(up->acct->username, up->ep->host, up->ep->port,
                                         up->token);
    else
        resp = sasl_xoauth2_response(up->acct->username, up->token);
    if (resp == NULL) {
        up_login_done(up, UPSTREAM_FAIL_AUTH, "out of memory");
        return;
    }
    up_enter_state(up, UP_S_AUTH_RESP);
    size_t n = strlen(resp);
    /* One write for response and CRLF: the bytes are cleansed when the write completes. */
    char *buf = malloc(n + 2);
    if (buf != NULL) {
        memcpy(buf, resp, n);
        memcpy(buf + n, "\r\n", 2);
        conn_write(up->conn, buf, n + 2);
        OPENSSL_cleanse(buf, n + 2);
        free(buf);
    }
    sasl_secret_free(resp);
    if (buf == NULL)
        up_login_done(up, UPSTREAM_FAIL_AUTH, "out of memory");
}

/* A printable, shortened copy of the reply for log lines. */
static const char *up_reply_for_log(struct smtp_upstream *up, char *out, size_t outsz)
{
    size_t n = up->reply_len;
    while (n > 0 && (up->reply[n - 1] == '\r' || up->reply[n - 1] == '\n'))
        n--;
    return log_quote(out, outsz, up->reply, n);
}

static void up_parse_ehlo(struct smtp_upstream *up)
{
    up->has_starttls = up->has_xoauth2 = up->has_oauthbearer = 0;
    const char *p = up->reply;
    const char *end = up->reply + up->reply_len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t len = eol ? (size_t)(eol - p) : (size_t)(end - p);
        if (len > 0 && p[len - 1] == '\r')
            len--;
        if (len > 4) {
            char kw[UP_REPLY_LINE_MAX];
            size_t kl = len - 4 < sizeof kw - 1 ? len - 4 : sizeof kw - 1;
            for (size_t i = 0; i < kl; i++)
                kw[i] = (char)toupper((unsigned char)p[4 + i]);
            kw[kl] = '\0';
            if (strcmp(kw, "STARTTLS") == 0)
                up->has_starttls = 1;
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

static void up_after_ehlo(struct smtp_upstream *up, int code)
{
    char why[300];
    if (code != 250) {
        up_login_done(up, UPSTREAM_FAIL_PROTOCOL, "EHLO refused: %s",
                      up_reply_for_log(up, why, sizeof why));
        return;
    }
    up_parse_ehlo(up);
    if (up->ep->tls == CONFIG_TLS_STARTTLS && !conn_is_tls(up->conn)) {
        if (!up->has_starttls) {
            up_login_done(up, UPSTREAM_FAIL_TLS,
                          "server does not offer STARTTLS (refusing to send a token in clear)");
            return;
        }
        up_enter_state(up, UP_S_STARTTLS);
        up_send_line(up, "STARTTLS", NULL);
        return;
    }
    if (!up->has_xoauth2 && !up->has_oauthbearer) {
        up_login_done(up, UPSTREAM_FAIL_PROTOCOL,
                      "server offers neither AUTH XOAUTH2 nor OAUTHBEARER");
        return;
    }
    up_send_auth(up);
}

static void up_auth_rejected(struct smtp_upstream *up, int code)
{
    char why[300];
    up_reply_for_log(up, why, sizeof why);
    if (code >= 400 && code < 500) {
        up_login_done(up, UPSTREAM_FAIL_AUTH, "temporary authentication failure: %s", why);
        return;
    }
    if (up->token_forced) {
        up_login_done(up, UPSTREAM_FAIL_AUTH,
                      "token rejected again after a refresh: %s (check that the token's "
                      "user is %s and that the app has the mail scope)",
                      why, up->acct->username);
        return;
    }
    log_info(up->sid, "event=upstream_token_rejected account=%s reply=%s action=refresh",
             up->acct->name, why);
    up->token_forced = 1;
    up_clear_token(up);
    up_enter_state(up, UP_S_TOKEN);
    struct token_wait *w =
        token_get(up->srv->tokens, up->acct, TOKEN_FORCE_REFRESH, up->sid, up_token_cb, up);
    if (w != NULL && !up->detached)
        up->token_wait = w;
}

static void up_handle_reply(struct smtp_upstream *up, int code)
{
    char why[300];
    switch (up->state) {
    case UP_S_GREETING:
        if (code != 220) {
            up_login_done(up, UPSTREAM_FAIL_PROTOCOL, "greeting: %s",
                          up_reply_for_log(up, why, sizeof why));
            return;
        }
        up_enter_state(up, UP_S_EHLO);
        up_send_line(up, "EHLO", up->srv->hostname);
        return;
    case UP_S_EHLO:
    case UP_S_EHLO_TLS:
        up_after_ehlo(up, code);
        return;
    case UP_S_STARTTLS:
        if (code != 220) {
            up_login_done(up, UPSTREAM_FAIL_TLS, "STARTTLS refused: %s",
                          up_reply_for_log(up, why, sizeof why));
            return;
        }
        /* RFC 3207: nothing the server sent before the handshake may be trusted. */
        conn_discard_input(up->conn);
        up_enter_state(up, UP_S_STARTTLS_TLS);
        up_tls_start(up);
        return;
    case UP_S_AUTH:
        if (code == 334) {
            up_send_auth_response(up);
            return;
        }
        if (code >= 500 && code != 535) {
            up_login_done(up, UPSTREAM_FAIL_PROTOCOL, "AUTH %s refused: %s",
                          up->acct->mechanism == CONFIG_MECH_OAUTHBEARER ? "OAUTHBEARER"
                                                                          : "XOAUTH2",
                          up_reply_for_log(up, why, sizeof why));
            return;
        }
        up_auth_rejected(up, code);
        return;
    case UP_S_AUTH_RESP:
        if (code == 235) {
            log_info(up->sid, "event=upstream_login account=%s server=%s:%u mechanism=%s",
                     up->acct->name, up->ep->host, (unsigned)up->ep->port,
                     up->acct->mechanism == CONFIG_MECH_OAUTHBEARER ? "oauthbearer" : "xoauth2");
            up_login_done(up, UPSTREAM_OK, "ok");
            return;
        }
        if (code == 334) {
            /* Gmail's error challenge: a base64 JSON status; the client must answer before
             * the server sends its final failure. */
            char detail[256];
            const char *b64 = up->reply + 4;
            size_t blen = up->reply_len > 4 ? up->reply_len - 4 : 0;
            while (blen > 0 && (b64[blen - 1] == '\r' || b64[blen - 1] == '\n'))
                blen--;
            sasl_describe_challenge(b64, blen, detail, sizeof detail);
            log_info(up->sid, "event=upstream_error_challenge account=%s detail=%s",
                     up->acct->name, log_quote(why, sizeof why, detail, strlen(detail)));
            up_enter_state(up, UP_S_AUTH_ERRCHAL);
            up_send_line(up, sasl_error_challenge_answer(up->acct->mechanism ==
                                                         CONFIG_MECH_OAUTHBEARER),
                         NULL);
            return;
        }
        up_auth_rejected(up, code);
        return;
    case UP_S_AUTH_ERRCHAL:
        up_auth_rejected(up, code >= 400 ? code : 535);
        return;
    case UP_S_REPLY: {
        smtp_upstream_reply_cb cb = up->reply_cb;
        up->reply_cb = NULL;
        up_enter_state(up, UP_S_READY);
        conn_set_timeout(up->conn, 0);
        if (code == 421) {
            /* The server is closing; the session learns it from this reply, and the next
             * transaction logs in again. */
            up_enter_state(up, UP_S_DEAD);
        }
        if (cb != NULL && !up->detached)
            cb(up->arg, code, up->reply, up->reply_len);
        return;
    }
    case UP_S_QUIT:
        up_close_conn(up);
        up_enter_state(up, UP_S_DEAD);
        return;
    default:
        log_warn(up->sid, "event=upstream_unexpected account=%s state=%s reply=%s",
                 up->acct->name, up_state_names[up->state],
                 up_reply_for_log(up, why, sizeof why));
        up_connection_lost(up, "unexpected reply");
        return;
    }
}

static void up_process(struct smtp_upstream *up)
{
    while (up->conn != NULL && up->conn->in_len > 0) {
        size_t len, used;
        enum line_result r =
            line_next(up->conn->in, up->conn->in_len, UP_REPLY_LINE_MAX, &len, &used);
        if (r == LINE_AGAIN)
            return;
        if (r == LINE_TOO_LONG) {
            up_connection_lost(up, "reply line too long");
            return;
        }
        int last = 0;
        int code = smtp_reply_line_parse(up->conn->in, len, &last);
        if (code < 0 || up->reply_len + len + 2 > sizeof up->reply) {
            up_connection_lost(up, "malformed reply");
            return;
        }
        memcpy(up->reply + up->reply_len, up->conn->in, len);
        memcpy(up->reply + up->reply_len + len, "\r\n", 2);
        up->reply_len += len + 2;
        up->reply_lines++;
        conn_consume(up->conn, used);
        if (!last)
            continue;
        up_handle_reply(up, code);
        up->reply_len = 0;
        up->reply_lines = 0;
        if (up->detached || up->conn == NULL)
            return;
    }
}

static int up_logging_in(const struct smtp_upstream *up)
{
    return up->state >= UP_S_TOKEN && up->state <= UP_S_AUTH_ERRCHAL;
}

static void up_connection_lost(struct smtp_upstream *up, const char *why)
{
    enum up_state st = up->state;
    up_close_conn(up);
    if (up_logging_in(up)) {
        enum upstream_failure f = (st == UP_S_TLS || st == UP_S_STARTTLS_TLS)
                                      ? UPSTREAM_FAIL_TLS
                                      : UPSTREAM_FAIL_CONNECT;
        up_login_done(up, f, "%s (while in state %s)", why, up_state_names[st]);
        return;
    }
    up_enter_state(up, UP_S_DEAD);
    if (up->detached)
        return;
    if (st == UP_S_REPLY) {
        smtp_upstream_reply_cb cb = up->reply_cb;
        up->reply_cb = NULL;
        if (cb != NULL)
            cb(up->arg, 0, why, strlen(why));
    } else if (st == UP_S_READY || st == UP_S_DATA) {
        if (up->event_cb != NULL)
            up->event_cb(up->arg, SMTP_UPSTREAM_LOST);
    }
}

static void up_conn_event_held(struct smtp_upstream *up, struct conn *c, enum conn_event ev);

static void up_conn_event_cb(struct conn *c, enum conn_event ev)
{
    struct smtp_upstream *up = c->data;
    if (up == NULL)
        return;
    up_hold(up);
    up_conn_event_held(up, c, ev);
    up_release(up);
}

static void up_conn_event_held(struct smtp_upstream *up, struct conn *c, enum conn_event ev)
{
    char why[200];
    switch (ev) {
    case CONN_EV_CONNECTED:
        conn_read_start(c);
        conn_set_timeout(c, UP_REPLY_TIMEOUT_MS);
        if (up->ep->tls == CONFIG_TLS_IMPLICIT) {
            up_enter_state(up, UP_S_TLS);
            up_tls_start(up);
        } else {
            up_enter_state(up, UP_S_GREETING);
        }
        return;
    case CONN_EV_CONNECT_FAILED:
        up_login_done(up, UPSTREAM_FAIL_CONNECT, "%s", c->error);
        return;
    case CONN_EV_TLS_DONE:
        if (up->state == UP_S_TLS) {
            up_enter_state(up, UP_S_GREETING);
        } else if (up->state == UP_S_STARTTLS_TLS) {
            /* RFC 3207: forget everything learned before TLS and ask again. */
            up_enter_state(up, UP_S_EHLO_TLS);
            up_send_line(up, "EHLO", up->srv->hostname);
        }
        up_process(up);
        return;
    case CONN_EV_TLS_FAILED:
        up_login_done(up, UPSTREAM_FAIL_TLS, "%s", c->error);
        return;
    case CONN_EV_READ:
        up_process(up);
        return;
    case CONN_EV_DRAINED:
        if (up->event_cb != NULL && !up->detached)
            up->event_cb(up->arg, SMTP_UPSTREAM_DRAINED);
        return;
    case CONN_EV_EOF:
        up_connection_lost(up, "connection closed by server");
        return;
    case CONN_EV_ERROR:
        snprintf(why, sizeof why, "%s", c->error);
        up_connection_lost(up, why);
        return;
    case CONN_EV_TIMEOUT:
        snprintf(why, sizeof why, "timed out waiting for %s", up->ep->host);
        up_connection_lost(up, why);
        return;
    }
}

void smtp_upstream_command(struct smtp_upstream *up, const char *line, size_t len,
                           smtp_upstream_reply_cb cb)
{
    up_hold(up);
    if (up->state != UP_S_READY || up->conn == NULL) {
        cb(up->arg, 0, "not connected", 13);
    } else {
        up->reply_cb = cb;
        up_enter_state(up, UP_S_REPLY);
        conn_set_timeout(up->conn, UP_REPLY_TIMEOUT_MS);
        if (conn_write(up->conn, line, len) != 0 || conn_write(up->conn, "\r\n", 2) != 0)
            up_connection_lost(up, "write failed");
    }
    up_release(up);
}

int smtp_upstream_write(struct smtp_upstream *up, const char *buf, size_t len)
{
    if (up->conn == NULL || (up->state != UP_S_READY && up->state != UP_S_DATA))
        return -1;
    up_enter_state(up, UP_S_DATA);
    if (conn_write(up->conn, buf, len) != 0)
        return -1;
    return 0;
}

void smtp_upstream_expect_reply(struct smtp_upstream *up, smtp_upstream_reply_cb cb)
{
    up_hold(up);
    if (up->conn == NULL || up->state != UP_S_DATA) {
        cb(up->arg, 0, "not connected", 13);
    } else {
        up->reply_cb = cb;
        up_enter_state(up, UP_S_REPLY);
        conn_set_timeout(up->conn, UP_DATA_END_TIMEOUT_MS);
        up_process(up);
    }
    up_release(up);
}

size_t smtp_upstream_backlog(const struct smtp_upstream *up)
{
    return up->conn != NULL ? up->conn->out_pending : 0;
}

int smtp_upstream_congested(const struct smtp_upstream *up)
{
    return up->conn != NULL && up->conn->above_high;
}

void smtp_upstream_free(struct smtp_upstream *up, int polite)
{
    if (up == NULL)
        return;
    up->detached = 1;
    if (up->token_wait != NULL)
        token_wait_cancel(up->token_wait);
    if (up->resolve != NULL)
        upstream_resolve_cancel(up->resolve);
    up_clear_token(up);
    if (up->conn != NULL) {
        if (polite && up->state == UP_S_READY) {
            conn_write(up->conn, "QUIT\r\n", 6);
            up->conn->data = NULL;
            conn_close_after_flush(up->conn, up_conn_closed_cb);
            up->conn = NULL;
        } else {
            up_close_conn(up);
        }
    }
    if (up->in_callback == 0)
        free(up);
}
