/* smtp_sink: a fast SMTP server for benchmarks that accepts AUTH XOAUTH2/OAUTHBEARER with any
 * token and discards every message after 250. It exists so that the benchmark measures xoauthd,
 * not the upstream: both the direct and the proxied runs talk to this same process.
 *
 *   smtp_sink PORT_FILE     binds 127.0.0.1 on a free port, writes the port to PORT_FILE,
 *                           runs until SIGTERM/SIGINT. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

struct sink_client {
    uv_tcp_t tcp;
    char buf[64 * 1024];
    size_t len;
    int in_data;
    int after_auth; /* the next line is a SASL response */
    int at_line_start; /* DATA end-marker state, see sink_data() */
};

struct sink_write {
    uv_write_t req;
    char data[];
};

static uv_loop_t *sink_loop;
static uv_tcp_t sink_server;
static uv_signal_t sink_sigterm, sink_sigint;

static void sink_write_cb(uv_write_t *req, int status)
{
    (void)status;
    free(req->data);
}

static void sink_send(struct sink_client *c, const char *text)
{
    size_t n = strlen(text);
    struct sink_write *w = malloc(sizeof *w + n);
    if (w == NULL)
        return;
    memcpy(w->data, text, n);
    w->req.data = w;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, sink_write_cb) != 0)
        free(w);
}

static void sink_closed_cb(uv_handle_t *h) { free(h->data); }

static void sink_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct sink_client *c = h->data;
    (void)suggested;
    buf->base = c->buf + c->len;
    buf->len = sizeof c->buf - c->len;
}

static void sink_command(struct sink_client *c, const char *line, size_t len)
{
    if (c->after_auth) {
        c->after_auth = 0;
        sink_send(c, "235 2.7.0 Accepted\r\n");
    } else if (len >= 4 && strncasecmp(line, "EHLO", 4) == 0) {
        sink_send(c, "250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 104857600\r\n"
                     "250 AUTH XOAUTH2 OAUTHBEARER\r\n");
    } else if (len >= 4 && strncasecmp(line, "AUTH", 4) == 0) {
        if (len > 17) {
            sink_send(c, "235 2.7.0 Accepted\r\n"); /* initial response given */
        } else {
            c->after_auth = 1;
            sink_send(c, "334 \r\n");
        }
    } else if (len >= 4 && strncasecmp(line, "DATA", 4) == 0) {
        c->in_data = 1;
        c->at_line_start = 1;
        sink_send(c, "354 go ahead\r\n");
    } else if (len >= 4 && strncasecmp(line, "QUIT", 4) == 0) {
        sink_send(c, "221 bye\r\n");
        uv_close((uv_handle_t *)&c->tcp, sink_closed_cb);
    } else {
        sink_send(c, "250 2.0.0 ok\r\n");
    }
}

/* Consumes message bytes; returns how many belong to the message (end marker included) once
 * the end was seen, or -1 when everything was message data. The marker may span reads. */
static long sink_data(struct sink_client *c, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        switch (c->at_line_start) {
        case 1: /* at the start of a line */
            c->at_line_start = ch == '.' ? 2 : ch == '\n' ? 1 : 0;
            break;
        case 2: /* "." at the start of a line */
            c->at_line_start = ch == '\r' ? 3 : 0;
            break;
        case 3: /* ".\r" at the start of a line */
            if (ch == '\n') {
                c->in_data = 0;
                sink_send(c, "250 2.0.0 Ok: queued as SINK\r\n");
                return (long)(i + 1);
            }
            c->at_line_start = 0;
            break;
        default:
            c->at_line_start = ch == '\n' ? 1 : 0;
            break;
        }
    }
    return -1;
}

static void sink_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct sink_client *c = s->data;
    (void)buf;
    if (nread < 0) {
        if (!uv_is_closing((uv_handle_t *)s))
            uv_close((uv_handle_t *)s, sink_closed_cb);
        return;
    }
    c->len += (size_t)nread;
    size_t off = 0;
    while (off < c->len && !uv_is_closing((uv_handle_t *)s)) {
        if (c->in_data) {
            long r = sink_data(c, c->buf + off, c->len - off);
            off = r < 0 ? c->len : off + (size_t)r;
            continue;
        }
        char *lf = memchr(c->buf + off, '\n', c->len - off);
        if (lf == NULL)
            break;
        size_t l = (size_t)(lf - (c->buf + off));
        size_t ll = l > 0 && c->buf[off + l - 1] == '\r' ? l - 1 : l;
        sink_command(c, c->buf + off, ll);
        off += l + 1;
    }
    if (uv_is_closing((uv_handle_t *)s))
        return;
    memmove(c->buf, c->buf + off, c->len - off);
    c->len -= off;
    if (c->len == sizeof c->buf)
        c->len = 0; /* a line longer than the buffer: drop it, this is only a sink */
}

static void sink_connection_cb(uv_stream_t *server, int status)
{
    if (status != 0)
        return;
    struct sink_client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return;
    uv_tcp_init(sink_loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, sink_closed_cb);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    sink_send(c, "220 sink ESMTP\r\n");
    uv_read_start((uv_stream_t *)&c->tcp, sink_alloc_cb, sink_read_cb);
}

static void sink_walk_close_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, h->type == UV_TCP && h != (uv_handle_t *)&sink_server ? sink_closed_cb : NULL);
}

static void sink_signal_cb(uv_signal_t *h, int signum)
{
    (void)h;
    (void)signum;
    uv_walk(sink_loop, sink_walk_close_cb, NULL);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: smtp_sink PORT_FILE\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    sink_loop = uv_default_loop();
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    uv_tcp_init(sink_loop, &sink_server);
    if (uv_tcp_bind(&sink_server, (const struct sockaddr *)&addr, 0) != 0 ||
        uv_listen((uv_stream_t *)&sink_server, 1024, sink_connection_cb) != 0) {
        fprintf(stderr, "smtp_sink: cannot listen\n");
        return 1;
    }
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    uv_tcp_getsockname(&sink_server, (struct sockaddr *)&ss, &sl);
    FILE *f = fopen(argv[1], "w");
    if (f == NULL)
        return 1;
    fprintf(f, "%d\n", ntohs(((struct sockaddr_in *)&ss)->sin_port));
    fclose(f);
    uv_signal_init(sink_loop, &sink_sigterm);
    uv_signal_init(sink_loop, &sink_sigint);
    uv_signal_start(&sink_sigterm, sink_signal_cb, SIGTERM);
    uv_signal_start(&sink_sigint, sink_signal_cb, SIGINT);
    uv_run(sink_loop, UV_RUN_DEFAULT);
    return uv_loop_close(sink_loop) == 0 ? 0 : 1;
}
