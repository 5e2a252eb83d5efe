/* line: CRLF framing over a byte buffer, with hard limits. No I/O, no allocation.
 *
 * Lines end at LF; a CR before it is stripped (bare LF is accepted because old devices send
 * it, and nothing in xoauthd depends on the distinction before DATA). A line longer than the
 * limit is never buffered whole: the caller learns LINE_TOO_LONG and skips to the next LF with
 * line_skip(), so a hostile peer cannot grow memory by withholding the newline. */
#ifndef XOAUTHD_LINE_H
#define XOAUTHD_LINE_H

#include <stddef.h>

enum line_result {
    LINE_OK,       /* *line_len bytes of text (CR LF stripped), *consumed bytes to drop */
    LINE_AGAIN,    /* no complete line yet and still under the limit */
    LINE_TOO_LONG  /* max bytes and no LF: skip with line_skip() and answer an error */
};

/* max counts the line with its CRLF (RFC 5321 4.5.3.1.4: 512 octets for a command line). */
enum line_result line_next(const char *buf, size_t len, size_t max, size_t *line_len,
                           size_t *consumed);

/* Skips to just after the next LF. Returns 1 with *consumed when found, 0 (consume all of buf
 * and keep skipping) when not. */
int line_skip(const char *buf, size_t len, size_t *consumed);

#endif
