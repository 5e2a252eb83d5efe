/* relay: after login, a two-way byte pump between the client's conn and the provider's conn.
 *
 * Nothing is parsed: IMAP literals of any size, IDLE, COMPRESS and POP3 multi-line replies pass
 * as they are. Bytes go from the shared read (or decrypt) buffer straight into the other
 * socket (conn's pass_cb); only what that socket did not take is copied, into its write queue.
 * Backpressure: while anything is queued towards a side, reading from the other side stops
 * (the relay sets both high- and low-water marks to 0); CONN_EV_DRAINED (queue empty) resumes
 * it, and bytes that arrive meanwhile wait in the reading conn's bounded input buffer. So a
 * slow client holds the provider back through TCP, and memory stays bounded whatever the
 * sizes.
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
