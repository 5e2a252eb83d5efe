/* libFuzzer target: the IMAP command parser (tags, atoms, quoted strings, literals of both
 * kinds, parentheses) fed in chunks, plus the capability and response-code helpers that
 * imap_upstream uses on the provider's answers at login (the whole login dialogue is in
 * fuzz_upstream_login). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct imap_parser p;
    imap_parser_init(&p, 4096);
    const char *in = (const char *)data;
    size_t off = 0, step = size > 0 ? (data[0] % 16) + 1 : 1;
    int rounds = 0;
    while (off < size && rounds++ < 100000) {
        size_t n = size - off < step ? size - off : step;
        enum imap_parse_status st;
        size_t used = imap_parse(&p, in + off, n, &st);
        if (used > n)
            abort();
        off += used;
        (void)imap_parser_reply_tag(&p);
        if (st == IMAP_PARSE_DONE) {
            for (size_t i = 0; i < p.nargs && i < IMAP_PARSE_MAX_ARGS; i++)
                if (p.args[i].str != NULL && strlen(p.args[i].str) > p.args[i].len)
                    abort();
            imap_parser_reset(&p);
        } else if (st == IMAP_PARSE_BAD || st == IMAP_PARSE_FATAL) {
            imap_parser_reset(&p);
        } else if (used == 0 && st == IMAP_PARSE_AGAIN) {
            step++;
        }
    }
    imap_parser_reset(&p);

    char out[512];
    size_t k = imap_capability_filter(in, size, out, sizeof out);
    if (k >= sizeof out || strlen(out) > k) /* NULs inside atoms are copied as they are */
        abort();
    const char *arg;
    size_t arg_len;
    if (imap_response_code(in, size, "UNAVAILABLE", &arg, &arg_len) == 1 &&
        (arg < in || arg + arg_len > in + size))
        abort();
    (void)imap_capability_has(in, size, "SASL-IR");
    /* imap_upstream skips the code by looking for its "]": it must be there, after arg. */
    static const char *const codes[] = {"CAPABILITY", "SERVERBUG", "ALERT"};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        if (imap_response_code(in, size, codes[i], &arg, &arg_len) == 1) {
            const char *close = memchr(in, ']', size);
            if (close == NULL || arg < in || arg + arg_len != close)
                abort();
        }
    }
    return 0;
}
