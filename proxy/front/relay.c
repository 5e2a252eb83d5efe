/* relay: the post-login byte pump, see relay.h. */
#include "relay.h"

#include <stdio.h>

/* A side that is closing gets this long to write its queue; a peer that stopped reading must
 * not keep the session (and its memory) forever. */
#define RELAY_FLUSH_TIMEOUT_MS (60 * 1000)

static const char *const relay_side_names[] = {"client", "server"};

static void relay_conn_event_cb(struct conn *c, enum conn_event ev);

static void relay_end(struct relay *r, const char *why)
{
    if (r->ending)
        return;
    r->ending = 1;
    for (int i = 0; i < 2; i++) {
        conn_set_timeout(r->side[i], RELAY_FLUSH_TIMEOUT_MS);
        conn_close_after_flush(r->side[i], r->close_cb[i]);
    }
    r->end_cb(r->arg, why);
}

/* Writes bytes that side i sent to the other side (a failed write ends the relay); stops
 * reading side i while the other one is congested. */
static void relay_forward(struct relay *r, int i, const char *buf, size_t len)
{
    struct conn *from = r->side[i], *to = r->side[!i];
    if (conn_write(to, buf, len) != 0) {
        char why[220];
        snprintf(why, sizeof why, "%s: %s", relay_side_names[!i], to->error);
        relay_end(r, why);
        return;
    }
    r->bytes[i] += len;
    /* Bytes moving towards the client are activity too: the client's idle timer is reset
     * only by its input, and a client reading a long FETCH or RETR sends nothing meanwhile.
     * (Found by tests/e2e/test_faults_relay.py.) A client that stops reading still times
     * out: backpressure stops this pump until its queue drains. */
    if (i == RELAY_SERVER)
        conn_touch(to);
    if (to->above_high && !r->ending)
        conn_read_stop(from);
}

/* Moves what side i has buffered to the other side, unless that one is congested. */
static void relay_pump(struct relay *r, int i)
{
    struct conn *from = r->side[i], *to = r->side[!i];
    if (from->in_len == 0 || to->closing)
        return;
    if (to->above_high && !r->ending) {
        conn_read_stop(from); /* resumed by CONN_EV_DRAINED on `to` */
        return;
    }
    /* Consumed either way: after a failed write the relay ends and late input is dropped. */
    size_t n = from->in_len;
    relay_forward(r, i, from->in, n);
    conn_consume(from, n);
}

/* conn's pass_cb: bytes straight from the shared read buffer, while c->in is empty. */
static size_t relay_pass_cb(struct conn *from, const char *buf, size_t len)
{
    struct relay *r = from->data;
    int i = from == r->side[RELAY_CLIENT] ? RELAY_CLIENT : RELAY_SERVER;
    struct conn *to = r->side[!i];
    if (r->ending)
        return len; /* both sides are flushing; late input is dropped (as on CONN_EV_READ) */
    if (to->closing)
        return 0;
    if (to->above_high) {
        conn_read_stop(from); /* resumed by CONN_EV_DRAINED on `to` */
        return 0;
    }
    relay_forward(r, i, buf, len); /* taken either way, as in relay_pump */
    return len;
}

static void relay_conn_event_cb(struct conn *c, enum conn_event ev)
{
    struct relay *r = c->data;
    int i = c == r->side[RELAY_CLIENT] ? RELAY_CLIENT : RELAY_SERVER;
    char why[220];
    if (r->ending) {
        /* Both sides are flushing their queues; a failure or a stuck peer closes at once. */
        if (ev == CONN_EV_ERROR || ev == CONN_EV_TIMEOUT)
            conn_close(c, r->close_cb[i]);
        else if (ev == CONN_EV_READ)
            conn_consume(c, c->in_len);
        return;
    }
    switch (ev) {
    case CONN_EV_READ:
        relay_pump(r, i);
        return;
    case CONN_EV_DRAINED:
        /* Our queue went below the low-water mark: the other side may send again. */
        conn_read_start(r->side[!i]);
        if (!r->ending)
            relay_pump(r, !i);
        return;
    case CONN_EV_EOF:
        /* What it sent before closing still goes through, whatever the backlog. */
        r->ending = 1;
        relay_pump(r, i);
        r->ending = 0;
        snprintf(why, sizeof why, "%s closed the connection", relay_side_names[i]);
        relay_end(r, why);
        return;
    case CONN_EV_ERROR:
        snprintf(why, sizeof why, "%s: %s", relay_side_names[i], c->error);
        conn_close(c, r->close_cb[i]);
        relay_end(r, why);
        return;
    case CONN_EV_TIMEOUT:
        snprintf(why, sizeof why, "%s idle for %llu s", relay_side_names[i],
                 (unsigned long long)(c->timeout_ms / 1000));
        relay_end(r, why);
        return;
    case CONN_EV_CONNECTED:
    case CONN_EV_CONNECT_FAILED:
    case CONN_EV_TLS_DONE:
    case CONN_EV_TLS_FAILED:
        return;
    }
}

void relay_start(struct relay *r, struct conn *client, conn_close_cb client_close,
                 struct conn *server, conn_close_cb server_close, uint64_t client_idle_ms,
                 relay_end_cb end_cb, void *arg)
{
    r->side[RELAY_CLIENT] = client;
    r->side[RELAY_SERVER] = server;
    r->close_cb[RELAY_CLIENT] = client_close;
    r->close_cb[RELAY_SERVER] = server_close;
    r->bytes[0] = r->bytes[1] = 0;
    r->end_cb = end_cb;
    r->arg = arg;
    r->ending = 0;
    for (int i = 0; i < 2; i++) {
        r->side[i]->event_cb = relay_conn_event_cb;
        r->side[i]->pass_cb = relay_pass_cb;
        r->side[i]->data = r;
        /* Stop reading the other side as soon as anything waits for this one: the waiting
         * bytes stay in the kernel instead of being copied into a queue here. */
        r->side[i]->high_water = 0;
        r->side[i]->low_water = 0;
    }
    conn_set_timeout(server, 0);
    conn_set_timeout(client, client_idle_ms);
    relay_pump(r, RELAY_CLIENT);
    relay_pump(r, RELAY_SERVER);
    for (int i = 0; i < 2 && !r->ending; i++) {
        if (!r->side[!i]->above_high)
            conn_read_start(r->side[i]);
    }
}

void relay_stop(struct relay *r, const char *why) { relay_end(r, why); }

void relay_abort(struct relay *r)
{
    r->ending = 1;
    for (int i = 0; i < 2; i++)
        conn_close(r->side[i], r->close_cb[i]);
}
