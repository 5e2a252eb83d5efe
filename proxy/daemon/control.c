/* control: the control socket and `xoauthd status`, see control.h. */
#include "control.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "authlimit.h"
#include "config.h"
#include "listener.h"
#include "log.h"
#include "server.h"
#include "session_log.h"
#include "stats.h"
#include "token.h"

#define CONTROL_DEFAULT_CONFIG "/etc/xoauthd/xoauthd.ini"

/* A client that sends nothing within this long gets the status text, as before requests
 * existed (`socat - UNIX-CONNECT:...` still works). */
#define CONTROL_REQUEST_WAIT_MS 200
#define CONTROL_REQUEST_MAX 512

struct control_client {
    uv_pipe_t pipe;
    uv_timer_t timer;
    struct control *ctl;
    LIST_ENTRY(control_client) link; /* in ctl->clients */
    uv_write_t wr;
    char *text;
    size_t len;
    char req[CONTROL_REQUEST_MAX];
    size_t req_len;
    int answered;
    int open_handles; /* pipe + timer */
};

struct control {
    uv_pipe_t pipe;
    struct server *srv;
    char *path;
    LIST_HEAD(, control_client) clients;
    int open_handles; /* the listening pipe + clients; freed at 0 */
    int closing;
};

static void control_release(struct control *ctl)
{
    if (--ctl->open_handles > 0)
        return;
    free(ctl->path);
    free(ctl);
}

static void control_client_closed_cb(uv_handle_t *h)
{
    struct control_client *c = h->data;
    struct control *ctl = c->ctl;
    if (--c->open_handles > 0)
        return;
    LIST_REMOVE(c, link);
    free(c->text);
    free(c);
    control_release(ctl);
}

static void control_client_close(struct control_client *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->pipe))
        uv_close((uv_handle_t *)&c->pipe, control_client_closed_cb);
    if (!uv_is_closing((uv_handle_t *)&c->timer))
        uv_close((uv_handle_t *)&c->timer, control_client_closed_cb);
}

static void control_write_cb(uv_write_t *req, int status)
{
    (void)status;
    control_client_close(req->data);
}

/* The answer to one request line (without its newline; "" = status). */
static void control_answer(struct control_client *c, const char *line, FILE *out)
{
    if (line[0] == '\0' || strcmp(line, "status") == 0) {
        control_status_write(c->ctl->srv, out);
    } else if (strncmp(line, "unlock ", 7) == 0 && line[7] != '\0') {
        char q[CONTROL_REQUEST_MAX + 8];
        unsigned n = authlimit_unlock(line + 7);
        log_quote(q, sizeof q, line + 7, strlen(line + 7));
        log_info(NULL, "event=auth_unlock name=%s entries=%u", q, n);
        fprintf(out, "unlocked %s entries=%u\n", q, n);
    } else {
        fprintf(out, "error: unknown request (status, unlock NAME)\n");
    }
}

static void control_respond(struct control_client *c)
{
    if (c->answered)
        return;
    c->answered = 1;
    uv_timer_stop(&c->timer);
    uv_read_stop((uv_stream_t *)&c->pipe);
    char *nl = memchr(c->req, '\n', c->req_len);
    size_t n = nl != NULL ? (size_t)(nl - c->req) : c->req_len;
    if (n > 0 && c->req[n - 1] == '\r')
        n--;
    c->req[n < sizeof c->req ? n : sizeof c->req - 1] = '\0';
    FILE *out = open_memstream(&c->text, &c->len);
    if (out == NULL) {
        control_client_close(c);
        return;
    }
    control_answer(c, c->req, out);
    fclose(out);
    uv_buf_t buf = uv_buf_init(c->text, (unsigned)c->len);
    c->wr.data = c;
    if (uv_write(&c->wr, (uv_stream_t *)&c->pipe, &buf, 1, control_write_cb) != 0)
        control_client_close(c);
}

static void control_timer_cb(uv_timer_t *t) { control_respond(t->data); }

static void control_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct control_client *c = h->data;
    (void)hint;
    /* One byte stays free for the terminating NUL. */
    *buf = uv_buf_init(c->req + c->req_len, (unsigned)(sizeof c->req - 1 - c->req_len));
}

static void control_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct control_client *c = st->data;
    (void)buf;
    if (nread > 0)
        c->req_len += (size_t)nread;
    if (nread < 0 || memchr(c->req, '\n', c->req_len) != NULL ||
        c->req_len >= sizeof c->req - 1) {
        if (nread < 0 && nread != UV_EOF) {
            control_client_close(c);
            return;
        }
        control_respond(c);
    }
}

static void control_connection_cb(uv_stream_t *server, int status)
{
    struct control *ctl = server->data;
    if (status < 0 || ctl->closing)
        return;
    struct control_client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return;
    c->ctl = ctl;
    uv_pipe_init(server->loop, &c->pipe, 0);
    uv_timer_init(server->loop, &c->timer);
    c->pipe.data = c;
    c->timer.data = c;
    c->open_handles = 2;
    LIST_INSERT_HEAD(&ctl->clients, c, link);
    ctl->open_handles++;
    if (uv_accept(server, (uv_stream_t *)&c->pipe) != 0 ||
        uv_read_start((uv_stream_t *)&c->pipe, control_alloc_cb, control_read_cb) != 0) {
        control_client_close(c);
        return;
    }
    uv_timer_start(&c->timer, control_timer_cb, CONTROL_REQUEST_WAIT_MS, 0);
}

char *control_socket_path(const struct config *cfg)
{
    if (cfg->control_socket != NULL)
        return strdup(cfg->control_socket);
    const char *dir = cfg->state_dir != NULL ? cfg->state_dir : "/var/lib/xoauthd";
    size_t n = strlen(dir) + sizeof "/control.sock";
    char *p = malloc(n);
    if (p != NULL)
        snprintf(p, n, "%s/control.sock", dir);
    return p;
}

static void control_pipe_closed_cb(uv_handle_t *h) { control_release(h->data); }

struct control *control_new(struct server *srv, const char *path)
{
    struct stat st;
    struct control *ctl = calloc(1, sizeof *ctl);
    if (ctl == NULL)
        return NULL;
    ctl->srv = srv;
    ctl->path = strdup(path);
    if (ctl->path == NULL) {
        free(ctl);
        return NULL;
    }
    uv_pipe_init(srv->ctx.loop, &ctl->pipe, 0);
    ctl->pipe.data = ctl;
    ctl->open_handles = 1;
    /* A socket left by a daemon that was killed: replace it. Never remove anything else. */
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
    /* 0600 from the start: no window in which another user could connect. */
    mode_t old = umask(077);
    int rc = uv_pipe_bind(&ctl->pipe, path);
    umask(old);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&ctl->pipe, 16, control_connection_cb);
    if (rc != 0) {
        log_warn(NULL, "event=control_socket_failed path=%s reason=\"%s\"", path,
                  uv_strerror(rc));
        ctl->closing = 1;
        uv_close((uv_handle_t *)&ctl->pipe, control_pipe_closed_cb); /* frees ctl */
        return NULL;
    }
    log_info(NULL, "event=control_socket path=%s", path);
    return ctl;
}

void control_close(struct control *ctl)
{
    if (ctl == NULL || ctl->closing)
        return;
    ctl->closing = 1;
    unlink(ctl->path);
    struct control_client *c;
    LIST_FOREACH(c, &ctl->clients, link)
        control_client_close(c);
    uv_close((uv_handle_t *)&ctl->pipe, control_pipe_closed_cb);
}

/* ---- the status text ------------------------------------------------------------------------ */

static void control_time(long long t, char *out, size_t outsz)
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (t <= 0 || gmtime_r(&tt, &tm) == NULL) {
        snprintf(out, outsz, "-");
        return;
    }
    strftime(out, outsz, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void control_status_write(struct server *srv, FILE *out)
{
    const struct stats *st = stats_get();
    uint64_t now = uv_now(srv->ctx.loop);
    char line[1024];

    fprintf(out, "xoauthd pid=%ld uptime=%llus reloads=%u config=%s%s\n", (long)getpid(),
            (unsigned long long)((now - srv->started_ms) / 1000u), srv->reloads, srv->ctx.cfg->path,
            srv->shutting_down ? " state=shutting_down" : "");

    fprintf(out, "\nlisteners: %zu\n", srv->n_listeners);
    for (size_t i = 0; i < srv->n_listeners; i++) {
        const struct listener *l = srv->listeners[i];
        if (l == NULL)
            continue;
        const struct config_listen *lc = l->point.cfg;
        int v6 = strchr(lc->host, ':') != NULL;
        fprintf(out, "  %-16s protocol=%s address=%s%s%s:%u tls=%s active=%u\n", lc->name,
                config_protocol_name(lc->protocol), v6 ? "[" : "", lc->host, v6 ? "]" : "",
                (unsigned)lc->port,
                lc->tls == CONFIG_TLS_NONE ? "none"
                : lc->tls == CONFIG_TLS_STARTTLS ? "starttls" : "implicit",
                l->active);
    }

    fprintf(out, "\nsessions: %zu\n", srv->n_sessions);
    const struct session_link *k;
    LIST_FOREACH(k, &srv->sessions, entry) {
        const struct session_log *sl = k->slog;
        if (sl == NULL)
            continue;
        fprintf(out, "  sid=%s %s age=%llus\n", sl->sid, session_log_format(sl, line, sizeof line),
                (unsigned long long)((now - sl->start_ms) / 1000u));
    }

    fprintf(out, "\naccounts: %zu\n", srv->ctx.cfg->n_accounts);
    for (size_t i = 0; i < srv->ctx.cfg->n_accounts; i++) {
        const struct config_account *a = &srv->ctx.cfg->accounts[i];
        struct token_account_info ti;
        char when[32], err[260];
        token_account_info(srv->ctx.tokens, a->name, &ti);
        struct stats_account *sa = stats_account(a->name);
        control_time(ti.last_refresh, when, sizeof when);
        const char *state = !ti.known ? "unused"
                            : ti.failing ? (ti.state[0] ? ti.state : "failing")
                            : ti.cached ? "ok"
                            : ti.state[0] ? ti.state : "none";
        fprintf(out, "  %-16s flow=%s token=%s", a->name, config_flow_name(a->flow), state);
        if (ti.cached)
            fprintf(out, " expires_in=%llds", ti.expires_in);
        if (ti.failing)
            fprintf(out, " retry_in=%llds", ti.retry_in);
        if (ti.busy)
            fprintf(out, " busy=1");
        fprintf(out, " last_refresh=%s", when);
        if (sa != NULL)
            fprintf(out, " sessions=%llu messages=%llu bytes=%llu token_requests=%llu "
                    "token_failures=%llu", (unsigned long long)sa->sessions,
                    (unsigned long long)sa->messages, (unsigned long long)sa->message_bytes,
                    (unsigned long long)sa->token_requests,
                    (unsigned long long)sa->token_failures);
        if (ti.last_error[0] != '\0')
            fprintf(out, " last_error=%s",
                    log_quote(err, sizeof err, ti.last_error, strlen(ti.last_error)));
        fputc('\n', out);
    }

    fprintf(out, "\ncounters:\n");
    for (int p = 0; p < STATS_PROTO_N; p++)
        fprintf(out, "  sessions_total{%s}=%llu active=%llu\n", stats_proto_name(p),
                (unsigned long long)st->sessions_total[p],
                (unsigned long long)st->sessions_active[p]);
    fprintf(out, "  messages=%llu message_bytes=%llu\n", (unsigned long long)st->messages,
            (unsigned long long)st->message_bytes);
    fprintf(out, "  bytes_from_client=%llu bytes_from_server=%llu\n",
            (unsigned long long)st->bytes_from_client, (unsigned long long)st->bytes_from_server);
    fprintf(out, "  local_auth_failures=%llu\n", (unsigned long long)st->auth_failures);
    fprintf(out, "  upstream_errors:");
    if (st->n_upstream_errors == 0)
        fprintf(out, " none");
    for (size_t i = 0; i < st->n_upstream_errors; i++)
        fprintf(out, " %s=%llu", st->upstream_errors[i].code,
                (unsigned long long)st->upstream_errors[i].count);
    fputc('\n', out);
}

/* ---- the client --------------------------------------------------------------------------- */

/* Parses [-c FILE] and up to want positional arguments (exactly want); NULL on a usage error
 * (printed). */
static const char *control_cli_args(int argc, char **argv, int want, const char *usage,
                                    const char **arg)
{
    const char *path = CONTROL_DEFAULT_CONFIG;
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
        if (c != 'c') {
            fprintf(stderr, "usage: %s\n", usage);
            return NULL;
        }
        path = optarg;
    }
    if (argc - optind != want) {
        fprintf(stderr, "usage: %s\n", usage);
        return NULL;
    }
    if (want > 0)
        *arg = argv[optind];
    return path;
}

/* Sends one request line to the daemon of the configuration at path and copies the answer to
 * stdout. Exit code 0 or 1. */
static int control_request(const char *path, const char *request)
{
    struct config *cfg = config_load(path, stderr);
    if (cfg == NULL)
        return 1;
    char *sock = control_socket_path(cfg);
    config_free(cfg);
    if (sock == NULL)
        return 1;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(sock) >= sizeof sa.sun_path) {
        fprintf(stderr, "xoauthd: control socket path too long: %s\n", sock);
        free(sock);
        return 1;
    }
    memcpy(sa.sun_path, sock, strlen(sock) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        fprintf(stderr, "xoauthd: cannot reach the daemon at %s: %s (is it running, and are "
                "you its user or root?)\n", sock, strerror(errno));
        if (fd >= 0)
            close(fd);
        free(sock);
        return 1;
    }
    free(sock);
    size_t len = strlen(request);
    if (write(fd, request, len) != (ssize_t)len) {
        fprintf(stderr, "xoauthd: cannot send the request: %s\n", strerror(errno));
        close(fd);
        return 1;
    }
    char buf[8192];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        fwrite(buf, 1, (size_t)n, stdout);
    close(fd);
    return n < 0 ? 1 : 0;
}

int control_cmd_status(int argc, char **argv)
{
    const char *path = control_cli_args(argc, argv, 0, "xoauthd status [-c FILE]", NULL);
    return path != NULL ? control_request(path, "status\n") : 2;
}

int control_cmd_unlock(int argc, char **argv)
{
    const char *name = NULL;
    const char *path = control_cli_args(argc, argv, 1, "xoauthd unlock [-c FILE] NAME|ADDRESS",
                                        &name);
    if (path == NULL)
        return 2;
    char req[CONTROL_REQUEST_MAX];
    if (name[0] == '\0' || strpbrk(name, "\r\n") != NULL ||
        (size_t)snprintf(req, sizeof req, "unlock %s\n", name) >= sizeof req) {
        fprintf(stderr, "xoauthd: not a user name or address: %s\n", name);
        return 2;
    }
    return control_request(path, req);
}
