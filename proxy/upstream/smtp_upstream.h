/* smtp_upstream: xoauthd's SMTP client towards the provider.
 *
 * Login is one asynchronous sequence: access token, resolve, connect, (implicit TLS), greeting,
 * EHLO, (STARTTLS, handshake, EHLO again), AUTH XOAUTH2 or OAUTHBEARER. The command "AUTH
 * XOAUTH2" goes alone and the response follows the 334, because a 1-2 KB response does not fit
 * a 512-octet command line (RFC 5321 4.5.3.1.4). When the server rejects the token — Gmail with
 * a 334 error challenge that must be answered before the final 535, Microsoft with a plain 535 —
 * the token is refreshed once, ignoring the cache, and AUTH is tried again; only then does the
 * login fail. After login the session sends commands and gets whole (multi-line) replies back,
 * or streams message data. */
#ifndef XOAUTHD_SMTP_UPSTREAM_H
#define XOAUTHD_SMTP_UPSTREAM_H

#include <stddef.h>

#include "config.h"
#include "upstream.h"

struct proxy_context;
struct smtp_upstream;

enum smtp_upstream_event {
    SMTP_UPSTREAM_DRAINED, /* write backlog fell below the low-water mark */
    SMTP_UPSTREAM_LOST     /* the connection went away while no reply was awaited */
};

/* reason: one line for the log (never contains a secret). */
typedef upstream_login_cb smtp_upstream_login_cb;
/* code 0: no reply (connection lost or timed out; reply then says why). reply holds every line
 * of the reply with CRLF, as the server sent it. */
typedef void (*smtp_upstream_reply_cb)(void *arg, int code, const char *reply, size_t len);
typedef void (*smtp_upstream_event_cb)(void *arg, enum smtp_upstream_event ev);

struct smtp_upstream *smtp_upstream_new(struct proxy_context *ctx,
                                        const struct config_account *acct, const char *sid,
                                        smtp_upstream_event_cb event_cb, void *arg);
void smtp_upstream_login(struct smtp_upstream *up, smtp_upstream_login_cb cb);
int smtp_upstream_ready(const struct smtp_upstream *up);
/* True when the server advertised PIPELINING (RFC 2920) and the connection takes commands:
 * ready, or waiting for replies to commands that smtp_upstream_command sent. */
int smtp_upstream_can_pipeline(const struct smtp_upstream *up);

/* Sends one command line (CRLF added) and calls cb with the reply. With PIPELINING it may be
 * called again (same cb) before the reply came: cb then runs once per reply, in order; when
 * the connection is lost or the server answers 421, cb runs once only and no more follow. */
void smtp_upstream_command(struct smtp_upstream *up, const char *line, size_t len,
                           smtp_upstream_reply_cb cb);
/* Message data, already dot-stuffed with CRLF line ends. 0 or -1 (connection gone). */
int smtp_upstream_write(struct smtp_upstream *up, const char *buf, size_t len);
/* After the end-of-data marker was written: wait for the reply. */
void smtp_upstream_expect_reply(struct smtp_upstream *up, smtp_upstream_reply_cb cb);
size_t smtp_upstream_backlog(const struct smtp_upstream *up);
/* The connection towards the provider (NULL while there is none), e.g. to cork it around a
 * client read that may produce several pipelined commands (conn_cork). */
struct conn *smtp_upstream_conn(const struct smtp_upstream *up);
/* The client's conn, which the reply callbacks write to: the replies that one read from the
 * provider completes are corked into one write towards it. NULL: none. */
void smtp_upstream_set_client(struct smtp_upstream *up, struct conn *client);
int smtp_upstream_congested(const struct smtp_upstream *up);

/* Ends the upstream side; no callback runs afterwards. polite: QUIT when the connection is
 * idle. Never polite in the middle of DATA: closing without the final dot is what makes the
 * server drop a partial message. */
void smtp_upstream_free(struct smtp_upstream *up, int polite);

/* Parses one reply line "ddd-text" / "ddd text" / "ddd". Returns the code (100-599) and sets
 * *last (0 for a continuation line), or -1 when malformed. Exposed for unit tests. */
int smtp_reply_line_parse(const char *line, size_t len, int *last);

#endif
