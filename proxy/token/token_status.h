/* token_status: how a request for an access token ended. Its own header because both the
 * token manager (token.h) and the parser of the endpoint's answers (token_response.h) speak
 * it, and the manager includes the parser. */
#ifndef XOAUTHD_TOKEN_STATUS_H
#define XOAUTHD_TOKEN_STATUS_H

enum token_status {
    TOKEN_OK,
    TOKEN_TEMPFAIL,     /* endpoint down, timeout, 5xx, 429: retry later */
    TOKEN_NEEDS_SIGNIN, /* invalid_grant, no refresh token: run `xoauthd auth ACCOUNT` */
    TOKEN_MISCONFIGURED /* invalid_client, bad scope, unsupported flow: fix the config */
};

#endif
