/* token_grant: the flow -> grant table and the helpers shared by the grants (form builder,
 * base64url, random strings). */
#include "token_grant.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base64.h"
#include "http.h"
#include "netaddr.h"

void token_form_init(struct token_form *f)
{
    memset(f, 0, sizeof *f);
}

static void token_form_append(struct token_form *f, const char *s, size_t n)
{
    if (f->failed)
        return;
    if (f->len + n + 1 > f->cap) {
        size_t cap = f->cap != 0 ? f->cap : 256;
        while (cap < f->len + n + 1)
            cap *= 2;
        /* Not realloc: the old buffer holds secrets and must be cleansed. */
        char *p = malloc(cap);
        if (p == NULL) {
            f->failed = 1;
            return;
        }
        if (f->len > 0)
            memcpy(p, f->buf, f->len);
        if (f->buf != NULL) {
            OPENSSL_cleanse(f->buf, f->cap);
            free(f->buf);
        }
        f->buf = p;
        f->cap = cap;
    }
    memcpy(f->buf + f->len, s, n);
    f->len += n;
    f->buf[f->len] = '\0';
}

void token_form_add(struct token_form *f, const char *name, const char *value)
{
    char *en, *ev;
    if (value == NULL)
        return;
    en = http_form_escape(name);
    ev = http_form_escape(value);
    if (en == NULL || ev == NULL) {
        f->failed = 1;
    } else {
        if (f->len > 0)
            token_form_append(f, "&", 1);
        token_form_append(f, en, strlen(en));
        token_form_append(f, "=", 1);
        token_form_append(f, ev, strlen(ev));
    }
    free(en);
    if (ev != NULL) {
        OPENSSL_cleanse(ev, strlen(ev));
        free(ev);
    }
}

const char *token_form_finish(struct token_form *f)
{
    if (f->failed)
        return NULL;
    if (f->buf == NULL)
        token_form_append(f, "", 0);
    return f->failed ? NULL : f->buf;
}

void token_form_free(struct token_form *f)
{
    if (f->buf != NULL) {
        OPENSSL_cleanse(f->buf, f->cap);
        free(f->buf);
    }
    memset(f, 0, sizeof *f);
}

const struct token_grant *token_grant_for(enum config_flow flow)
{
    switch (flow) {
    case CONFIG_FLOW_STATIC:
        return &token_grant_static;
    case CONFIG_FLOW_REFRESH_TOKEN:
        return &token_grant_refresh;
    case CONFIG_FLOW_CLIENT_CREDENTIALS:
        return &token_grant_client_credentials;
    case CONFIG_FLOW_PASSWORD:
        return &token_grant_password;
    case CONFIG_FLOW_DEVICE_CODE:
        return &token_grant_device_code;
    case CONFIG_FLOW_AUTHORIZATION_CODE:
        return &token_grant_auth_code;
    case CONFIG_FLOW_COMMAND:
        return &token_grant_command;
    }
    return NULL;
}

char *token_random_b64url(size_t n)
{
    unsigned char buf[64];
    char *out;
    if (n > sizeof buf || RAND_bytes(buf, (int)n) != 1)
        return NULL;
    out = base64_encode(buf, n, BASE64_URL | BASE64_NOPAD);
    OPENSSL_cleanse(buf, sizeof buf);
    return out;
}

int token_url_is_loopback_http(const char *url)
{
    struct http_url u;
    if (http_url_split(url, &u) != 0)
        return 0;
    int ok = strcmp(u.scheme, "http") == 0 && !u.has_userinfo && netaddr_host_is_loopback(u.host);
    http_url_clear(&u);
    return ok;
}

void token_response_from_http(const struct http_response *resp, struct token_response *out)
{
    memset(out, 0, sizeof *out);
    if (resp->status == 0)
        token_response_transport(out, resp->timed_out, resp->error);
    else
        token_response_parse(resp->status, resp->body, resp->body_len, out);
}
