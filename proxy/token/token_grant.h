/* token_grant: the small interface between the token manager and one way of getting an access
 * token (one file per grant: token_static.c, token_refresh.c, token_client_credentials.c,
 * token_password.c, token_device_code.c, token_auth_code.c, token_command.c).
 *
 * A grant says how an access token is obtained for an account: at once from the config
 * (static), by POSTing a form to the token endpoint (refresh_token, client_credentials,
 * password), or by running something else on the loop (token_command). The manager owns
 * everything else: caching, single-flight, the refresh token's life cycle and the log lines.
 * Interactive flows (device code, authorization code) end in a refresh token and are then
 * renewed like refresh_token; their interactive half (token_signin_*) runs in `xoauthd auth`,
 * on a loop of its own, never in the daemon.
 *
 * This header also carries the helpers those files share and the unit tests pin down: base64url,
 * the JWT client assertion (RFC 7523) and PKCE (RFC 7636). */
#ifndef XOAUTHD_TOKEN_GRANT_H
#define XOAUTHD_TOKEN_GRANT_H

#include <stddef.h>
#include <stdio.h>
#include <time.h>
#include <uv.h>

#include "config.h"
#include "http.h"
#include "token_response.h"

/* An application/x-www-form-urlencoded body under construction. It holds secrets, so it is
 * cleansed when freed. */
struct token_form {
    char *buf;
    size_t len, cap;
    int failed; /* an append ran out of memory; token_form_finish then fails */
};

void token_form_init(struct token_form *f);
/* Appends "name=value" (both escaped); a NULL value is skipped. */
void token_form_add(struct token_form *f, const char *name, const char *value);
/* Returns the NUL-terminated body (owned by f) or NULL when an append failed. */
const char *token_form_finish(struct token_form *f);
void token_form_free(struct token_form *f);

/* A client certificate and its private key (client_certificate, client_key), loaded once. */
struct token_client_cert;

/* What a grant gets to build its request. */
struct token_grant_ctx {
    const struct config_account *acct;
    const char *refresh_token;            /* uses_refresh_token grants: the current one */
    const char *scope;                    /* the scope asked for (token_get_scope), NULL = none */
    const char *token_url;                /* {tenant} already replaced */
    const struct token_client_cert *cert; /* client_certificate loaded, else NULL */
    time_t now;                           /* wall clock, for JWT claims */
};

/* Grants that are not one POST to the token endpoint run as a job on the loop. The callback
 * runs once, later, with a classified response; it may take the tokens out of r (set the
 * pointers to NULL). */
struct token_job;
typedef void (*token_job_cb)(void *arg, struct token_response *r);

struct token_grant {
    const char *name; /* for log lines, e.g. "refresh_token" */
    /* 1 when the request needs the account's current refresh token: without one the account
     * needs a sign-in, and a rotated one in the answer replaces it (token store). Grants with
     * 0 never store anything, even when the endpoint sends a refresh token. */
    int uses_refresh_token;
    /* Grants served from the config: the access token, or NULL when the config has none. */
    const char *(*static_token)(const struct config_account *acct);
    /* Endpoint grants: fill the form (grant_type, client authentication, scope, ...).
     * Returns 0, or -1 with *why set to a sentence for the log when the account lacks what the
     * grant needs. */
    int (*build_form)(const struct token_grant_ctx *ctx, struct token_form *form,
                      const char **why);
    /* Job grants: start the work; cb runs later (never before this returns). Returns NULL with
     * *why set when it cannot start. timeout_ms bounds the whole job. */
    struct token_job *(*start)(uv_loop_t *loop, const struct token_grant_ctx *ctx,
                               unsigned timeout_ms, token_job_cb cb, void *arg,
                               const char **why);
    /* Stops a job; cb is never called afterwards. Handles close on the loop. */
    void (*cancel)(struct token_job *job);
};

extern const struct token_grant token_grant_static;
extern const struct token_grant token_grant_refresh;
extern const struct token_grant token_grant_client_credentials;
extern const struct token_grant token_grant_password;
extern const struct token_grant token_grant_device_code;
extern const struct token_grant token_grant_auth_code;
extern const struct token_grant token_grant_command;

/* The grant for a flow (never NULL for a valid flow). */
const struct token_grant *token_grant_for(enum config_flow flow);

/* The refresh_token form (RFC 6749 section 6), shared by every grant that ends in a refresh
 * token (token_refresh.c). */
int token_refresh_form(const struct token_grant_ctx *ctx, struct token_form *form,
                       const char **why);

/* ---- shared helpers ---- */

/* n random bytes as base64url (state, jti, PKCE verifier); malloc'ed, NULL on failure. */
char *token_random_b64url(size_t n);
/* The host of an http(s) URL is a loopback address (http:// is allowed only there). */
int token_url_is_loopback_http(const char *url);
/* A token endpoint's answer, classified into out (zeroed first): a transport failure
 * (status 0) or the parsed response. */
void token_response_from_http(const struct http_response *resp, struct token_response *out);

/* ---- client credentials with a certificate (token_client_credentials.c) ---- */

/* token_client_cert_load and _free: token_cert_cache.h. */
/* A JWT client assertion: header {"alg":"RS256","typ":"JWT","x5t":...,"x5t#S256":...}, claims
 * aud = audience (the token URL), iss = sub = client_id, jti random, nbf = iat = now,
 * exp = now + 5 minutes; signed RS256. malloc'ed, NULL on failure. */
char *token_client_assertion(const struct token_client_cert *c, const char *client_id,
                             const char *audience, time_t now);

/* ---- PKCE (token_auth_code.c) ---- */

#define TOKEN_PKCE_LEN 43 /* 32 random bytes in base64url */
/* A fresh code_verifier (43 characters + NUL). 0 or -1. */
int token_pkce_verifier(char out[TOKEN_PKCE_LEN + 1]);
/* code_challenge = BASE64URL(SHA256(verifier)) for method S256. 0 or -1. */
int token_pkce_challenge(const char *verifier, char out[TOKEN_PKCE_LEN + 1]);

/* ---- interactive sign-in, used by `xoauthd auth` ---- */

/* How a sign-in ended. On TOKEN_OK, r holds the tokens (take them; the flow frees the rest). */
typedef void (*token_signin_cb)(void *arg, enum token_status st, struct token_response *r,
                                const char *reason);

struct token_signin_opts {
    uv_loop_t *loop;
    struct http *http;
    const struct config_account *acct;
    FILE *out;               /* where the instructions for the human go (stdout) */
    unsigned timeout_s;      /* give up after this long; 0 = what the provider says / 300 */
    unsigned http_timeout_s; /* one request to an endpoint; 0 = 30 */
    int paste;               /* authorization code: no listener, the URL is pasted */
};

/* Every flow's state starts with this, so that one cancel serves them all; the rest is what
 * both flows keep, filled by token_signin_new (token_signin.c). */
struct token_signin {
    void (*cancel)(struct token_signin *s); /* the flow's own */
    uv_loop_t *loop;
    struct http *http;
    const struct config_account *acct;
    FILE *out;
    unsigned http_timeout_s;
    token_signin_cb cb; /* NULL once called (token_signin_end) or cancelled */
    void *arg;
    struct http_request *req; /* the endpoint request in flight */
    uv_timer_t timer;         /* data = the flow; the flow closes it in its cancel */
    char *token_url;
};

/* Device authorization grant (RFC 8628): asks device_code_url for a code, prints the
 * verification URL and the code, then polls the token endpoint honouring
 * authorization_pending, slow_down, expired_token and access_denied. NULL (cb not called, the
 * reason printed to o->out) when it cannot start. */
struct token_signin *token_signin_device_code(const struct token_signin_opts *o,
                                              token_signin_cb cb, void *arg);
/* Authorization code grant with PKCE S256 and a loopback redirect (RFC 8252): prints the
 * authorize URL, waits for the browser on the redirect's loopback port, checks state and
 * exchanges the code. With o->paste no listener runs: the caller reads the address the browser
 * ended on (outside the loop, it is a terminal) and hands it to token_signin_auth_code_paste. */
struct token_signin *token_signin_auth_code(const struct token_signin_opts *o,
                                            token_signin_cb cb, void *arg);
/* Paste mode: the redirect URL (or its query). Checks state and starts the exchange, or calls
 * cb with the failure. */
void token_signin_auth_code_paste(struct token_signin *s, const char *url);
/* Stops a sign-in; cb is not called. Handles close on the loop. */
void token_signin_cancel(struct token_signin *s);

/* ---- what the two flows share (token_signin.c) ---- */

/* A flow's state of `size` bytes (zeroed, starting with struct token_signin) with the common
 * part filled from o, the timer initialised and token_url set (NULL when the provider has
 * none: the flow says so). endpoint is the provider's URL the flow starts at (endpoint_key
 * names it); when it or the account's client_id is missing, the reason (with hint after it)
 * goes to o->out and the result is NULL, as on out of memory. */
void *token_signin_new(size_t size, const struct token_signin_opts *o, const char *endpoint_key,
                       const char *endpoint, const char *hint,
                       void (*cancel)(struct token_signin *s), token_signin_cb cb, void *arg);
/* POSTs the form (Accept: application/json) to url; done runs with the flow as its argument.
 * 0, or -1 when it could not start (a bad URL: https://, or http:// to a loopback address). */
int token_signin_post(struct token_signin *s, const char *url, struct token_form *form,
                      http_done_cb done);
/* Ends the flow: cancels it (its state goes once the handles closed), then calls cb once. */
void token_signin_end(struct token_signin *s, enum token_status st, struct token_response *r,
                      const char *reason);
/* "what: reason: error_description" for a refused request. */
void token_signin_reason(char *buf, size_t bufsz, const char *what,
                         const struct token_response *r);

/* Parses code and state (or error) out of a redirect URL or its query string. Each output is
 * malloc'ed or NULL. 0, or -1 when it has neither code nor error. Exposed for tests. */
int token_auth_code_parse_redirect(const char *url, char **code, char **state, char **error);

#endif
