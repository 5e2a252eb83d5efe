/* upstream: what every protocol's upstream client (smtp_upstream, imap_upstream, pop3_upstream)
 * shares, so that the three differ only in their dialogue:
 *   - resolving "host:port" without blocking the loop (uv_getaddrinfo runs on the thread pool);
 *   - the failure classes that the protocol fronts turn into their own temporary-failure replies;
 *   - struct upstream_base: the access token (fetched, kept as a secret, refreshed once when the
 *     server rejects it), resolve + connect + TLS start towards the provider's endpoint, the
 *     XOAUTH2 / OAUTHBEARER response sent as one cleansed write, the end of the login reported
 *     once, and the hold/release guard that keeps the object alive while a callback into the
 *     session frees it. */
#ifndef XOAUTHD_UPSTREAM_H
#define XOAUTHD_UPSTREAM_H

#include <netdb.h>
#include <stdint.h>
#include <uv.h>

#include "conn.h"

struct upstream_resolve;
/* ai is the list of addresses (freed after the callback returns) or NULL with reason set. */
typedef void (*upstream_resolve_cb)(void *arg, const struct addrinfo *ai, const char *reason);

struct upstream_resolve *upstream_resolve_start(uv_loop_t *loop, const char *host, uint16_t port,
                                                upstream_resolve_cb cb, void *arg);
/* cb is not called afterwards. */
void upstream_resolve_cancel(struct upstream_resolve *r);

/* A provider host may publish several addresses (IPv6 and IPv4, several front ends); they are
 * tried one after another, each attempt bounded by UPSTREAM_ATTEMPT_TIMEOUT_MS except the
 * last, which gets what is left of the connect timeout. */
#define UPSTREAM_MAX_ADDRS 8
#define UPSTREAM_ATTEMPT_TIMEOUT_MS 5000u

union upstream_addr {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
};

/* The order of connection attempts (RFC 8305 section 4): getaddrinfo's order (RFC 6724
 * destination address selection) within each family, the families interleaved, starting with
 * the family of the first address. Other families are skipped. Fills at most max entries of
 * out; returns how many. */
size_t upstream_order_addrs(const struct addrinfo *ai, union upstream_addr *out, size_t max);

/* Why an upstream login did not happen; decides the reply and the log line. */
enum upstream_failure {
    UPSTREAM_OK,
    UPSTREAM_FAIL_TOKEN,       /* no access token (endpoint down, needs sign-in, config) */
    UPSTREAM_FAIL_CONNECT,     /* resolve, connect, timeout, connection lost */
    UPSTREAM_FAIL_TLS,         /* handshake or certificate verification */
    UPSTREAM_FAIL_PROTOCOL,    /* unexpected reply, missing STARTTLS or mechanism */
    UPSTREAM_FAIL_AUTH         /* the token was rejected, also after a forced refresh */
};
const char *upstream_failure_name(enum upstream_failure f);

/* reason: one line for the log (never contains a secret). */
typedef void (*upstream_login_cb)(void *arg, enum upstream_failure f, const char *reason);

struct proxy_context;
struct config_account;
struct config_endpoint;
struct token_wait;
struct upstream_base;

/* What a protocol plugs into the base. Every hook runs inside upstream_hold/release. */
struct upstream_ops {
    /* A refreshed token is in b->token after a rejection: authenticate again on b->conn.
     * (The first token makes the base connect by itself.) */
    void (*token_ready)(struct upstream_base *b);
    /* The login ended (b->login_cb is about to run): set the protocol's state. */
    void (*finished)(struct upstream_base *b, enum upstream_failure f);
    /* Connected, and the implicit TLS handshake done when the endpoint wants one: the server
     * speaks first (greeting). */
    void (*connected)(struct upstream_base *b);
    /* The handshake after upstream_starttls() finished: ask for capabilities again. */
    void (*starttls_done)(struct upstream_base *b);
    /* New bytes in b->conn->in. */
    void (*readable)(struct upstream_base *b);
    /* The connection is gone (closed by the server, error, timeout); b->conn is still set. */
    void (*lost)(struct upstream_base *b, const char *why);
    /* The write queue fell below its low-water mark (may be NULL). */
    void (*drained)(struct upstream_base *b);
};

/* Embedded as the FIRST member of each protocol's upstream struct: upstream_release() frees
 * the whole object through it. */
struct upstream_base {
    struct proxy_context *ctx;
    const struct config_account *acct;
    const struct config_endpoint *ep;
    const struct upstream_ops *ops;
    const char *proto; /* "smtp", "imap", "pop3": log lines */
    char sid[32];
    struct conn *conn; /* heap: it outlives us while it closes */
    struct upstream_resolve *resolve;
    union upstream_addr addrs[UPSTREAM_MAX_ADDRS]; /* the resolved addresses, in attempt order */
    size_t n_addrs, next_addr;
    uint64_t connect_deadline; /* uv_now() when the last attempt must have connected */
    int connecting;            /* an attempt is in progress on conn */
    struct token_wait *token_wait;
    char *token;      /* secret */
    int token_forced; /* a token was rejected once already: the next rejection fails */
    uint64_t connect_timeout_ms;
    uint64_t reply_timeout_ms; /* armed once connected */
    int handshaking;  /* a TLS handshake runs: a loss now is a TLS failure */
    upstream_login_cb login_cb;
    void *arg;
    int detached;     /* the owner let go: no callback runs any more */
    int in_callback;
};

/* connect_ms bounds the connection attempts (all addresses together); reply_ms is the timeout
 * once connected. */
void upstream_base_init(struct upstream_base *b, struct proxy_context *ctx,
                        const struct config_account *acct, const struct config_endpoint *ep,
                        const char *proto, const char *sid, const struct upstream_ops *ops,
                        void *arg, uint64_t connect_ms, uint64_t reply_ms);

/* Every entry point (callback, public call) holds the object so that a callback into the
 * session that frees it (upstream_detach) leaves the memory valid until the outermost one
 * returns. */
void upstream_hold(struct upstream_base *b);
void upstream_release(struct upstream_base *b);

/* Starts a login: fails at once when the endpoint is not configured, else fetches the token,
 * resolves and connects; ops->connected follows. */
void upstream_begin_login(struct upstream_base *b, upstream_login_cb cb);
/* After the server rejected the token: asks once more, telling the token manager which token
 * was rejected so that one refresh serves every session that held it (ops->token_ready
 * follows, on the connection that stays open: put the protocol in its "waiting for the token"
 * state first), or, when that was done already, fails the login with UPSTREAM_FAIL_AUTH.
 * why is the server's reply, for the log. */
void upstream_token_rejected(struct upstream_base *b, const char *why);
/* The server agreed to STARTTLS / STLS: drops what it sent in clear and starts the handshake;
 * ops->starttls_done follows. */
void upstream_starttls(struct upstream_base *b);
/* Ends the login once: clears the token, closes the connection on failure, ops->finished,
 * then login_cb (unless detached). */
void upstream_login_done(struct upstream_base *b, enum upstream_failure f, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Ends the login after the connection was lost: a TLS failure during a handshake, a
 * connection failure otherwise. state names where it happened. */
void upstream_lost_during_login(struct upstream_base *b, const char *why, const char *state);

/* "XOAUTH2" or "OAUTHBEARER", from the account. */
const char *upstream_mechanism(const struct upstream_base *b);
/* Writes prefix, the account's SASL response (base64) and CRLF in one write whose bytes are
 * cleansed afterwards. 0, or -1 after the login was failed. */
int upstream_send_sasl(struct upstream_base *b, const char *prefix);
/* Logs a server's error challenge (Gmail's base64 JSON) and returns the answer line the
 * mechanism requires (without CRLF). */
const char *upstream_error_challenge(struct upstream_base *b, const char *b64, size_t len);

void upstream_clear_token(struct upstream_base *b);
/* Closes b->conn and forgets it: now (pending writes dropped), or with flush once its queue
 * is written (a polite QUIT). */
void upstream_close_conn(struct upstream_base *b, int flush);
/* Gives the connection to a new owner (the relay): b forgets it, the caller sets its event_cb
 * and data. */
struct conn *upstream_take_conn(struct upstream_base *b);
/* The owner lets go: cancels the token wait and resolve, clears the token; no callback runs
 * afterwards. The caller decides what happens to b->conn, then calls upstream_destroy(), which
 * frees b now or, inside a callback, when the outermost upstream_release() returns. */
void upstream_detach(struct upstream_base *b);
void upstream_destroy(struct upstream_base *b);
/* Logs a state change of the protocol's machine. */
void upstream_log_state(const struct upstream_base *b, const char *from, const char *to);

#endif
