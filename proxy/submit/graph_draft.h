/* graph_draft: the Graph mailbox requests of the draft path (docs/graph-large-messages.md),
 * one request each; retries, throttling waits and the order of the steps are the caller's.
 *
 *   create   POST   {users/u}/messages, text/plain, the MIME in base64 (streamed) -> 201 {id}
 *   session  POST   {users/u}/messages/{id}/attachments/createUploadSession       -> 201
 *                   {uploadUrl}
 *   send     POST   {users/u}/messages/{id}/send                                  -> 202
 *   exists   GET    {users/u}/messages/{id}?$select=isDraft          -> 200 (a draft) / 404
 *   delete   DELETE {users/u}/messages/{id}                                       -> 204
 *
 * Every request carries the bearer token (unlike the upload URL, graph_upload.c). */
#ifndef XOAUTHD_GRAPH_DRAFT_H
#define XOAUTHD_GRAPH_DRAFT_H

#include <stddef.h>

#include "graph.h"
#include "http.h"
#include "message_capture.h"

struct graph_draft_result {
    struct graph_result g;  /* status, Retry-After, error code and text */
    int ok;                 /* the status the operation succeeds with */
    const char *value;      /* create: the draft's id; session: the uploadUrl; else NULL.
                             * Valid during the callback only. */
};

typedef void (*graph_draft_cb)(void *arg, const struct graph_draft_result *r);
struct graph_draft_call;

/* What createUploadSession is told about the attachment (AttachmentItem). */
struct graph_attachment_item {
    const char *name;         /* NULL: "attachment" */
    const char *content_type; /* NULL: left out */
    const char *content_id;   /* NULL: left out */
    int is_inline;
    size_t size;
};

/* Each returns NULL when the request cannot start (cb never runs). */
struct graph_draft_call *graph_draft_create(struct http *http, const struct graph_target *t,
                                            const struct capture_source *mime, const char *sid,
                                            graph_draft_cb cb, void *arg);
struct graph_draft_call *graph_draft_session(struct http *http, const struct graph_target *t,
                                             const char *draft_id,
                                             const struct graph_attachment_item *item,
                                             const char *sid, graph_draft_cb cb, void *arg);
struct graph_draft_call *graph_draft_send(struct http *http, const struct graph_target *t,
                                          const char *draft_id, const char *sid,
                                          graph_draft_cb cb, void *arg);
struct graph_draft_call *graph_draft_exists(struct http *http, const struct graph_target *t,
                                            const char *draft_id, const char *sid,
                                            graph_draft_cb cb, void *arg);
struct graph_draft_call *graph_draft_delete(struct http *http, const struct graph_target *t,
                                            const char *draft_id, const char *sid,
                                            graph_draft_cb cb, void *arg);
/* cb does not run. */
void graph_draft_cancel(struct graph_draft_call *c);

#endif
