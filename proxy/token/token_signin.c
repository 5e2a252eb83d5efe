/* token_signin: what the interactive sign-ins (token_device_code.c, token_auth_code.c) share:
 * checking that the account can sign in at all, the common state, the POST to an endpoint, and
 * the end that calls back exactly once. Each flow keeps only its own dialogue. */
#include "token_grant.h"

#include <stdlib.h>
#include <string.h>

#define TOKEN_SIGNIN_MAX_RESPONSE (64u * 1024u)
#define TOKEN_SIGNIN_HTTP_TIMEOUT_S 30u

void *token_signin_new(size_t size, const struct token_signin_opts *o, const char *endpoint_key,
                       const char *endpoint, const char *hint,
                       void (*cancel)(struct token_signin *s), token_signin_cb cb, void *arg)
{
    const struct config_account *acct = o->acct;
    if (endpoint == NULL) {
        fprintf(o->out, "xoauthd: provider %s has no %s: set it in its [provider] section%s\n",
                acct->provider != NULL ? acct->provider->name : "?", endpoint_key, hint);
        return NULL;
    }
    if (acct->client_id == NULL) {
        fprintf(o->out, "xoauthd: account %s has no client_id\n", acct->name);
        return NULL;
    }
    struct token_signin *s = calloc(1, size);
    if (s == NULL)
        return NULL;
    s->cancel = cancel;
    s->loop = o->loop;
    s->http = o->http;
    s->acct = acct;
    s->out = o->out;
    s->http_timeout_s = o->http_timeout_s != 0 ? o->http_timeout_s : TOKEN_SIGNIN_HTTP_TIMEOUT_S;
    s->cb = cb;
    s->arg = arg;
    if (uv_timer_init(o->loop, &s->timer) != 0) { /* nothing is in the loop yet */
        fprintf(o->out, "xoauthd: cannot set up a timer\n");
        free(s);
        return NULL;
    }
    s->timer.data = s;
    s->token_url = config_token_url(acct);
    return s;
}

int token_signin_post(struct token_signin *s, const char *url, struct token_form *form,
                      http_done_cb done)
{
    struct http_header hdr = {"Accept", "application/json"};
    struct http_opts o;
    const char *body = token_form_finish(form);
    if (body == NULL)
        return -1;
    memset(&o, 0, sizeof o);
    o.url = url;
    o.body = body;
    o.body_len = strlen(body);
    o.headers = &hdr;
    o.n_headers = 1;
    o.ca_file = s->acct->provider != NULL ? s->acct->provider->ca_file : NULL;
    o.timeout_ms = s->http_timeout_s * 1000u;
    o.max_response = TOKEN_SIGNIN_MAX_RESPONSE;
    s->req = http_request_start(s->http, &o, done, s);
    return s->req != NULL ? 0 : -1;
}

void token_signin_end(struct token_signin *s, enum token_status st, struct token_response *r,
                      const char *reason)
{
    token_signin_cb cb = s->cb;
    void *arg = s->arg;
    s->cb = NULL;
    /* Handles close on the loop: the state (and r, the caller's) outlive the callback. */
    s->cancel(s);
    if (cb != NULL)
        cb(arg, st, r, reason);
}

void token_signin_reason(char *buf, size_t bufsz, const char *what,
                         const struct token_response *r)
{
    snprintf(buf, bufsz, "%s%s%s%s", what, r->reason, r->error_description[0] != '\0' ? ": " : "",
             r->error_description);
}

void token_signin_cancel(struct token_signin *s)
{
    if (s != NULL)
        s->cancel(s);
}
