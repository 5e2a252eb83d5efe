/* token_grant: the flow -> grant table and the form builder shared by the grants. */
#include "token_grant.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

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
    /* Later: client_credentials and password get a grant file each; device_code and
     * authorization_code sign in through the CLI and are then renewed like refresh_token. */
    case CONFIG_FLOW_CLIENT_CREDENTIALS:
    case CONFIG_FLOW_PASSWORD:
    case CONFIG_FLOW_DEVICE_CODE:
    case CONFIG_FLOW_AUTHORIZATION_CODE:
        break;
    }
    return NULL;
}
