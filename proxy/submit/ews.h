/* ews: a small asynchronous Exchange Web Services client (SOAP over the http module).
 *
 * Operations: sending a MIME message (CreateItem SendAndSaveCopy, copy in sentitems), appending
 * one to a folder (CreateItem SaveOnly, marked as not a draft), GetItem with MIME content,
 * CopyItem, DeleteItem and DeleteFolder (HardDelete), and UpdateItem setting message:IsRead.
 * Every call is cancellable and reports once through its callback. The caller owns the access
 * token (token manager) and decides about retries: ews_verdict() says what a result means —
 * refresh the token and try once more (HTTP 401), wait and retry (ErrorServerBusy with
 * BackOffMilliseconds, HTTP 429/503), or the SMTP reply to give.
 *
 * Requests are built from escaped values only (every value goes through ews_xml_escape); the
 * MIME body is streamed in base64 between a prebuilt head and tail (body_stream). Responses are
 * parsed with libxml2 without entity expansion or network access; one with a DTD is refused. The SOAP header carries
 * RequestServerVersion and, for app-only tokens, ExchangeImpersonation/PrimarySmtpAddress; the
 * HTTP request carries Authorization: Bearer and X-AnchorMailbox (which routes the request to
 * the mailbox's server in Exchange Online and in hybrid setups). */
#ifndef XOAUTHD_EWS_H
#define XOAUTHD_EWS_H

#include <stddef.h>

#include "http.h"
#include "message_capture.h"

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

/* A folder: a distinguished name ("inbox", "sentitems", ...) or an EWS FolderId. */
struct ews_folder {
    const char *id;
    const char *change_key; /* FolderId only; may be NULL */
    int distinguished;
};

enum ews_op {
    EWS_OP_SEND,          /* CreateItem SendAndSaveCopy into sentitems */
    EWS_OP_SAVE,          /* CreateItem SaveOnly into params.folder */
    EWS_OP_GET_MIME,      /* GetItem IdOnly + MimeContent */
    EWS_OP_COPY,          /* CopyItem to params.folder */
    EWS_OP_DELETE_ITEM,   /* DeleteItem HardDelete */
    EWS_OP_DELETE_FOLDER, /* DeleteFolder HardDelete of params.folder */
    EWS_OP_SET_READ       /* UpdateItem message:IsRead = params.is_read */
};

struct ews_params {
    const char *item_id;
    const char *change_key; /* optional for COPY/DELETE; recommended for SET_READ */
    struct ews_folder folder;
    int is_read;
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

/* msg is read only for SEND and SAVE (it must stay readable until the callback). Returns NULL
 * when the request cannot start (the reason is logged); cb never runs then. */
struct ews_call *ews_start(struct http *http, const struct ews_target *t, enum ews_op op,
                           const struct ews_params *p, const struct capture_source *msg,
                           const char *sid, ews_cb cb, void *arg);
/* cb is not called afterwards. */
void ews_cancel(struct ews_call *c);

/* ---- pure parts, exposed for tests ---- */

/* XML text/attribute escaping; NULL when s holds a character XML 1.0 cannot carry. malloc'ed. */
char *ews_xml_escape(const char *s);
/* The request for op: *head is the whole SOAP envelope, or for SEND/SAVE everything up to the
 * base64 MIME content with *tail the rest. Both malloc'ed. 0 / -1. */
int ews_build_request(enum ews_op op, const struct ews_target *t, const struct ews_params *p,
                      char **head, char **tail);
/* Parses a response body into r (outcome, codes, ids, MIME). 0; -1 (not a SOAP response);
 * EWS_PARSE_REFUSED with the reason in r->message_text: a response with a DTD, or one deeper
 * or larger in elements than any EWS answer, is refused without building it. */
#define EWS_PARSE_REFUSED (-2)
int ews_parse_response(const char *body, size_t len, struct ews_result *r);
void ews_result_clear(struct ews_result *r);
/* What an HTTP answer to an EWS call means: the result the call's callback gets. */
void ews_result_from_http(const struct http_response *resp, struct ews_result *r);

/* What a finished submission means, for EWS and Graph alike. */
enum submit_verdict_kind {
    SUBMIT_V_OK,
    SUBMIT_V_REAUTH, /* token rejected: refresh once and retry */
    SUBMIT_V_BUSY,   /* throttled: retry after wait_ms when the session's budget allows */
    SUBMIT_V_FAIL    /* reply is final */
};
struct submit_verdict {
    enum submit_verdict_kind kind;
    long wait_ms;       /* BUSY: the provider's wish, -1 when it named none */
    const char *reply;  /* the SMTP reply (without CRLF) when the attempt ends here */
    const char *hint;   /* for the log: what the admin should check; NULL when nothing */
};
/* A provider error code (EWS ResponseCode or Graph error.code) as an SMTP reply; NULL when the
 * code is not in the table. */
const char *submit_code_reply(const char *code);
/* A Retry-After value in seconds (-1: none) as wait_ms: -1, or the milliseconds, capped at
 * LONG_MAX (http_retry_after_seconds caps an absurd value at HTTP_RETRY_AFTER_MAX). */
long submit_retry_after_ms(long retry_after);
void ews_verdict(const struct ews_result *r, struct submit_verdict *v);

#endif
