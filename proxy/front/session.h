/* session: what the SMTP, IMAP and POP3 fronts share, so that each protocol file holds only its
 * dialogue and its state machine.
 *
 *   - accepting: the client conn, the listener's connection limit, the session id, the entry in
 *     the server's session list (for shutdown) and the counting of open handles, so that the
 *     memory goes only when the last handle's close callback ran (libuv's rule);
 *   - the plain-text rule (allow_plaintext_auth) and, for SMTP, the allowlisted networks whose
 *     clients need no login (allow_networks);
 *   - the local password check: the slow hash on the thread pool, the dummy hash for unknown
 *     users so that timing does not tell which names exist, the lockout (authlimit.h), and a
 *     1 s delay from the start of the request before a failure is reported, which slows
 *     guessing; a locked login skips the hash and answers after the same delay; a verified
 *     password unlocks the account's token store;
 *   - after an IMAP or POP3 upstream login, the relay: the provider's conn joins the session and
 *     both directions become a byte pump (relay.h). SMTP never relays: it answers command by
 *     command (smtp_session.c).
 *
 * A protocol embeds struct session as the FIRST member of its own struct (the server's list
 * and the final free() go through it). */
#ifndef XOAUTHD_SESSION_H
#define XOAUTHD_SESSION_H

#include <stdint.h>
#include <uv.h>

#include "accept_table.h"
#include "admission.h"
#include "conn.h"
#include "proxy_context.h"
#include "relay.h"
#include "sasl.h"
#include "session_log.h"
#include "upstream.h"

struct config;
struct config_account;
struct localauth_req;
struct session;

struct session_ops {
    const char *proto;            /* "smtp", "imap", "pop3": logs */
    /* Put after the event name in log lines: " protocol=imap". SMTP's lines were there before
     * the other fronts and carry none ("") — log filters (contrib/fail2ban) match both. */
    const char *log_proto;
    enum stats_proto stats_proto;
    const char *busy_line;        /* sent when the listener is full (not on implicit TLS) */
    const char *timeout_line;     /* sent when the client was idle too long */
    const char *shutdown_line;    /* sent at shutdown before the relay started */
    /* Consume the client's buffered input (runs inside session_process's re-entrancy guard). */
    void (*input)(struct session *s);
    void (*greeting)(struct session *s);
    /* A handshake (implicit TLS or STARTTLS) finished: back to reading commands. */
    void (*tls_ready)(struct session *s);
    /* The session closes: drop the upstream login in progress, cleanse secrets. */
    void (*closing)(struct session *s);

    /* Optional (SMTP's; NULL in IMAP and POP3). */
    /* Writes the refusal when the listener is full, instead of busy_line. */
    void (*busy)(struct session *s);
    /* Sees a client event first; returns 1 when it handled it (the shared handling is
     * skipped), 0 to let it run. */
    int (*client_event)(struct session *s, enum conn_event ev);
    /* Shutdown requested (not yet closing, not relaying), instead of shutdown_line and close:
     * SMTP lets a transaction in flight finish. */
    void (*shutdown)(struct session *s);
    /* The shutdown grace period is over: the session closes without a word after this. */
    void (*aborting)(struct session *s);
};

/* ok = 1: s->acct is the account. ok = 0: the failure was logged and the delay is over.
 * ok = -1: too many password checks in flight, nothing was checked: the client gets its
 * protocol's temporary failure (SMTP 454 4.7.0, IMAP NO [UNAVAILABLE], POP3 -ERR [SYS/TEMP]),
 * also after the delay. */
typedef void (*session_auth_cb)(struct session *s, int ok);

struct session {
    struct session_link link; /* first: the server's list points here */
    struct proxy_context *ctx;
    const struct listen_point *lp; /* the listener that accepted it */
    struct admission adm;     /* its place there, given back when the session is gone */
    const struct session_ops *ops;
    struct conn conn;         /* the client */
    struct relay relay;       /* after login */
    uv_timer_t delay_timer;
    int open_handles;
    int closing;
    int relaying;
    int processing, process_again;
    char sid[32];
    struct session_log slog;  /* the summary line at close (session_log.h) */
    /* Held (config_hold) from accept to the last close callback: the configuration in use
     * then, and through it every later one, which s->acct and the listener may point into. */
    struct config *cfg;

    const struct config_account *acct; /* after a successful local login */
    const struct config_account *auth_candidate;
    struct localauth_req *auth_req;
    session_auth_cb auth_cb;
    struct sasl_server sasl;  /* an AUTH / AUTHENTICATE exchange in progress (sasl.h) */
    uint64_t auth_start_ms;   /* the failure delay counts from here */
    int auth_exempt;          /* the peer is in auth_lockout_exempt: no lockout, no counting */
    int auth_counted;         /* the check in flight counts in authlimit (check_begin) */
    int auth_busy;            /* the check was refused for load: the callback gets -1 */
    char login_user[SASL_MAX_FIELD + 1];
    char password[SASL_MAX_FIELD + 1]; /* secret: only while the check runs (token_unlock) */
};

/* Makes s (zeroed, allocated by the protocol with malloc: it is freed with free()) the session
 * of fd, with the arguments of session_accept_fn (accept_table.h), then greets the client
 * (after the handshake on implicit TLS) and reads with idle_ms as the autologout timer.
 * Returns 0 (also when the listener refused the connection: the client got busy_line and the
 * session closes), or -1 on failure (s is freed or will be by its close callbacks; fd is
 * closed and the place given back either way). The protocol's own fields must be ready before
 * the call. */
int session_accept(struct session *s, const struct listen_point *lp, uv_os_sock_t fd,
                   const struct sockaddr_storage *peer, const struct admission *adm,
                   const struct session_ops *ops, uint64_t idle_ms);
/* What a protocol's accept function returns when it could not even allocate its session:
 * closes fd and gives the place back (session_accept_fn's rule). -1. */
int session_accept_failed(uv_os_sock_t fd, const struct admission *adm);
/* Writes one line (CRLF added) to the client. */
void session_send(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Runs ops->input until it stops asking for more; answers that arrive synchronously (a cached
 * password or token) turn re-entry into another turn of the loop. */
void session_process(struct session *s);
/* STARTTLS / STLS accepted (the OK was sent): drops what the client sent behind it in clear
 * (RFC 2595 section 3.1, CVE-2011-0411: it could have been injected by a man in the middle)
 * and starts the handshake; ops->tls_ready follows. */
void session_starttls(struct session *s);
/* The upstream login failed: logs and counts it with the account, class and reason. */
void session_log_upstream_failure(struct session *s, enum upstream_failure f,
                                  const char *reason);
/* The same, and the account is forgotten (the client must log in again). */
void session_upstream_failed(struct session *s, enum upstream_failure f, const char *reason);
/* Closes everything: flush = 1 writes what is queued first (a goodbye line). */
void session_close(struct session *s, int flush);

/* 1 when a password may be sent on this connection (TLS, or allow_plaintext_auth). */
int session_plaintext_auth_ok(const struct session *s);

/* A client on one of the listener's allow_networks acts as that network's account without a
 * login: sets s->acct (logged when it changes) and returns 0; -1 when the peer is not
 * allowlisted. */
int session_allowlisted_login(struct session *s);

/* Checks user/password against the local hash; cb runs with 1 (s->acct set, and the
 * account's token store unlocked with the verified password) or, 1 s after the request began,
 * with 0 (failure) or -1 (too busy to check, see session_auth_cb).
 * The password is kept only until the check ends, then cleansed. */
void session_check_password(struct session *s, const char *user, const char *password,
                            session_auth_cb cb);

/* Applies cfg's auth_lockout limits (at start and at every reload). */
void session_auth_configure(const struct config *cfg);

/* Hands the provider's connection (logged in) to the relay; from now on the session is a
 * byte pump until either side closes. client_idle_ms: the client's autologout timer. */
void session_start_relay(struct session *s, struct conn *upstream, uint64_t client_idle_ms);

#endif
