/* token_response: parse and classify one answer of an OAuth 2.0 token endpoint (RFC 6749 5.1,
 * 5.2). A pure function, no I/O and no logging, so every odd answer a provider gives can be
 * pinned down by a unit test.
 *
 * The classification decides what the admin is told and whether a client should retry:
 * invalid_grant means a human must sign in again (Microsoft: AADSTS700082 idle for 90 days,
 * AADSTS70043 Conditional Access, AADSTS50173 grant revoked); invalid_client and friends mean
 * the config is wrong; everything the server might get over (429, 5xx, garbage, a 200 without
 * a token) is temporary. Texts from the server are reduced to printable ASCII and cut, so they
 * can go into a log line. */
#ifndef XOAUTHD_TOKEN_RESPONSE_H
#define XOAUTHD_TOKEN_RESPONSE_H

#include <stddef.h>

#include "token_status.h"

#define TOKEN_RESPONSE_DEFAULT_EXPIRES_IN 3600L
/* Larger lifetimes are clamped: a bogus "expires_in": 1e300 must not pin a token forever. */
#define TOKEN_RESPONSE_MAX_EXPIRES_IN (366L * 86400L)
/* Longer tokens are refused; real ones are a few KiB at most (Microsoft JWTs). */
#define TOKEN_RESPONSE_MAX_TOKEN 16384

struct token_response {
    enum token_status status;
    int http_status;
    char *access_token;  /* malloc'ed, only for TOKEN_OK; cleansed by token_response_clear */
    char *refresh_token; /* malloc'ed when the server sent one (rotation), else NULL */
    long expires_in;     /* seconds, clamped to [0, TOKEN_RESPONSE_MAX_EXPIRES_IN] */
    char error[64];      /* OAuth "error" code, sanitized; "" when none */
    char error_description[256]; /* sanitized and cut; "" when none */
    long aadsts;         /* Microsoft AADSTS code found in the description, 0 when none */
    char reason[192];    /* one sentence for the log: what went wrong */
    char action[128];    /* one sentence for the log, without the account: what to do */
};

/* Fills *out from an HTTP status and body (body need not be NUL-terminated). http_status 0 is
 * not a response: use token_response_transport for that. Returns 0, or -1 when memory ran out
 * (out->status is then TOKEN_TEMPFAIL). Always call token_response_clear afterwards. */
int token_response_parse(int http_status, const char *body, size_t len,
                         struct token_response *out);
/* For requests that got no response: timeout or transport error. error may be NULL. */
void token_response_transport(struct token_response *out, int timed_out, const char *error);
/* Cleanses and frees the tokens; the struct may be reused. */
void token_response_clear(struct token_response *out);

/* Copies in (len bytes) into out as printable ASCII: control bytes and runs of white space
 * become one space, '"' and '\\' become '\'', non-ASCII becomes '?', and an over-long text is
 * cut with "...". Returns out. */
char *token_response_sanitize(char *out, size_t outsz, const char *in, size_t len);

/* 1 when s is usable as a token: 1..TOKEN_RESPONSE_MAX_TOKEN bytes of printable ASCII without
 * spaces. Tokens end up inside SASL strings delimited by 0x01 and in files split by lines, so
 * anything else is refused. */
int token_response_token_ok(const char *s, size_t len);

#endif
