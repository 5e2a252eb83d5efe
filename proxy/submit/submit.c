#include "submit.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ews.h"
#include "graph.h"
#include "log.h"
#include "message_capture.h"
#include "message_header.h"
#include "proxy_context.h"
#include "submit_smtp.h"
#include "token.h"

#define SUBMIT_MAX_RCPTS 1000
#define SUBMIT_PATH_MAX 256               /* RFC 5321 4.5.3.1.3 */
#define SUBMIT_BUDGET_MS 60000            /* waiting on throttling, per message */
#define SUBMIT_DEFAULT_WAIT_MS 2000       /* throttled without saying for how long */
#define SUBMIT_MAX_ATTEMPTS 4
#define SUBMIT_MEM_LIMIT ((size_t)1 << 20)

enum submit_state {
    SUBMIT_STATE_IDLE,    /* no message yet */
    SUBMIT_STATE_COLLECT, /* DATA bytes arrive */
    SUBMIT_STATE_FLUSH,   /* the spool file catches up */
    SUBMIT_STATE_TOKEN,   /* waiting for an access token */
    SUBMIT_STATE_REQUEST, /* the HTTP request runs */
    SUBMIT_STATE_BACKOFF, /* throttled: the timer runs */
    SUBMIT_STATE_SMTP,    /* fallback over SMTP runs */
    SUBMIT_STATE_DONE
};

static const char *const submit_state_names[] = {"idle",    "collect", "flush", "token",
                                                 "request", "backoff", "smtp",  "done"};

struct submit {
    struct proxy_context *ctx;
    const struct config_account *acct;
    char sid[32];
    enum submit_state state;
    submit_drain_cb drain_cb;
    void *arg;

    char mail_from[SUBMIT_PATH_MAX + 1];
    char **rcpts;
    size_t n_rcpts;

    struct capture *cap;
    struct message_header_scan hdr;
    char *bcc;                 /* "Bcc: ...\r\n" or "" */
    size_t n_bcc;

    size_t path;               /* index into acct->submit */
    unsigned attempts;
    int token_forced;
    uint64_t waited_ms;
    struct token_wait *token_wait;
    char *token;               /* secret */
    struct ews_call *ews;
    struct graph_call *graph;
    uv_timer_t *timer;         /* heap: closes after us */
    submit_reply_cb reply_cb;
    upstream_login_cb login_cb;

    struct submit_smtp *smtp;  /* the fallback over SMTP */
    int in_callback;
    int freed;
};

static void submit_attempt(struct submit *s);
static void submit_finish(struct submit *s, const char *reply);

/* A reply or login verdict can reach the session synchronously, and the session may free us
 * from inside it (a pipelined QUIT): entry points hold the struct until they are done with it. */
static void submit_hold(struct submit *s) { s->in_callback++; }

static int submit_release(struct submit *s)
{
    if (--s->in_callback == 0 && s->freed) {
        free(s);
        return 1;
    }
    return 0;
}

static void submit_enter_state(struct submit *s, enum submit_state st)
{
    if (s->state == st)
        return;
    log_debug(s->sid, "event=submit_state from=%s to=%s", submit_state_names[s->state],
              submit_state_names[st]);
    s->state = st;
}

static const char *submit_path_name(enum config_submit p)
{
    return p == CONFIG_SUBMIT_EWS ? "ews" : p == CONFIG_SUBMIT_GRAPH ? "graph" : "smtp";
}

int submit_is_local(const struct config_account *acct)
{
    return acct != NULL && acct->n_submit > 0 && acct->submit[0] != CONFIG_SUBMIT_SMTP;
}

static void submit_drain_cb_(void *arg)
{
    struct submit *s = arg;
    if (s->drain_cb != NULL)
        s->drain_cb(s->arg);
}

struct submit *submit_new(struct proxy_context *ctx, const struct config_account *acct,
                          const char *sid, submit_drain_cb drain_cb, void *arg)
{
    struct submit *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->ctx = ctx;
    s->acct = acct;
    snprintf(s->sid, sizeof s->sid, "%s", sid);
    s->drain_cb = drain_cb;
    s->arg = arg;
    message_header_scan_init(&s->hdr);
    return s;
}

/* Graph and EWS are different resources: each path has a token of its own scope. */
static const char *submit_scope(const struct submit *s)
{
    return config_account_scope(s->acct, s->acct->submit[s->path]);
}

static void submit_drop_token(struct submit *s)
{
    if (s->token != NULL) {
        OPENSSL_cleanse(s->token, strlen(s->token));
        free(s->token);
        s->token = NULL;
    }
}

static void submit_timer_closed_cb(uv_handle_t *h) { free(h); }

/* Stops whatever is in flight for the current message. */
static void submit_cancel_work(struct submit *s)
{
    if (s->token_wait != NULL) {
        token_wait_cancel(s->token_wait);
        s->token_wait = NULL;
    }
    if (s->ews != NULL) {
        ews_cancel(s->ews);
        s->ews = NULL;
    }
    if (s->graph != NULL) {
        graph_cancel(s->graph);
        s->graph = NULL;
    }
    if (s->timer != NULL) {
        uv_close((uv_handle_t *)s->timer, submit_timer_closed_cb);
        s->timer = NULL;
    }
    if (s->smtp != NULL) {
        /* Mid-DATA this closes without the final dot: the server drops the partial message. */
        submit_smtp_free(s->smtp);
        s->smtp = NULL;
    }
    submit_drop_token(s);
}

void submit_reset(struct submit *s)
{
    submit_cancel_work(s);
    for (size_t i = 0; i < s->n_rcpts; i++)
        free(s->rcpts[i]);
    free(s->rcpts);
    s->rcpts = NULL;
    s->n_rcpts = 0;
    s->mail_from[0] = '\0';
    capture_free(s->cap); /* the spool file has no name: closing it deletes it */
    s->cap = NULL;
    message_header_scan_free(&s->hdr);
    message_header_scan_init(&s->hdr);
    free(s->bcc);
    s->bcc = NULL;
    s->n_bcc = 0;
    s->path = 0;
    s->attempts = 0;
    s->token_forced = 0;
    s->waited_ms = 0;
    s->reply_cb = NULL;
    s->state = SUBMIT_STATE_IDLE;
}

const struct config_account *submit_account(const struct submit *s) { return s->acct; }

void submit_free(struct submit *s)
{
    if (s == NULL)
        return;
    s->login_cb = NULL;
    submit_reset(s);
    message_header_scan_free(&s->hdr);
    if (s->in_callback) {
        s->freed = 1; /* the callback's caller frees */
        return;
    }
    free(s);
}

/* ---- login check -------------------------------------------------------------------------- */

static void submit_login_token_cb(void *arg, enum token_status st, const char *token)
{
    struct submit *s = arg;
    upstream_login_cb cb = s->login_cb;
    (void)token;
    s->token_wait = NULL;
    s->login_cb = NULL;
    if (cb == NULL)
        return;
    if (st == TOKEN_OK)
        cb(s->arg, UPSTREAM_OK, "token available");
    else
        cb(s->arg, UPSTREAM_FAIL_TOKEN, token_status_name(st));
}

void submit_check_login(struct submit *s, upstream_login_cb cb)
{
    s->login_cb = cb;
    submit_hold(s);
    /* The first path's token: what the first message will need. */
    const char *scope = config_account_scope(s->acct, s->acct->submit[0]);
    struct token_wait *w =
        token_get_scope(s->ctx->tokens, s->acct, scope, 0, s->sid, submit_login_token_cb, s);
    if (!s->freed && s->login_cb != NULL)
        s->token_wait = w;
    submit_release(s);
}

/* ---- envelope ----------------------------------------------------------------------------- */

void submit_mail(struct submit *s, const char *path, size_t len)
{
    submit_reset(s);
    if (len > SUBMIT_PATH_MAX)
        len = SUBMIT_PATH_MAX;
    memcpy(s->mail_from, path, len);
    s->mail_from[len] = '\0';
}

const char *submit_rcpt(struct submit *s, const char *path, size_t len)
{
    if (s->n_rcpts >= SUBMIT_MAX_RCPTS)
        return "452 4.5.3 Too many recipients";
    if (len == 0 || len > SUBMIT_PATH_MAX)
        return "501 5.1.3 Bad recipient address syntax";
    const char *at = memchr(path, '@', len);
    if (at == NULL || at == path || at == path + len - 1)
        return "501 5.1.3 Bad recipient address syntax";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)path[i];
        /* The address goes into a header line and an XML-free base64 body; no controls,
         * no spaces, no commas (it would split the Bcc: list). */
        if (c <= ' ' || c == 0x7f || c == ',' || c == '<' || c == '>')
            return "501 5.1.3 Bad recipient address syntax";
    }
    char **r = realloc(s->rcpts, (s->n_rcpts + 1) * sizeof *r);
    if (r == NULL)
        return "452 4.3.1 Out of memory, try again later";
    s->rcpts = r;
    s->rcpts[s->n_rcpts] = strndup(path, len);
    if (s->rcpts[s->n_rcpts] == NULL)
        return "452 4.3.1 Out of memory, try again later";
    s->n_rcpts++;
    return NULL;
}

unsigned submit_rcpt_count(const struct submit *s) { return (unsigned)s->n_rcpts; }

/* ---- message ------------------------------------------------------------------------------ */

int submit_data_begin(struct submit *s)
{
    capture_free(s->cap);
    s->cap = capture_new(s->ctx->loop, s->ctx->cfg->state_dir, SUBMIT_MEM_LIMIT, s->sid,
                         submit_drain_cb_, s);
    if (s->cap == NULL)
        return -1;
    submit_enter_state(s, SUBMIT_STATE_COLLECT);
    return 0;
}

int submit_data_write(struct submit *s, const char *buf, size_t len)
{
    if (s->cap == NULL)
        return -1;
    if (!s->hdr.done)
        message_header_scan_feed(&s->hdr, buf, len);
    return capture_append(s->cap, buf, len);
}

int submit_data_congested(const struct submit *s)
{
    return s->cap != NULL && capture_congested(s->cap);
}

size_t submit_data_size(const struct submit *s)
{
    return s->cap != NULL ? capture_size(s->cap) : 0;
}

static void submit_stored_cb(void *arg, int status)
{
    struct submit *s = arg;
    if (status != 0) {
        submit_finish(s, "451 4.3.0 Could not store the message, try again later");
        return;
    }
    s->bcc = message_header_bcc(&s->hdr, (const char *const *)s->rcpts, s->n_rcpts, &s->n_bcc);
    if (s->bcc == NULL) {
        submit_finish(s, "451 4.3.1 Out of memory, try again later");
        return;
    }
    if (s->n_bcc > 0)
        log_info(s->sid, "event=bcc_added count=%zu note=\"envelope recipients missing from "
                 "To/Cc/Bcc were added as Bcc: (EWS and Graph read the header)\"", s->n_bcc);
    submit_attempt(s);
}

void submit_data_end(struct submit *s, submit_reply_cb cb)
{
    s->reply_cb = cb;
    submit_enter_state(s, SUBMIT_STATE_FLUSH);
    submit_hold(s);
    capture_finish(s->cap, submit_stored_cb, s);
    submit_release(s);
}

/* ---- the end: exactly one reply ----------------------------------------------------------- */

static void submit_finish(struct submit *s, const char *reply)
{
    char r[160];
    submit_reply_cb cb = s->reply_cb;
    enum config_submit p = s->acct->submit[s->path < s->acct->n_submit ? s->path : 0];
    log_info(s->sid, "event=message account=%s path=%s from=<%s> rcpts=%zu size=%zu reply=%s",
             s->acct->name, submit_path_name(p), s->mail_from, s->n_rcpts,
             s->cap != NULL ? capture_size(s->cap) : 0, log_quote(r, sizeof r, reply,
                                                                strlen(reply)));
    submit_cancel_work(s);
    submit_enter_state(s, SUBMIT_STATE_DONE);
    s->reply_cb = NULL;
    if (cb != NULL)
        cb(s->arg, reply);
}

static void submit_log_failure(struct submit *s, const char *what, int status, const char *code,
                               const char *text, const struct submit_verdict *v)
{
    char t[300], c[120];
    log_warn(s->sid, "event=submit_failed account=%s path=%s http_status=%d code=%s text=%s "
             "hint=\"%s\"", s->acct->name, what, status,
             log_quote(c, sizeof c, code, strlen(code)), log_quote(t, sizeof t, text, strlen(text)),
             v->hint != NULL ? v->hint : "-");
}

static void submit_backoff_cb(uv_timer_t *t)
{
    struct submit *s = t->data;
    uv_close((uv_handle_t *)s->timer, submit_timer_closed_cb);
    s->timer = NULL;
    submit_attempt(s);
}

/* After an attempt: done, refresh and retry, wait and retry, or fail. */
static void submit_judge(struct submit *s, const char *what, const struct submit_verdict *v,
                         int status, const char *code, const char *text)
{
    if (v->kind == SUBMIT_V_OK) {
        submit_finish(s, v->reply);
        return;
    }
    submit_log_failure(s, what, status, code, text, v);
    if (v->kind == SUBMIT_V_REAUTH && !s->token_forced) {
        /* One more token: a refresh unless another session's rejection already replaced it
         * (token_rejected). */
        s->token_forced = 1;
        token_rejected(s->ctx->tokens, s->acct, submit_scope(s), s->token, s->sid);
        submit_drop_token(s);
        submit_attempt(s);
        return;
    }
    if (v->kind == SUBMIT_V_BUSY && s->attempts < SUBMIT_MAX_ATTEMPTS) {
        long wait = v->wait_ms >= 0 ? v->wait_ms : SUBMIT_DEFAULT_WAIT_MS;
        if (s->waited_ms + (uint64_t)wait <= SUBMIT_BUDGET_MS) {
            log_info(s->sid, "event=submit_backoff path=%s wait_ms=%ld", what, wait);
            s->waited_ms += (uint64_t)wait;
            s->timer = malloc(sizeof *s->timer);
            if (s->timer != NULL && uv_timer_init(s->ctx->loop, s->timer) == 0) {
                s->timer->data = s;
                submit_enter_state(s, SUBMIT_STATE_BACKOFF);
                uv_timer_start(s->timer, submit_backoff_cb, (uint64_t)wait, 0);
                return;
            }
            free(s->timer);
            s->timer = NULL;
        } else {
            log_warn(s->sid, "event=submit_throttled path=%s wait_ms=%ld note=\"longer than "
                     "this message's budget; the client is told 451 and retries\"", what, wait);
        }
    }
    submit_finish(s, v->reply);
}

static void submit_ews_cb(void *arg, const struct ews_result *r)
{
    struct submit *s = arg;
    struct submit_verdict v;
    s->ews = NULL;
    ews_verdict(r, &v);
    submit_judge(s, "ews", &v, r->http_status, r->response_code, r->message_text);
}

static void submit_graph_cb(void *arg, const struct graph_result *r)
{
    struct submit *s = arg;
    struct submit_verdict v;
    s->graph = NULL;
    graph_verdict(r, &v);
    submit_judge(s, "graph", &v, r->http_status, r->code, r->message);
}

static void submit_smtp_start(struct submit *s);

static void submit_request(struct submit *s)
{
    const struct config_account *a = s->acct;
    const struct config_provider *p = a->provider;
    enum config_submit path = a->submit[s->path];
    size_t size = capture_size(s->cap);
    struct capture_source src = capture_source(s->cap);
    submit_enter_state(s, SUBMIT_STATE_REQUEST);
    s->attempts++;
    if (path == CONFIG_SUBMIT_EWS) {
        struct ews_target t = {0};
        t.url = p->ews_url;
        t.ca_file = p->ca_file;
        t.tls_no_verify = !p->tls_verify;
        t.version = p->ews_version;
        t.mailbox = a->username;
        if (a->ews_impersonation == CONFIG_EWS_IMP_YES ||
            (a->ews_impersonation == CONFIG_EWS_IMP_AUTO &&
             a->flow == CONFIG_FLOW_CLIENT_CREDENTIALS))
            t.impersonate = a->username;
        t.token = s->token;
        /* Large scans over slow uplinks: a minute plus 50 KB/s. */
        t.timeout_ms = 60000u + (unsigned)(size / 50u);
        s->ews = ews_send(s->ctx->http, &t, &src, s->sid, submit_ews_cb, s);
        if (s->ews == NULL)
            submit_finish(s, "451 4.3.0 Could not start the EWS request, try again later");
        return;
    }
    struct graph_target g = {0};
    g.base_url = p->graph_url;
    g.username = a->username;
    g.ca_file = p->ca_file;
    g.tls_no_verify = !p->tls_verify;
    g.token = s->token;
    g.timeout_ms = 60000u + (unsigned)(size / 50u);
    s->graph = graph_send_mail(s->ctx->http, &g, &src, s->sid, submit_graph_cb, s);
    if (s->graph == NULL)
        submit_finish(s, "451 4.3.0 Could not start the Graph request, try again later");
}

static void submit_token_cb(void *arg, enum token_status st, const char *token)
{
    struct submit *s = arg;
    s->token_wait = NULL;
    if (st != TOKEN_OK) {
        log_error(s->sid, "event=submit_no_token account=%s status=%s note=\"see the token "
                  "manager's log line for what to fix; the client is told 451\"",
                  s->acct->name, token_status_name(st));
        submit_finish(s, "451 4.7.0 Cannot log in to the mail provider, try again later");
        return;
    }
    s->token = strdup(token);
    if (s->token == NULL) {
        submit_finish(s, "451 4.3.1 Out of memory, try again later");
        return;
    }
    submit_request(s);
}

/* One attempt on the current path; picks the path first. */
static void submit_attempt(struct submit *s)
{
    const struct config_account *a = s->acct;
    if (capture_set_prefix(s->cap, "", 0) != 0) {
        submit_finish(s, "451 4.3.1 Out of memory, try again later");
        return;
    }
    size_t msg_size = capture_size(s->cap);
    /* Graph's request limit: decided before anything is sent, never a hang. */
    while (s->path < a->n_submit && a->submit[s->path] == CONFIG_SUBMIT_GRAPH &&
           !graph_fits(msg_size + strlen(s->bcc))) {
        if (s->path + 1 < a->n_submit) {
            log_info(s->sid, "event=submit_fallback from=graph to=%s size=%zu reason=\"over "
                     "Graph's 4 MB request limit\"", submit_path_name(a->submit[s->path + 1]),
                     msg_size);
            s->path++;
            continue;
        }
        log_warn(s->sid, "event=submit_too_big path=graph size=%zu note=\"Graph takes about "
                 "3 MB of message (4 MB of base64); add a fallback: submit = graph, ews or "
                 "graph, smtp\"", msg_size);
        submit_finish(s, "552 5.3.4 Message too big for Microsoft Graph (over 4 MB encoded)");
        return;
    }
    if (a->submit[s->path] == CONFIG_SUBMIT_SMTP) {
        submit_smtp_start(s);
        return;
    }
    if (capture_set_prefix(s->cap, s->bcc, strlen(s->bcc)) != 0) {
        submit_finish(s, "451 4.3.1 Out of memory, try again later");
        return;
    }
    if (s->token != NULL) {
        submit_request(s);
        return;
    }
    submit_enter_state(s, SUBMIT_STATE_TOKEN);
    submit_hold(s);
    struct token_wait *w =
        token_get_scope(s->ctx->tokens, a, submit_scope(s), 0, s->sid, submit_token_cb, s);
    if (!s->freed && s->state == SUBMIT_STATE_TOKEN && s->token == NULL)
        s->token_wait = w;
    submit_release(s);
}

/* ---- fallback over SMTP ------------------------------------------------------------------- */

static void submit_smtp_finished_cb(void *arg, const char *reply)
{
    submit_finish(arg, reply);
}

static void submit_smtp_start(struct submit *s)
{
    /* SMTP reads the envelope: no Bcc: line is added. */
    capture_set_prefix(s->cap, "", 0);
    submit_enter_state(s, SUBMIT_STATE_SMTP);
    s->smtp = submit_smtp_new(s->ctx, s->acct, s->sid, s->mail_from, s->rcpts, s->n_rcpts,
                              s->cap, submit_smtp_finished_cb, s);
    if (s->smtp == NULL) {
        submit_finish(s, "451 4.3.1 Out of memory, try again later");
        return;
    }
    submit_smtp_run(s->smtp);
}
