/* token_device_code: flow = device_code (RFC 8628), for the first sign-in on a machine without
 * a browser: `xoauthd auth ACCOUNT` asks the provider's device authorization endpoint
 * (device_code_url) for a code, prints where to enter it, and polls the token endpoint until a
 * human signed in on any other device. The refresh token that comes back goes to the token
 * store; from then on the daemon renews it exactly like flow = refresh_token.
 *
 * Polling follows section 3.5: wait `interval` seconds (default 5) between requests,
 * authorization_pending means "keep waiting", slow_down adds 5 seconds to the interval for good,
 * expired_token and access_denied end the attempt. A transport error or a 5xx is retried at the
 * next interval until the code expires: a flaky network must not waste a human's sign-in.
 *
 * Google does not issue mail scopes (https://mail.google.com/) through this flow; Gmail
 * accounts use authorization_code. */
#include "token_grant.h"

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define TOKEN_DC_DEFAULT_INTERVAL 5u
#define TOKEN_DC_DEFAULT_EXPIRES 900u

struct token_dc {
    struct token_signin base; /* first; its timer paces the polls */
    char *device_code; /* secret: whoever has it can collect the tokens */
    unsigned interval_s;
    uint64_t deadline_ms;
    int done;
};

static void token_dc_poll(struct token_dc *d);

static void token_dc_free_cb(uv_handle_t *h)
{
    struct token_dc *d = h->data;
    if (d->device_code != NULL) {
        OPENSSL_cleanse(d->device_code, strlen(d->device_code));
        free(d->device_code);
    }
    free(d->base.token_url);
    free(d);
}

static void token_dc_cancel(struct token_signin *s)
{
    struct token_dc *d = (struct token_dc *)s;
    d->done = 1;
    if (d->base.req != NULL) {
        http_request_cancel(d->base.req);
        d->base.req = NULL;
    }
    uv_close((uv_handle_t *)&d->base.timer, token_dc_free_cb);
}

static void token_dc_end(struct token_dc *d, enum token_status st, struct token_response *r,
                         const char *reason)
{
    token_signin_end(&d->base, st, r, reason);
}

static void token_dc_timer_cb(uv_timer_t *t)
{
    token_dc_poll(t->data);
}

static void token_dc_schedule(struct token_dc *d)
{
    uint64_t now = uv_now(d->base.loop);
    uint64_t wait = (uint64_t)d->interval_s * 1000u;
    if (now + wait > d->deadline_ms) {
        if (now >= d->deadline_ms) {
            token_dc_end(d, TOKEN_NEEDS_SIGNIN, NULL,
                         "the code expired before the sign-in was completed: run `xoauthd auth` "
                         "again");
            return;
        }
        wait = d->deadline_ms - now;
    }
    uv_timer_start(&d->base.timer, token_dc_timer_cb, wait, 0);
}

static void token_dc_poll_done_cb(void *arg, const struct http_response *resp)
{
    struct token_dc *d = arg;
    struct token_response r;
    char reason[512];

    d->base.req = NULL;
    token_response_from_http(resp, &r);
    if (r.status == TOKEN_OK) {
        token_dc_end(d, TOKEN_OK, &r, NULL);
        token_response_clear(&r);
        return;
    }
    if (strcmp(r.error, "authorization_pending") == 0) {
        token_response_clear(&r);
        token_dc_schedule(d);
        return;
    }
    if (strcmp(r.error, "slow_down") == 0) {
        /* RFC 8628 3.5: the interval grows by 5 seconds for this and all later requests. */
        d->interval_s += 5;
        fprintf(d->base.out, "(the provider asked to poll more slowly: every %u s now)\n",
                d->interval_s);
        fflush(d->base.out);
        token_response_clear(&r);
        token_dc_schedule(d);
        return;
    }
    if (strcmp(r.error, "expired_token") == 0) {
        token_response_clear(&r);
        token_dc_end(d, TOKEN_NEEDS_SIGNIN, NULL,
                     "the code expired before the sign-in was completed: run `xoauthd auth` "
                     "again");
        return;
    }
    if (strcmp(r.error, "access_denied") == 0 || strcmp(r.error, "authorization_declined") == 0) {
        token_response_clear(&r);
        token_dc_end(d, TOKEN_NEEDS_SIGNIN, NULL, "the sign-in was declined (access_denied)");
        return;
    }
    if (r.status == TOKEN_TEMPFAIL && r.error[0] == '\0') {
        /* Network trouble or a 5xx: the code is still good, try again at the next interval. */
        fprintf(d->base.out, "(token endpoint: %s; still waiting)\n", r.reason);
        fflush(d->base.out);
        token_response_clear(&r);
        token_dc_schedule(d);
        return;
    }
    token_signin_reason(reason, sizeof reason, "", &r);
    enum token_status st = r.status;
    token_response_clear(&r);
    token_dc_end(d, st, NULL, reason);
}

static void token_dc_poll(struct token_dc *d)
{
    struct token_form form;
    int rc;
    if (d->done)
        return;
    token_form_init(&form);
    token_form_add(&form, "grant_type", "urn:ietf:params:oauth:grant-type:device_code");
    token_form_add(&form, "client_id", d->base.acct->client_id);
    if (d->base.acct->client_secret != NULL && d->base.acct->client_secret[0] != '\0')
        token_form_add(&form, "client_secret", d->base.acct->client_secret);
    token_form_add(&form, "device_code", d->device_code);
    rc = token_signin_post(&d->base, d->base.token_url, &form, token_dc_poll_done_cb);
    token_form_free(&form);
    if (rc != 0)
        token_dc_end(d, TOKEN_MISCONFIGURED, NULL,
                     "the token request could not start (token_url must be https://, or "
                     "http:// to a loopback address)");
}

static const char *token_dc_json_str(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) && v->valuestring != NULL && v->valuestring[0] != '\0'
               ? v->valuestring
               : NULL;
}

static long token_dc_json_num(const cJSON *o, const char *name, long dflt, long max)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    double x;
    if (cJSON_IsNumber(v))
        x = v->valuedouble;
    else if (cJSON_IsString(v) && v->valuestring != NULL)
        x = strtod(v->valuestring, NULL); /* Microsoft once sent strings here */
    else
        return dflt;
    if (!(x >= 1))
        return dflt;
    return x > (double)max ? max : (long)x;
}

/* Printable, short, no spaces: what may be shown to the human and sent back. */
static int token_dc_text_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return 0;
    for (; *s != '\0'; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return 0;
    return 1;
}

static void token_dc_start_done_cb(void *arg, const struct http_response *resp)
{
    struct token_dc *d = arg;
    cJSON *json = NULL;
    const char *dc, *uc, *uri, *complete;
    long expires, interval;
    char reason[512];

    d->base.req = NULL;
    if (resp->status == 0 || resp->status < 200 || resp->status > 299) {
        struct token_response r;
        token_response_from_http(resp, &r);
        token_signin_reason(reason, sizeof reason, "the device authorization endpoint refused: ",
                            &r);
        enum token_status st = r.status == TOKEN_OK ? TOKEN_TEMPFAIL : r.status;
        token_response_clear(&r);
        token_dc_end(d, st, NULL, reason);
        return;
    }
    if (resp->body_len > 0 && memchr(resp->body, '\0', resp->body_len) == NULL)
        json = cJSON_ParseWithLength(resp->body, resp->body_len);
    dc = json != NULL ? token_dc_json_str(json, "device_code") : NULL;
    uc = json != NULL ? token_dc_json_str(json, "user_code") : NULL;
    uri = json != NULL ? token_dc_json_str(json, "verification_uri") : NULL;
    if (uri == NULL && json != NULL)
        uri = token_dc_json_str(json, "verification_url"); /* Google's spelling */
    complete = json != NULL ? token_dc_json_str(json, "verification_uri_complete") : NULL;
    if (dc == NULL || uc == NULL || uri == NULL || !token_dc_text_ok(dc, 4096) ||
        !token_dc_text_ok(uc, 64) || !token_dc_text_ok(uri, 512) ||
        (complete != NULL && !token_dc_text_ok(complete, 1024))) {
        cJSON_Delete(json);
        token_dc_end(d, TOKEN_TEMPFAIL, NULL,
                     "the device authorization endpoint sent no usable device_code, user_code "
                     "and verification_uri");
        return;
    }
    expires = token_dc_json_num(json, "expires_in", TOKEN_DC_DEFAULT_EXPIRES, 3600);
    interval = token_dc_json_num(json, "interval", TOKEN_DC_DEFAULT_INTERVAL, 60);
    d->device_code = strdup(dc);
    if (d->device_code == NULL) {
        cJSON_Delete(json);
        token_dc_end(d, TOKEN_TEMPFAIL, NULL, "out of memory");
        return;
    }
    d->interval_s = (unsigned)interval;
    d->deadline_ms = uv_now(d->base.loop) + (uint64_t)expires * 1000u;
    fprintf(d->base.out,
            "To sign in account %s (%s), open this address in a browser on any device:\n"
            "  Open: %s\n"
            "and enter this code:\n"
            "  Code: %s\n",
            d->base.acct->name, d->base.acct->username != NULL ? d->base.acct->username : "-",
            uri, uc);
    if (complete != NULL)
        fprintf(d->base.out, "(or open %s, which has the code in it)\n", complete);
    fprintf(d->base.out, "Sign in as %s. Waiting up to %ld minutes (polling every %u s)...\n",
            d->base.acct->username != NULL ? d->base.acct->username : "the mailbox's user",
            (expires + 59) / 60, d->interval_s);
    fflush(d->base.out);
    OPENSSL_cleanse((void *)dc, strlen(dc));
    cJSON_Delete(json);
    token_dc_schedule(d);
}

struct token_signin *token_signin_device_code(const struct token_signin_opts *o,
                                              token_signin_cb cb, void *arg)
{
    const struct config_account *acct = o->acct;
    struct token_dc *d;
    struct token_form form;
    char *url;
    int rc;

    d = token_signin_new(sizeof *d, o, "device_code_url",
                         acct->provider != NULL ? acct->provider->device_code_url : NULL,
                         ", or sign in with --browser", token_dc_cancel, cb, arg);
    if (d == NULL)
        return NULL;
    url = config_account_url(acct, acct->provider->device_code_url);
    if (d->base.token_url == NULL || url == NULL) {
        free(url);
        fprintf(o->out, "xoauthd: provider %s has no token_url\n", acct->provider->name);
        token_dc_cancel(&d->base);
        return NULL;
    }
    token_form_init(&form);
    token_form_add(&form, "client_id", acct->client_id);
    if (acct->scope != NULL && acct->scope[0] != '\0')
        token_form_add(&form, "scope", acct->scope);
    rc = token_signin_post(&d->base, url, &form, token_dc_start_done_cb);
    token_form_free(&form);
    free(url);
    if (rc != 0) {
        fprintf(o->out, "xoauthd: the device authorization request could not start "
                        "(device_code_url must be https://, or http:// to a loopback address)\n");
        token_dc_cancel(&d->base);
        return NULL;
    }
    return &d->base;
}

/* After the sign-in the daemon renews the token like flow = refresh_token. */
const struct token_grant token_grant_device_code = {
    .name = "device_code",
    .uses_refresh_token = 1,
    .build_form = token_refresh_form,
};
