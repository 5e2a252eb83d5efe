/* sender_rules: what a device may claim to be, and what the provider is shown instead.
 *
 * Providers refuse mail whose sender is not the mailbox that logged in (Microsoft:
 * "554 5.2.252 SendAsDenied"), while scanners and printers send as "scanner@printer.local".
 * Per account (config.h):
 *   allowed_senders = addr, *@domain     MAIL FROM must match one entry, else 550 5.7.1 before
 *                                         DATA (the message never leaves the client);
 *   envelope_from   = keep | account      MAIL FROM is rewritten to the mailbox;
 *   header_from     = keep | account | account-with-name
 *                                         every From: header (however spelt) is replaced by
 *                                         one, the mailbox (keeping the display name with
 *                                         account-with-name), and Reply-To: gets the first
 *                                         original From: so that answers still reach the
 *                                         person behind the device.
 *
 * The header filter works on the DATA stream as it is relayed (CRLF lines, dot-stuffed or not):
 * it holds only the header block, never the body, and passes everything after the first empty
 * line through untouched and without copying. No I/O here; unit-tested byte by byte. */
#ifndef XOAUTHD_SENDER_RULES_H
#define XOAUTHD_SENDER_RULES_H

#include <stddef.h>

#include "config.h"

/* The header block is held up to this size. A bigger one is refused, not passed unchanged: a
 * From: beyond the limit would reach the provider as the device wrote it. Providers refuse such
 * headers anyway (Postfix keeps 100 KiB, header_size_limit; Gmail blocks big headers). */
#define SENDER_FILTER_MAX_HEADER (256 * 1024)

/* 1 when the reverse path (without <>, "" for the null sender) may be used by acct: no
 * allowed_senders list, or an entry equal to it (case-insensitive), or "*@domain" matching its
 * domain. The null sender matches only an entry "<>". */
int sender_rules_allowed(const struct config_account *acct, const char *path, size_t path_len);

/* MAIL FROM line to relay for acct. When envelope_from = account and the path differs from the
 * mailbox, writes "MAIL FROM:<mailbox> PARAMS" (no CRLF, the client's parameters kept) into out
 * and returns its length; returns 0 when the line is relayed as the client wrote it, -1 when
 * it does not fit outsz. */
long sender_rules_mail_line(const struct config_account *acct, const char *path, size_t path_len,
                            const char *params, size_t params_len, char *out, size_t outsz);

enum sender_filter_state {
    SENDER_FILTER_OFF,     /* header_from = keep: bytes pass through */
    SENDER_FILTER_HEADERS, /* collecting the header block */
    SENDER_FILTER_BODY,    /* header block done: bytes pass through */
    SENDER_FILTER_REFUSED  /* header block too big (gave_up): every feed fails */
};

struct sender_filter {
    enum sender_filter_state state;
    const struct config_account *acct;
    char *hdr;          /* the header block so far (and what followed it in the same feed) */
    size_t hdr_len, hdr_cap;
    size_t scanned;     /* hdr bytes already known to be complete header lines */
    char *out;          /* output of the feed that ended the header block */
    size_t out_cap;
    int rewritten;      /* the From: header was changed */
    int gave_up;        /* header block over SENDER_FILTER_MAX_HEADER: refused */
    char original_from[256]; /* for the log line, cut */
};

/* Starts a message. acct may be NULL (no rewriting). */
void sender_filter_init(struct sender_filter *f, const struct config_account *acct);
/* Feeds relayed bytes. *out / *out_len: the bytes to send on now (possibly none while headers
 * are collected; possibly in, unchanged). Valid until the next call. 0, or -1: out of memory,
 * or (gave_up set) a header block too big to rewrite, and the message must not be sent. */
int sender_filter_feed(struct sender_filter *f, const char *in, size_t len, const char **out,
                       size_t *out_len);
/* The end of the message; call it for every message. A header block still held (a message
 * without an empty line, or one whose "." end marker came right after the header block: a
 * "." line is the end only when nothing follows it) is rewritten and returned. 0, or -1 out
 * of memory. */
int sender_filter_finish(struct sender_filter *f, const char **out, size_t *out_len);
/* Frees the buffers; the filter is OFF afterwards. Safe to call twice. */
void sender_filter_reset(struct sender_filter *f);

/* The rewrite of one complete header block (CRLF lines, without the empty line). Returns a
 * malloc'ed block and its length in *out_len, or NULL when nothing changes (or out of memory,
 * *out_len = (size_t)-1). Exposed for unit tests. */
char *sender_rules_rewrite_headers(const struct config_account *acct, const char *hdr,
                                   size_t len, size_t *out_len, char *orig, size_t origsz);

#endif
