#include "graph_draft.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "body_stream.h"

enum graph_draft_op { OP_CREATE, OP_SESSION, OP_SEND, OP_EXISTS, OP_DELETE };

struct graph_draft_call {
    struct http_request *req;
    enum graph_draft_op op;
    struct body_stream body;  /* create: the MIME in base64 */
    graph_draft_cb cb;
    void *arg;
};

/* The status each operation succeeds with (docs/graph-large-messages.md 2.-5.). */
static int op_ok_status(enum graph_draft_op op)
{
    switch (op) {
    case OP_CREATE:
    case OP_SESSION:
        return 201;
    case OP_SEND:
        return 202;
    case OP_EXISTS:
        return 200;
    case OP_DELETE:
        return 204;
    }
    return 0;
}

/* The string a successful create (id) or session (uploadUrl) answer carries; malloc'ed. */
static char *answer_value(enum graph_draft_op op, const char *body, size_t len)
{
    const char *key = op == OP_CREATE ? "id" : op == OP_SESSION ? "uploadUrl" : NULL;
    if (key == NULL)
        return NULL;
    cJSON *j = cJSON_ParseWithLength(body, len);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    char *out = cJSON_IsString(v) && v->valuestring[0] != '\0' ? strdup(v->valuestring) : NULL;
    cJSON_Delete(j);
    return out;
}

static void draft_done_cb(void *arg, const struct http_response *resp)
{
    struct graph_draft_call *c = arg;
    struct graph_draft_result r;
    char *value = NULL;
    memset(&r, 0, sizeof r);
    c->req = NULL;
    r.g.http_status = resp->status;
    r.g.retry_after = resp->retry_after;
    r.g.timed_out = resp->timed_out;
    r.ok = resp->status == op_ok_status(c->op);
    if (resp->status == 0)
        snprintf(r.g.message, sizeof r.g.message, "%s", resp->error != NULL ? resp->error : "-");
    else if (!r.ok && resp->body_len > 0)
        graph_parse_error(resp->body, resp->body_len, &r.g);
    if (r.ok && (c->op == OP_CREATE || c->op == OP_SESSION)) {
        value = answer_value(c->op, resp->body, resp->body_len);
        if (value == NULL) {
            r.ok = 0;
            snprintf(r.g.message, sizeof r.g.message, "%s answer without %s",
                     c->op == OP_CREATE ? "create message" : "createUploadSession",
                     c->op == OP_CREATE ? "id" : "uploadUrl");
        }
    }
    r.value = value;
    c->cb(c->arg, &r);
    free(value);
    free(c);
}

/* {users/u}/messages[/{id}[tail]] with the id escaped as a path segment. */
static char *message_url(const struct graph_target *t, const char *draft_id, const char *tail)
{
    if (draft_id == NULL)
        return graph_user_url(t->base_url, t->username, "/messages");
    char *id = curl_easy_escape(NULL, draft_id, 0);
    if (id == NULL)
        return NULL;
    size_t n = strlen(id) + strlen(tail) + 16;
    char *path = malloc(n);
    char *url = NULL;
    if (path != NULL) {
        snprintf(path, n, "/messages/%s%s", id, tail);
        url = graph_user_url(t->base_url, t->username, path);
    }
    free(path);
    curl_free(id);
    return url;
}

static struct graph_draft_call *draft_start(struct http *http, const struct graph_target *t,
                                            enum graph_draft_op op, const char *method,
                                            char *url, const char *json,
                                            const struct capture_source *mime, const char *sid,
                                            graph_draft_cb cb, void *arg)
{
    struct graph_draft_call *c = calloc(1, sizeof *c);
    if (c == NULL || url == NULL) {
        free(c);
        free(url);
        return NULL;
    }
    c->op = op;
    c->cb = cb;
    c->arg = arg;
    struct http_opts o = {0};
    o.method = method;
    o.url = url;
    if (mime != NULL) {
        body_stream_init(&c->body, "", 0, *mime, "", 0);
        o.content_type = "text/plain";
        o.body_read = body_stream_read;
        o.body_arg = &c->body;
        o.body_size = body_stream_size(&c->body);
    } else if (json != NULL || strcmp(method, "POST") == 0) {
        /* An action without parameters (send) gets an empty JSON body, not a form. */
        o.content_type = "application/json";
        o.body = json != NULL ? json : "";
        o.body_len = json != NULL ? strlen(json) : 0;
    }
    c->req = graph_http_start(http, t, &o, sid, draft_done_cb, c);
    free(url);
    if (c->req == NULL) {
        free(c);
        return NULL;
    }
    return c;
}

struct graph_draft_call *graph_draft_create(struct http *http, const struct graph_target *t,
                                            const struct capture_source *mime, const char *sid,
                                            graph_draft_cb cb, void *arg)
{
    return draft_start(http, t, OP_CREATE, "POST", message_url(t, NULL, ""), NULL, mime, sid,
                       cb, arg);
}

struct graph_draft_call *graph_draft_session(struct http *http, const struct graph_target *t,
                                             const char *draft_id,
                                             const struct graph_attachment_item *item,
                                             const char *sid, graph_draft_cb cb, void *arg)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *it = cJSON_AddObjectToObject(root, "AttachmentItem");
    cJSON_AddStringToObject(it, "attachmentType", "file");
    cJSON_AddStringToObject(it, "name", item->name != NULL ? item->name : "attachment");
    cJSON_AddNumberToObject(it, "size", (double)item->size);
    if (item->content_type != NULL)
        cJSON_AddStringToObject(it, "contentType", item->content_type);
    if (item->content_id != NULL)
        cJSON_AddStringToObject(it, "contentId", item->content_id);
    cJSON_AddBoolToObject(it, "isInline", item->is_inline != 0);
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (json == NULL)
        return NULL;
    struct graph_draft_call *c =
        draft_start(http, t, OP_SESSION, "POST",
                    message_url(t, draft_id, "/attachments/createUploadSession"), json, NULL,
                    sid, cb, arg);
    cJSON_free(json);
    return c;
}

struct graph_draft_call *graph_draft_send(struct http *http, const struct graph_target *t,
                                          const char *draft_id, const char *sid,
                                          graph_draft_cb cb, void *arg)
{
    return draft_start(http, t, OP_SEND, "POST", message_url(t, draft_id, "/send"), NULL, NULL,
                       sid, cb, arg);
}

struct graph_draft_call *graph_draft_exists(struct http *http, const struct graph_target *t,
                                            const char *draft_id, const char *sid,
                                            graph_draft_cb cb, void *arg)
{
    return draft_start(http, t, OP_EXISTS, "GET", message_url(t, draft_id, "?$select=isDraft"),
                       NULL, NULL, sid, cb, arg);
}

struct graph_draft_call *graph_draft_delete(struct http *http, const struct graph_target *t,
                                            const char *draft_id, const char *sid,
                                            graph_draft_cb cb, void *arg)
{
    return draft_start(http, t, OP_DELETE, "DELETE", message_url(t, draft_id, ""), NULL, NULL,
                       sid, cb, arg);
}

void graph_draft_cancel(struct graph_draft_call *c)
{
    if (c == NULL)
        return;
    http_request_cancel(c->req);
    free(c);
}
