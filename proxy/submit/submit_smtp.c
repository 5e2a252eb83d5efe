#include "submit_smtp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "smtp_upstream.h"

#define SUBMIT_SMTP_PATH_MAX 256 /* RFC 5321 4.5.3.1.3 */
#define SUBMIT_SMTP_CHUNK (32 * 1024)

enum submit_smtp_state {
    SUBMIT_SMTP_LOGIN, /* connect, TLS, EHLO, XOAUTH2 */
    SUBMIT_SMTP_MAIL,  /* MAIL FROM sent */
    SUBMIT_SMTP_RCPT,  /* RCPT TO of rcpts[rcpt_next - 1] sent */
    SUBMIT_SMTP_DATA,  /* DATA sent, 354 expected */
    SUBMIT_SMTP_BODY,  /* the message streams */
    SUBMIT_SMTP_DOT    /* the final dot is written: the provider's verdict follows */
};

struct submit_smtp {
    enum submit_smtp_state state;
    const struct config_account *acct;
    char sid[32];
    const char *mail_from;
    char *const *rcpts;
    size_t n_rcpts;
    struct capture *cap;
    submit_smtp_done_cb cb;
    void *arg;

    struct smtp_upstream *up;
    size_t rcpt_next; /* the next recipient to send */
    size_t off;       /* how much of the message is written */
    int line_start;   /* dot-stuffing: the next byte starts a line */
};

/* The one reply. The callee may free t: nothing touches t afterwards. */
static void submit_smtp_done(struct submit_smtp *t, const char *reply)
{
    submit_smtp_done_cb cb = t->cb;
    t->cb = NULL;
    if (cb != NULL)
        cb(t->arg, reply);
}

static void submit_smtp_fail(struct submit_smtp *t, const char *why)
{
    log_warn(t->sid, "event=submit_failed account=%s path=smtp reason=\"%s\"", t->acct->name,
             why);
    submit_smtp_done(t, "451 4.4.2 Connection to the mail provider lost, try again later");
}

static void submit_smtp_reply_cb(void *arg, int code, const char *reply, size_t len);

/* The first line of an upstream reply as one final reply line ("550-x" becomes "550 x"). */
static void submit_smtp_first_line(const char *reply, size_t len, char *out, size_t outsz)
{
    size_t n = strcspn(reply, "\r\n");
    if (n > len)
        n = len;
    snprintf(out, outsz, "%.*s", (int)n, reply);
    if (strlen(out) > 3 && out[3] == '-')
        out[3] = ' ';
}

/* The next RCPT TO, or DATA after the last. */
static void submit_smtp_next(struct submit_smtp *t)
{
    char line[SUBMIT_SMTP_PATH_MAX + 16];
    int n;
    if (t->rcpt_next < t->n_rcpts) {
        n = snprintf(line, sizeof line, "RCPT TO:<%s>", t->rcpts[t->rcpt_next++]);
        t->state = SUBMIT_SMTP_RCPT;
    } else {
        n = snprintf(line, sizeof line, "DATA");
        t->state = SUBMIT_SMTP_DATA;
    }
    smtp_upstream_command(t->up, line, (size_t)n, submit_smtp_reply_cb);
}

/* Streams the stored message, dot-stuffed again (RFC 5321 4.5.2), until the upstream's write
 * backlog is high; SMTP_UPSTREAM_DRAINED resumes. */
static void submit_smtp_pump(struct submit_smtp *t)
{
    char in[SUBMIT_SMTP_CHUNK], out[2 * SUBMIT_SMTP_CHUNK + 8];
    size_t total = capture_size(t->cap);
    while (t->off < total && !smtp_upstream_congested(t->up)) {
        size_t n = capture_read(t->cap, t->off, in, sizeof in);
        if (n == CAPTURE_READ_ERROR || n == 0) {
            submit_smtp_fail(t, "cannot read the stored message");
            return;
        }
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
            if (t->line_start && in[i] == '.')
                out[o++] = '.';
            out[o++] = in[i];
            t->line_start = in[i] == '\n';
        }
        t->off += n;
        if (smtp_upstream_write(t->up, out, o) != 0) {
            submit_smtp_fail(t, "upstream write failed");
            return;
        }
    }
    if (t->off < total)
        return;
    /* The stored message ends with CRLF unless the client's last line had none. */
    const char *end = t->line_start ? ".\r\n" : "\r\n.\r\n";
    if (smtp_upstream_write(t->up, end, strlen(end)) != 0) {
        submit_smtp_fail(t, "upstream write failed");
        return;
    }
    t->state = SUBMIT_SMTP_DOT;
    smtp_upstream_expect_reply(t->up, submit_smtp_reply_cb);
}

static void submit_smtp_reply_cb(void *arg, int code, const char *reply, size_t len)
{
    struct submit_smtp *t = arg;
    char r[200];
    if (code == 0) {
        submit_smtp_fail(t, "connection lost");
        return;
    }
    switch (t->state) {
    case SUBMIT_SMTP_LOGIN:
    case SUBMIT_SMTP_BODY:
        /* No command is outstanding in these states: smtp_upstream reports no reply. */
        submit_smtp_fail(t, "unexpected reply");
        return;
    case SUBMIT_SMTP_MAIL:
        if (code / 100 != 2) {
            submit_smtp_first_line(reply, len, r, sizeof r);
            submit_smtp_done(t, code / 100 == 5 ? r : "451 4.4.2 The mail provider refused MAIL, "
                                                      "try again later");
            return;
        }
        submit_smtp_next(t);
        return;
    case SUBMIT_SMTP_RCPT:
        if (code / 100 != 2) {
            /* The client was told 250 for this RCPT already: the message cannot go to a
             * subset silently. A 4xx makes the sender retry the whole transaction. */
            log_warn(t->sid, "event=submit_rcpt_refused path=smtp rcpt=<%s> code=%d",
                     t->rcpts[t->rcpt_next - 1], code);
            submit_smtp_done(t, code / 100 == 5 ? "550 5.1.1 Recipient address rejected by the "
                                                  "mail provider"
                                                : "451 4.4.2 The mail provider refused a "
                                                  "recipient for now, try again later");
            return;
        }
        submit_smtp_next(t);
        return;
    case SUBMIT_SMTP_DATA:
        if (code != 354) {
            submit_smtp_done(t, "451 4.4.2 The mail provider refused DATA, try again later");
            return;
        }
        t->state = SUBMIT_SMTP_BODY;
        t->line_start = 1;
        t->off = 0;
        submit_smtp_pump(t);
        return;
    case SUBMIT_SMTP_DOT:
        /* The verdict on the message: passed through, like the relay path (first line). */
        submit_smtp_first_line(reply, len, r, sizeof r);
        if (code / 100 != 2 && code / 100 != 5)
            snprintf(r, sizeof r, "451 4.4.2 The mail provider did not take the message, "
                     "try again later");
        submit_smtp_done(t, r);
        return;
    }
}

static void submit_smtp_event_cb(void *arg, enum smtp_upstream_event ev)
{
    struct submit_smtp *t = arg;
    if (ev == SMTP_UPSTREAM_DRAINED && t->state == SUBMIT_SMTP_BODY)
        submit_smtp_pump(t);
    else if (ev == SMTP_UPSTREAM_LOST)
        submit_smtp_fail(t, "connection lost");
}

static void submit_smtp_login_cb(void *arg, enum upstream_failure f, const char *reason)
{
    struct submit_smtp *t = arg;
    char line[SUBMIT_SMTP_PATH_MAX + 16];
    if (f != UPSTREAM_OK) {
        log_error(t->sid, "event=upstream_login_failed account=%s path=smtp class=%s "
                  "reason=\"%s\"", t->acct->name, upstream_failure_name(f), reason);
        submit_smtp_done(t, "451 4.4.1 Cannot reach the mail provider, try again later");
        return;
    }
    int n = snprintf(line, sizeof line, "MAIL FROM:<%s>", t->mail_from);
    t->state = SUBMIT_SMTP_MAIL;
    t->rcpt_next = 0;
    smtp_upstream_command(t->up, line, (size_t)n, submit_smtp_reply_cb);
}

struct submit_smtp *submit_smtp_new(struct proxy_context *ctx, const struct config_account *acct,
                                    const char *sid, const char *mail_from, char *const *rcpts,
                                    size_t n_rcpts, struct capture *cap, submit_smtp_done_cb cb,
                                    void *arg)
{
    struct submit_smtp *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->state = SUBMIT_SMTP_LOGIN;
    t->acct = acct;
    snprintf(t->sid, sizeof t->sid, "%s", sid);
    t->mail_from = mail_from;
    t->rcpts = rcpts;
    t->n_rcpts = n_rcpts;
    t->cap = cap;
    t->cb = cb;
    t->arg = arg;
    t->up = smtp_upstream_new(ctx, acct, t->sid, submit_smtp_event_cb, t);
    if (t->up == NULL) {
        free(t);
        return NULL;
    }
    return t;
}

void submit_smtp_run(struct submit_smtp *t) { smtp_upstream_login(t->up, submit_smtp_login_cb); }

void submit_smtp_free(struct submit_smtp *t)
{
    if (t == NULL)
        return;
    smtp_upstream_free(t->up, 0);
    free(t);
}
