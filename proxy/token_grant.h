/* token_grant: the small interface between the token manager and one OAuth grant (one file
 * per grant: token_static.c, token_refresh.c, later client credentials, password, ...).
 *
 * A grant says how an access token is obtained for an account: either at once from the config
 * (static), or by POSTing a form to the token endpoint. The manager owns everything else:
 * caching, single-flight, the refresh token's life cycle and the log lines. Interactive flows
 * (device code, authorization code) end in a refresh token and are then renewed by the
 * refresh_token grant; their interactive half lives in the CLI, not here. */
#ifndef XOAUTHD_TOKEN_GRANT_H
#define XOAUTHD_TOKEN_GRANT_H

#include <stddef.h>

#include "config.h"

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

struct token_grant {
    const char *name; /* for log lines, e.g. "refresh_token" */
    /* 1 when the request needs the account's current refresh token: without one the account
     * needs a sign-in, and a rotated one in the answer replaces it (token store). */
    int uses_refresh_token;
    /* Grants served from the config: the access token, or NULL when the config has none.
     * NULL function for grants that ask the token endpoint. */
    const char *(*static_token)(const struct config_account *acct);
    /* Endpoint grants: fill the form (grant_type, client credentials, scope, ...).
     * refresh_token is the current one when uses_refresh_token, else NULL. Returns 0, or -1
     * with *why set to a sentence for the log when the account lacks what the grant needs. */
    int (*build_form)(const struct config_account *acct, const char *refresh_token,
                      struct token_form *form, const char **why);
};

extern const struct token_grant token_grant_static;
extern const struct token_grant token_grant_refresh;

/* The grant for a flow, or NULL when this build cannot renew tokens for it. */
const struct token_grant *token_grant_for(enum config_flow flow);

#endif
