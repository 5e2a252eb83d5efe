/* libFuzzer target: what an IMAP or POP3 provider answers while xoauthd logs in to it
 * (greeting, capability lists, STARTTLS/STLS, AUTHENTICATE / AUTH continuations, Gmail's base64
 * error challenge, tagged results with response codes, [SYS/TEMP]...). The real dialogue code of
 * imap_upstream.c and pop3_upstream.c is compiled in here; the network side of upstream.c and
 * conn.c is replaced by the stubs below, which follow their documented behaviour (a rejected
 * token is refreshed once, STARTTLS succeeds, login_done ends the dialogue).
 *
 * The first octet picks: bit 0 the protocol (IMAP / POP3), bits 1-2 the endpoint's TLS mode,
 * bit 3 the mechanism; the rest is the server's byte stream, cut into lines as the clients'
 * readable callbacks do. After a login, the results the session uses are checked. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../proxy/upstream/imap_upstream.c"
#include "../../proxy/upstream/pop3_upstream.c"

#include "sasl.h"

static int fuzz_tls;      /* the stub connection is TLS (implicit, or after STARTTLS) */
static int fuzz_finished; /* login_done ran */
static int fuzz_result;

/* ---- stubs for conn.c ---- */
int conn_write(struct conn *c, const void *buf, size_t len)
{
    (void)c;
    if (len == 0 || memchr(buf, '\n', len) != (const char *)buf + len - 1)
        abort(); /* every command is one whole line */
    return 0;
}
int conn_is_tls(const struct conn *c)
{
    (void)c;
    return fuzz_tls;
}
void conn_consume(struct conn *c, size_t n)
{
    (void)c;
    (void)n;
}
void conn_set_timeout(struct conn *c, uint64_t ms)
{
    (void)c;
    (void)ms;
}

/* ---- stubs for upstream.c ---- */
void upstream_base_init(struct upstream_base *b, struct proxy_context *ctx,
                        const struct config_account *acct, const struct config_endpoint *ep,
                        const char *proto, const char *sid, const struct upstream_ops *ops,
                        void *arg, uint64_t connect_ms, uint64_t reply_ms)
{
    memset(b, 0, sizeof *b);
    b->ctx = ctx;
    b->acct = acct;
    b->ep = ep;
    b->proto = proto;
    snprintf(b->sid, sizeof b->sid, "%s", sid);
    b->ops = ops;
    b->arg = arg;
    b->connect_timeout_ms = connect_ms;
    b->reply_timeout_ms = reply_ms;
}
void upstream_log_state(const struct upstream_base *b, const char *from, const char *to)
{
    (void)b;
    if (from == NULL || to == NULL)
        abort(); /* a state without a name */
}
void upstream_begin_login(struct upstream_base *b, upstream_login_cb cb)
{
    b->login_cb = cb;
    b->token = strdup("ya29.fuzz-token");
    b->ops->connected(b);
}
void upstream_login_done(struct upstream_base *b, enum upstream_failure f, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    if (fuzz_finished)
        abort(); /* the login ends once */
    fuzz_finished = 1;
    fuzz_result = (int)f;
    b->ops->finished(b, f);
}
void upstream_lost_during_login(struct upstream_base *b, const char *why, const char *state)
{
    upstream_login_done(b, UPSTREAM_FAIL_CONNECT, "%s (while in state %s)", why, state);
}
const char *upstream_mechanism(const struct upstream_base *b)
{
    return b->acct->mechanism == CONFIG_MECH_OAUTHBEARER ? "OAUTHBEARER" : "XOAUTH2";
}
int upstream_send_sasl(struct upstream_base *b, const char *prefix)
{
    char *resp = b->acct->mechanism == CONFIG_MECH_OAUTHBEARER
                     ? sasl_oauthbearer_response(b->acct->username, b->ep->host, b->ep->port,
                                                 b->token)
                     : sasl_xoauth2_response(b->acct->username, b->token);
    if (resp == NULL)
        abort();
    if (strchr(prefix, '\n') != NULL)
        abort();
    sasl_secret_free(resp);
    return 0;
}
const char *upstream_error_challenge(struct upstream_base *b, const char *b64, size_t len)
{
    char detail[256], quoted[300];
    while (len > 0 && (b64[len - 1] == '\r' || b64[len - 1] == '\n' || b64[len - 1] == ' '))
        len--;
    sasl_describe_challenge(b64, len, detail, sizeof detail);
    log_quote(quoted, sizeof quoted, detail, strlen(detail));
    return sasl_error_challenge_answer(b->acct->mechanism == CONFIG_MECH_OAUTHBEARER);
}
void upstream_token_rejected(struct upstream_base *b, const char *why)
{
    if (why == NULL)
        abort();
    if (b->token_forced) {
        upstream_login_done(b, UPSTREAM_FAIL_AUTH, "token rejected twice: %s", why);
        return;
    }
    b->token_forced = 1;
    b->ops->token_ready(b);
}
void upstream_starttls(struct upstream_base *b)
{
    fuzz_tls = 1;
    b->ops->starttls_done(b);
}
struct conn *upstream_take_conn(struct upstream_base *b)
{
    return b->conn;
}
void upstream_detach(struct upstream_base *b)
{
    b->detached = 1;
}
void upstream_close_conn(struct upstream_base *b, int flush)
{
    (void)flush;
    b->conn = NULL;
}
void upstream_destroy(struct upstream_base *b)
{
    free(b->token);
    free(b);
}

/* Feeds the server's bytes line by line, as imap_upstream_readable / pop3_upstream_readable do. */
static void fuzz_feed(const char *in, size_t size, size_t max, int imap, void *up)
{
    size_t off = 0;
    while (off < size && !fuzz_finished) {
        size_t len, used;
        enum line_result r = line_next(in + off, size - off, max, &len, &used);
        if (r == LINE_AGAIN)
            break;
        if (r == LINE_TOO_LONG)
            break;
        char *line = malloc(len + 1);
        if (line == NULL)
            return;
        memcpy(line, in + off, len);
        line[len] = '\0';
        off += used;
        if (imap)
            imap_upstream_handle_line(up, line, len);
        else
            pop3_upstream_handle_line(up, line, len);
        free(line);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int once;
    if (!once) {
        log_set_level(LOG_ERROR);
        once = 1;
    }
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    data++;
    size--;
    int imap = !(sel & 1);
    struct config_endpoint ep = {1, "imap.example.com", imap ? 993 : 995,
                                 (enum config_tls)(((sel >> 1) & 3) % 3)};
    struct config_account acct;
    memset(&acct, 0, sizeof acct);
    acct.name = "fuzz";
    acct.username = "user@example.com";
    acct.mechanism = (sel & 8) ? CONFIG_MECH_OAUTHBEARER : CONFIG_MECH_XOAUTH2;
    fuzz_tls = ep.tls == CONFIG_TLS_IMPLICIT;
    fuzz_finished = 0;
    fuzz_result = -1;
    if (imap) {
        struct imap_upstream *up = calloc(1, sizeof *up);
        if (up == NULL)
            return 0;
        upstream_base_init(&up->base, NULL, &acct, &ep, "imap", "fuzz", &imap_upstream_ops, NULL,
                           0, 0);
        up->state = IMAP_UPSTREAM_STATE_CONNECT;
        upstream_begin_login(&up->base, NULL);
        fuzz_feed((const char *)data, size, IMAP_UPSTREAM_LINE_MAX, 1, up);
        if (fuzz_finished && fuzz_result == UPSTREAM_OK) {
            const char *caps = imap_upstream_capability(up);
            const char *ok = imap_upstream_ok_text(up);
            if (strlen(caps) >= sizeof up->client_caps || strlen(ok) >= sizeof up->ok_text)
                abort();
        }
        imap_upstream_free(up);
    } else {
        struct pop3_upstream *up = calloc(1, sizeof *up);
        if (up == NULL)
            return 0;
        upstream_base_init(&up->base, NULL, &acct, &ep, "pop3", "fuzz", &pop3_upstream_ops, NULL,
                           0, 0);
        up->state = POP3_UPSTREAM_STATE_CONNECT;
        upstream_begin_login(&up->base, NULL);
        fuzz_feed((const char *)data, size, POP3_UPSTREAM_LINE_MAX, 0, up);
        if (fuzz_finished && fuzz_result == UPSTREAM_OK &&
            strlen(pop3_upstream_ok_text(up)) >= sizeof up->ok_text)
            abort();
        pop3_upstream_free(up);
    }
    return 0;
}
