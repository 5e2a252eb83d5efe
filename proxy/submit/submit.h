/* submit: the SMTP session's transaction for accounts whose first submit path is ews or graph.
 *
 * The session keeps speaking SMTP to its client; this module answers MAIL/RCPT locally (RCPT
 * is checked for syntax only — the provider gives the real verdict at the end), stores the
 * un-dot-stuffed message (message_capture: memory, then a nameless spool file), collects its
 * header (message_header) and, at the end of DATA, submits it along the account's submit list:
 *
 *   token (token manager) -> EWS CreateItem or Graph sendMail -> verdict
 *     401            -> forced token refresh, once, then the same request again
 *     busy/throttled -> wait BackOffMilliseconds / Retry-After if the session's budget allows
 *     graph, too big -> the next path of the list (ews or smtp), else 552
 *
 * and hands the session exactly one reply. 250 only after the provider accepted (EWS NoError,
 * Graph 202); everything else is a 4xx the sender retries or the provider's permanent 5xx, with
 * a log line that says what to fix. Nothing is sent before the end of DATA, so a client that
 * goes away mid-message causes no request at all. */
#ifndef XOAUTHD_SUBMIT_H
#define XOAUTHD_SUBMIT_H

#include <stddef.h>

#include "config.h"
#include "upstream.h"

struct proxy_context;
struct submit;

/* reply: one SMTP reply line without CRLF ("250 2.0.0 ..."). */
typedef void (*submit_reply_cb)(void *arg, const char *reply);
typedef void (*submit_drain_cb)(void *arg);

/* 1 when the account's first submit path is ews or graph: the session answers MAIL, RCPT and
 * DATA itself and calls this module. */
int submit_is_local(const struct config_account *acct);

/* drain_cb: the message store caught up after submit_data_congested() said 1. */
struct submit *submit_new(struct proxy_context *ctx, const struct config_account *acct,
                          const char *sid, submit_drain_cb drain_cb, void *arg);
/* Cancels whatever runs (no callback afterwards); the stored message is discarded. */
void submit_free(struct submit *s);
/* The account the submission was made for. */
const struct config_account *submit_account(const struct submit *s);

/* At AUTH: fetch a token so that a broken token endpoint shows as 454 at once. cb gets
 * UPSTREAM_OK or UPSTREAM_FAIL_TOKEN. May call cb before returning. */
void submit_check_login(struct submit *s, upstream_login_cb cb);

void submit_reset(struct submit *s);
void submit_mail(struct submit *s, const char *path, size_t len);
/* NULL when accepted, else the reply for the client. */
const char *submit_rcpt(struct submit *s, const char *path, size_t len);
unsigned submit_rcpt_count(const struct submit *s);

/* -1 when the message cannot be stored (the reply is then a 451). */
int submit_data_begin(struct submit *s);
int submit_data_write(struct submit *s, const char *buf, size_t len);
int submit_data_congested(const struct submit *s);
/* The whole message is in; cb gets the one reply (maybe before this returns). */
void submit_data_end(struct submit *s, submit_reply_cb cb);
size_t submit_data_size(const struct submit *s);

#endif
