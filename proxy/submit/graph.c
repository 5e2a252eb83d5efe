#include "graph.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "body_stream.h"
#include "log.h"

#define GRAPH_DEFAULT_TIMEOUT_MS 120000u

struct graph_call {
    struct http_request *req;
    struct body_stream body;
    graph_cb cb;
    void *arg;
};

int graph_fits(size_t msg_size) { return base64_encoded_len(msg_size) <= GRAPH_MAX_BODY; }

char *graph_send_url(const char *base_url, const char *username)
{
    return graph_user_url(base_url, username, "/sendMail");
}

char *graph_user_url(const char *base_url, const char *username, const char *tail)
{
    /* The user is a path segment: escape everything but unreserved characters and '@'. */
    char *user = curl_easy_escape(NULL, username, 0);
    if (user == NULL)
        return NULL;
    size_t blen = strlen(base_url);
    while (blen > 0 && base_url[blen - 1] == '/')
        blen--;
    size_t n = blen + strlen(user) + strlen(tail) + 16;
    char *url = malloc(n);
    if (url != NULL) {
        /* curl escapes '@' as %40; Graph accepts both, the plain form reads better in logs. */
        char *at;
        while ((at = strstr(user, "%40")) != NULL) {
            *at = '@';
            memmove(at + 1, at + 3, strlen(at + 3) + 1);
        }
        snprintf(url, n, "%.*s/users/%s%s", (int)blen, base_url, user, tail);
    }
    curl_free(user);
    return url;
}

void graph_parse_error(const char *body, size_t len, struct graph_result *r)
{
    r->code[0] = r->message[0] = '\0';
    cJSON *j = cJSON_ParseWithLength(body, len);
    if (j == NULL)
        return;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(e, "code");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
    if (cJSON_IsString(code) && code->valuestring != NULL)
        snprintf(r->code, sizeof r->code, "%s", code->valuestring);
    if (cJSON_IsString(msg) && msg->valuestring != NULL)
        snprintf(r->message, sizeof r->message, "%s", msg->valuestring);
    cJSON_Delete(j);
}

void graph_verdict(const struct graph_result *r, struct submit_verdict *v)
{
    memset(v, 0, sizeof *v);
    v->wait_ms = -1;
    v->kind = SUBMIT_V_FAIL;
    if (r->http_status == 202) {
        v->kind = SUBMIT_V_OK;
        v->reply = SUBMIT_REPLY_OK;
        return;
    }
    if (r->http_status == 0) {
        v->reply = SUBMIT_REPLY_UNREACH;
        v->hint = r->timed_out ? "the request timed out" : "check graph_url and the network";
        return;
    }
    if (r->http_status == 401) {
        v->kind = SUBMIT_V_REAUTH;
        v->reply = SUBMIT_REPLY_AUTH;
        v->hint = "the token was refused: graph_scope (or scope, when graph is the first path) "
                  "must be https://graph.microsoft.com/.default (app-only, Mail.Send) or "
                  "https://graph.microsoft.com/Mail.Send delegated";
        return;
    }
    if (r->http_status == 429 || r->http_status == 503 || r->http_status == 504) {
        v->kind = SUBMIT_V_BUSY;
        v->wait_ms = submit_retry_after_ms(r->retry_after);
        v->reply = SUBMIT_REPLY_BUSY;
        return;
    }
    if (r->http_status == 413) {
        v->reply = SUBMIT_REPLY_SIZE;
        return;
    }
    v->reply = r->code[0] != '\0' ? submit_code_reply(r->code) : NULL;
    if (v->reply != NULL)
        return;
    if (r->http_status == 403 || r->http_status == 404) {
        v->reply = SUBMIT_REPLY_AUTH;
        v->hint = r->http_status == 403 ? "forbidden: grant the app Mail.Send (application) "
                                          "or the user Mail.Send (delegated)"
                                        : "no such user or mailbox: check username";
        return;
    }
    if (r->http_status >= 500) {
        v->reply = SUBMIT_REPLY_TEMP;
        return;
    }
    if (r->http_status == 400) {
        v->reply = SUBMIT_REPLY_SCHEMA;
        v->hint = "Graph refused the request: see code= and text=";
        return;
    }
    /* 2xx other than 202, redirects, other 4xx: nothing certain; the sender retries. */
    v->reply = SUBMIT_REPLY_TEMP;
    v->hint = "unexpected HTTP status: check graph_url";
}

static void graph_done_cb(void *arg, const struct http_response *resp)
{
    struct graph_call *c = arg;
    struct graph_result r;
    memset(&r, 0, sizeof r);
    c->req = NULL;
    r.http_status = resp->status;
    r.retry_after = resp->retry_after;
    r.timed_out = resp->timed_out;
    if (resp->status == 0)
        snprintf(r.message, sizeof r.message, "%s", resp->error != NULL ? resp->error : "-");
    else if (resp->status != 202 && resp->body_len > 0)
        graph_parse_error(resp->body, resp->body_len, &r);
    c->cb(c->arg, &r);
    free(c);
}

struct http_request *graph_http_start(struct http *http, const struct graph_target *t,
                                      struct http_opts *o, const char *sid, http_done_cb cb,
                                      void *arg)
{
    size_t alen = strlen(t->token) + 8;
    char *auth = malloc(alen);
    if (auth == NULL)
        return NULL;
    snprintf(auth, alen, "Bearer %s", t->token);
    struct http_header hdrs[] = {{"Authorization", auth}};
    o->headers = hdrs;
    o->n_headers = 1;
    o->ca_file = t->ca_file;
    o->tls_no_verify = t->tls_no_verify;
    o->timeout_ms = t->timeout_ms != 0 ? t->timeout_ms : GRAPH_DEFAULT_TIMEOUT_MS;
    struct http_request *req = http_request_start(http, o, cb, arg);
    if (req == NULL)
        log_error(sid, "event=graph_request_failed note=\"could not start the request\"");
    o->headers = NULL;
    o->n_headers = 0;
    OPENSSL_cleanse(auth, alen);
    free(auth);
    return req;
}

struct graph_call *graph_send_mail(struct http *http, const struct graph_target *t,
                                   const struct capture_source *msg, const char *sid,
                                   graph_cb cb, void *arg)
{
    struct graph_call *c = calloc(1, sizeof *c);
    char *url = graph_send_url(t->base_url, t->username);
    if (c == NULL || url == NULL) {
        free(c);
        free(url);
        return NULL;
    }
    c->cb = cb;
    c->arg = arg;
    body_stream_init(&c->body, "", 0, *msg, "", 0);
    struct http_opts o = {0};
    o.method = "POST";
    o.url = url;
    o.content_type = "text/plain";
    o.body_read = body_stream_read;
    o.body_arg = &c->body;
    o.body_size = body_stream_size(&c->body);
    c->req = graph_http_start(http, t, &o, sid, graph_done_cb, c);
    free(url);
    if (c->req == NULL) {
        free(c);
        return NULL;
    }
    return c;
}

void graph_cancel(struct graph_call *c)
{
    if (c == NULL)
        return;
    http_request_cancel(c->req);
    free(c);
}
