/* token_response: see token_response.h. */
#include "token_response.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void token_response_free_secret(char **p)
{
    if (*p != NULL) {
        OPENSSL_cleanse(*p, strlen(*p));
        free(*p);
        *p = NULL;
    }
}

void token_response_clear(struct token_response *out)
{
    token_response_free_secret(&out->access_token);
    token_response_free_secret(&out->refresh_token);
}

char *token_response_sanitize(char *out, size_t outsz, const char *in, size_t len)
{
    size_t o = 0;
    int space = 0;

    if (outsz == 0)
        return out;
    if (outsz < 8) {
        out[0] = '\0';
        return out;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        char ch;
        if (c == '\0')
            break;
        if (c <= 0x20 || c == 0x7f) {
            space = o > 0; /* collapse runs; drop leading white space */
            continue;
        }
        if (c == '"' || c == '\\')
            ch = '\'';
        else if (c > 0x7f)
            ch = '?';
        else
            ch = (char)c;
        if (o + (size_t)space + 1 + 4 > outsz) {
            memcpy(out + o, "...", 3);
            o += 3;
            out[o] = '\0';
            return out;
        }
        if (space) {
            out[o++] = ' ';
            space = 0;
        }
        out[o++] = ch;
    }
    out[o] = '\0';
    return out;
}

int token_response_token_ok(const char *s, size_t len)
{
    if (len == 0 || len > TOKEN_RESPONSE_MAX_TOKEN)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f)
            return 0;
    }
    return 1;
}

/* OAuth error codes are [a-z_]; anything else is replaced so the code can go unquoted into a
 * key=value log line. */
static void token_response_error_code(char *out, size_t outsz, const char *in)
{
    size_t o = 0;
    for (; *in != '\0' && o + 1 < outsz; in++) {
        char c = *in;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '-' || c == '.';
        out[o++] = ok ? c : '_';
    }
    out[o] = '\0';
}

/* The first "AADSTS<digits>" in a Microsoft error_description, 0 when none. */
static long token_response_find_aadsts(const char *desc)
{
    const char *p = desc;
    while ((p = strstr(p, "AADSTS")) != NULL) {
        long code = 0;
        int digits = 0;
        p += 6;
        while (*p >= '0' && *p <= '9' && digits < 9) {
            code = code * 10 + (*p - '0');
            p++;
            digits++;
        }
        if (digits > 0 && !(*p >= '0' && *p <= '9'))
            return code;
    }
    return 0;
}

/* expires_in is a JSON number by RFC 6749, but some servers send a string. */
static long token_response_expires_in(const cJSON *v)
{
    double d;
    if (cJSON_IsNumber(v)) {
        d = v->valuedouble;
    } else if (cJSON_IsString(v) && v->valuestring != NULL) {
        char *end = NULL;
        const char *s = v->valuestring;
        while (*s == ' ')
            s++;
        if (*s == '\0')
            return TOKEN_RESPONSE_DEFAULT_EXPIRES_IN;
        d = strtod(s, &end);
        while (end != NULL && *end == ' ')
            end++;
        if (end == NULL || *end != '\0')
            return TOKEN_RESPONSE_DEFAULT_EXPIRES_IN;
    } else {
        return TOKEN_RESPONSE_DEFAULT_EXPIRES_IN;
    }
    if (isnan(d))
        return TOKEN_RESPONSE_DEFAULT_EXPIRES_IN;
    if (d <= 0)
        return 0;
    if (d >= (double)TOKEN_RESPONSE_MAX_EXPIRES_IN)
        return TOKEN_RESPONSE_MAX_EXPIRES_IN;
    return (long)d;
}

static const char *token_response_json_string(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void token_response_set(struct token_response *out, enum token_status status,
                               const char *action, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void token_response_set(struct token_response *out, enum token_status status,
                               const char *action, const char *fmt, ...)
{
    va_list ap;
    out->status = status;
    snprintf(out->action, sizeof out->action, "%s", action);
    va_start(ap, fmt);
    vsnprintf(out->reason, sizeof out->reason, fmt, ap);
    va_end(ap);
}

static const char token_response_act_retry[] = "none, retried at the next login; if it lasts, "
                                               "check access to token_url";

static void token_response_classify_error(struct token_response *out)
{
    const char *e = out->error;
    int st = out->http_status;

    if (st == 429) {
        token_response_set(out, TOKEN_TEMPFAIL, token_response_act_retry,
                           "rate limited by the token endpoint (HTTP 429%s%s)",
                           e[0] != '\0' ? ", " : "", e);
        return;
    }
    if (st >= 500) {
        token_response_set(out, TOKEN_TEMPFAIL, token_response_act_retry,
                           "token endpoint failed (HTTP %d%s%s)", st, e[0] != '\0' ? ", " : "",
                           e);
        return;
    }
    if (strcmp(e, "invalid_grant") == 0) {
        const char *why;
        switch (out->aadsts) {
        case 700082:
            why = "refresh token expired after 90 days without use (AADSTS700082)";
            break;
        case 70043:
            why = "refresh token expired or blocked by Conditional Access sign-in frequency "
                  "(AADSTS70043)";
            break;
        case 50173:
            why = "refresh token revoked: password changed or grant revoked (AADSTS50173)";
            break;
        default:
            why = "refresh token rejected (revoked, expired after 90 idle days, or blocked by "
                  "Conditional Access)";
            break;
        }
        token_response_set(out, TOKEN_NEEDS_SIGNIN, "sign in again", "%s", why);
        return;
    }
    if (strcmp(e, "interaction_required") == 0 || strcmp(e, "consent_required") == 0 ||
        strcmp(e, "login_required") == 0) {
        token_response_set(out, TOKEN_NEEDS_SIGNIN, "sign in again",
                           "the provider requires an interactive sign-in (%s)", e);
        return;
    }
    if (strcmp(e, "invalid_client") == 0) {
        token_response_set(out, TOKEN_MISCONFIGURED,
                           "check client_id and client_secret (or client_certificate) against "
                           "the app registration",
                           "client authentication failed (invalid_client)");
        return;
    }
    if (strcmp(e, "unauthorized_client") == 0) {
        token_response_set(out, TOKEN_MISCONFIGURED,
                           "check client_id and that the app registration allows this flow",
                           "the client may not use this grant (unauthorized_client)");
        return;
    }
    if (strcmp(e, "invalid_scope") == 0) {
        token_response_set(out, TOKEN_MISCONFIGURED, "fix scope= of the account",
                           "the scope was refused (invalid_scope)");
        return;
    }
    if (strcmp(e, "unsupported_grant_type") == 0) {
        token_response_set(out, TOKEN_MISCONFIGURED, "check flow= and token_url=",
                           "the endpoint does not support this grant (unsupported_grant_type)");
        return;
    }
    if (strcmp(e, "invalid_request") == 0) {
        token_response_set(out, TOKEN_MISCONFIGURED,
                           "check client_id, client_secret, scope, tenant and token_url",
                           "the endpoint refused the request (invalid_request)");
        return;
    }
    if (e[0] != '\0')
        token_response_set(out, TOKEN_TEMPFAIL, token_response_act_retry,
                           "token endpoint answered HTTP %d with error %s", st, e);
    else
        token_response_set(out, TOKEN_TEMPFAIL, token_response_act_retry,
                           "token endpoint answered HTTP %d without an OAuth error", st);
}

int token_response_parse(int http_status, const char *body, size_t len,
                         struct token_response *out)
{
    cJSON *json = NULL;
    const char *s;
    int rc = 0;

    token_response_clear(out);
    memset(out, 0, sizeof *out);
    out->http_status = http_status;
    out->expires_in = TOKEN_RESPONSE_DEFAULT_EXPIRES_IN;

    /* A NUL byte is never valid JSON, but cJSON would stop at it inside a string. */
    if (body != NULL && len > 0 && memchr(body, '\0', len) == NULL)
        json = cJSON_ParseWithLength(body, len);
    if (json != NULL && !cJSON_IsObject(json)) {
        cJSON_Delete(json);
        json = NULL;
    }
    if (json != NULL) {
        if ((s = token_response_json_string(json, "error")) != NULL)
            token_response_error_code(out->error, sizeof out->error, s);
        if ((s = token_response_json_string(json, "error_description")) != NULL) {
            token_response_sanitize(out->error_description, sizeof out->error_description, s,
                                    strlen(s));
            out->aadsts = token_response_find_aadsts(s);
        }
        if (out->aadsts == 0) {
            /* Microsoft also lists the codes as numbers: "error_codes": [700082] */
            const cJSON *codes = cJSON_GetObjectItemCaseSensitive(json, "error_codes");
            const cJSON *first = cJSON_IsArray(codes) ? cJSON_GetArrayItem(codes, 0) : NULL;
            if (cJSON_IsNumber(first) && first->valuedouble > 0 && first->valuedouble < 1e9)
                out->aadsts = (long)first->valuedouble;
        }
    }

    if (http_status < 200 || http_status > 299) {
        if (json == NULL)
            token_response_set(out, TOKEN_TEMPFAIL, token_response_act_retry,
                               "token endpoint answered HTTP %d with a %s body", http_status,
                               len > 0 ? "non-JSON" : "empty");
        else
            token_response_classify_error(out);
        goto done;
    }
    if (json == NULL) {
        token_response_set(out, TOKEN_TEMPFAIL, token_response_act_retry,
                           "malformed JSON from the token endpoint (HTTP %d)", http_status);
        goto done;
    }
    s = token_response_json_string(json, "access_token");
    if (s == NULL || s[0] == '\0') {
        if (out->error[0] != '\0')
            token_response_classify_error(out);
        else
            token_response_set(out, TOKEN_TEMPFAIL, token_response_act_retry,
                               "HTTP %d from the token endpoint without access_token",
                               http_status);
        goto done;
    }
    if (!token_response_token_ok(s, strlen(s))) {
        token_response_set(out, TOKEN_TEMPFAIL, token_response_act_retry,
                           "the access_token is too long or has characters a token cannot "
                           "have");
        goto done;
    }
    const char *type = token_response_json_string(json, "token_type");
    if (type != NULL && strcasecmp(type, "bearer") != 0) {
        char tbuf[32];
        token_response_set(out, TOKEN_MISCONFIGURED, "check token_url and flow=",
                           "token_type %s is not Bearer",
                           token_response_sanitize(tbuf, sizeof tbuf, type, strlen(type)));
        goto done;
    }
    const char *rt = token_response_json_string(json, "refresh_token");
    if (rt != NULL && rt[0] != '\0' && !token_response_token_ok(rt, strlen(rt))) {
        /* Rotated but unusable: storing it would lose the account just the same. */
        token_response_set(out, TOKEN_TEMPFAIL, token_response_act_retry,
                           "the refresh_token is too long or has characters a token cannot "
                           "have");
        goto done;
    }
    out->expires_in = token_response_expires_in(
        cJSON_GetObjectItemCaseSensitive(json, "expires_in"));
    out->access_token = strdup(s);
    if (rt != NULL && rt[0] != '\0')
        out->refresh_token = strdup(rt);
    if (out->access_token == NULL || (rt != NULL && rt[0] != '\0' && out->refresh_token == NULL)) {
        token_response_clear(out);
        token_response_set(out, TOKEN_TEMPFAIL, token_response_act_retry, "out of memory");
        rc = -1;
        goto done;
    }
    out->status = TOKEN_OK;

done:
    if (json != NULL) {
        /* The tree holds copies of the tokens: cleanse them before cJSON frees them. */
        const char *names[] = {"access_token", "refresh_token", "id_token"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            cJSON *v = cJSON_GetObjectItemCaseSensitive(json, names[i]);
            if (cJSON_IsString(v) && v->valuestring != NULL)
                OPENSSL_cleanse(v->valuestring, strlen(v->valuestring));
        }
        cJSON_Delete(json);
    }
    return rc;
}

void token_response_transport(struct token_response *out, int timed_out, const char *error)
{
    char ebuf[128];
    token_response_clear(out);
    memset(out, 0, sizeof *out);
    if (timed_out) {
        token_response_set(out, TOKEN_TEMPFAIL,
                           "check network access to token_url; raise token_timeout if the "
                           "endpoint is slow",
                           "no answer from the token endpoint within the timeout");
        return;
    }
    token_response_sanitize(ebuf, sizeof ebuf, error != NULL ? error : "unknown",
                            strlen(error != NULL ? error : "unknown"));
    token_response_set(out, TOKEN_TEMPFAIL, "check network access, DNS and TLS trust for token_url",
                       "transport error: %s", ebuf);
}
