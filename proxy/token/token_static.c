/* token_static: flow = static. The access token comes from the config and never expires as far
 * as xoauthd knows; when the provider stops accepting it, the admin must paste a new one. Meant
 * for tests and for providers that hand out long-lived app passwords as bearer tokens. */
#include "token_grant.h"

#include <stddef.h>

static const char *token_static_token(const struct config_account *acct)
{
    if (acct->access_token == NULL || acct->access_token[0] == '\0')
        return NULL;
    return acct->access_token;
}

const struct token_grant token_grant_static = {
    .name = "static",
    .static_token = token_static_token,
};
