#include "graph_upload.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Consecutive failures without progress before giving up (resets, unreadable state). */
#define GRAPH_UPLOAD_MAX_STALLS 5

struct graph_upload {
    uv_loop_t *loop;
    struct http *http;
    struct graph_upload_opts o;
    char *url;
    char *ca_file;
    struct http_request *req;
    uv_timer_t timer;
    size_t off;          /* next byte the service expects */
    size_t sent;         /* body bytes handed to curl for the PUT in flight */
    size_t chunk;
    unsigned stalls;
    unsigned backoff_s;
    struct graph_upload_result r;
    graph_upload_cb cb;
    void *arg;
};

static int upload_put(struct graph_upload *u);
static void upload_next(struct graph_upload *u);

long long graph_upload_next_offset(const char *body, size_t len)
{
    cJSON *j = cJSON_ParseWithLength(body, len);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "nextExpectedRanges");
    const cJSON *first = cJSON_IsArray(a) ? cJSON_GetArrayItem(a, 0) : NULL;
    long long v = -1;
    if (cJSON_IsString(first) && first->valuestring[0] >= '0' && first->valuestring[0] <= '9') {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(first->valuestring, &end, 10);
        if (errno == 0 && n <= (unsigned long long)INT64_MAX && (*end == 0 || *end == '-'))
            v = (long long)n;
    }
    cJSON_Delete(j);
    return v;
}

static void upload_timer_closed(uv_handle_t *h)
{
    struct graph_upload *u = h->data;
    free(u->url);
    free(u->ca_file);
    free(u);
}

static void upload_free(struct graph_upload *u)
{
    if (u->req != NULL)
        http_request_cancel(u->req);
    u->req = NULL;
    uv_timer_stop(&u->timer);
    uv_close((uv_handle_t *)&u->timer, upload_timer_closed);
}

/* why (and detail) go to the result's error text when !ok. */
static void upload_finish(struct graph_upload *u, int ok, const char *why, const char *detail)
{
    u->r.ok = ok;
    if (!ok)
        snprintf(u->r.error, sizeof u->r.error, "%s%s%s", why, detail != NULL ? ": " : "",
                 detail != NULL ? detail : "");
    u->cb(u->arg, &u->r);
    upload_free(u);
}

static void upload_timer_cb(uv_timer_t *t)
{
    struct graph_upload *u = t->data;
    upload_next(u);
}

/* Waits seconds before the next PUT, if the budget allows; 0 / -1. */
static int upload_wait(struct graph_upload *u, long seconds)
{
    uint64_t ms = (uint64_t)(seconds < 0 ? 0 : seconds) * 1000;
    if (uv_now(u->loop) + ms >= u->o.deadline_ms)
        return -1;
    u->r.waits++;
    uv_timer_start(&u->timer, upload_timer_cb, ms, 0);
    return 0;
}

/* Takes the position the service reported (after a failure: counted as a resume). An answer
 * that does not move forward counts as a stall, so a confused service cannot keep us looping.
 * 0, or -1 when there is no usable position or too many stalls. */
static int upload_seek(struct graph_upload *u, const struct http_response *resp, int resume)
{
    long long next = graph_upload_next_offset(resp->body, resp->body_len);
    if (next < 0 || (unsigned long long)next > u->o.size)
        return -1;
    if ((size_t)next > u->off)
        u->stalls = 0;
    else if (++u->stalls > GRAPH_UPLOAD_MAX_STALLS)
        return -1;
    u->off = (size_t)next;
    u->r.resumes += resume;
    return 0;
}

static int upload_probe(struct graph_upload *u);

/* After a failure without an answer: GET the URL; where it stands decides, or a new attempt
 * after a short pause while the budget lasts. */
static void upload_stalled(struct graph_upload *u, const char *why)
{
    if (++u->stalls > GRAPH_UPLOAD_MAX_STALLS) {
        upload_finish(u, 0, "upload stalled", why);
        return;
    }
    if (upload_probe(u) != 0)
        upload_finish(u, 0, "cannot start the upload status request", NULL);
}

/* The next PUT (from a timer or an answer); a request that cannot start ends the upload. */
static void upload_next(struct graph_upload *u)
{
    if (u->off >= u->o.size) {
        /* Everything was taken but no 201 came: ask where the service stands. */
        upload_stalled(u, "no final answer");
        return;
    }
    if (upload_put(u) != 0)
        upload_finish(u, 0, "cannot start the upload request", NULL);
}

static void upload_probe_done(void *arg, const struct http_response *resp)
{
    struct graph_upload *u = arg;
    u->req = NULL;
    u->r.http_status = resp->status;
    if (resp->status == 200 && upload_seek(u, resp, 1) == 0) {
        upload_next(u);
        return;
    }
    if (resp->status == 0 || resp->status == 429 || resp->status == 503) {
        long wait = resp->retry_after >= 0 ? resp->retry_after : (long)u->stalls;
        if (upload_wait(u, wait) == 0)
            return;
        upload_finish(u, 0, "upload session state unknown within the budget", NULL);
        return;
    }
    upload_finish(u, 0, "upload session status refused", NULL);
}

static int upload_probe(struct graph_upload *u)
{
    struct http_opts h = {0};
    h.method = "GET";
    h.url = u->url;
    h.ca_file = u->ca_file;
    h.tls_no_verify = u->o.tls_no_verify;
    h.timeout_ms = u->o.timeout_ms ? u->o.timeout_ms : 60000;
    u->req = http_request_start(u->http, &h, upload_probe_done, u);
    return u->req != NULL ? 0 : -1;
}

static size_t upload_body_read(void *arg, char *buf, size_t len)
{
    struct graph_upload *u = arg;
    size_t left = u->chunk - u->sent;
    if (len > left)
        len = left;
    if (len == 0)
        return 0;
    ssize_t n = pread(u->o.fd, buf, len, (off_t)(u->off + u->sent));
    if (n <= 0)
        return HTTP_BODY_ABORT;
    u->sent += (size_t)n;
    return (size_t)n;
}

static void upload_put_done(void *arg, const struct http_response *resp)
{
    struct graph_upload *u = arg;
    u->req = NULL;
    u->r.http_status = resp->status;
    u->r.retry_after = resp->retry_after;
    switch (resp->status) {
    case 201:
        upload_finish(u, 1, NULL, NULL);
        return;
    case 200:
        /* nextExpectedRanges is the service's word on what it has. */
        if (upload_seek(u, resp, 0) != 0) {
            upload_finish(u, 0, "upload answer without progress in nextExpectedRanges", NULL);
            return;
        }
        upload_next(u);
        return;
    case 416:
        if (upload_seek(u, resp, 1) != 0) {
            upload_finish(u, 0, "upload range refused", NULL);
            return;
        }
        upload_next(u);
        return;
    case 429:
    case 503: {
        /* Throttled (learn.microsoft.com/graph/throttling): Retry-After, else back off. */
        long wait = resp->retry_after;
        if (wait < 0) {
            wait = u->backoff_s ? u->backoff_s : 1;
            u->backoff_s = (unsigned)wait * 2;
        }
        if (upload_wait(u, wait) != 0)
            upload_finish(u, 0, "throttled beyond the budget", NULL);
        return;
    }
    case 0:
        upload_stalled(u, resp->error != NULL ? resp->error : "no answer");
        return;
    default: {
        char st[16];
        snprintf(st, sizeof st, "%d", resp->status);
        upload_finish(u, 0, "upload refused with HTTP", st);
        return;
    }
    }
}

static int upload_put(struct graph_upload *u)
{
    u->chunk = u->o.size - u->off < GRAPH_UPLOAD_CHUNK ? u->o.size - u->off : GRAPH_UPLOAD_CHUNK;
    u->sent = 0;
    char range[96];
    snprintf(range, sizeof range, "bytes %zu-%zu/%zu", u->off, u->off + u->chunk - 1,
             u->o.size);
    struct http_header hdr[] = {{"Content-Range", range}};
    struct http_opts h = {0};
    h.method = "PUT";
    h.url = u->url;
    h.headers = hdr;
    h.n_headers = 1;
    h.content_type = "application/octet-stream";
    h.ca_file = u->ca_file;
    h.tls_no_verify = u->o.tls_no_verify;
    h.timeout_ms = u->o.timeout_ms ? u->o.timeout_ms : 60000;
    h.body_read = upload_body_read;
    h.body_arg = u;
    h.body_size = u->chunk;
    u->r.puts++;
    u->req = http_request_start(u->http, &h, upload_put_done, u);
    return u->req != NULL ? 0 : -1;
}

struct graph_upload *graph_upload_start(uv_loop_t *loop, struct http *http,
                                        const struct graph_upload_opts *o, graph_upload_cb cb,
                                        void *arg)
{
    if (o->size == 0 || o->upload_url == NULL)
        return NULL;
    struct graph_upload *u = calloc(1, sizeof *u);
    if (u == NULL)
        return NULL;
    u->loop = loop;
    u->http = http;
    u->o = *o;
    u->url = strdup(o->upload_url);
    u->ca_file = o->ca_file != NULL ? strdup(o->ca_file) : NULL;
    u->cb = cb;
    u->arg = arg;
    u->r.retry_after = -1;
    if (u->url == NULL || (o->ca_file != NULL && u->ca_file == NULL) ||
        uv_timer_init(loop, &u->timer) != 0) {
        free(u->url);
        free(u->ca_file);
        free(u);
        return NULL;
    }
    u->timer.data = u;
    u->o.upload_url = u->url;
    u->o.ca_file = u->ca_file;
    if (upload_put(u) != 0) {
        upload_free(u);
        return NULL;
    }
    return u;
}

void graph_upload_cancel(struct graph_upload *u) { upload_free(u); }
