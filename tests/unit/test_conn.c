/* Unit tests for conn.c over a socketpair: the cork (held bytes leave at conn_uncork, go
 * before a close_after_flush, are dropped by conn_close) and a conn_close_after_flush whose
 * queued bytes can no longer be written (the peer went away): it must close by itself, since
 * an owner that asked for the close ignores the conn's events from then on. Also the length
 * guard of conn_write. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "check.h"
#include "conn.h"

static int closed;
static int guard_fired;

/* Like a session that has called session_close: nothing more to do with its conn. */
static void ignore_event_cb(struct conn *c, enum conn_event ev)
{
    (void)c;
    (void)ev;
}

static void closed_cb(struct conn *c)
{
    (void)c;
    closed++;
}

static void guard_cb(uv_timer_t *t)
{
    struct conn *c = t->data;
    guard_fired = 1;
    conn_close(c, closed_cb); /* so that the loop ends */
}

static int open_pair(uv_loop_t *loop, struct conn *c, int *peer)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return -1;
    if (conn_init(c, loop, ignore_event_cb, NULL) != 0 || conn_accept_fd(c, sv[0], NULL) != 0) {
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    *peer = sv[1];
    return 0;
}

/* What the peer can read now, without waiting. */
static ssize_t peer_read(int peer, char *buf, size_t len)
{
    ssize_t n = recv(peer, buf, len, MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : n;
}

static void test_cork(void)
{
    uv_loop_t loop;
    struct conn c;
    int peer = -1;
    char buf[64];
    uv_loop_init(&loop);
    CHECK(open_pair(&loop, &c, &peer) == 0);
    if (peer < 0)
        return;

    CHECK(conn_cork(&c) == 1);
    CHECK(conn_write(&c, "250 a\r\n", 7) == 0);
    CHECK(conn_write(&c, "250 b\r\n", 7) == 0);
    CHECK(peer_read(peer, buf, sizeof buf) == 0); /* held */
    conn_uncork(&c);
    ssize_t n = peer_read(peer, buf, sizeof buf);
    CHECK(n == 14 && memcmp(buf, "250 a\r\n250 b\r\n", 14) == 0);

    /* Held bytes go before the close of conn_close_after_flush. */
    closed = 0;
    CHECK(conn_cork(&c) == 1);
    CHECK(conn_write(&c, "221 bye\r\n", 9) == 0);
    conn_close_after_flush(&c, closed_cb);
    n = peer_read(peer, buf, sizeof buf);
    CHECK(n == 9 && memcmp(buf, "221 bye\r\n", 9) == 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(closed == 1);
    close(peer);

    /* conn_close drops them, and the cork is free for another conn. */
    CHECK(open_pair(&loop, &c, &peer) == 0);
    closed = 0;
    CHECK(conn_cork(&c) == 1);
    CHECK(conn_write(&c, "dropped\r\n", 9) == 0);
    conn_close(&c, closed_cb);
    conn_uncork(&c); /* a no-op now */
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(closed == 1);
    CHECK(peer_read(peer, buf, sizeof buf) == 0); /* EOF, nothing before it */
    close(peer);

    CHECK(uv_loop_close(&loop) == 0);
}

/* Queues more than the socket buffers hold (the rest waits in the write queue), then asks for
 * the close; flush_deadline_ms 0 keeps conn's default. Returns the peer's descriptor, or -1. */
static int start_close_after_flush(uv_loop_t *loop, struct conn *c, uint64_t flush_deadline_ms)
{
    int peer = -1;
    CHECK(open_pair(loop, c, &peer) == 0);
    if (peer < 0)
        return -1;
    size_t len = 8u << 20;
    char *big = malloc(len);
    CHECK(big != NULL);
    if (big == NULL)
        return -1;
    memset(big, 'x', len);
    CHECK(conn_write(c, big, len) == 0);
    free(big);
    CHECK(c->out_pending > 0);
    if (flush_deadline_ms != 0)
        c->flush_deadline_ms = flush_deadline_ms;
    closed = 0;
    guard_fired = 0;
    conn_close_after_flush(c, closed_cb);
    CHECK(closed == 0);
    return peer;
}

/* Runs the loop until c closed by itself; a guard closes it after guard_ms if it does not. */
static void expect_closes_by_itself(uv_loop_t *loop, struct conn *c, uint64_t guard_ms)
{
    uv_timer_t guard;
    uv_timer_init(loop, &guard);
    guard.data = c;
    uv_timer_start(&guard, guard_cb, guard_ms, 0);
    while (closed == 0 && !guard_fired)
        uv_run(loop, UV_RUN_ONCE);
    CHECK(closed == 1);
    CHECK(!guard_fired); /* closed by itself, not by the guard */
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(loop) == 0);
}

static void test_close_after_flush_peer_gone(void)
{
    uv_loop_t loop;
    struct conn c;
    uv_loop_init(&loop);
    int peer = start_close_after_flush(&loop, &c, 0);
    if (peer < 0)
        return;
    close(peer); /* the queued bytes can no longer be written */
    expect_closes_by_itself(&loop, &c, 2000);
}

/* A peer that stays connected and never reads (a client that stopped reading before its
 * goodbye): the flush deadline closes the conn. */
static void test_close_after_flush_peer_never_reads(void)
{
    uv_loop_t loop;
    struct conn c;
    uv_loop_init(&loop);
    int peer = start_close_after_flush(&loop, &c, 200);
    if (peer < 0)
        return;
    expect_closes_by_itself(&loop, &c, 3000);
    close(peer);
}

/* A length beyond what SSL_write (int) and uv_buf_t (unsigned int) take is refused whole:
 * cast down, it would send a few bytes and then copy gigabytes from past the buffer. The
 * buffer is small on purpose: nothing may read it beyond its first bytes. */
static void test_write_length_guard(void)
{
    uv_loop_t loop;
    struct conn c;
    int peer = -1;
    char buf[64] = "250 ok\r\n";
    uv_loop_init(&loop);
    CHECK(open_pair(&loop, &c, &peer) == 0);
    if (peer < 0)
        return;
    CHECK(conn_write(&c, buf, (size_t)UINT_MAX + 2) == -1);
    CHECK(conn_write(&c, buf, CONN_WRITE_MAX + 1) == -1);
    CHECK(strstr(c.error, "too much") != NULL);
    CHECK(c.out_pending == 0);
    CHECK(peer_read(peer, buf, sizeof buf) == 0); /* nothing went out */
    CHECK(conn_write(&c, "250 ok\r\n", 8) == 0); /* the conn still works */
    CHECK(peer_read(peer, buf, sizeof buf) == 8);
    closed = 0;
    conn_close(&c, closed_cb);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(closed == 1);
    close(peer);
    CHECK(uv_loop_close(&loop) == 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as xoauthd does: a write to a gone peer is EPIPE */
    test_write_length_guard();
    test_cork();
    test_close_after_flush_peer_gone();
    test_close_after_flush_peer_never_reads();
    return CHECK_DONE();
}
