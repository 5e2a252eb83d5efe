/* pop3_parse: every case is fed whole, one byte at a time and split at every point (feed.h);
 * the events must be the same each way. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "feed.h"
#include "pop3_parse.h"

/* feed_render_fn (feed.h) for pop3_parse; arg points to raw. */
static void feed(const char *in, size_t len, size_t step, size_t split, void *arg, char *out,
                 size_t outsz)
{
    int raw = *(const int *)arg;
    struct pop3_parser *p = malloc(sizeof *p);
    pop3_parser_init(p);
    p->raw = raw;
    out[0] = '\0';
    size_t off = 0;
    while (off < len) {
        size_t chunk = feed_piece(len, off, step, split);
        size_t used = 0;
        while (used < chunk) {
            enum pop3_parse_status st;
            used += pop3_parse(p, in + off + used, chunk - used, &st);
            size_t n = strlen(out);
            if (st == POP3_PARSE_DONE && raw)
                snprintf(out + n, outsz - n, "[%s]", p->arg);
            else if (st == POP3_PARSE_DONE)
                snprintf(out + n, outsz - n, "%s<%s>(%zu);", p->keyword, p->arg, p->arg_len);
            else if (st == POP3_PARSE_BAD)
                snprintf(out + n, outsz - n, "BAD;");
            else if (st == POP3_PARSE_TOO_LONG)
                snprintf(out + n, outsz - n, "LONG;");
        }
        off += chunk;
    }
    pop3_parser_reset(p);
    free(p);
}

static void expect_len(const char *in, size_t len, int raw, const char *want)
{
    CHECK(feed_each_way(feed, &raw, in, len, want));
}

static void expect(const char *in, int raw, const char *want)
{
    expect_len(in, strlen(in), raw, want);
}

int main(void)
{
    expect("CAPA\r\n", 0, "CAPA<>(0);");
    expect("capa\r\nuser alice\r\n", 0, "CAPA<>(0);USER<alice>(5);");
    expect("USER alice\nPASS pass with  spaces \r\n", 0,
           "USER<alice>(5);PASS<pass with  spaces >(18);");
    expect("PASS \r\n", 0, "PASS<>(0);");
    expect("AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", 0, "AUTH<PLAIN AGFsaWNlAHNlY3JldA==>(26);");
    expect("STLS\r\nQUIT\r\n", 0, "STLS<>(0);QUIT<>(0);");
    expect("\r\n", 0, "BAD;");
    expect("NO\r\n", 0, "BAD;");
    expect("CAPAB\r\n", 0, "BAD;");
    expect("US3R x\r\n", 0, "BAD;");
    expect(" USER x\r\n", 0, "BAD;");
    expect_len("PASS a\0b\r\nNOOP\r\n", 16, 0, "BAD;NOOP<>(0);");
    /* raw mode: SASL responses, "*" to cancel, empty lines */
    expect("AGFsaWNlAHNlY3JldA==\r\n*\r\n\r\n", 1, "[AGFsaWNlAHNlY3JldA==][*][]");
    /* too long: skipped to the end of the line, then the next command is fine */
    {
        static char big[3 * POP3_PARSE_BUF];
        size_t n = (size_t)snprintf(big, sizeof big, "PASS ");
        memset(big + n, 'x', 2 * POP3_PARSE_BUF);
        n += 2 * POP3_PARSE_BUF;
        snprintf(big + n, sizeof big - n, "\r\nQUIT\r\n");
        expect(big, 0, "LONG;QUIT<>(0);");
        /* at the limit: the line with its CR and a NUL fills the buffer; one more is too long */
        memset(big, 'y', sizeof big);
        memcpy(big, "PASS ", 5);
        snprintf(big + POP3_PARSE_BUF - 2, 3, "\r\n");
        char want[POP3_PARSE_BUF + 32];
        snprintf(want, sizeof want, "PASS<%.*s>(%d);", POP3_PARSE_BUF - 7, big + 5,
                 POP3_PARSE_BUF - 7);
        expect(big, 0, want);
        big[POP3_PARSE_BUF - 2] = 'y';
        snprintf(big + POP3_PARSE_BUF - 1, 3, "\r\n");
        expect(big, 0, "LONG;");
    }
    /* reset cleanses a password */
    {
        struct pop3_parser *p = malloc(sizeof *p);
        pop3_parser_init(p);
        enum pop3_parse_status st;
        pop3_parse(p, "PASS hunter2\r\n", 14, &st);
        CHECK(st == POP3_PARSE_DONE && strcmp(p->arg, "hunter2") == 0);
        pop3_parser_reset(p);
        int found = 0;
        for (size_t i = 0; i + 7 <= sizeof p->buf; i++)
            found |= memcmp(p->buf + i, "hunter2", 7) == 0;
        CHECK(!found);
        free(p);
    }
    return CHECK_DONE();
}
