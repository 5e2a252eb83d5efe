/* ews: a small asynchronous Exchange Web Services client (SOAP over the http module).
 *
 * The send path's operation is here: sending a MIME message (CreateItem SendAndSaveCopy, copy in
 * sentitems). The mailbox operations (append, GetItem, copy, delete, mark read) are built on the
 * same envelope and call in proxy/mailbox/ews_mailbox.c. Every call is cancellable and reports once
 * through its callback. The caller owns the access token (token manager) and decides about retries:
 * ews_verdict() says what a result means — refresh the token and try once more (HTTP 401), wait and
 * retry (ErrorServerBusy with BackOffMilliseconds, HTTP 429/503), or the SMTP reply to give.
 *
 * Requests are built from escaped values only (every value goes through ews_xml_escape); the MIME
 * body is streamed in base64 between a prebuilt head and tail (body_stream). Responses are parsed
 * with libxml2 without entity expansion or network access; one with a DTD is refused. The SOAP
 * header carries RequestServerVersion and, for app-only tokens,
 * ExchangeImpersonation/PrimarySmtpAddress; the HTTP request carries Authorization: Bearer and
 * X-AnchorMailbox (which routes the request to the mailbox's server in Exchange Online and in
 * hybrid setups). */
#ifndef XOAUTHD_EWS_H
#define XOAUTHD_EWS_H

#include <stddef.h>

#include "http.h"
#include "message_capture.h"
#include "submit_verdict.h"

#define EWS_DEFAULT_VERSION "Exchange2013_SP1"

struct ews_target {
    const char *url;          /* https://host/EWS/Exchange.asmx */
    const char *ca_file;      /* NULL = system store */
    int tls_no_verify;        /* loopback test endpoints only (http enforces it) */
    const char *version;      /* RequestServerVersion; NULL = EWS_DEFAULT_VERSION */
    const char *mailbox;      /* X-AnchorMailbox */
    const char *impersonate;  /* PrimarySmtpAddress to impersonate (app-only), NULL = none */
    const char *token;        /* access token; copied into the request, never logged */
    unsigned timeout_ms;      /* 0 = 30 s; sending large messages wants more */
};

enum ews_outcome {
    EWS_OUT_OK,        /* ResponseClass Success (or Warning with NoError) */
    EWS_OUT_ERROR,     /* ResponseClass Error: response_code says which */
    EWS_OUT_FAULT,     /* SOAP fault: message_text has faultstring */
    EWS_OUT_HTTP,      /* an HTTP status without a usable SOAP body */
    EWS_OUT_REFUSED,   /* a body xoauthd will not read (a DTD, too deep): message_text */
    EWS_OUT_TRANSPORT  /* no HTTP response at all */
};

struct ews_result {
    enum ews_outcome outcome;
    int http_status;
    int timed_out;
    long retry_after;          /* seconds (Retry-After), -1 */
    long backoff_ms;           /* BackOffMilliseconds of ErrorServerBusy, -1 */
    char response_class[16];
    char response_code[96];
    char message_text[512];    /* MessageText, faultstring or transport error: log only */
    char item_id[1024];        /* first t:ItemId (CreateItem SaveOnly, CopyItem, GetItem) */
    char change_key[256];
    unsigned char *mime;       /* GetItem: decoded MIME, valid during the callback */
    size_t mime_len;
};

typedef void (*ews_cb)(void *arg, const struct ews_result *r);
struct ews_call;

/* Sends msg (CreateItem SendAndSaveCopy, the copy in sentitems). msg must stay readable until
 * the callback. Returns NULL when the request cannot start (the reason is logged); cb never runs
 * then. */
struct ews_call *ews_send(struct http *http, const struct ews_target *t,
                          const struct capture_source *msg, const char *sid, ews_cb cb, void *arg);
/* cb is not called afterwards. */
void ews_cancel(struct ews_call *c);

/* ---- pure parts, exposed for tests ---- */

/* XML text/attribute escaping; NULL when s holds a character XML 1.0 cannot carry. malloc'ed. */
char *ews_xml_escape(const char *s);
/* The send request: *head everything up to the base64 MIME content, *tail the rest. Both
 * malloc'ed. 0 / -1. */
int ews_build_send(const struct ews_target *t, char **head, char **tail);

/* ---- for the modules that build other EWS operations (proxy/mailbox/) ---- */

/* A growing request text; err sticks after the first failure (no memory, a value XML cannot
 * carry), so a builder appends without checking and looks once at the end. */
struct ews_buf {
    char *p;
    size_t len, cap;
    int err;
};
void ews_buf_str(struct ews_buf *b, const char *s);
/* Appends s escaped (ews_xml_escape); NULL appends nothing. */
void ews_buf_esc(struct ews_buf *b, const char *s);
/* The SOAP envelope up to <soap:Body> (version, impersonation), and its end. */
void ews_envelope_open(struct ews_buf *b, const struct ews_target *t);
void ews_envelope_close(struct ews_buf *b);
/* Hands head and tail (an empty string when nothing was put there) to the caller: 0, or -1 with
 * both freed when either failed. */
int ews_request_finish(struct ews_buf *head, struct ews_buf *tail, char **head_out,
                       char **tail_out);
/* Starts a built request; takes head and tail (freed on every path). built is the builder's
 * result: non-zero logs the invalid request and returns NULL. With msg, the body is head, msg in
 * base64, tail; without, head alone. max_response 0 is the default (1 MiB). NULL when the request
 * cannot start; cb never runs then. */
struct ews_call *ews_call_start(struct http *http, const struct ews_target *t, int built,
                                char *head, char *tail, const struct capture_source *msg,
                                size_t max_response, const char *sid, ews_cb cb, void *arg);
/* Parses a response body into r (outcome, codes, ids, MIME). 0; -1 (not a SOAP response);
 * EWS_PARSE_REFUSED with the reason in r->message_text: a response with a DTD, or one deeper
 * or larger in elements than any EWS answer, is refused without building it. */
#define EWS_PARSE_REFUSED (-2)
int ews_parse_response(const char *body, size_t len, struct ews_result *r);
void ews_result_clear(struct ews_result *r);
/* What an HTTP answer to an EWS call means: the result the call's callback gets. */
void ews_result_from_http(const struct http_response *resp, struct ews_result *r);

void ews_verdict(const struct ews_result *r, struct submit_verdict *v);

#endif
