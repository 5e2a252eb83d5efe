/* Token endpoint answers, good and bad, through the parser and classifier. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "http.h"
#include "token_response.h"


static struct token_response r;

static void parse(int status, const char *body)
{
    CHECK(token_response_parse(status, body, strlen(body), &r) == 0);
}

static void test_good(void)
{
    parse(200, "{\"access_token\":\"ya29.a0AfH6\",\"token_type\":\"Bearer\",\"expires_in\":3599,"
               "\"scope\":\"https://mail.google.com/\"}");
    CHECK(r.status == TOKEN_OK);
    CHECK(r.access_token != NULL && strcmp(r.access_token, "ya29.a0AfH6") == 0);
    CHECK(r.refresh_token == NULL);
    CHECK(r.expires_in == 3599);
    CHECK(r.http_status == 200);
    CHECK(r.error[0] == '\0');
    token_response_clear(&r);
    CHECK(r.access_token == NULL);
    token_response_clear(&r); /* idempotent */
}

static void test_rotated(void)
{
    parse(200, "{\"token_type\":\"bearer\",\"scope\":\"x\",\"expires_in\":4000,"
               "\"ext_expires_in\":4000,\"access_token\":\"eyJ0.eyJ1.sig\","
               "\"refresh_token\":\"0.AAAA-new_rt\"}");
    CHECK(r.status == TOKEN_OK);
    CHECK(r.refresh_token != NULL && strcmp(r.refresh_token, "0.AAAA-new_rt") == 0);
    CHECK(r.expires_in == 4000);
    token_response_clear(&r);

    /* An empty refresh_token is no rotation. */
    parse(200, "{\"access_token\":\"a\",\"refresh_token\":\"\"}");
    CHECK(r.status == TOKEN_OK && r.refresh_token == NULL);
    token_response_clear(&r);
}

static void test_expires_in(void)
{
    parse(200, "{\"access_token\":\"a\"}");
    CHECK(r.status == TOKEN_OK && r.expires_in == TOKEN_RESPONSE_DEFAULT_EXPIRES_IN);
    parse(200, "{\"access_token\":\"a\",\"expires_in\":\"3599\"}");
    CHECK(r.status == TOKEN_OK && r.expires_in == 3599);
    parse(200, "{\"access_token\":\"a\",\"expires_in\":\" 120 \"}");
    CHECK(r.expires_in == 120);
    parse(200, "{\"access_token\":\"a\",\"expires_in\":\"soon\"}");
    CHECK(r.status == TOKEN_OK && r.expires_in == TOKEN_RESPONSE_DEFAULT_EXPIRES_IN);
    parse(200, "{\"access_token\":\"a\",\"expires_in\":null}");
    CHECK(r.expires_in == TOKEN_RESPONSE_DEFAULT_EXPIRES_IN);
    parse(200, "{\"access_token\":\"a\",\"expires_in\":1e300}");
    CHECK(r.status == TOKEN_OK && r.expires_in == TOKEN_RESPONSE_MAX_EXPIRES_IN);
    parse(200, "{\"access_token\":\"a\",\"expires_in\":\"99999999999999999999999\"}");
    CHECK(r.expires_in == TOKEN_RESPONSE_MAX_EXPIRES_IN);
    parse(200, "{\"access_token\":\"a\",\"expires_in\":-5}");
    CHECK(r.status == TOKEN_OK && r.expires_in == 0);
    parse(200, "{\"access_token\":\"a\",\"expires_in\":12.7}");
    CHECK(r.expires_in == 12);
    token_response_clear(&r);
}

static void test_missing_and_malformed(void)
{
    parse(200, "{}");
    CHECK(r.status == TOKEN_TEMPFAIL && r.access_token == NULL);
    CHECK(strstr(r.reason, "without access_token") != NULL);
    parse(200, "{\"access_token\":\"\"}");
    CHECK(r.status == TOKEN_TEMPFAIL);
    parse(200, "{\"access_token\":42}");
    CHECK(r.status == TOKEN_TEMPFAIL && r.access_token == NULL);
    parse(200, "{access_token: abc}");
    CHECK(r.status == TOKEN_TEMPFAIL);
    CHECK(strstr(r.reason, "malformed JSON") != NULL);
    parse(200, "{\"access_token\":\"abc\",\"expires_in\":36");
    CHECK(r.status == TOKEN_TEMPFAIL && r.access_token == NULL);
    parse(200, "[\"access_token\"]");
    CHECK(r.status == TOKEN_TEMPFAIL);
    parse(200, "");
    CHECK(r.status == TOKEN_TEMPFAIL);
    /* A body with an embedded NUL: only what comes before counts (and that is truncated). */
    CHECK(token_response_parse(200, "{\"access_token\":\"a\0\"}", 21, &r) == 0);
    CHECK(r.status == TOKEN_TEMPFAIL);
    /* A 200 carrying an OAuth error instead of a token is classified like the error. */
    parse(200, "{\"error\":\"invalid_grant\"}");
    CHECK(r.status == TOKEN_NEEDS_SIGNIN);
    token_response_clear(&r);
}

static void test_bad_tokens(void)
{
    /* Tokens go between 0x01 delimiters in SASL and on one line in the store. */
    parse(200, "{\"access_token\":\"abc\\u0001user=evil\"}");
    CHECK(r.status == TOKEN_TEMPFAIL && r.access_token == NULL);
    parse(200, "{\"access_token\":\"abc def\"}");
    CHECK(r.status == TOKEN_TEMPFAIL);
    parse(200, "{\"access_token\":\"ok\",\"refresh_token\":\"bad\\nline\"}");
    CHECK(r.status == TOKEN_TEMPFAIL && r.access_token == NULL && r.refresh_token == NULL);
    parse(200, "{\"access_token\":\"caf\\u00e9\"}");
    CHECK(r.status == TOKEN_TEMPFAIL);
    parse(200, "{\"access_token\":\"a\",\"token_type\":\"mac\"}");
    CHECK(r.status == TOKEN_MISCONFIGURED && r.access_token == NULL);
    CHECK(strstr(r.reason, "mac") != NULL);

    size_t big = TOKEN_RESPONSE_MAX_TOKEN + 10;
    char *body = malloc(big + 64);
    CHECK(body != NULL);
    if (body != NULL) {
        strcpy(body, "{\"access_token\":\"");
        size_t o = strlen(body);
        memset(body + o, 'A', big);
        strcpy(body + o + big, "\"}");
        parse(200, body);
        CHECK(r.status == TOKEN_TEMPFAIL && r.access_token == NULL);
        /* Exactly at the limit is fine. */
        o = strlen("{\"access_token\":\"");
        strcpy(body + o + TOKEN_RESPONSE_MAX_TOKEN, "\"}");
        parse(200, body);
        CHECK(r.status == TOKEN_OK && r.access_token != NULL &&
              strlen(r.access_token) == TOKEN_RESPONSE_MAX_TOKEN);
        free(body);
    }
    CHECK(token_response_token_ok("ya29.A-b_c/d+e=", 15) == 1);
    CHECK(token_response_token_ok("", 0) == 0);
    token_response_clear(&r);
}

static void test_invalid_grant(void)
{
    parse(400, "{\"error\":\"invalid_grant\",\"error_description\":\"AADSTS700082: The refresh "
               "token has expired due to inactivity.\\u00a0The token was issued on "
               "2025-01-01.\\r\\nTrace ID: 1f0e\\r\\nCorrelation ID: 2a1b\\r\\nTimestamp: "
               "2025-04-02 10:00:00Z\",\"error_codes\":[700082],\"timestamp\":\"x\"}");
    CHECK(r.status == TOKEN_NEEDS_SIGNIN);
    CHECK(r.aadsts == 700082);
    CHECK(strcmp(r.error, "invalid_grant") == 0);
    CHECK(strstr(r.reason, "90 days") != NULL);
    CHECK(strstr(r.error_description, "AADSTS700082: The refresh token has expired") ==
          r.error_description);
    CHECK(strchr(r.error_description, '\r') == NULL && strchr(r.error_description, '\n') == NULL);
    CHECK(strstr(r.error_description, "Trace ID: 1f0e Correlation") != NULL);

    parse(400, "{\"error\":\"invalid_grant\",\"error_description\":\"AADSTS70043: The refresh "
               "token has expired or is invalid due to sign-in frequency checks by conditional "
               "access.\"}");
    CHECK(r.status == TOKEN_NEEDS_SIGNIN && r.aadsts == 70043);
    CHECK(strstr(r.reason, "Conditional Access") != NULL);

    parse(400, "{\"error\":\"invalid_grant\",\"error_description\":\"AADSTS50173: The provided "
               "grant has expired due to it being revoked.\"}");
    CHECK(r.status == TOKEN_NEEDS_SIGNIN && r.aadsts == 50173);
    CHECK(strstr(r.reason, "revoked") != NULL);

    /* Only the numeric list. */
    parse(400, "{\"error\":\"invalid_grant\",\"error_codes\":[70043]}");
    CHECK(r.status == TOKEN_NEEDS_SIGNIN && r.aadsts == 70043);

    /* Google */
    parse(400, "{\"error\":\"invalid_grant\",\"error_description\":\"Token has been expired or "
               "revoked.\"}");
    CHECK(r.status == TOKEN_NEEDS_SIGNIN && r.aadsts == 0);
    CHECK(strstr(r.reason, "revoked, expired after 90 idle days, or blocked by Conditional "
                           "Access") != NULL);
    parse(401, "{\"error\":\"invalid_grant\"}");
    CHECK(r.status == TOKEN_NEEDS_SIGNIN);
    parse(400, "{\"error\":\"interaction_required\",\"error_description\":\"AADSTS50076\"}");
    CHECK(r.status == TOKEN_NEEDS_SIGNIN && r.aadsts == 50076);
    /* A 5xx never asks for a sign-in, whatever its body claims. */
    parse(503, "{\"error\":\"invalid_grant\"}");
    CHECK(r.status == TOKEN_TEMPFAIL);
    token_response_clear(&r);
}

static void test_misconfigured(void)
{
    parse(401, "{\"error\":\"invalid_client\",\"error_description\":\"AADSTS7000215: Invalid "
               "client secret provided.\"}");
    CHECK(r.status == TOKEN_MISCONFIGURED && r.aadsts == 7000215);
    CHECK(strstr(r.action, "client_secret") != NULL);
    parse(400, "{\"error\":\"unauthorized_client\"}");
    CHECK(r.status == TOKEN_MISCONFIGURED);
    parse(400, "{\"error\":\"invalid_scope\"}");
    CHECK(r.status == TOKEN_MISCONFIGURED && strstr(r.action, "scope") != NULL);
    parse(400, "{\"error\":\"unsupported_grant_type\"}");
    CHECK(r.status == TOKEN_MISCONFIGURED);
    parse(400, "{\"error\":\"invalid_request\"}");
    CHECK(r.status == TOKEN_MISCONFIGURED);
    /* Unknown error codes are not worth locking an account over. */
    parse(400, "{\"error\":\"something_new\"}");
    CHECK(r.status == TOKEN_TEMPFAIL && strstr(r.reason, "something_new") != NULL);
    parse(403, "{}");
    CHECK(r.status == TOKEN_TEMPFAIL);
    token_response_clear(&r);
}

static void test_tempfail(void)
{
    parse(429, "{\"error\":\"temporarily_unavailable\"}");
    CHECK(r.status == TOKEN_TEMPFAIL && strstr(r.reason, "429") != NULL);
    parse(429, "");
    CHECK(r.status == TOKEN_TEMPFAIL);
    /* libcurl parses Retry-After (delta-seconds or an HTTP-date, CURLINFO_RETRY_AFTER; the
     * 429 with "Retry-After: 1" of test_token_manager goes through it); what it gives is
     * mapped: 0 (none, unreadable, "0", a past date) to -1, a huge value capped. */
    CHECK(http_retry_after_seconds(120) == 120);
    CHECK(http_retry_after_seconds(0) == -1 && http_retry_after_seconds(-5) == -1);
    CHECK(http_retry_after_seconds(CURL_OFF_T_C(4102444800)) > 86400); /* 2100-01-01 */
    CHECK(http_retry_after_seconds(CURL_OFF_T_C(9223372036854775807)) == HTTP_RETRY_AFTER_MAX);

    parse(500, "{\"error\":\"server_error\"}");
    CHECK(r.status == TOKEN_TEMPFAIL && strstr(r.reason, "500") != NULL);
    parse(500, "");
    CHECK(r.status == TOKEN_TEMPFAIL && strstr(r.reason, "empty") != NULL);
    parse(502, "<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1>"
               "</body></html>");
    CHECK(r.status == TOKEN_TEMPFAIL && strstr(r.reason, "non-JSON") != NULL);
    parse(200, "<!DOCTYPE html><html><body>Sign in to your account</body></html>");
    CHECK(r.status == TOKEN_TEMPFAIL && r.access_token == NULL);

    token_response_transport(&r, 1, NULL);
    CHECK(r.status == TOKEN_TEMPFAIL && strstr(r.reason, "timeout") != NULL);
    token_response_transport(&r, 0, "Could not resolve host: login.example\n");
    CHECK(r.status == TOKEN_TEMPFAIL && strstr(r.reason, "resolve host") != NULL);
    CHECK(strchr(r.reason, '\n') == NULL);
    token_response_clear(&r);
}

static void test_sanitize(void)
{
    char out[32];
    token_response_sanitize(out, sizeof out, "a\"b\\c\x01\x7f\r\n  d\xc3\xa9", 14);
    CHECK(strcmp(out, "a'b'c d??") == 0);
    token_response_sanitize(out, sizeof out, "  lead", 6);
    CHECK(strcmp(out, "lead") == 0);
    token_response_sanitize(out, sizeof out,
                            "0123456789012345678901234567890123456789012345678901234567890", 61);
    CHECK(strlen(out) < sizeof out && strstr(out, "...") != NULL);

    /* A huge, hostile error_description ends up short and printable. */
    size_t n = 100000;
    char *body = malloc(n + 100);
    CHECK(body != NULL);
    if (body != NULL) {
        strcpy(body, "{\"error\":\"invalid_client\\u0007\\\"x\",\"error_description\":\"");
        size_t o = strlen(body);
        for (size_t i = 0; i < n; i++)
            body[o + i] = (char)('a' + i % 26);
        strcpy(body + o + n, "\"}");
        parse(400, body);
        CHECK(strlen(r.error_description) < sizeof r.error_description);
        CHECK(strstr(r.error_description, "...") != NULL);
        CHECK(strchr(r.error, '"') == NULL && strchr(r.error, '\x07') == NULL);
        CHECK(r.status == TOKEN_TEMPFAIL); /* not literally invalid_client */
        free(body);
    }
    token_response_clear(&r);
}

int main(void)
{
    test_good();
    test_rotated();
    test_expires_in();
    test_missing_and_malformed();
    test_bad_tokens();
    test_invalid_grant();
    test_misconfigured();
    test_tempfail();
    test_sanitize();
    token_response_clear(&r);
    return CHECK_DONE();
}
