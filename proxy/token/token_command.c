/* token_command: flow = command. The access token comes from a program the admin configures
 * (token_command), for tokens managed elsewhere: a vault agent, oauth2l, a company script.
 *
 * The command runs through /bin/sh -c with stdin from /dev/null, in a process group of its own
 * (so a timeout kills whatever it started), with XOAUTHD_ACCOUNT and XOAUTHD_USERNAME added to
 * the environment so one script can serve several accounts. It runs under uv_spawn: the loop
 * never waits for it. Its stdout is the token: either the token on one line, or a JSON token
 * response ({"access_token": ..., "expires_in": ...}) when the program knows the lifetime. A
 * bare token is assumed to live an hour (like an OAuth answer without expires_in); when the
 * upstream rejects it earlier, the command runs again (one run for all the sessions that held it).
 *
 * Exit status 126/127 (cannot run) is a configuration error; any other failure, an empty
 * output or the timeout (token_timeout) is temporary. The first line of stderr goes into the
 * log (sanitized): it is the command's own explanation, not a secret of ours. */
#include "token_grant.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "log.h"

#define TOKEN_CMD_MAX_OUT (64u * 1024u)
#define TOKEN_CMD_MAX_ERR 512u
#define TOKEN_CMD_GRACE_MS 1000u /* after exit: wait this long for the pipes to drain */

extern char **environ;

struct token_job {
    uv_loop_t *loop;
    uv_process_t proc;
    uv_pipe_t out, err;
    uv_timer_t timer;
    int open_handles;
    int spawned, exited, out_eof, err_eof, finished, delivered;
    int timed_out, too_big;
    int64_t exit_status;
    int term_signal;
    char *buf; /* stdout: the token, a secret */
    size_t len;
    char errbuf[TOKEN_CMD_MAX_ERR + 1];
    size_t errlen;
    token_job_cb cb;
    void *arg;
};

static void token_cmd_finish(struct token_job *j);
static void token_cmd_cancel(struct token_job *j);

static void token_cmd_free(struct token_job *j)
{
    if (j->buf != NULL) {
        OPENSSL_cleanse(j->buf, TOKEN_CMD_MAX_OUT + 1);
        free(j->buf);
    }
    free(j);
}

static void token_cmd_close_cb(uv_handle_t *h)
{
    struct token_job *j = h->data;
    if (--j->open_handles == 0)
        token_cmd_free(j);
}

static void token_cmd_kill(struct token_job *j)
{
    if (j->spawned && !j->exited && j->proc.pid > 0) {
        /* The whole group: sh -c may have forked the real program. */
        uv_kill(-j->proc.pid, SIGKILL);
        uv_kill(j->proc.pid, SIGKILL);
    }
}

static void token_cmd_result(struct token_job *j, struct token_response *r)
{
    memset(r, 0, sizeof *r);
    r->expires_in = TOKEN_RESPONSE_DEFAULT_EXPIRES_IN;
    char first_err[160] = "";
    size_t el = strcspn(j->errbuf, "\n");
    token_response_sanitize(first_err, sizeof first_err, j->errbuf, el);

    r->status = TOKEN_TEMPFAIL;
    snprintf(r->action, sizeof r->action, "check token_command; it runs again at the next login");
    if (j->timed_out) {
        snprintf(r->reason, sizeof r->reason, "token_command did not finish within the timeout "
                                              "(token_timeout); it was killed");
        return;
    }
    if (j->term_signal != 0) {
        snprintf(r->reason, sizeof r->reason, "token_command was killed by signal %d%s%.100s",
                 j->term_signal, first_err[0] ? ": " : "", first_err);
        return;
    }
    if (j->exit_status == 126 || j->exit_status == 127) {
        r->status = TOKEN_MISCONFIGURED;
        snprintf(r->action, sizeof r->action, "fix token_command (path, permissions)");
        snprintf(r->reason, sizeof r->reason, "token_command could not be run (exit %lld)%s%.100s",
                 (long long)j->exit_status, first_err[0] ? ": " : "", first_err);
        return;
    }
    if (j->exit_status != 0) {
        snprintf(r->reason, sizeof r->reason, "token_command failed (exit %lld)%s%.100s",
                 (long long)j->exit_status, first_err[0] ? ": " : "", first_err);
        return;
    }
    if (j->too_big) {
        snprintf(r->reason, sizeof r->reason, "token_command printed more than %u bytes",
                 TOKEN_CMD_MAX_OUT);
        return;
    }
    /* Trim white space around the output. */
    char *s = j->buf != NULL ? j->buf : (char *)"";
    size_t len = j->len;
    while (len > 0 && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')) {
        s++;
        len--;
    }
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r' ||
                       s[len - 1] == '\n'))
        len--;
    if (len == 0) {
        snprintf(r->reason, sizeof r->reason, "token_command printed nothing on stdout");
        return;
    }
    if (s[0] == '{') {
        token_response_parse(200, s, len, r);
        if (r->status != TOKEN_OK)
            snprintf(r->action, sizeof r->action, "check token_command's JSON output");
        return;
    }
    if (!token_response_token_ok(s, len)) {
        snprintf(r->reason, sizeof r->reason, "token_command's output is not one token (one "
                                              "line of printable ASCII without spaces, or JSON)");
        return;
    }
    r->access_token = malloc(len + 1);
    if (r->access_token == NULL) {
        snprintf(r->reason, sizeof r->reason, "out of memory");
        return;
    }
    memcpy(r->access_token, s, len);
    r->access_token[len] = '\0';
    r->status = TOKEN_OK;
    r->reason[0] = '\0';
    r->action[0] = '\0';
}

static void token_cmd_deliver(struct token_job *j)
{
    struct token_response r;
    if (j->delivered)
        return;
    j->delivered = 1;
    if (j->cb == NULL)
        return;
    token_cmd_result(j, &r);
    j->cb(j->arg, &r);
    token_response_clear(&r);
}

static void token_cmd_close_all(struct token_job *j)
{
    uv_handle_t *hs[] = {(uv_handle_t *)&j->proc, (uv_handle_t *)&j->out,
                         (uv_handle_t *)&j->err, (uv_handle_t *)&j->timer};
    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++)
        if (hs[i]->data == j && !uv_is_closing(hs[i]))
            uv_close(hs[i], token_cmd_close_cb);
}

static void token_cmd_finish(struct token_job *j)
{
    if (j->finished)
        return;
    j->finished = 1;
    token_cmd_deliver(j);
    token_cmd_close_all(j);
}

static void token_cmd_maybe_finish(struct token_job *j)
{
    if (j->exited && j->out_eof && j->err_eof)
        token_cmd_finish(j);
}

static void token_cmd_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct token_job *j = h->data;
    (void)suggested;
    if ((uv_pipe_t *)h == &j->out) {
        if (j->buf == NULL)
            j->buf = malloc(TOKEN_CMD_MAX_OUT + 1);
        if (j->buf == NULL || j->len >= TOKEN_CMD_MAX_OUT) {
            /* Keep draining into a scratch area so the child does not block on a full pipe. */
            static char scratch[4096];
            *b = uv_buf_init(scratch, sizeof scratch);
            return;
        }
        *b = uv_buf_init(j->buf + j->len, (unsigned)(TOKEN_CMD_MAX_OUT - j->len));
    } else {
        static char errscratch[1024];
        *b = uv_buf_init(errscratch, sizeof errscratch);
    }
}

static void token_cmd_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct token_job *j = s->data;
    int is_out = (uv_pipe_t *)s == &j->out;
    if (n < 0) {
        uv_read_stop(s);
        if (is_out)
            j->out_eof = 1;
        else
            j->err_eof = 1;
        token_cmd_maybe_finish(j);
        return;
    }
    if (n == 0)
        return;
    if (is_out) {
        if (j->buf != NULL && b->base == j->buf + j->len)
            j->len += (size_t)n;
        else
            j->too_big = 1;
    } else if (j->errlen < TOKEN_CMD_MAX_ERR) {
        size_t k = (size_t)n < TOKEN_CMD_MAX_ERR - j->errlen ? (size_t)n
                                                             : TOKEN_CMD_MAX_ERR - j->errlen;
        memcpy(j->errbuf + j->errlen, b->base, k);
        j->errlen += k;
        j->errbuf[j->errlen] = '\0';
    }
}

static void token_cmd_timer_cb(uv_timer_t *t)
{
    struct token_job *j = t->data;
    if (!j->exited) {
        /* Answer now; the clean-up finishes when the killed process is reaped. */
        j->timed_out = 1;
        token_cmd_kill(j);
        token_cmd_deliver(j);
        return;
    }
    /* Exited, but a grandchild still holds a pipe open: do not wait for it. */
    token_cmd_finish(j);
}

static void token_cmd_exit_cb(uv_process_t *p, int64_t status, int sig)
{
    struct token_job *j = p->data;
    j->exited = 1;
    j->exit_status = status;
    j->term_signal = sig;
    token_cmd_maybe_finish(j);
    if (!j->finished)
        uv_timer_start(&j->timer, token_cmd_timer_cb, TOKEN_CMD_GRACE_MS, 0);
}

/* environ plus XOAUTHD_ACCOUNT and XOAUTHD_USERNAME; the strings are owned by the caller. */
static char **token_cmd_env(char *acct_var, char *user_var)
{
    size_t n = 0;
    while (environ != NULL && environ[n] != NULL)
        n++;
    char **env = calloc(n + 3, sizeof *env);
    if (env == NULL)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "XOAUTHD_ACCOUNT=", 16) != 0 &&
            strncmp(environ[i], "XOAUTHD_USERNAME=", 17) != 0)
            env[o++] = environ[i];
    env[o++] = acct_var;
    env[o++] = user_var;
    env[o] = NULL;
    return env;
}

/* Marks every descriptor above stderr close-on-exec, whoever opened it: libraries do not all
 * ask for O_CLOEXEC (libcurl 7.88's socketpairs), and a child must not hold a connection or a
 * file of ours. Nothing xoauthd holds is meant for a child (uv_spawn sets up its stdio). Runs
 * on the loop thread, which also does the fork; a thread-pool job's descriptors are opened
 * with O_CLOEXEC themselves. */
static void token_cmd_cloexec_all(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    if (d == NULL)
        return;
    while ((de = readdir(d)) != NULL) {
        char *end;
        long fd = strtol(de->d_name, &end, 10);
        if (*end != '\0' || end == de->d_name || fd <= 2 || fd > INT_MAX)
            continue;
        int flags = fcntl((int)fd, F_GETFD);
        if (flags >= 0 && !(flags & FD_CLOEXEC))
            (void)fcntl((int)fd, F_SETFD, flags | FD_CLOEXEC);
    }
    closedir(d);
}

static struct token_job *token_cmd_start(uv_loop_t *loop, const struct token_grant_ctx *ctx,
                                         unsigned timeout_ms, token_job_cb cb, void *arg,
                                         const char **why)
{
    const struct config_account *acct = ctx->acct;
    struct token_job *j;
    uv_process_options_t po;
    uv_stdio_container_t stdio[3];
    char acct_var[256], user_var[512];
    char **env = NULL;
    char *args[4];
    int rc;

    if (acct->token_command == NULL || acct->token_command[0] == '\0') {
        *why = "flow = command needs token_command";
        return NULL;
    }
    j = calloc(1, sizeof *j);
    if (j == NULL) {
        *why = "out of memory";
        return NULL;
    }
    j->loop = loop;
    j->cb = cb;
    j->arg = arg;
    snprintf(acct_var, sizeof acct_var, "XOAUTHD_ACCOUNT=%s", acct->name != NULL ? acct->name : "");
    snprintf(user_var, sizeof user_var, "XOAUTHD_USERNAME=%s",
             acct->username != NULL ? acct->username : "");
    env = token_cmd_env(acct_var, user_var);
    if (env == NULL) {
        free(j);
        *why = "out of memory";
        return NULL;
    }
    uv_pipe_init(loop, &j->out, 0);
    uv_pipe_init(loop, &j->err, 0);
    uv_timer_init(loop, &j->timer);
    j->out.data = j->err.data = j->timer.data = j;
    j->open_handles = 3;

    memset(&po, 0, sizeof po);
    memset(stdio, 0, sizeof stdio);
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&j->out;
    stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[2].data.stream = (uv_stream_t *)&j->err;
    args[0] = (char *)"/bin/sh";
    args[1] = (char *)"-c";
    args[2] = acct->token_command;
    args[3] = NULL;
    po.file = "/bin/sh";
    po.args = args;
    po.env = env;
    po.stdio = stdio;
    po.stdio_count = 3;
    po.exit_cb = token_cmd_exit_cb;
    po.flags = UV_PROCESS_DETACHED; /* own session and process group: killable as a whole */
    j->proc.data = j;
    token_cmd_cloexec_all();
    rc = uv_spawn(loop, &j->proc, &po);
    free(env);
    if (rc != 0) {
        /* uv_spawn leaves the handle initialised: it must be closed too. */
        j->open_handles++;
        *why = "token_command could not be started (fork/exec failed)";
        j->cb = NULL;
        j->delivered = 1;
        j->finished = 1;
        token_cmd_close_all(j);
        return NULL;
    }
    j->spawned = 1;
    j->open_handles++;
    if (uv_read_start((uv_stream_t *)&j->out, token_cmd_alloc_cb, token_cmd_read_cb) != 0 ||
        uv_read_start((uv_stream_t *)&j->err, token_cmd_alloc_cb, token_cmd_read_cb) != 0) {
        /* Its output could never be read: stop it now (the exit callback still reaps it). */
        *why = "token_command's output cannot be read";
        token_cmd_cancel(j);
        return NULL;
    }
    uv_timer_start(&j->timer, token_cmd_timer_cb, timeout_ms != 0 ? timeout_ms : 30000u, 0);
    return j;
}

static void token_cmd_cancel(struct token_job *j)
{
    if (j == NULL)
        return;
    j->cb = NULL;
    j->delivered = 1;
    if (!j->exited) {
        /* Reaping needs the process handle open: close everything once it exited. */
        token_cmd_kill(j);
        j->out_eof = j->err_eof = 1;
        uv_read_stop((uv_stream_t *)&j->out);
        uv_read_stop((uv_stream_t *)&j->err);
        uv_timer_stop(&j->timer);
        return;
    }
    token_cmd_finish(j);
}

const struct token_grant token_grant_command = {
    .name = "command",
    .start = token_cmd_start,
    .cancel = token_cmd_cancel,
};
