/* metrics: the /metrics endpoint, see metrics.h. */
#include "metrics.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <uv.h>

#include "config.h"
#include "log.h"
#include "server.h"
#include "stats.h"
#include "token.h"

struct metrics_client {
    uv_tcp_t tcp;
    uv_timer_t timer;
    struct metrics *m;
    LIST_ENTRY(metrics_client) link; /* in m->clients */
    int open_handles; /* tcp + timer */
    int answered;
    uv_write_t wr;
    char *text;
    size_t text_len;
    size_t len;
    char buf[METRICS_MAX_REQUEST];
};

struct metrics {
    uv_tcp_t tcp;
    struct server *srv;
    LIST_HEAD(, metrics_client) clients;
    unsigned n_clients;
    int open_handles; /* the listening socket + clients */
    int closing;
};

enum metrics_request metrics_parse_request(const char *buf, size_t len)
{
    const char *end = NULL;
    for (size_t i = 0; i + 1 < len && end == NULL; i++) {
        if (buf[i] == '\n' && buf[i + 1] == '\n')
            end = buf + i;
        else if (i + 3 < len && memcmp(buf + i, "\r\n\r\n", 4) == 0)
            end = buf + i;
    }
    if (end == NULL)
        return len >= METRICS_MAX_REQUEST ? METRICS_REQ_BAD : METRICS_REQ_AGAIN;
    /* Request-line = method SP request-target SP HTTP-version (RFC 9112 section 3). */
    const char *eol = memchr(buf, '\n', len);
    const char *sp1 = memchr(buf, ' ', (size_t)(eol - buf));
    if (sp1 == NULL || sp1 == buf)
        return METRICS_REQ_BAD;
    const char *target = sp1 + 1;
    const char *sp2 = memchr(target, ' ', (size_t)(eol - target));
    if (sp2 == NULL || sp2 == target || (size_t)(eol - sp2) < 9 ||
        memcmp(sp2 + 1, "HTTP/1.", 7) != 0)
        return METRICS_REQ_BAD;
    size_t mlen = (size_t)(sp1 - buf);
    int get = mlen == 3 && memcmp(buf, "GET", 3) == 0;
    int head = mlen == 4 && memcmp(buf, "HEAD", 4) == 0;
    if (!get && !head)
        return METRICS_REQ_METHOD;
    size_t tlen = (size_t)(sp2 - target);
    const char *q = memchr(target, '?', tlen);
    if (q != NULL)
        tlen = (size_t)(q - target); /* Prometheus may add parameters; they change nothing */
    if (tlen != 8 || memcmp(target, "/metrics", 8) != 0)
        return METRICS_REQ_NOT_FOUND;
    return get ? METRICS_REQ_GET : METRICS_REQ_HEAD;
}

void metrics_label(FILE *out, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\' || *s == '"')
            fprintf(out, "\\%c", *s);
        else if (*s == '\n')
            fputs("\\n", out);
        else
            fputc(*s, out);
    }
}

static void metrics_family(FILE *out, const char *name, const char *type, const char *help)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metrics_account_value(FILE *out, const char *name, const char *account,
                                  unsigned long long v)
{
    fprintf(out, "%s{account=\"", name);
    metrics_label(out, account);
    fprintf(out, "\"} %llu\n", v);
}

/* A counter family with one line per account; field is the offsetof() of its uint64_t in
 * struct stats_account. */
static void metrics_account_counter(FILE *out, const struct stats *st, const char *name,
                                    const char *help, size_t field)
{
    metrics_family(out, name, "counter", help);
    for (const struct stats_account *a = st->accounts; a != NULL; a = a->next) {
        uint64_t v;
        memcpy(&v, (const char *)a + field, sizeof v);
        metrics_account_value(out, name, a->name, v);
    }
}

void metrics_write(struct server *srv, FILE *out)
{
    const struct stats *st = stats_get();
    /* Every configured account shows, with zeros until it is used. */
    for (size_t i = 0; i < srv->ctx.cfg->n_accounts; i++)
        (void)stats_account(srv->ctx.cfg->accounts[i].name);

    metrics_family(out, "xoauthd_uptime_seconds", "gauge", "Seconds since the daemon started.");
    fprintf(out, "xoauthd_uptime_seconds %llu\n",
            (unsigned long long)((uv_now(srv->ctx.loop) - srv->started_ms) / 1000u));
    metrics_family(out, "xoauthd_reloads_total", "counter", "Configuration reloads (SIGHUP).");
    fprintf(out, "xoauthd_reloads_total %u\n", srv->reloads);
    metrics_family(out, "xoauthd_sessions_total", "counter", "Client sessions accepted.");
    for (int p = 0; p < STATS_PROTO_N; p++)
        fprintf(out, "xoauthd_sessions_total{protocol=\"%s\"} %llu\n", stats_proto_name(p),
                (unsigned long long)st->sessions_total[p]);
    metrics_family(out, "xoauthd_sessions_active", "gauge", "Client sessions open now.");
    for (int p = 0; p < STATS_PROTO_N; p++)
        fprintf(out, "xoauthd_sessions_active{protocol=\"%s\"} %llu\n", stats_proto_name(p),
                (unsigned long long)st->sessions_active[p]);
    metrics_family(out, "xoauthd_local_auth_failures_total", "counter",
                   "Local logins refused (unknown user or wrong password).");
    fprintf(out, "xoauthd_local_auth_failures_total %llu\n",
            (unsigned long long)st->auth_failures);
    metrics_account_counter(out, st, "xoauthd_messages_total",
                            "Messages the upstream accepted, by account.",
                            offsetof(struct stats_account, messages));
    metrics_account_counter(out, st, "xoauthd_message_bytes_total",
                            "Bytes of the messages the upstream accepted, by account.",
                            offsetof(struct stats_account, message_bytes));
    metrics_family(out, "xoauthd_relay_bytes_total", "counter",
                   "Bytes relayed (IMAP/POP3 relay and SMTP messages), by direction.");
    fprintf(out, "xoauthd_relay_bytes_total{direction=\"from_client\"} %llu\n",
            (unsigned long long)st->bytes_from_client);
    fprintf(out, "xoauthd_relay_bytes_total{direction=\"from_server\"} %llu\n",
            (unsigned long long)st->bytes_from_server);
    metrics_account_counter(out, st, "xoauthd_token_requests_total",
                            "Requests to the token endpoint, by account.",
                            offsetof(struct stats_account, token_requests));
    metrics_account_counter(out, st, "xoauthd_token_failures_total",
                            "Failed token requests, by account.",
                            offsetof(struct stats_account, token_failures));
    metrics_family(out, "xoauthd_token_valid_seconds", "gauge",
                   "Remaining life of the cached access token (0: none), by account.");
    for (size_t i = 0; i < srv->ctx.cfg->n_accounts; i++) {
        struct token_account_info ti;
        token_account_info(srv->ctx.tokens, srv->ctx.cfg->accounts[i].name, &ti);
        metrics_account_value(out, "xoauthd_token_valid_seconds", srv->ctx.cfg->accounts[i].name,
                              ti.cached ? (unsigned long long)ti.expires_in : 0);
    }
    metrics_family(out, "xoauthd_upstream_errors_total", "counter",
                   "Upstream failures: reply code to a message, or login failure class.");
    for (size_t i = 0; i < st->n_upstream_errors; i++) {
        fprintf(out, "xoauthd_upstream_errors_total{code=\"");
        metrics_label(out, st->upstream_errors[i].code);
        fprintf(out, "\"} %llu\n", (unsigned long long)st->upstream_errors[i].count);
    }
}

/* ---- connections ---------------------------------------------------------------------------- */

static void metrics_release(struct metrics *m)
{
    if (--m->open_handles == 0)
        free(m);
}

static void metrics_client_closed_cb(uv_handle_t *h)
{
    struct metrics_client *c = h->data;
    if (--c->open_handles > 0)
        return;
    struct metrics *m = c->m;
    LIST_REMOVE(c, link);
    m->n_clients--;
    free(c->text);
    free(c);
    metrics_release(m);
}

static void metrics_client_close(struct metrics_client *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, metrics_client_closed_cb);
    if (!uv_is_closing((uv_handle_t *)&c->timer))
        uv_close((uv_handle_t *)&c->timer, metrics_client_closed_cb);
}

static void metrics_write_cb(uv_write_t *req, int status)
{
    (void)status;
    metrics_client_close(req->data);
}

static void metrics_respond(struct metrics_client *c, enum metrics_request r)
{
    char *body = NULL;
    size_t body_len = 0;
    const char *status = "200 OK";
    FILE *out;

    c->answered = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    out = open_memstream(&body, &body_len);
    if (out == NULL) {
        metrics_client_close(c);
        return;
    }
    switch (r) {
    case METRICS_REQ_GET:
    case METRICS_REQ_HEAD:
        metrics_write(c->m->srv, out);
        break;
    case METRICS_REQ_NOT_FOUND:
        status = "404 Not Found";
        fputs("not found: try /metrics\n", out);
        break;
    case METRICS_REQ_METHOD:
        status = "405 Method Not Allowed";
        fputs("method not allowed\n", out);
        break;
    case METRICS_REQ_AGAIN:
    case METRICS_REQ_BAD:
        status = "400 Bad Request";
        fputs("bad request\n", out);
        break;
    }
    fclose(out);
    out = open_memstream(&c->text, &c->text_len);
    if (out == NULL) {
        free(body);
        metrics_client_close(c);
        return;
    }
    fprintf(out, "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
            "Connection: close\r\n\r\n", status,
            r == METRICS_REQ_GET || r == METRICS_REQ_HEAD
                ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain; charset=utf-8",
            body_len, r == METRICS_REQ_METHOD ? "Allow: GET, HEAD\r\n" : "");
    if (r != METRICS_REQ_HEAD)
        fwrite(body, 1, body_len, out);
    fclose(out);
    free(body);
    uv_buf_t buf = uv_buf_init(c->text, (unsigned)c->text_len);
    c->wr.data = c;
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &buf, 1, metrics_write_cb) != 0)
        metrics_client_close(c);
}

static void metrics_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct metrics_client *c = h->data;
    (void)suggested;
    *buf = uv_buf_init(c->buf + c->len, (unsigned)(sizeof c->buf - c->len));
}

static void metrics_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct metrics_client *c = s->data;
    (void)buf;
    if (c->answered)
        return;
    if (n < 0) {
        metrics_client_close(c);
        return;
    }
    c->len += (size_t)n;
    enum metrics_request r = metrics_parse_request(c->buf, c->len);
    if (r == METRICS_REQ_AGAIN && c->len < sizeof c->buf)
        return;
    metrics_respond(c, r);
}

static void metrics_timeout_cb(uv_timer_t *t) { metrics_client_close(t->data); }

static void metrics_unstarted_closed_cb(uv_handle_t *h) { free(h->data); }

static void metrics_connection_cb(uv_stream_t *server, int status)
{
    struct metrics *m = server->data;
    if (status < 0 || m->closing)
        return;
    struct metrics_client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return;
    c->m = m;
    /* Both cannot fail in libuv (no socket is made yet); checked all the same, and a client
     * without its handles is simply not accepted (it stays in the backlog until m closes). */
    if (uv_tcp_init(server->loop, &c->tcp) != 0) {
        free(c);
        return;
    }
    if (uv_timer_init(server->loop, &c->timer) != 0) {
        c->tcp.data = c;
        uv_close((uv_handle_t *)&c->tcp, metrics_unstarted_closed_cb);
        return;
    }
    c->tcp.data = c->timer.data = c;
    c->open_handles = 2;
    LIST_INSERT_HEAD(&m->clients, c, link);
    m->n_clients++;
    m->open_handles++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 || m->n_clients > METRICS_MAX_CLIENTS) {
        metrics_client_close(c);
        return;
    }
    uv_timer_start(&c->timer, metrics_timeout_cb, METRICS_TIMEOUT_MS, 0);
    if (uv_read_start((uv_stream_t *)&c->tcp, metrics_alloc_cb, metrics_read_cb) != 0)
        metrics_client_close(c);
}

static void metrics_tcp_closed_cb(uv_handle_t *h) { metrics_release(h->data); }

struct metrics *metrics_new(struct server *srv, const char *host, uint16_t port)
{
    struct sockaddr_storage ss;
    struct metrics *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    m->srv = srv;
    int rc = uv_tcp_init(srv->ctx.loop, &m->tcp);
    if (rc != 0) {
        log_error(NULL, "event=metrics_failed address=%s:%u reason=\"%s\"", host,
                  (unsigned)port, uv_strerror(rc));
        free(m);
        return NULL;
    }
    m->tcp.data = m;
    m->open_handles = 1;
    rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
    if (rc != 0)
        rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss);
    if (rc == 0)
        rc = uv_tcp_bind(&m->tcp, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&m->tcp, 16, metrics_connection_cb);
    if (rc != 0) {
        log_error(NULL, "event=metrics_failed address=%s:%u reason=\"%s\"", host,
                  (unsigned)port, uv_strerror(rc));
        m->closing = 1;
        uv_close((uv_handle_t *)&m->tcp, metrics_tcp_closed_cb);
        return NULL;
    }
    log_info(NULL, "event=metrics_listening address=%s:%u", host, (unsigned)port);
    return m;
}

void metrics_close(struct metrics *m)
{
    if (m == NULL || m->closing)
        return;
    m->closing = 1;
    struct metrics_client *c;
    LIST_FOREACH(c, &m->clients, link)
        metrics_client_close(c);
    uv_close((uv_handle_t *)&m->tcp, metrics_tcp_closed_cb);
}
