#include "upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct upstream_resolve {
    uv_getaddrinfo_t req;
    upstream_resolve_cb cb;
    void *arg;
    int cancelled;
    char host[256];
};

static void upstream_resolve_done_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct upstream_resolve *r = req->data;
    if (!r->cancelled) {
        if (status != 0) {
            char reason[320];
            snprintf(reason, sizeof reason, "cannot resolve %s: %s", r->host, uv_strerror(status));
            r->cb(r->arg, NULL, reason);
        } else {
            r->cb(r->arg, res, NULL);
        }
    }
    if (res != NULL)
        uv_freeaddrinfo(res);
    free(r);
}

struct upstream_resolve *upstream_resolve_start(uv_loop_t *loop, const char *host, uint16_t port,
                                                upstream_resolve_cb cb, void *arg)
{
    struct upstream_resolve *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->cb = cb;
    r->arg = arg;
    r->req.data = r;
    snprintf(r->host, sizeof r->host, "%s", host);
    char service[8];
    snprintf(service, sizeof service, "%u", (unsigned)port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (uv_getaddrinfo(loop, &r->req, upstream_resolve_done_cb, r->host, service, &hints) != 0) {
        free(r);
        return NULL;
    }
    return r;
}

void upstream_resolve_cancel(struct upstream_resolve *r)
{
    /* uv_cancel may fail when the lookup already runs; the flag covers that case. */
    r->cancelled = 1;
    uv_cancel((uv_req_t *)&r->req);
}

const char *upstream_failure_name(enum upstream_failure f)
{
    switch (f) {
    case UPSTREAM_OK: return "ok";
    case UPSTREAM_FAIL_TOKEN: return "token";
    case UPSTREAM_FAIL_CONNECT: return "connect";
    case UPSTREAM_FAIL_TLS: return "tls";
    case UPSTREAM_FAIL_PROTOCOL: return "protocol";
    case UPSTREAM_FAIL_AUTH: return "auth";
    }
    return "?";
}
