/* libFuzzer target: SMTP command lines (line framing + smtp_parse_command), the upstream's
 * reply lines (smtp_reply_line_parse) and the DATA scanner, relayed and unstuffed, fed in
 * chunks whose sizes come from the input; the relayed bytes never hold a fake end of data, and
 * the count-only scan agrees with the copying one. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "line.h"
#include "smtp_parse.h"
#include "smtp_upstream.h"

/* The relayed bytes of one message, end marker included: no "." stands between line-end bytes
 * (of any reading: CR, LF or CRLF) except in that marker. Otherwise some receiver would end the
 * message early, which is SMTP smuggling through xoauthd. */
static void fuzz_check_relayed(const char *m, size_t len, int ended)
{
    size_t marker = ended ? len - 3 : len;
    if (ended && (len < 3 || memcmp(m + marker, ".\r\n", 3) != 0 ||
                  (marker > 0 && (marker < 2 || memcmp(m + marker - 2, "\r\n", 2) != 0))))
        abort();
    for (size_t i = 0; i < marker; i++) {
        if (m[i] != '.')
            continue;
        int before = i == 0 || m[i - 1] == '\r' || m[i - 1] == '\n';
        int after = i + 1 < len && (m[i + 1] == '\r' || m[i + 1] == '\n');
        if (before && after)
            abort();
    }
}

static void fuzz_data_scan(const uint8_t *data, size_t size, int unstuff)
{
    struct smtp_data_scan scan;
    smtp_data_scan_init(&scan);
    if (unstuff)
        smtp_data_scan_unstuffed(&scan);
    /* Each piece may add three bytes (a held ".\r", stuffed) to twice its size. */
    char *out = malloc(4 * size + 16);
    if (out == NULL)
        return;
    size_t off = 0, step = 1, msg = 0;
    while (off < size) {
        size_t n = size - off < step ? size - off : step;
        size_t out_len = 0, as_came = 0;
        if (!unstuff) {
            /* The count-only scan says "as it came" only when that is what it would write. */
            struct smtp_data_scan before = scan;
            long e = smtp_data_scan(&scan, (const char *)data + off, n, NULL, &as_came);
            scan = before;
            if (as_came != (size_t)-1 && as_came != (e >= 0 ? (size_t)e : n))
                abort();
        }
        long end = smtp_data_scan(&scan, (const char *)data + off, n, out + msg, &out_len);
        if (out_len > 2 * n + 3)
            abort(); /* the documented bound on out */
        if (as_came != (size_t)-1 && as_came != 0 &&
            (as_came != out_len || memcmp(out + msg, data + off, out_len) != 0))
            abort();
        msg += out_len;
        if (end >= 0) {
            if ((size_t)end > n)
                abort();
            if (!unstuff)
                fuzz_check_relayed(out, msg, 1);
            msg = 0;
            off += (size_t)end;
            smtp_data_scan_init(&scan); /* the next message */
            if (unstuff)
                smtp_data_scan_unstuffed(&scan);
            if (end == 0)
                off++;
        } else {
            off += n;
        }
        step = step * 3 + 1; /* 1, 4, 13, 40, ... */
        if (step > 70000)
            step = 1;
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    size_t off = 0;
    while (off < size) {
        size_t len, used;
        enum line_result r = line_next(buf + off, size - off, 512, &len, &used);
        if (r == LINE_AGAIN)
            break;
        if (r == LINE_TOO_LONG) {
            if (!line_skip(buf + off, size - off, &used))
                break;
            off += used;
            continue;
        }
        char *line = malloc(len + 1);
        if (line == NULL)
            return 0;
        memcpy(line, buf + off, len);
        line[len] = '\0';
        struct smtp_command cmd;
        memset(&cmd, 0, sizeof cmd);
        (void)smtp_parse_command(line, len, &cmd);
        (void)smtp_verb_name(cmd.verb);
        int last = -1;
        int code = smtp_reply_line_parse(line, len, &last);
        if (code != -1 && (code < 100 || code > 599 || (last != 0 && last != 1)))
            abort();
        free(line);
        if (used == 0)
            break;
        off += used;
    }
    fuzz_data_scan(data, size, 0);
    fuzz_data_scan(data, size, 1);
    return 0;
}
