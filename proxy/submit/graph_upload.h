/* graph_upload: one attachment through a Graph upload session (docs/graph-large-messages.md 3.).
 *
 * Given the session's uploadUrl, PUTs the attachment's bytes (read from a spool file with
 * pread, one chunk at a time, so memory does not grow with the attachment) in order, each
 * with Content-Range and Content-Type: application/octet-stream and WITHOUT an Authorization
 * header: the URL is pre-authenticated, and Microsoft says not to send one.
 *
 *   200 nextExpectedRanges ["N"]  next chunk from N (the service says where, not us)
 *   201                           the last byte arrived: done
 *   416                           the range did not fit: continue from nextExpectedRanges
 *   429 / 503                     wait Retry-After (or 1, 2, 4... s), if the budget allows
 *   no answer (reset, timeout)    ask the URL where it stands (GET), continue from there
 *   anything else, 404 (expired)  failure; the caller deletes the draft
 *
 * The budget is the caller's: deadline_ms on the loop's clock (uv_now). */
#ifndef XOAUTHD_GRAPH_UPLOAD_H
#define XOAUTHD_GRAPH_UPLOAD_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "http.h"

/* Outlook takes ranges of "up to 4 MB"; OneDrive wants multiples of 320 KiB: 12 x 320 KiB
 * satisfies both (docs/graph-large-messages.md 3.). */
#define GRAPH_UPLOAD_CHUNK ((size_t)12 * 320 * 1024)

struct graph_upload_opts {
    const char *upload_url;
    const char *ca_file;
    int tls_no_verify;
    int fd;              /* the attachment's bytes from offset 0; not closed */
    size_t size;
    unsigned timeout_ms; /* per request; 0 = 60000 */
    uint64_t deadline_ms;
};

struct graph_upload_result {
    int ok;
    int http_status;     /* of the last answer, 0 = none */
    long retry_after;    /* of a refused last answer, -1 */
    unsigned puts;       /* PUT requests made */
    unsigned resumes;    /* times the position came from the service after a failure */
    unsigned waits;      /* throttling waits */
    char error[160];     /* log only */
};

typedef void (*graph_upload_cb)(void *arg, const struct graph_upload_result *r);
struct graph_upload;

/* NULL when it cannot start (cb never runs); otherwise cb runs once, later, on the loop. */
struct graph_upload *graph_upload_start(uv_loop_t *loop, struct http *http,
                                        const struct graph_upload_opts *o, graph_upload_cb cb,
                                        void *arg);
/* cb does not run. */
void graph_upload_cancel(struct graph_upload *u);

/* Exposed for tests: the first offset of an uploadSession's nextExpectedRanges ("N" or
 * "N-" or "N-M"), or -1. */
long long graph_upload_next_offset(const char *body, size_t len);

#endif
