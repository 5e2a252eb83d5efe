/* imap_parse: every case is fed whole, one byte at a time and in two halves at every split
 * point (feed.h); the parser must give the same events each way. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "feed.h"
#include "imap_parse.h"

/* Renders the events of one feeding as text: "tag CMD [A:atom] [S:string] ( ) ;" per command,
 * "+" for a continuation request, "BAD(tag):why;" and "FATAL:why;". */
static void describe(struct imap_parser *p, enum imap_parse_status st, char *out, size_t outsz)
{
    size_t n = strlen(out);
    switch (st) {
    case IMAP_PARSE_DONE:
        n += (size_t)snprintf(out + n, outsz - n, "%s %s", p->tag, p->command);
        for (size_t i = 0; i < p->nargs && n < outsz; i++) {
            const struct imap_arg *a = &p->args[i];
            if (a->type == IMAP_ARG_ATOM)
                n += (size_t)snprintf(out + n, outsz - n, " A:%s", a->str);
            else if (a->type == IMAP_ARG_STRING)
                n += (size_t)snprintf(out + n, outsz - n, " S:%s(%zu)", a->str, a->len);
            else
                n += (size_t)snprintf(out + n, outsz - n, " %c",
                                      a->type == IMAP_ARG_LPAREN ? '(' : ')');
        }
        if (n < outsz)
            snprintf(out + n, outsz - n, ";");
        break;
    case IMAP_PARSE_CONTINUE:
        snprintf(out + n, outsz - n, "+");
        break;
    case IMAP_PARSE_BAD:
        snprintf(out + n, outsz - n, "BAD(%s):%s;", imap_parser_reply_tag(p), p->error);
        break;
    case IMAP_PARSE_FATAL:
        snprintf(out + n, outsz - n, "FATAL:%s;", p->error);
        break;
    case IMAP_PARSE_AGAIN:
        break;
    }
}

/* feed_render_fn (feed.h) for imap_parse; arg points to max_literal. */
static void feed(const char *in, size_t len, size_t step, size_t split, void *arg, char *out,
                 size_t outsz)
{
    struct imap_parser *p = malloc(sizeof *p);
    imap_parser_init(p, *(const size_t *)arg);
    out[0] = '\0';
    size_t off = 0;
    int fatal = 0;
    while (off < len && !fatal) {
        size_t chunk = feed_piece(len, off, step, split);
        size_t used = 0;
        while (used < chunk) {
            enum imap_parse_status st;
            size_t n = imap_parse(p, in + off + used, chunk - used, &st);
            used += n;
            describe(p, st, out, outsz);
            if (st == IMAP_PARSE_FATAL) {
                fatal = 1;
                break;
            }
            if (st == IMAP_PARSE_AGAIN && n == 0)
                break;
        }
        off += chunk;
    }
    imap_parser_reset(p);
    free(p);
}

static void expect_len(const char *in, size_t len, size_t max_literal, const char *want)
{
    CHECK(feed_each_way(feed, &max_literal, in, len, want));
}

static void expect(const char *in, size_t max_literal, const char *want)
{
    expect_len(in, strlen(in), max_literal, want);
}

/* An ID command of pairs pairs, fields of flen octets ("f" and the pair's number, padded with
 * "x"), values of vlen octets; value_literal: every value as a synchronising literal. Returns
 * the length written to out. */
static size_t id_line(char *out, size_t outsz, unsigned pairs, size_t flen, size_t vlen,
                      int value_literal)
{
    size_t n = (size_t)snprintf(out, outsz, "i ID (");
    for (unsigned k = 0; k < pairs && n + flen + vlen + 32 < outsz; k++) {
        char field[64];
        int fl = snprintf(field, sizeof field, "f%u", k);
        while ((size_t)fl < flen && (size_t)fl + 1 < sizeof field)
            field[fl++] = 'x';
        field[fl] = '\0';
        n += (size_t)snprintf(out + n, outsz - n, "%s\"%s\" ", k > 0 ? " " : "", field);
        if (value_literal) {
            n += (size_t)snprintf(out + n, outsz - n, "{%zu}\r\n", vlen);
        } else {
            out[n++] = '"';
        }
        memset(out + n, 'v', vlen);
        n += vlen;
        if (!value_literal)
            out[n++] = '"';
    }
    n += (size_t)snprintf(out + n, outsz - n, ")\r\nb NOOP\r\n");
    return n;
}

/* RFC 2971 section 3.3's maximum (30 pairs, 30-octet fields, 1024-octet values: a 31.8 KB line)
 * is taken, where any other command has an 8 KiB line and 32 arguments; one octet or pair more
 * is refused. */
static void test_id_limits(void)
{
    static char line[64 * 1024];
    size_t n = id_line(line, sizeof line, IMAP_ID_MAX_PAIRS, IMAP_ID_MAX_FIELD,
                       IMAP_ID_MAX_VALUE, 0);
    CHECK(n > 31000 && n < 33000);
    expect_len(line, n, 1024, "i ID;b NOOP;");
    /* the same with every value a literal: each gets its continuation request */
    n = id_line(line, sizeof line, IMAP_ID_MAX_PAIRS, IMAP_ID_MAX_FIELD, IMAP_ID_MAX_VALUE, 1);
    char want[128];
    memset(want, '+', IMAP_ID_MAX_PAIRS);
    snprintf(want + IMAP_ID_MAX_PAIRS, sizeof want - IMAP_ID_MAX_PAIRS, "i ID;b NOOP;");
    expect_len(line, n, 1024, want);
    n = id_line(line, sizeof line, IMAP_ID_MAX_PAIRS + 1, 4, 4, 0);
    expect_len(line, n, 1024, "BAD(i):Too many ID field/value pairs;b NOOP;");
    n = id_line(line, sizeof line, 2, IMAP_ID_MAX_FIELD + 1, 4, 0);
    expect_len(line, n, 1024, "BAD(i):ID field or value too long;b NOOP;");
    n = id_line(line, sizeof line, 2, 4, IMAP_ID_MAX_VALUE + 1, 0);
    expect_len(line, n, 1024, "BAD(i):ID field or value too long;b NOOP;");
    /* a synchronising literal too long is refused before the client sends it (RFC 9051 7.5) */
    expect("i ID (\"a\" {1025}\r\nb NOOP\r\n", 1024, "BAD(i):Literal too large;b NOOP;");
    /* the grammar: NIL or one flat list of string/nstring pairs */
    expect("i ID (\"a\")\r\n", 1024, "BAD(i):An ID field without a value;");
    expect("i ID (NIL \"a\")\r\n", 1024, "BAD(i):An ID field must be a string;");
    expect("i ID (\"a\" b)\r\n", 1024, "BAD(i):An ID value must be a string or NIL;");
    expect("i ID ((\"a\" \"b\"))\r\n", 1024,
           "BAD(i):ID takes NIL or one list of field/value pairs;");
    expect("i ID NIL NIL\r\n", 1024, "BAD(i):ID takes NIL or one list of field/value pairs;");
    expect("i ID () ()\r\n", 1024, "BAD(i):ID takes NIL or one list of field/value pairs;");
    expect("i ID\r\n", 1024, "BAD(i):ID takes NIL or one list of field/value pairs;");
    expect("i ID x\r\n", 1024, "BAD(i):ID takes NIL or one list of field/value pairs;");
    /* ...and every other command keeps its limits: 32 arguments, the 8 KiB buffer */
    char many[512];
    n = (size_t)snprintf(many, sizeof many, "a NOOP");
    for (int k = 0; k < IMAP_PARSE_MAX_ARGS + 1; k++)
        n += (size_t)snprintf(many + n, sizeof many - n, " x");
    snprintf(many + n, sizeof many - n, "\r\n");
    expect(many, 1024, "BAD(a):Too many arguments;");
    n = id_line(line, sizeof line, IMAP_ID_MAX_PAIRS, IMAP_ID_MAX_FIELD, IMAP_ID_MAX_VALUE, 0);
    memcpy(line + 2, "XD", 2); /* "i XD (...": the same line under another name */
    expect_len(line, n, 1024, "BAD(i):Command line too long;b NOOP;");
}

int main(void)
{
    /* atoms, quoted strings with escapes, pipelining */
    expect("a1 CAPABILITY\r\n", 1024, "a1 CAPABILITY;");
    expect("a1 NOOP\r\nA2 logout\r\n", 1024, "a1 NOOP;A2 logout;");
    expect("x LOGIN alice secret\r\n", 1024, "x LOGIN A:alice A:secret;");
    expect("x LOGIN \"alice\" \"p\\\"w\\\\d\"\r\n", 1024, "x LOGIN S:alice(5) S:p\"w\\d(5);");
    expect("x LOGIN \"\" \"\"\r\n", 1024, "x LOGIN S:(0) S:(0);");
    expect("bare LOGIN u p\n", 1024, "bare LOGIN A:u A:p;");
    expect("t] NOOP\r\n", 1024, "t] NOOP;");
    expect("\r\n\r\na NOOP\r\n", 1024, "a NOOP;");
    expect("a NOOP \r\n", 1024, "a NOOP;");
    expect("a LOGIN  u  p\r\n", 1024, "a LOGIN A:u A:p;");
    expect("u\xc3\xa9 NOOP\r\n", 1024, "BAD(*):Invalid tag;");
    expect("a LOGIN \"gr\xc3\xbc\xc3\x9f\" x\r\n", 1024, "a LOGIN S:gr\xc3\xbc\xc3\x9f(6) A:x;");
    /* ID with a parenthesized list and NIL: checked (RFC 2971), then discarded */
    expect("i ID (\"name\" \"mutt\" \"version\" NIL)\r\n", 1024, "i ID;");
    expect("i ID NIL\r\n", 1024, "i ID;");
    expect("i id nil\r\n", 1024, "i id;");
    expect("i ID ()\r\n", 1024, "i ID;");
    expect("i ID (\"name\" {4}\r\nmutt)\r\nb LOGIN u p\r\n", 1024, "+i ID;b LOGIN A:u A:p;");
    /* AUTHENTICATE with SASL-IR, and "=" for an empty initial response */
    expect("a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n", 1024,
           "a AUTHENTICATE A:PLAIN A:AGFsaWNlAHNlY3JldA==;");
    expect("a AUTHENTICATE PLAIN =\r\n", 1024, "a AUTHENTICATE A:PLAIN A:=;");
    /* synchronising literals: a continuation request, then the octets (CRLF inside kept) */
    expect("a LOGIN {5}\r\nalice {8}\r\npa\r\nss\"x\r\n", 1024,
           "++a LOGIN S:alice(5) S:pa\r\nss\"x(8);");
    expect("a LOGIN {0}\r\n {0}\r\n\r\n", 1024, "++a LOGIN S:(0) S:(0);");
    /* non-synchronising literals (LITERAL+): no continuation */
    expect("a LOGIN {5+}\r\nalice {3+}\r\n\\\"x\r\nb NOOP\r\n", 1024,
           "a LOGIN S:alice(5) S:\\\"x(3);b NOOP;");
    /* mixed with pipelining */
    expect("a LOGIN alice {4}\r\nw(r)\r\nb CAPABILITY\r\n", 1024,
           "+a LOGIN A:alice S:w(r)(4);b CAPABILITY;");
    /* errors: each reported once the line is over, with the tag when it was read */
    expect("a LOGIN \"unterminated\r\nb NOOP\r\n", 1024,
           "BAD(a):Unterminated quoted string;b NOOP;");
    expect("a LOGIN \"bad\\escape\" x\r\nb NOOP\r\n", 1024,
           "BAD(a):Invalid escape in quoted string;b NOOP;");
    expect("a LOGIN u p)\r\n", 1024, "BAD(a):Unbalanced parentheses;");
    expect("a ID (\"x\"\r\n", 1024, "BAD(a):Unbalanced parentheses;");
    expect("a\r\nb NOOP\r\n", 1024, "BAD(*):Missing command;b NOOP;");
    expect("a \r\n", 1024, "BAD(a):Missing command;");
    expect("+a NOOP\r\n", 1024, "BAD(*):Invalid tag;");
    expect("a NO\"OP\r\n", 1024, "BAD(a):Missing space between arguments;");
    expect("a LOGIN {5\r\n", 1024, "BAD(a):Invalid literal;");
    expect("a LOGIN {}\r\n", 1024, "BAD(a):Invalid literal;");
    expect("a LOGIN {5}x\r\n", 1024, "BAD(a):A literal must end its line;");
    /* literal too large: synchronising -> BAD, no continuation, the client sends nothing more */
    expect("a LOGIN {2000}\r\nb NOOP\r\n", 1024, "BAD(a):Literal too large;b NOOP;");
    /* lengths that overflow 64 bits */
    expect("a LOGIN {99999999999999999999999999}\r\nb NOOP\r\n", 1024,
           "BAD(a):Literal too large;b NOOP;");
    expect("a LOGIN {18446744073709551617}\r\nb NOOP\r\n", 1024,
           "BAD(a):Literal too large;b NOOP;");
    /* ...non-synchronising: the octets are coming, the stream is lost */
    expect("a LOGIN {2000+}\r\nxxxx", 1024, "FATAL:Literal too large;");
    expect("a LOGIN {99999999999999999999999+}\r\nxxxx", 1024, "FATAL:Literal too large;");
    /* a line longer than the buffer */
    {
        static char big[3 * IMAP_PARSE_BUF];
        size_t n = (size_t)snprintf(big, sizeof big, "a LOGIN ");
        memset(big + n, 'x', 2 * IMAP_PARSE_BUF);
        n += 2 * IMAP_PARSE_BUF;
        snprintf(big + n, sizeof big - n, " y\r\nb NOOP\r\n");
        expect(big, 1024, "BAD(a):Command line too long;b NOOP;");
        /* a literal that fills the buffer exactly is refused before the client sends it */
        snprintf(big, sizeof big, "a LOGIN {%d}\r\nb NOOP\r\n", IMAP_PARSE_BUF);
        expect(big, IMAP_PARSE_BUF * 2, "BAD(a):Literal too large;b NOOP;");
    }
    test_id_limits();
    {
        /* NUL inside a literal: the octets are consumed, then the command is refused */
        static const char nul[] = "a LOGIN {3+}\r\na\0b x\r\nc NOOP\r\n";
        expect_len(nul, sizeof nul - 1, 1024, "BAD(a):NUL in literal;c NOOP;");
    }
    /* the capability list a client sees after login */
    {
        const char *up = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE AUTH=XOAUTH2 "
                         "auth=oauthbearer STARTTLS LOGINDISABLED COMPRESS=DEFLATE LITERAL+ MOVE";
        char out[256];
        size_t n = imap_capability_filter(up, strlen(up), out, sizeof out);
        CHECK(strcmp(out, "IMAP4rev1 LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ MOVE") == 0);
        CHECK(n == strlen(out));
        char small[20];
        imap_capability_filter(up, strlen(up), small, sizeof small);
        CHECK(strcmp(small, "IMAP4rev1") == 0); /* cut at a whole atom */
        CHECK(imap_capability_has(up, strlen(up), "AUTH=OAUTHBEARER"));
        CHECK(imap_capability_has(up, strlen(up), "sasl-ir"));
        CHECK(!imap_capability_has(up, strlen(up), "SASL"));
        const char *arg;
        size_t alen;
        const char *ok = "[CAPABILITY IMAP4rev1 IDLE] Logged in";
        CHECK(imap_response_code(ok, strlen(ok), "CAPABILITY", &arg, &alen));
        CHECK(alen == 14 && strncmp(arg, "IMAP4rev1 IDLE", 14) == 0);
        CHECK(!imap_response_code(ok, strlen(ok), "CAPA", &arg, &alen));
        CHECK(imap_response_code("[UNAVAILABLE] x", 15, "UNAVAILABLE", &arg, &alen) && alen == 0);
        CHECK(!imap_response_code("[UNAVAILABLE x", 14, "UNAVAILABLE", &arg, &alen));
    }
    /* reset cleanses what a password left in the buffer */
    {
        struct imap_parser *p = malloc(sizeof *p);
        imap_parser_init(p, 1024);
        enum imap_parse_status st;
        const char *in = "a LOGIN alice hunter2\r\n";
        imap_parse(p, in, strlen(in), &st);
        CHECK(st == IMAP_PARSE_DONE);
        imap_parser_reset(p);
        int found = 0;
        for (size_t i = 0; i + 7 <= sizeof p->buf; i++)
            found |= memcmp(p->buf + i, "hunter2", 7) == 0;
        CHECK(!found);
        free(p);
    }
    return CHECK_DONE();
}
