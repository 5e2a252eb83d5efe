/* token: the token manager. One entry per account: the cached access tokens with their expiry
 * (one per scope), the grant that renews them, the account's token-store key, and the queues of
 * sessions waiting.
 *
 * Rules: a cached token is returned at once while it has some life left; from refresh_margin
 * seconds before its expiry a refresh runs in the background (the cached token is still handed
 * out meanwhile), and only a token about to expire makes callers wait. One request goes to the
 * token endpoint at a time and every caller for that account waits on it (never two in flight
 * for one account); a caller that goes away cancels only its own wait. A rotated refresh token
 * is written to the token store before the new access token is handed out, because the old
 * refresh token may already be dead at the provider.
 *
 * Failures: a temporary one (timeout, 5xx, 429) makes every caller fail fast until a retry time
 * (Retry-After when the endpoint sent one, else an exponential backoff from 5 s to 2 min), so an
 * outage is not turned into a flood; invalid_grant marks the account "needs sign-in": the
 * rejected refresh token is never sent again, the log says to run `xoauthd auth ACCOUNT`, and
 * the store is re-read (at most once a second) so a new sign-in takes effect without a
 * restart. Every failure is logged once with what the admin should do; callers only learn
 * whether it is worth retrying. A small status file per account (no secrets) feeds
 * `xoauthd tokens`. */
#ifndef XOAUTHD_TOKEN_H
#define XOAUTHD_TOKEN_H

#include <stdio.h>
#include <uv.h>

#include "config.h"
#include "http.h"
#include "token_status.h"

#define TOKEN_FORCE_REFRESH 0x1 /* ignore the cache: the upstream rejected the cached token */

struct token_manager;
struct token_wait;

/* token is the access token, valid only during the callback (copy it); NULL unless TOKEN_OK. */
typedef void (*token_cb)(void *arg, enum token_status status, const char *token);

struct token_manager *token_manager_new(uv_loop_t *loop, struct http *http,
                                        const struct config *cfg);
/* The clock the manager measures token lifetimes, failure windows and store re-reads with:
 * milliseconds that never go backwards. The default is uv_now(loop). Tests set their own to
 * step past a window instead of sleeping through it; NULL restores the default. What is shown
 * to humans and signed into JWTs stays on time(), which must be the real one. */
typedef uint64_t (*token_clock_fn)(uv_loop_t *loop);
void token_manager_set_clock(struct token_manager *tm, token_clock_fn now_ms);
/* Asks for acct's access token. When the answer is known at once (a valid cached token, a
 * static token, a failure remembered from a moment ago, a configuration error), cb runs before
 * this returns and the result is NULL. Otherwise returns a wait handle; cb runs later, once, and
 * the handle is dead from then on (do not cancel it). sid is used for log lines only. */
struct token_wait *token_get(struct token_manager *tm, const struct config_account *acct,
                             int flags, const char *sid, token_cb cb, void *arg);
/* The same for a given scope (NULL or "" = none sent): Graph, EWS and SMTP need tokens for
 * different resources (config_account_scope). Access tokens are cached, single-flighted and
 * FORCE_REFRESHed per (account, scope); the refresh token is the account's, shared by every
 * scope, and requests of one account run one after another so a rotated one is never lost.
 * token_get asks for acct->scope. */
struct token_wait *token_get_scope(struct token_manager *tm, const struct config_account *acct,
                                   const char *scope, int flags, const char *sid, token_cb cb,
                                   void *arg);
/* The provider rejected token, an access token for (acct, scope) this caller got earlier.
 * When it is still the cached one, it is forgotten, so the next token_get_scope refreshes (and
 * every caller that arrives meanwhile joins that one request); when a refresh has replaced it
 * already, nothing changes and the next token_get_scope hands out the newer token. Call it
 * before asking again. sid is for log lines only; token is never logged. */
void token_rejected(struct token_manager *tm, const struct config_account *acct,
                    const char *scope, const char *token, const char *sid);
/* Removes one waiter; its cb is never called. The endpoint request goes on for the others. */
void token_wait_cancel(struct token_wait *w);
/* After a configuration reload (SIGHUP): later requests use cfg (state_dir, token_timeout,
 * allow_networks); client certificates are read again (now, on the calling thread, like the
 * rest of the reload); an account whose local_password changed forgets its store key, so the
 * next local login derives the new one (the next save then re-encrypts the refresh token under
 * it and keeps the old file aside). Cached tokens and refresh tokens in memory stay. The old
 * configuration must stay alive while sessions hold its account pointers. */
void token_manager_set_config(struct token_manager *tm, const struct config *cfg);
/* Cancels everything (waiters are not called) and frees the manager. Any uv handles it owns are
 * closed; the loop must run afterwards for them to finish closing (and for a refresh token
 * save already on the thread pool to reach the disk). Call it before http_close. May be called
 * from a token_cb. */
void token_manager_free(struct token_manager *tm);

/* The session's half of the token store's encryption (docs/protocol-notes.md, "Tokens at rest").
 * Call it right after a local password was verified (localauth said 1), before token_get, from
 * every protocol's session (SMTP: smtp_auth_verify_cb; IMAP LOGIN/AUTHENTICATE and POP3 PASS the
 * same way). Never call it with a password that was not verified.
 *
 * The token store of an account with a local password is encrypted under a key derived from
 * that password. The first call per account derives it (scrypt, on the thread pool) and keeps
 * it in memory for the life of the manager; later calls return at once and cost nothing. A
 * token_get for the account waits for a derivation in progress. The password is copied and
 * cleansed; the caller may cleanse its own copy as soon as this returns. Accounts without a
 * local password (allow_networks, client credentials) use the key file and need no call. */
void token_unlock(struct token_manager *tm, const struct config_account *acct,
                  const char *password, size_t len);

/* 1 when acct's refresh token is encrypted under its local password, 0 when it uses
 * state_dir/store.key: an account reachable without a password (allow_networks names it) or
 * without a local password at all. */
int token_account_password_key(const struct config *cfg, const struct config_account *acct);

/* Checks what config_load cannot see without reading other files (client certificates and
 * keys). Prints "FILE:LINE: message" lines to err; returns the number of problems. */
int token_config_check(const struct config *cfg, FILE *err);

const char *token_status_name(enum token_status s);

/* What `xoauthd status` shows of an account's tokens (never a secret). */
struct token_account_info {
    int known;              /* 0: no session has needed a token since the start */
    int cached;             /* an access token is cached */
    long long expires_in;   /* its remaining life in seconds */
    int busy;               /* a request (or store read/write, key derivation) is running */
    int failing;            /* a failure is remembered: callers fail fast until retry_in */
    long long retry_in;     /* seconds */
    char state[24];         /* last outcome: ok | tempfail | needs_signin | misconfigured | "" */
    long long last_refresh; /* Unix time of the last token handed out by the endpoint, 0 = never */
    char last_error[200];   /* one sanitized sentence, "" when the last attempt worked */
};
void token_account_info(struct token_manager *tm, const char *account,
                        struct token_account_info *out);

#endif
