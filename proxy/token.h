/* token: the token manager. One entry per account: the cached access token with its expiry,
 * the grant that renews it, and the queue of sessions waiting for it.
 *
 * Rules: a cached token younger than expiry - refresh_margin is returned at once; otherwise one
 * request goes to the token endpoint and every caller for that account waits on it (never two in
 * flight for one account); a caller that goes away cancels only its own wait. A rotated refresh
 * token is written to the token store before the new access token is handed out, because the
 * old refresh token is already dead at the provider. Every failure is logged once with what the
 * admin should do; callers only learn whether it is worth retrying. */
#ifndef XOAUTHD_TOKEN_H
#define XOAUTHD_TOKEN_H

#include <uv.h>

#include "config.h"
#include "http.h"

enum token_status {
    TOKEN_OK,
    TOKEN_TEMPFAIL,     /* endpoint down, timeout, 5xx, 429: retry later */
    TOKEN_NEEDS_SIGNIN, /* invalid_grant, no refresh token: run `xoauthd auth ACCOUNT` */
    TOKEN_MISCONFIGURED /* invalid_client, bad scope, unsupported flow: fix the config */
};

#define TOKEN_FORCE_REFRESH 0x1 /* ignore the cache: the upstream rejected the cached token */

struct token_manager;
struct token_wait;

/* token is the access token, valid only during the callback (copy it); NULL unless TOKEN_OK. */
typedef void (*token_cb)(void *arg, enum token_status status, const char *token);

struct token_manager *token_manager_new(uv_loop_t *loop, struct http *http,
                                        const struct config *cfg);
/* Asks for acct's access token. When the answer is known at once (a valid cached token, a
 * static token, a failure remembered from a moment ago, a configuration error), cb runs before
 * this returns and the result is NULL. Otherwise returns a wait handle; cb runs later, once, and
 * the handle is dead from then on (do not cancel it). sid is used for log lines only. */
struct token_wait *token_get(struct token_manager *tm, const struct config_account *acct,
                             int flags, const char *sid, token_cb cb, void *arg);
/* Removes one waiter; its cb is never called. The endpoint request goes on for the others. */
void token_wait_cancel(struct token_wait *w);
/* Cancels everything (waiters are not called) and frees the manager. Any uv handles it owns are
 * closed; the loop must run afterwards for them to finish closing (and for a refresh token
 * save already on the thread pool to reach the disk). Call it before http_close. May be called
 * from a token_cb. */
void token_manager_free(struct token_manager *tm);

const char *token_status_name(enum token_status s);

#endif
