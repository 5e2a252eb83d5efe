#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netaddr.h"
#include "secmem.h"
#include "tls.h"

#define CONN_IN_MAX_DEFAULT (64 * 1024)
#define CONN_HIGH_WATER (256 * 1024)
#define CONN_LOW_WATER (64 * 1024)
#define CONN_READ_CHUNK (64 * 1024)
/* A peer that takes no byte of a closing conn's last output for this long never will (a client
 * that stopped reading before its goodbye): without a deadline the conn and its descriptor would
 * stay until the process exits. Restarted by every completed write, so slow readers finish. */
#define CONN_FLUSH_DEADLINE_MS (60 * 1000)

/* TCP keepalive on every connection, client side and upstream: a peer that vanished behind a
 * NAT or firewall (which drops idle flows silently, Azure's after 4 minutes by default) is
 * found after idle + count * interval = 2 minutes instead of at the next write or the 30-minute
 * idle timer. RFC 1122 4.2.3.6 makes keepalive opt-in per connection; the probes are a few
 * bytes a minute per idle connection. */
#define CONN_KEEPALIVE_IDLE_S 60
#define CONN_KEEPALIVE_INTVL_S 15
#define CONN_KEEPALIVE_CNT 4

struct conn_write_req {
    uv_write_t req;
    struct conn *conn;
    size_t len;
    char data[];
};

/* libuv invokes read_cb before it asks for another buffer, so one buffer serves all
 * connections: idle connections own no read memory at all. */
static char conn_read_buf[CONN_READ_CHUNK];
/* The same for decrypted bytes (one TLS record at most per SSL_read). */
static char conn_tls_buf[16 * 1024];

/* The cork (conn_cork): small writes to its owner wait here until conn_uncork. Larger writes
 * are not worth a copy; they send what is held, then go out directly as before. */
#define CONN_CORK_SMALL 1024
static char conn_cork_buf[8 * 1024];
static size_t conn_cork_len;
static struct conn *conn_cork_owner;

static void conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void conn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void conn_write_cb(uv_write_t *req, int status);
static void conn_handle_closed_cb(uv_handle_t *h);
static void conn_timer_cb(uv_timer_t *t);
static void conn_connect_cb(uv_connect_t *req, int status);
static int conn_send_raw(struct conn *c, const void *buf, size_t len);
static int conn_send_now(struct conn *c, const void *buf, size_t len);
static int conn_flush_tls(struct conn *c);
static void conn_tls_pump(struct conn *c);
static void conn_update_reading(struct conn *c);

static void conn_emit(struct conn *c, enum conn_event ev)
{
    if (!c->closing)
        c->event_cb(c, ev);
}

static void conn_fail(struct conn *c, enum conn_event ev, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void conn_fail(struct conn *c, enum conn_event ev, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, ap);
    va_end(ap);
    conn_emit(c, ev);
}

int conn_init(struct conn *c, uv_loop_t *loop, conn_event_cb event_cb, void *data)
{
    memset(c, 0, sizeof *c);
    c->loop = loop;
    c->event_cb = event_cb;
    c->data = data;
    c->in_max = CONN_IN_MAX_DEFAULT;
    c->high_water = CONN_HIGH_WATER;
    c->low_water = CONN_LOW_WATER;
    c->flush_deadline_ms = CONN_FLUSH_DEADLINE_MS;
    if (uv_tcp_init(loop, &c->tcp) != 0)
        return -1;
    c->tcp.data = c;
    c->open_handles = 1;
    if (uv_timer_init(loop, &c->timer) != 0) {
        /* The tcp handle exists and must be closed by the owner through conn_close. */
        return -1;
    }
    c->timer.data = c;
    c->open_handles = 2;
    snprintf(c->peer, sizeof c->peer, "?");
    return 0;
}

/* Nagle off (our writes are whole replies), keepalive on. Best effort: a socket that refuses
 * an option still works. */
static void conn_tcp_options(struct conn *c)
{
    uv_os_fd_t fd;
    int intvl = CONN_KEEPALIVE_INTVL_S, cnt = CONN_KEEPALIVE_CNT;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_tcp_keepalive(&c->tcp, 1, CONN_KEEPALIVE_IDLE_S);
    /* libuv sets only the idle time; the kernel's defaults for the rest (75 s, 9 probes)
     * would take 11 more minutes. */
    if (uv_fileno((const uv_handle_t *)&c->tcp, &fd) == 0) {
        (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
        (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    }
}

void conn_addr_name(const struct sockaddr_storage *ss, char *out, size_t outsz)
{
    if (ss->ss_family == AF_INET)
        uv_ip4_name((const struct sockaddr_in *)ss, out, outsz);
    else if (ss->ss_family == AF_INET6)
        uv_ip6_name((const struct sockaddr_in6 *)ss, out, outsz);
    else
        snprintf(out, outsz, "?");
}

static void conn_describe_peer(struct conn *c)
{
    struct sockaddr_storage ss;
    if (conn_peer_sockaddr(c, &ss) == 0)
        conn_addr_name(&ss, c->peer, sizeof c->peer);
}

int conn_accept_fd(struct conn *c, uv_os_sock_t fd, const struct sockaddr_storage *proxied_peer)
{
    if (uv_tcp_open(&c->tcp, fd) != 0)
        return -1;
    if (proxied_peer != NULL) {
        c->proxied_peer = *proxied_peer;
        c->has_proxied_peer = 1;
    }
    conn_tcp_options(c);
    conn_describe_peer(c);
    return 0;
}

int conn_connect(struct conn *c, const struct sockaddr *addr)
{
    char host[64] = "?";
    if (addr->sa_family == AF_INET)
        uv_ip4_name((const struct sockaddr_in *)addr, host, sizeof host);
    else if (addr->sa_family == AF_INET6)
        uv_ip6_name((const struct sockaddr_in6 *)addr, host, sizeof host);
    snprintf(c->peer, sizeof c->peer, "%s", host);
    c->connect_req.data = c;
    int r = uv_tcp_connect(&c->connect_req, &c->tcp, addr, conn_connect_cb);
    if (r != 0) {
        snprintf(c->error, sizeof c->error, "connect: %s", uv_strerror(r));
        return -1;
    }
    c->connecting = 1;
    return 0;
}

static void conn_connect_cb(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    c->connecting = 0;
    if (c->closing)
        return;
    if (status != 0) {
        conn_fail(c, CONN_EV_CONNECT_FAILED, "connect to %s: %s", c->peer, uv_strerror(status));
        return;
    }
    conn_tcp_options(c);
    conn_emit(c, CONN_EV_CONNECTED);
}

void conn_read_start(struct conn *c)
{
    c->reading = 1;
    conn_update_reading(c);
    /* Decrypted bytes may be waiting inside OpenSSL from before the buffer filled up. */
    if (c->ssl != NULL && !c->closing && c->in_len < c->in_max &&
        (SSL_pending(c->ssl) > 0 || BIO_ctrl_pending(c->net_in) > 0))
        conn_tls_pump(c);
}

void conn_read_stop(struct conn *c)
{
    c->reading = 0;
    conn_update_reading(c);
}

static void conn_update_reading(struct conn *c)
{
    if (c->closing || c->connecting)
        return;
    int want = c->reading && c->in_len < c->in_max;
    if (want && !c->read_active) {
        int r = uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_read_cb);
        if (r == 0) {
            c->read_active = 1;
        } else if (!c->write_failed) {
            /* Nothing would ever arrive and the owner would wait for its idle timer: tell it
             * now, from the loop (this runs inside the owner's own calls), as conn_uncork
             * does with a failed write. */
            snprintf(c->error, sizeof c->error, "read from %s: %s", c->peer, uv_strerror(r));
            c->write_failed = 1;
            uv_timer_start(&c->timer, conn_timer_cb, 0, 0);
        }
    } else if (!want && c->read_active) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->read_active = 0;
    }
}

static void conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    buf->base = conn_read_buf;
    buf->len = sizeof conn_read_buf;
}

/* c->in may hold a password line: it grows without realloc's left-behind copy (secmem.h). */
static int conn_in_reserve(struct conn *c, size_t extra)
{
    return secmem_grow(&c->in, &c->in_cap, c->in_len, c->in_len + extra, 1024);
}

/* Moves decrypted bytes from OpenSSL into c->in, finishing a handshake on the way. */
static void conn_tls_pump(struct conn *c)
{
    if (c->tls_handshaking) {
        ERR_clear_error();
        int r = SSL_do_handshake(c->ssl);
        conn_flush_tls(c);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return;
            char why[200];
            long vr = SSL_get_verify_result(c->ssl);
            if (vr != X509_V_OK)
                snprintf(why, sizeof why, "certificate verification failed: %s",
                         X509_verify_cert_error_string(vr));
            else
                tls_last_error(why, sizeof why, "handshake failed");
            conn_fail(c, CONN_EV_TLS_FAILED, "TLS with %s: %s", c->peer, why);
            return;
        }
        c->tls_handshaking = 0;
        conn_emit(c, CONN_EV_TLS_DONE);
        if (c->closing)
            return;
    }
    size_t before = c->in_len;
    while (c->in_len < c->in_max) {
        /* Decrypt into the shared buffer and keep only what came: reserving a record's worth
         * in c->in would leave every idle TLS connection holding 16-32 KB of it. */
        size_t room = sizeof conn_tls_buf;
        if (room > c->in_max - c->in_len)
            room = c->in_max - c->in_len;
        ERR_clear_error();
        int n = SSL_read(c->ssl, conn_tls_buf, (int)room);
        if (n > 0) {
            size_t took = 0;
            if (c->pass_cb != NULL && c->in_len == 0) {
                took = c->pass_cb(c, conn_tls_buf, (size_t)n);
                if (c->closing) {
                    OPENSSL_cleanse(conn_tls_buf, (size_t)n);
                    return;
                }
            }
            int r = conn_in_reserve(c, (size_t)n - took);
            if (r == 0 && took < (size_t)n) {
                memcpy(c->in + c->in_len, conn_tls_buf + took, (size_t)n - took);
                c->in_len += (size_t)n - took;
            }
            OPENSSL_cleanse(conn_tls_buf, (size_t)n); /* may be a password */
            if (r != 0) {
                conn_fail(c, CONN_EV_ERROR, "out of memory");
                return;
            }
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        conn_flush_tls(c);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        if (e == SSL_ERROR_ZERO_RETURN) {
            if (c->in_len > before)
                conn_emit(c, CONN_EV_READ);
            conn_emit(c, CONN_EV_EOF);
            return;
        }
        char why[200];
        conn_fail(c, CONN_EV_ERROR, "TLS with %s: %s", c->peer,
                  tls_last_error(why, sizeof why, "read failed"));
        return;
    }
    conn_update_reading(c);
    if (c->in_len > before) {
        int full = c->in_len >= c->in_max;
        conn_emit(c, CONN_EV_READ);
        /* The buffer filled up while records still wait inside OpenSSL, and the consumer made
         * room: decrypt them now. The peer may send nothing more (a FETCH's last bytes, its
         * tagged OK) to wake this connection, and the session would hang. */
        if (full && !c->closing && c->reading && c->in_len < c->in_max &&
            (SSL_pending(c->ssl) > 0 || BIO_ctrl_pending(c->net_in) > 0))
            conn_tls_pump(c);
    }
}

static void conn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    if (c->closing)
        return;
    if (nread == 0)
        return;
    if (nread < 0) {
        uv_read_stop(s);
        c->read_active = 0;
        if (nread == UV_EOF) {
            conn_emit(c, CONN_EV_EOF);
        } else {
            conn_fail(c, CONN_EV_ERROR, "read from %s: %s", c->peer, uv_strerror((int)nread));
        }
        return;
    }
    conn_touch(c);
    if (c->ssl != NULL) {
        if (BIO_write(c->net_in, buf->base, (int)nread) != (int)nread) {
            conn_fail(c, CONN_EV_ERROR, "out of memory");
            return;
        }
        conn_tls_pump(c);
        return;
    }
    const char *p = buf->base;
    size_t n = (size_t)nread;
    if (c->pass_cb != NULL && c->in_len == 0) {
        size_t took = c->pass_cb(c, p, n);
        if (c->closing)
            return;
        p += took;
        n -= took;
        if (n == 0) {
            conn_update_reading(c);
            return;
        }
    }
    int r = conn_in_reserve(c, n);
    if (r == 0) {
        memcpy(c->in + c->in_len, p, n);
        c->in_len += n;
    }
    /* Plaintext from a client may be a password (AUTH, LOGIN, PASS): no copy stays in the
     * shared buffer until the next read overwrites it. */
    OPENSSL_cleanse((char *)buf->base, (size_t)nread);
    if (r != 0) {
        conn_fail(c, CONN_EV_ERROR, "out of memory");
        return;
    }
    conn_update_reading(c);
    conn_emit(c, CONN_EV_READ);
}

/* Sends what the cork holds for c (the cork stays c's). */
static int conn_cork_flush(struct conn *c)
{
    size_t n = conn_cork_len;
    if (n == 0)
        return 0;
    conn_cork_len = 0;
    int r = conn_send_now(c, conn_cork_buf, n);
    OPENSSL_cleanse(conn_cork_buf, n); /* may hold a SASL response with a token */
    return r;
}

int conn_cork(struct conn *c)
{
    if (conn_cork_owner != NULL || c->closing || c->close_after_flush)
        return 0;
    conn_cork_owner = c;
    conn_cork_len = 0;
    return 1;
}

void conn_uncork(struct conn *c)
{
    if (conn_cork_owner != c)
        return; /* closed meanwhile (the held bytes were dropped or sent) */
    int r = conn_cork_flush(c);
    conn_cork_owner = NULL;
    if (r != 0 && !c->closing) {
        /* The writer was told "sent" long ago; tell the owner now, but from the loop and not
         * from inside whatever callback is uncorking. */
        if (c->error[0] == '\0')
            snprintf(c->error, sizeof c->error, "write to %s: out of memory", c->peer);
        c->write_failed = 1;
        uv_timer_start(&c->timer, conn_timer_cb, 0, 0);
    }
}

/* Closing without a flush: what the cork holds for c is dropped with the rest of its queue. */
static void conn_cork_drop(struct conn *c)
{
    if (conn_cork_owner != c)
        return;
    OPENSSL_cleanse(conn_cork_buf, conn_cork_len);
    conn_cork_len = 0;
    conn_cork_owner = NULL;
}

/* A write failed. An owner that asked for conn_close_after_flush is done with c and ignores
 * its events (sessions, detached upstreams), and the flush it waits for can no longer end:
 * close here, or c (and its descriptor) would stay open until the process exits. */
static void conn_flush_failed(struct conn *c)
{
    if (c->close_after_flush && !c->closing)
        conn_close(c, c->close_cb);
}

static int conn_send_raw(struct conn *c, const void *buf, size_t len)
{
    if (c->closing)
        return -1;
    if (c == conn_cork_owner) {
        if (len <= CONN_CORK_SMALL && conn_cork_len + len <= sizeof conn_cork_buf) {
            memcpy(conn_cork_buf + conn_cork_len, buf, len);
            conn_cork_len += len;
            return 0;
        }
        if (conn_cork_flush(c) != 0)
            return -1;
    }
    return conn_send_now(c, buf, len);
}

static int conn_send_now(struct conn *c, const void *buf, size_t len)
{
    /* Most writes fit the socket buffer at once: send them straight from the caller's buffer
     * (no copy, no allocation, nothing to cleanse). libuv's uv_try_write refuses (UV_EAGAIN)
     * while earlier writes are queued or a connect is pending, so order is kept; whatever
     * the kernel did not take is queued below. */
    uv_buf_t direct = uv_buf_init((char *)buf, (unsigned)len);
    int sent = uv_try_write((uv_stream_t *)&c->tcp, &direct, 1);
    if (sent > 0) {
        buf = (const char *)buf + sent;
        len -= (size_t)sent;
        if (len == 0)
            return 0;
    }
    struct conn_write_req *w = malloc(sizeof *w + len);
    if (w == NULL)
        return -1;
    w->conn = c;
    w->len = len;
    memcpy(w->data, buf, len);
    w->req.data = w;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
    int r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, conn_write_cb);
    if (r != 0) {
        free(w);
        snprintf(c->error, sizeof c->error, "write to %s: %s", c->peer, uv_strerror(r));
        return -1;
    }
    c->out_pending += len;
    if (c->out_pending > c->high_water)
        c->above_high = 1;
    return 0;
}

static void conn_write_cb(uv_write_t *req, int status)
{
    struct conn_write_req *w = req->data;
    struct conn *c = w->conn;
    c->out_pending -= w->len;
    OPENSSL_cleanse(w->data, w->len); /* may hold a SASL response with a token */
    free(w);
    if (c->closing)
        return;
    if (status != 0) {
        conn_fail(c, CONN_EV_ERROR, "write to %s: %s", c->peer, uv_strerror(status));
        conn_flush_failed(c);
        return;
    }
    if (c->close_after_flush) {
        if (c->out_pending == 0)
            conn_close(c, c->close_cb);
        else
            uv_timer_start(&c->timer, conn_timer_cb, c->flush_deadline_ms, 0);
        return;
    }
    if (c->above_high && c->out_pending <= c->low_water) {
        c->above_high = 0;
        conn_emit(c, CONN_EV_DRAINED);
    }
}

static int conn_flush_tls(struct conn *c)
{
    char buf[16 * 1024];
    int n;
    while ((n = BIO_read(c->net_out, buf, sizeof buf)) > 0) {
        if (conn_send_raw(c, buf, (size_t)n) != 0)
            return -1;
    }
    return 0;
}

int conn_write(struct conn *c, const void *buf, size_t len)
{
    if (c->closing || c->close_after_flush)
        return -1;
    if (len == 0)
        return 0;
    if (len > CONN_WRITE_MAX) {
        /* SSL_write takes an int and uv_buf_t an unsigned int: a longer length would be cut
         * to its low bits, sending part of the buffer, or reading past it. Nothing writes that
         * much at once (the relay moves 64 KiB reads); refuse rather than split. */
        snprintf(c->error, sizeof c->error, "write to %s: %zu bytes at once is too much",
                 c->peer, len);
        return -1;
    }
    if (c->ssl == NULL)
        return conn_send_raw(c, buf, len);
    ERR_clear_error();
    int n = SSL_write(c->ssl, buf, (int)len);
    if (n <= 0 || (size_t)n != len) {
        char why[200];
        snprintf(c->error, sizeof c->error, "TLS write to %s: %s", c->peer,
                 tls_last_error(why, sizeof why, "failed"));
        return -1;
    }
    return conn_flush_tls(c);
}

int conn_writef(struct conn *c, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n >= sizeof buf)
        n = sizeof buf - 1;
    return conn_write(c, buf, (size_t)n);
}

static int conn_host_is_ip(const char *host, unsigned char *bin)
{
    return inet_pton(AF_INET, host, bin) == 1 || inet_pton(AF_INET6, host, bin) == 1;
}

/* Remembers the first fatal alert, sent or received: the error queue says only that the
 * handshake failed, not which side refused it (a client that does not trust our certificate
 * sends bad_certificate or unknown_ca, RFC 8446 section 6.2). */
static void conn_tls_info_cb(const SSL *ssl, int where, int ret)
{
    struct conn *c = SSL_get_app_data(ssl);
    if (c == NULL || c->tls_alert != 0 || (where & SSL_CB_ALERT) == 0 ||
        (ret >> 8) != SSL3_AL_FATAL)
        return;
    c->tls_alert = ret & 0xff;
    c->tls_alert_from_peer = (where & SSL_CB_READ) != 0;
}

int conn_tls_start(struct conn *c, SSL_CTX *ctx, int is_client, const char *hostname)
{
    c->ssl = SSL_new(ctx);
    if (c->ssl == NULL)
        goto fail;
    SSL_set_app_data(c->ssl, c);
    SSL_set_info_callback(c->ssl, conn_tls_info_cb);
    c->net_in = BIO_new(BIO_s_mem());
    c->net_out = BIO_new(BIO_s_mem());
    if (c->net_in == NULL || c->net_out == NULL) {
        BIO_free(c->net_in);
        BIO_free(c->net_out);
        c->net_in = c->net_out = NULL;
        goto fail;
    }
    /* An empty memory BIO means "try again later", not end of file. */
    BIO_set_mem_eof_return(c->net_in, -1);
    BIO_set_mem_eof_return(c->net_out, -1);
    SSL_set_bio(c->ssl, c->net_in, c->net_out);
    c->tls_handshaking = 1;
    if (is_client) {
        unsigned char bin[16];
        SSL_set_connect_state(c->ssl);
        if (hostname != NULL && conn_host_is_ip(hostname, bin)) {
            X509_VERIFY_PARAM *p = SSL_get0_param(c->ssl);
            if (X509_VERIFY_PARAM_set1_ip_asc(p, hostname) != 1)
                goto fail;
        } else if (hostname != NULL) {
            if (SSL_set_tlsext_host_name(c->ssl, hostname) != 1 ||
                SSL_set1_host(c->ssl, hostname) != 1)
                goto fail;
        }
        conn_tls_pump(c); /* sends ClientHello */
    } else {
        SSL_set_accept_state(c->ssl);
    }
    return 0;
fail:
    snprintf(c->error, sizeof c->error, "cannot set up TLS");
    return -1;
}

int conn_is_tls(const struct conn *c) { return c->ssl != NULL && !c->tls_handshaking; }

/* Consumed input is cleansed where it lay: a login line would otherwise stay in c->in for the
 * life of the connection (a relay after login passes bytes by without writing c->in again). */
void conn_consume(struct conn *c, size_t n)
{
    if (n >= c->in_len) {
        if (c->in_len > 0)
            OPENSSL_cleanse(c->in, c->in_len);
        c->in_len = 0;
    } else {
        memmove(c->in, c->in + n, c->in_len - n);
        OPENSSL_cleanse(c->in + c->in_len - n, n);
        c->in_len -= n;
    }
    conn_update_reading(c);
}

void conn_discard_input(struct conn *c)
{
    if (c->in_len > 0)
        OPENSSL_cleanse(c->in, c->in_len);
    c->in_len = 0;
    conn_update_reading(c);
}

static void conn_timer_cb(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (c->close_after_flush && !c->write_failed) {
        conn_close(c, c->close_cb); /* the flush deadline: the owner ignores events by now */
        return;
    }
    conn_emit(c, c->write_failed ? CONN_EV_ERROR : CONN_EV_TIMEOUT);
    if (c->write_failed)
        conn_flush_failed(c);
}

void conn_set_timeout(struct conn *c, uint64_t ms)
{
    c->timeout_ms = ms;
    if (c->closing || c->write_failed || c->close_after_flush)
        return; /* the timer carries a write error (conn_uncork) or the flush deadline */
    if (ms == 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, conn_timer_cb, ms, 0);
}

void conn_touch(struct conn *c)
{
    if (c->timeout_ms != 0 && !c->closing && !c->write_failed && !c->close_after_flush)
        uv_timer_start(&c->timer, conn_timer_cb, c->timeout_ms, 0);
}

static void conn_handle_closed_cb(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->open_handles > 0)
        return;
    if (c->ssl != NULL)
        SSL_free(c->ssl); /* frees both BIOs */
    c->ssl = NULL;
    secmem_free(c->in, c->in_cap);
    c->in = NULL;
    c->in_cap = 0;
    if (c->close_cb != NULL)
        c->close_cb(c);
}

void conn_close(struct conn *c, conn_close_cb close_cb)
{
    if (c->closing)
        return;
    conn_cork_drop(c);
    c->closing = 1;
    c->close_cb = close_cb;
    if (c->open_handles == 0) {
        /* conn_init failed before any handle existed. */
        if (close_cb != NULL)
            close_cb(c);
        return;
    }
    int handles = c->open_handles;
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed_cb);
    if (handles == 2)
        uv_close((uv_handle_t *)&c->timer, conn_handle_closed_cb);
}

void conn_close_after_flush(struct conn *c, conn_close_cb close_cb)
{
    if (c->closing)
        return;
    conn_uncork(c); /* held bytes go before the close_notify, and count as queued */
    if (c->closing)
        return;
    if (c->ssl != NULL && !c->tls_handshaking) {
        SSL_shutdown(c->ssl);
        conn_flush_tls(c);
    }
    if (c->out_pending == 0) {
        conn_close(c, close_cb);
        return;
    }
    c->close_after_flush = 1;
    c->close_cb = close_cb;
    conn_read_stop(c);
    if (!c->write_failed)
        uv_timer_start(&c->timer, conn_timer_cb, c->flush_deadline_ms, 0);
}

int conn_peer_sockaddr(const struct conn *c, struct sockaddr_storage *ss)
{
    int len = sizeof *ss;
    if (c->has_proxied_peer) {
        *ss = c->proxied_peer;
        return 0;
    }
    memset(ss, 0, sizeof *ss);
    return uv_tcp_getpeername(&c->tcp, (struct sockaddr *)ss, &len) == 0 ? 0 : -1;
}

int conn_peer_is_loopback(const struct conn *c)
{
    struct sockaddr_storage ss;
    return conn_peer_sockaddr(c, &ss) == 0 && netaddr_is_loopback(&ss);
}

int conn_local_is_loopback(const struct conn *c)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    memset(&ss, 0, sizeof ss);
    if (uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    return netaddr_is_loopback(&ss);
}
