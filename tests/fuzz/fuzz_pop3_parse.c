/* libFuzzer target: the POP3 command parser, in command and raw (SASL) mode, fed in chunks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pop3_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct pop3_parser p;
    pop3_parser_init(&p);
    p.raw = size > 0 && (data[0] & 1);
    const char *in = (const char *)data;
    size_t off = 0, step = size > 0 ? (data[0] % 32) + 1 : 1;
    int rounds = 0;
    while (off < size && rounds++ < 100000) {
        size_t n = size - off < step ? size - off : step;
        enum pop3_parse_status st;
        size_t used = pop3_parse(&p, in + off, n, &st);
        if (used > n)
            abort();
        if (st == POP3_PARSE_DONE && (p.arg == NULL || strlen(p.arg) != p.arg_len))
            abort();
        off += used;
        if (used == 0 && st == POP3_PARSE_AGAIN)
            break;
    }
    pop3_parser_reset(&p);
    return 0;
}
