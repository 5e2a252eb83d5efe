/* submit_verdict: what a finished EWS or Graph submission means for the SMTP client — retry
 * with a fresh token, wait and retry, or the final reply — and the tables shared by both: the
 * provider error codes (EWS ResponseCode, Graph error.code) as SMTP replies (RFC 3463 enhanced
 * status codes) and the hint for the admin's log. ews_verdict() and graph_verdict() fill a
 * struct submit_verdict from their own results. */
#ifndef XOAUTHD_SUBMIT_VERDICT_H
#define XOAUTHD_SUBMIT_VERDICT_H

/* The replies more than one provider gives (without CRLF). 451: temporary, so that nothing is
 * lost (RFC 5321 4.2.1); the client's queue retries. */
#define SUBMIT_REPLY_OK "250 2.0.0 Ok: the mail provider accepted the message"
#define SUBMIT_REPLY_BUSY "451 4.4.5 The mail provider is busy, try again later"
#define SUBMIT_REPLY_TEMP "451 4.3.0 Temporary failure at the mail provider, try again later"
#define SUBMIT_REPLY_UNREACH "451 4.4.1 Cannot reach the mail provider, try again later"
#define SUBMIT_REPLY_AUTH \
    "451 4.7.0 The mail provider refused xoauthd's credentials, try again later"
#define SUBMIT_REPLY_SIZE "552 5.3.4 Message too big for the mail provider"
#define SUBMIT_REPLY_SCHEMA "554 5.6.0 The mail provider could not process the message"

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
/* The admin's hint for a provider error code; NULL when there is none. */
const char *submit_code_hint(const char *code);

#endif
