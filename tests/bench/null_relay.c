/* null_relay: the cheapest TCP proxy this machine can run, as the benchmark's baseline for "one
 * extra hop". It accepts, connects to the upstream and copies bytes both ways, nothing else: no
 * TLS, no parsing, no per-connection read buffer. bench.py runs every workload directly, through
 * this and through xoauthd; null / direct is what any proxy costs here (the extra round trip
 * and the extra process on the same cores), xoauthd / null is xoauthd's own share.
 *
 *   null_relay PORT_FILE UPSTREAM_PORT   binds 127.0.0.1 on a free port, writes the port to
 *                                        PORT_FILE, relays to 127.0.0.1:UPSTREAM_PORT until
 *                                        SIGTERM/SIGINT. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* One direction's end of a pair: the socket it reads from is side[i], it writes to side[!i]. */
struct nr_pair {
    uv_tcp_t side[2]; /* 0: client, 1: upstream */
    uv_connect_t connect_req;
    uv_shutdown_t shutdown_req[2];
    int eof[2];       /* side i sent EOF (or failed) */
    int pending[2];   /* write requests queued towards side i */
    int open_handles;
    int closing;
};

struct nr_write {
    uv_write_t req;
    struct nr_pair *pair;
    int to;
    char data[];
};

static uv_loop_t *nr_loop;
static uv_tcp_t nr_server;
static uv_signal_t nr_sigterm, nr_sigint;
static struct sockaddr_in nr_upstream;
/* libuv calls read_cb before it asks for the next buffer: one buffer serves every socket. */
static char nr_buf[64 * 1024];

static void nr_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void nr_closed_cb(uv_handle_t *h)
{
    struct nr_pair *p = h->data;
    if (--p->open_handles == 0)
        free(p);
}

static void nr_close(struct nr_pair *p)
{
    if (p->closing)
        return;
    p->closing = 1;
    for (int i = 0; i < 2; i++)
        uv_close((uv_handle_t *)&p->side[i], nr_closed_cb);
}

static void nr_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    buf->base = nr_buf;
    buf->len = sizeof nr_buf;
}

static int nr_index(struct nr_pair *p, uv_stream_t *s) { return s == (uv_stream_t *)&p->side[1]; }

static void nr_shutdown_cb(uv_shutdown_t *req, int status)
{
    (void)req;
    (void)status;
}

/* Side i is finished: pass the half-close on once its bytes went out; both done closes. */
static void nr_side_done(struct nr_pair *p, int i)
{
    p->eof[i] = 1;
    uv_read_stop((uv_stream_t *)&p->side[i]);
    if (p->eof[0] && p->eof[1]) {
        nr_close(p);
        return;
    }
    /* uv_shutdown waits for the writes queued before it. */
    p->shutdown_req[!i].data = p;
    if (uv_shutdown(&p->shutdown_req[!i], (uv_stream_t *)&p->side[!i], nr_shutdown_cb) != 0)
        nr_close(p);
}

static void nr_write_cb(uv_write_t *req, int status)
{
    struct nr_write *w = req->data;
    struct nr_pair *p = w->pair;
    int to = w->to;
    free(w);
    p->pending[to]--;
    if (p->closing)
        return;
    if (status != 0) {
        nr_close(p);
        return;
    }
    /* Backpressure: the reader of the other side resumes once this side took everything. */
    if (p->pending[to] == 0 && !p->eof[!to])
        uv_read_start((uv_stream_t *)&p->side[!to], nr_alloc_cb, nr_read_cb);
}

static void nr_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct nr_pair *p = s->data;
    int i = nr_index(p, s);
    if (nread == 0 || p->closing)
        return;
    if (nread < 0) {
        if (nread == UV_EOF)
            nr_side_done(p, i);
        else
            nr_close(p);
        return;
    }
    uv_stream_t *to = (uv_stream_t *)&p->side[!i];
    uv_buf_t b = uv_buf_init(buf->base, (unsigned)nread);
    int sent = uv_try_write(to, &b, 1);
    if (sent == nread)
        return;
    if (sent < 0 && sent != UV_EAGAIN) {
        nr_close(p);
        return;
    }
    size_t rest = (size_t)nread - (size_t)(sent > 0 ? sent : 0);
    struct nr_write *w = malloc(sizeof *w + rest);
    if (w == NULL) {
        nr_close(p);
        return;
    }
    w->pair = p;
    w->to = !i;
    w->req.data = w;
    memcpy(w->data, buf->base + (nread - (ssize_t)rest), rest);
    b = uv_buf_init(w->data, (unsigned)rest);
    if (uv_write(&w->req, to, &b, 1, nr_write_cb) != 0) {
        free(w);
        nr_close(p);
        return;
    }
    p->pending[!i]++;
    uv_read_stop(s); /* until the other side took it (nr_write_cb) */
}

static void nr_connect_cb(uv_connect_t *req, int status)
{
    struct nr_pair *p = req->data;
    if (p->closing)
        return;
    if (status != 0) {
        nr_close(p);
        return;
    }
    uv_tcp_nodelay(&p->side[1], 1);
    for (int i = 0; i < 2; i++)
        uv_read_start((uv_stream_t *)&p->side[i], nr_alloc_cb, nr_read_cb);
}

static void nr_connection_cb(uv_stream_t *server, int status)
{
    if (status != 0)
        return;
    struct nr_pair *p = calloc(1, sizeof *p);
    if (p == NULL)
        return;
    for (int i = 0; i < 2; i++) {
        uv_tcp_init(nr_loop, &p->side[i]);
        p->side[i].data = p;
    }
    p->open_handles = 2;
    if (uv_accept(server, (uv_stream_t *)&p->side[0]) != 0) {
        nr_close(p);
        return;
    }
    uv_tcp_nodelay(&p->side[0], 1);
    p->connect_req.data = p;
    if (uv_tcp_connect(&p->connect_req, &p->side[1], (const struct sockaddr *)&nr_upstream,
                       nr_connect_cb) != 0)
        nr_close(p);
}

static void nr_walk_close_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (uv_is_closing(h))
        return;
    if (h->type == UV_TCP && h != (uv_handle_t *)&nr_server)
        nr_close(h->data);
    else
        uv_close(h, NULL);
}

static void nr_signal_cb(uv_signal_t *h, int signum)
{
    (void)h;
    (void)signum;
    uv_walk(nr_loop, nr_walk_close_cb, NULL);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: null_relay PORT_FILE UPSTREAM_PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    nr_loop = uv_default_loop();
    uv_ip4_addr("127.0.0.1", atoi(argv[2]), &nr_upstream);
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    uv_tcp_init(nr_loop, &nr_server);
    if (uv_tcp_bind(&nr_server, (const struct sockaddr *)&addr, 0) != 0 ||
        uv_listen((uv_stream_t *)&nr_server, 4096, nr_connection_cb) != 0) {
        fprintf(stderr, "null_relay: cannot listen\n");
        return 1;
    }
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    uv_tcp_getsockname(&nr_server, (struct sockaddr *)&ss, &sl);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", argv[1]);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return 1;
    fprintf(f, "%d\n", ntohs(((struct sockaddr_in *)&ss)->sin_port));
    fclose(f);
    rename(tmp, argv[1]); /* bench.py polls for the file: never let it read half of it */
    uv_signal_init(nr_loop, &nr_sigterm);
    uv_signal_init(nr_loop, &nr_sigint);
    uv_signal_start(&nr_sigterm, nr_signal_cb, SIGTERM);
    uv_signal_start(&nr_sigint, nr_signal_cb, SIGINT);
    uv_run(nr_loop, UV_RUN_DEFAULT);
    return uv_loop_close(nr_loop) == 0 ? 0 : 1;
}
