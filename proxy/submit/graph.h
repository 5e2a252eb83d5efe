/* graph: Microsoft Graph sendMail with a MIME body.
 *
 * POST {graph_url}/users/{username}/sendMail, Content-Type: text/plain, the body the MIME
 * message in base64 (streamed, body_stream). 202 Accepted is the only success. Graph refuses
 * requests over about 4 MB, so graph_fits() is asked before anything is sent; the caller then
 * answers 552 or uses the account's next submit path. Errors come as JSON
 * {"error":{"code":...,"message":...}} and map through the same table as EWS's codes
 * (submit_code_reply in submit_verdict.h). */
#ifndef XOAUTHD_GRAPH_H
#define XOAUTHD_GRAPH_H

#include <stddef.h>

#include "submit_verdict.h"
#include "http.h"
#include "message_capture.h"

/* Graph's documented limit for a request body is 4 MB; the base64 body is what counts. */
#define GRAPH_MAX_BODY ((size_t)4 * 1024 * 1024)

struct graph_target {
    const char *base_url;  /* https://graph.microsoft.com/v1.0 */
    const char *username;  /* the mailbox (UPN or SMTP address) */
    const char *ca_file;
    int tls_no_verify;
    const char *token;
    unsigned timeout_ms;
};

struct graph_result {
    int http_status;           /* 0: no response */
    int timed_out;
    long retry_after;          /* seconds, -1 */
    char code[96];             /* error.code */
    char message[512];         /* error.message or transport error: log only */
};

typedef void (*graph_cb)(void *arg, const struct graph_result *r);
struct graph_call;

/* 1 when a message of msg_size bytes fits in one sendMail request. */
int graph_fits(size_t msg_size);
struct graph_call *graph_send_mail(struct http *http, const struct graph_target *t,
                                   const struct capture_source *msg, const char *sid,
                                   graph_cb cb, void *arg);
void graph_cancel(struct graph_call *c);

/* Starts a Graph request with the target's bearer token, CA, TLS setting and timeout filled
 * into o (its headers are replaced); NULL (logged) when it cannot start. */
struct http_request *graph_http_start(struct http *http, const struct graph_target *t,
                                      struct http_opts *o, const char *sid, http_done_cb cb,
                                      void *arg);

/* Exposed for tests. */
char *graph_send_url(const char *base_url, const char *username);
/* {base_url}/users/{username}{tail}; tail ("/messages/...") must be escaped already. */
char *graph_user_url(const char *base_url, const char *username, const char *tail);
void graph_parse_error(const char *body, size_t len, struct graph_result *r);
void graph_verdict(const struct graph_result *r, struct submit_verdict *v);

#endif
