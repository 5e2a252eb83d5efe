/* pop3_parse: a resumable parser for POP3 command lines (RFC 1939 section 3), no I/O.
 *
 * A POP3 command is a keyword of three or four letters, case-insensitive, then arguments
 * separated by single spaces, ending in CRLF. Input arrives in arbitrary pieces, so the parser
 * keeps its place between calls: it assembles one line in its own bounded buffer and reports
 * DONE with the keyword (upper-cased) and the rest of the line, BAD for a line that is no
 * command, or TOO_LONG once a line passes the limit (the rest of that line is skipped without
 * being stored, so a peer cannot grow memory by withholding the newline).
 *
 * The argument is the rest of the line as it came (after one space): RFC 1939 lets PASS carry
 * a password with spaces in it. In raw mode the whole line is returned untouched, for the
 * lines of a SASL exchange (RFC 5034), which are not commands. The buffer may hold a password:
 * pop3_parser_reset() and the next line cleanse it. */
#ifndef XOAUTHD_POP3_PARSE_H
#define XOAUTHD_POP3_PARSE_H

#include <stddef.h>

/* RFC 2449 section 4: command lines up to 255 octets; SASL lines (RFC 5034 section 4) are
 * longer, and passwords are generous here. */
#define POP3_PARSE_BUF 4096

enum pop3_parse_status {
    POP3_PARSE_AGAIN,   /* everything given was consumed; no whole line yet */
    POP3_PARSE_DONE,    /* keyword + arg (or line, in raw mode) */
    POP3_PARSE_BAD,     /* not a command (empty line, no keyword, a NUL); the line was consumed */
    POP3_PARSE_TOO_LONG /* the line was longer than the buffer; it was consumed */
};

struct pop3_parser {
    char buf[POP3_PARSE_BUF];
    size_t len;
    int skipping;  /* inside a line that was too long */
    int finished;  /* a result was returned; the next call starts a new line */
    int raw;       /* return whole lines (set by the caller for SASL responses) */

    /* results after DONE */
    char keyword[5];
    const char *arg;  /* NUL-terminated; "" when none; the whole line in raw mode */
    size_t arg_len;
};

void pop3_parser_init(struct pop3_parser *p);
/* Forgets the line in progress and cleanses the buffer (keeps raw). */
void pop3_parser_reset(struct pop3_parser *p);
/* Consumes bytes of in up to the end of one line; returns how many, the status in *st. */
size_t pop3_parse(struct pop3_parser *p, const char *in, size_t len, enum pop3_parse_status *st);

#endif
