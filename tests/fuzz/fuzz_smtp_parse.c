/* libFuzzer target: SMTP command lines (line framing + smtp_parse_command), the upstream's
 * reply lines (smtp_reply_line_parse) and the DATA scanner, relayed and unstuffed, fed in
 * chunks whose sizes come from the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "line.h"
#include "smtp_parse.h"
#include "smtp_upstream.h"

static void fuzz_data_scan(const uint8_t *data, size_t size, int unstuff)
{
    struct smtp_data_scan scan;
    smtp_data_scan_init(&scan);
    if (unstuff)
        smtp_data_scan_unstuffed(&scan);
    char *out = malloc(2 * size + 16);
    if (out == NULL)
        return;
    size_t off = 0, step = 1;
    while (off < size) {
        size_t n = size - off < step ? size - off : step;
        size_t out_len = 0;
        long end = smtp_data_scan(&scan, (const char *)data + off, n, out, &out_len);
        if (out_len > 2 * n + 2)
            abort(); /* the documented bound on out */
        if (end >= 0) {
            if ((size_t)end > n)
                abort();
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
