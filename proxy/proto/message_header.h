/* message_header: what EWS and Graph need from a message's header before submission.
 *
 * Both read the recipients from the MIME header (To, Cc, Bcc), not from the SMTP envelope
 * (docs/protocol-notes.md, "Never lose a message"). An envelope recipient that the header does not
 * name — a Bcc written by a client that strips the Bcc: line before DATA, as RFC 5322 3.6.3 allows,
 * or a smarthost's alias expansion — would silently get nothing. So the header block is collected
 * as the message streams by (bounded; no I/O), and a "Bcc:" line naming the missing recipients is
 * built to be put in front of the message. Matching is deliberately generous (the address as a
 * token anywhere in To/Cc/Bcc, case-insensitive): a false "present" only happens when the header
 * already names that exact address. */
#ifndef XOAUTHD_MESSAGE_HEADER_H
#define XOAUTHD_MESSAGE_HEADER_H

#include <stddef.h>

#define MESSAGE_HEADER_MAX (256 * 1024)

struct message_header_scan {
    char *buf;         /* the header block so far (malloc'ed) */
    size_t len, cap;
    int state;
    int done;          /* the empty line that ends the header was seen */
    int truncated;     /* longer than MESSAGE_HEADER_MAX: only the start is kept */
    int failed;        /* out of memory */
};

void message_header_scan_init(struct message_header_scan *h);
/* Feeds message bytes in order, in chunks of any size. */
void message_header_scan_feed(struct message_header_scan *h, const char *p, size_t n);
void message_header_scan_free(struct message_header_scan *h);

/* Builds "Bcc: a@x,\r\n b@y\r\n" for the addresses of rcpts that To/Cc/Bcc of the scanned header
 * do not name. Returns a malloc'ed string, "" (malloc'ed) when none are missing, or NULL when
 * out of memory. *n_missing (may be NULL) tells how many were added. */
char *message_header_bcc(const struct message_header_scan *h, const char *const *rcpts,
                         size_t n_rcpts, size_t *n_missing);

#endif
