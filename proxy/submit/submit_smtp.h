/* submit_smtp: one SMTP client transaction for a stored message — the submit list's smtp path
 * after graph was too big (submit = graph, smtp). Logs in upstream with the account's token
 * (smtp_upstream), sends MAIL, one RCPT per envelope recipient, DATA, the message dot-stuffed
 * again (RFC 5321 4.5.2) and the final dot, and gives exactly one SMTP reply line:
 *
 *   LOGIN -> MAIL -> RCPT (each) -> DATA -> BODY -> DOT -> the provider's verdict
 *
 * Any refused step ends the transaction: the client was told 250 for every RCPT already, so a
 * refused recipient fails the whole message (550 for a 5xx, 451 for the rest) rather than
 * delivering to a subset silently. */
#ifndef XOAUTHD_SUBMIT_SMTP_H
#define XOAUTHD_SUBMIT_SMTP_H

#include <stddef.h>

#include "config.h"
#include "message_capture.h"

struct proxy_context;
struct submit_smtp;

/* reply: one SMTP reply line without CRLF. Called once; the callee may free the transaction
 * from inside it. */
typedef void (*submit_smtp_done_cb)(void *arg, const char *reply);

/* mail_from, rcpts and cap are the caller's and must stay until the callback or the free. NULL
 * when out of memory. Nothing runs before submit_smtp_run, so the caller can keep the pointer
 * first. */
struct submit_smtp *submit_smtp_new(struct proxy_context *ctx, const struct config_account *acct,
                                    const char *sid, const char *mail_from, char *const *rcpts,
                                    size_t n_rcpts, struct capture *cap, submit_smtp_done_cb cb,
                                    void *arg);
/* Starts the login; cb may run before this returns (a failed login). */
void submit_smtp_run(struct submit_smtp *t);
/* No callback afterwards. Mid-DATA the connection closes without the final dot: the server
 * drops the partial message. */
void submit_smtp_free(struct submit_smtp *t);

#endif
