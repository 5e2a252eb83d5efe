/* token_refresh: flow = refresh_token (RFC 6749 section 6). The refresh token comes from the
 * token store, else from the config's seed; the manager picks it and stores rotated ones.
 *
 * client_secret is sent in the body (client_secret_post), which both Google and Microsoft
 * accept; public clients (no secret, e.g. Thunderbird's registered client ids) send none. The
 * device_code and authorization_code grants renew their tokens with this same form. */
#include "token_grant.h"

#include <stddef.h>

int token_refresh_form(const struct token_grant_ctx *ctx, struct token_form *form,
                       const char **why)
{
    const struct config_account *acct = ctx->acct;
    if (acct->client_id == NULL || acct->client_id[0] == '\0') {
        *why = "this flow needs client_id";
        return -1;
    }
    if (ctx->refresh_token == NULL || ctx->refresh_token[0] == '\0') {
        *why = "no refresh token";
        return -1;
    }
    token_form_add(form, "grant_type", "refresh_token");
    token_form_add(form, "client_id", acct->client_id);
    if (acct->client_secret != NULL && acct->client_secret[0] != '\0')
        token_form_add(form, "client_secret", acct->client_secret);
    token_form_add(form, "refresh_token", ctx->refresh_token);
    if (ctx->scope != NULL && ctx->scope[0] != '\0')
        token_form_add(form, "scope", ctx->scope);
    return 0;
}

const struct token_grant token_grant_refresh = {
    .name = "refresh_token",
    .uses_refresh_token = 1,
    .build_form = token_refresh_form,
};
