/* relay: after login, a two-way byte pump between the client's conn and the provider's conn.
 *
 * Nothing is parsed: IMAP literals of any size, IDLE, COMPRESS and POP3 multi-line replies pass
 * as they are, and the only copy is the one conn_write makes into the other side's write queue
 * (one buffer per direction: each conn's bounded input buffer). Backpressure is libuv's rule:
 * when the side being written to has more than its high-water mark queued, reading from the
 * other side stops; CONN_EV_DRAINED (queue below the low-water mark) resumes it. So a slow
 * client holds the provider back through TCP, and memory stays bounded whatever the sizes.
 *
 * Either side closing (or failing) ends the relay: what one side sent before it closed is still
 * forwarded, then both close once their queues are written (TLS close_notify first). The relay
 * lives inside its session; the session's close callbacks run when each conn is gone. */
#ifndef XOAUTHD_RELAY_H
#define XOAUTHD_RELAY_H

#include <stdint.h>

#include "conn.h"

enum relay_side { RELAY_CLIENT = 0, RELAY_SERVER = 1 };

/* why: one line for the log ("client closed", "server: read error ..."). Runs once. */
typedef void (*relay_end_cb)(void *arg, const char *why);

struct relay {
    struct conn *side[2];
    conn_close_cb close_cb[2];
    uint64_t bytes[2]; /* read from side i and queued to the other */
    relay_end_cb end_cb;
    void *arg;
    int ending;
};

/* Takes over both conns (their event_cb and data), forwards what each has buffered already
 * (pipelined commands behind the login, responses behind the tagged OK) and starts reading.
 * client_idle_ms arms the client's idle timer (0: none); the server side has none, the
 * provider has its own. */
void relay_start(struct relay *r, struct conn *client, conn_close_cb client_close,
                 struct conn *server, conn_close_cb server_close, uint64_t client_idle_ms,
                 relay_end_cb end_cb, void *arg);
/* Ends it from outside (shutdown): both sides close once their queues are written. */
void relay_stop(struct relay *r, const char *why);
/* Closes both sides now, dropping queued bytes (shutdown grace period over). */
void relay_abort(struct relay *r);

#endif
