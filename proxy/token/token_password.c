/* token_password: flow = password, the resource owner password credentials grant (RFC 6749
 * section 4.3, "ROPC"). The mailbox's own password (upstream_password) buys an access token.
 *
 * Microsoft still offers it for accounts without MFA; it is the weakest flow (the password sits
 * in the config) and exists for tenants that have nothing else. A refresh token that comes back
 * (scope offline_access) is ignored: the password is at hand anyway, and not storing a second
 * secret is the smaller risk. After invalid_grant (wrong password, MFA required, account locked)
 * the manager stops asking until a restart, so a wrong password cannot lock the mailbox out
 * through repeated attempts. */
#include "token_grant.h"

#include <stddef.h>

static int token_password_form(const struct token_grant_ctx *ctx, struct token_form *form,
                               const char **why)
{
    const struct config_account *acct = ctx->acct;
    if (acct->client_id == NULL || acct->client_id[0] == '\0') {
        *why = "flow = password needs client_id";
        return -1;
    }
    if (acct->upstream_password == NULL || acct->username == NULL) {
        *why = "flow = password needs username and upstream_password";
        return -1;
    }
    token_form_add(form, "grant_type", "password");
    token_form_add(form, "client_id", acct->client_id);
    if (acct->client_secret != NULL && acct->client_secret[0] != '\0')
        token_form_add(form, "client_secret", acct->client_secret);
    token_form_add(form, "username", acct->username);
    token_form_add(form, "password", acct->upstream_password);
    if (ctx->scope != NULL && ctx->scope[0] != '\0')
        token_form_add(form, "scope", ctx->scope);
    return 0;
}

const struct token_grant token_grant_password = {
    .name = "password",
    .build_form = token_password_form,
};
