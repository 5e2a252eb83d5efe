/* SMTP command parsing, reply-line parsing, line framing and the DATA scanner, fed whole and
 * one byte at a time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "line.h"
#include "smtp_parse.h"
#include "smtp_upstream.h"

static void test_line_framing(void)
{
    size_t len, used;
    const char *in = "EHLO a\r\nNOOP\nQU";
    CHECK(line_next(in, strlen(in), 512, &len, &used) == LINE_OK);
    CHECK(len == 6 && used == 8 && memcmp(in, "EHLO a", 6) == 0);
    in += used;
    CHECK(line_next(in, strlen(in), 512, &len, &used) == LINE_OK);
    CHECK(len == 4 && used == 5);
    in += used;
    CHECK(line_next(in, strlen(in), 512, &len, &used) == LINE_AGAIN);

    /* One byte at a time: AGAIN until the LF arrives. */
    const char *whole = "MAIL FROM:<a@b>\r\n";
    size_t n = strlen(whole);
    for (size_t i = 1; i < n; i++)
        CHECK(line_next(whole, i, 512, &len, &used) == LINE_AGAIN);
    CHECK(line_next(whole, n, 512, &len, &used) == LINE_OK && len == n - 2);

    /* Limits: 512 octets with CRLF pass, 513 do not. */
    char big[600];
    memset(big, 'A', sizeof big);
    memcpy(big + 510, "\r\n", 2);
    CHECK(line_next(big, 512, 512, &len, &used) == LINE_OK && len == 510);
    memset(big, 'A', sizeof big);
    CHECK(line_next(big, 512, 512, &len, &used) == LINE_TOO_LONG);
    CHECK(line_next(big, 511, 512, &len, &used) == LINE_AGAIN);
    big[520] = '\n';
    CHECK(line_skip(big, 600, &used) == 1 && used == 521);
    CHECK(line_skip(big, 100, &used) == 0 && used == 100);
}

static void test_commands(void)
{
    struct smtp_command c;
    const char *l = "MAIL FROM:<scan@example.com> SIZE=123 BODY=8BITMIME";
    CHECK(smtp_parse_command(l, strlen(l), &c) == SMTP_PARSE_OK);
    CHECK(c.verb == SMTP_CMD_MAIL);
    CHECK(c.path_len == 16 && memcmp(c.path, "scan@example.com", 16) == 0);
    CHECK(c.params_len == 22 && memcmp(c.params, "SIZE=123 BODY=8BITMIME", 22) == 0);

    l = "mail from: <>";
    CHECK(smtp_parse_command(l, strlen(l), &c) == SMTP_PARSE_OK && c.path_len == 0);
    l = "RCPT TO:<\"odd>name\"@example.com>";
    CHECK(smtp_parse_command(l, strlen(l), &c) == SMTP_PARSE_OK);
    CHECK(c.path_len == strlen("\"odd>name\"@example.com"));
    l = "RCPT TO:<>";
    CHECK(smtp_parse_command(l, strlen(l), &c) == SMTP_PARSE_SYNTAX);
    l = "MAIL FROM:a@b";
    CHECK(smtp_parse_command(l, strlen(l), &c) == SMTP_PARSE_OK && c.path_len == 3);
    l = "MAIL FROM:<a@b";
    CHECK(smtp_parse_command(l, strlen(l), &c) == SMTP_PARSE_SYNTAX);
    l = "MAIL FROM:<a@b>x";
    CHECK(smtp_parse_command(l, strlen(l), &c) == SMTP_PARSE_SYNTAX);
    l = "MAIL TO:<a@b>";
    CHECK(smtp_parse_command(l, strlen(l), &c) == SMTP_PARSE_SYNTAX);
    CHECK(smtp_parse_command("EHLO", 4, &c) == SMTP_PARSE_SYNTAX);
    CHECK(smtp_parse_command("ehlo printer.local", 18, &c) == SMTP_PARSE_OK &&
           c.verb == SMTP_CMD_EHLO && c.arg_len == 13);
    CHECK(smtp_parse_command("AUTH PLAIN AGEAYg==", 19, &c) == SMTP_PARSE_OK &&
           c.verb == SMTP_CMD_AUTH && c.arg_len == 14);
    CHECK(smtp_parse_command("DATA", 4, &c) == SMTP_PARSE_OK && c.verb == SMTP_CMD_DATA);
    CHECK(smtp_parse_command("DATA x", 6, &c) == SMTP_PARSE_SYNTAX);
    CHECK(smtp_parse_command("QUIT  ", 6, &c) == SMTP_PARSE_OK);
    CHECK(smtp_parse_command("XYZZY", 5, &c) == SMTP_PARSE_UNKNOWN);
    CHECK(smtp_parse_command("", 0, &c) == SMTP_PARSE_UNKNOWN);
    CHECK(smtp_parse_command("NOOP\0x", 6, &c) == SMTP_PARSE_SYNTAX);
    CHECK(smtp_parse_command("MAIL FROM:<a\x01@b>", 17, &c) == SMTP_PARSE_SYNTAX);
    CHECK(strcmp(smtp_verb_name(SMTP_CMD_RCPT), "RCPT") == 0);
}

static void test_reply_lines(void)
{
    int last = -1;
    CHECK(smtp_reply_line_parse("250-PIPELINING", 14, &last) == 250 && last == 0);
    CHECK(smtp_reply_line_parse("250 OK", 6, &last) == 250 && last == 1);
    CHECK(smtp_reply_line_parse("334", 3, &last) == 334 && last == 1);
    CHECK(smtp_reply_line_parse("25", 2, &last) == -1);
    CHECK(smtp_reply_line_parse("2x0 hi", 6, &last) == -1);
    CHECK(smtp_reply_line_parse("250xhi", 6, &last) == -1);
    CHECK(smtp_reply_line_parse("099 hi", 6, &last) == -1);
    CHECK(smtp_reply_line_parse("600 hi", 6, &last) == -1);
}

/* Runs the scanner over msg in pieces of step bytes; returns the relayed bytes. as_came: the
 * way smtp_session.c relays, a count-only scan first and the piece itself when it says so. */
static char *scan_pieces(const char *msg, size_t len, size_t step, long *end_at,
                         struct smtp_data_scan *s, int unstuff, int as_came)
{
    char *out = malloc(2 * len + 16);
    size_t o = 0;
    smtp_data_scan_init(s);
    if (unstuff)
        smtp_data_scan_unstuffed(s);
    *end_at = -1;
    for (size_t i = 0; i < len; i += step) {
        size_t n = len - i < step ? len - i : step;
        size_t ol;
        long r = -1;
        int copied = 0;
        if (as_came) {
            struct smtp_data_scan before = *s;
            r = smtp_data_scan(s, msg + i, n, NULL, &ol);
            if (ol == (r >= 0 ? (size_t)r : n)) {
                memcpy(out + o, msg + i, ol);
                copied = 1;
            } else {
                CHECK(ol == (size_t)-1);
                *s = before;
            }
        }
        if (!copied)
            r = smtp_data_scan(s, msg + i, n, out + o, &ol);
        CHECK(ol <= 2 * n + 2);
        o += ol;
        if (r >= 0) {
            *end_at = (long)i + r;
            break;
        }
    }
    out[o] = '\0';
    return out;
}

static char *scan_in_steps(const char *msg, size_t len, size_t step, long *end_at,
                           struct smtp_data_scan *s)
{
    return scan_pieces(msg, len, step, end_at, s, 0, 0);
}

static void test_data_scan(void)
{
    const char *msg = "Subject: x\r\n\r\n..stuffed\r\n.x\r\nend\r\n.\r\nMAIL FROM:<a@b>\r\n";
    size_t len = strlen(msg);
    size_t expect_end = strlen("Subject: x\r\n\r\n..stuffed\r\n.x\r\nend\r\n.\r\n");
    for (size_t step = 1; step <= len; step++) {
        for (int as_came = 0; as_came < 2; as_came++) {
            struct smtp_data_scan s;
            long end;
            char *out = scan_pieces(msg, len, step, &end, &s, 0, as_came);
            CHECK(end == (long)expect_end);
            CHECK(strcmp(out, "Subject: x\r\n\r\n..stuffed\r\n.x\r\nend\r\n.\r\n") == 0);
            CHECK(s.size == expect_end - 3);
            CHECK(!s.bare_lf && !s.lone_dot);
            free(out);
        }
    }
    /* Bare LF becomes CRLF. */
    const char *lf = "a\nb\n..c\r\n.\r\n";
    struct smtp_data_scan s;
    long end;
    char *out = scan_in_steps(lf, strlen(lf), 1, &end, &s);
    CHECK(end == (long)strlen(lf));
    CHECK(strcmp(out, "a\r\nb\r\n..c\r\n.\r\n") == 0);
    CHECK(s.bare_lf && !s.lone_dot);
    free(out);
    /* Empty message. */
    out = scan_in_steps(".\r\n", 3, 3, &end, &s);
    CHECK(end == 3 && strcmp(out, ".\r\n") == 0 && s.size == 0);
    free(out);
    /* A lone CR inside a line is data, and so is a "." after it with text behind; a CR before
     * the CRLF ahead of the end marker leaves the CRLF a CRLF. */
    const char *cr = "a\rb\r\n\r.x\r\nc\r\r\n.\r\n";
    for (size_t step = 1; step <= strlen(cr); step++) {
        out = scan_pieces(cr, strlen(cr), step, &end, &s, 0, 1);
        CHECK(end == (long)strlen(cr));
        CHECK(strcmp(out, cr) == 0);
        CHECK(!s.lone_dot && !s.bare_lf);
        free(out);
    }
    /* No end marker: everything belongs to the message. */
    out = scan_in_steps("abc\r\n..\r\n", 9, 4, &end, &s);
    CHECK(end == -1 && strcmp(out, "abc\r\n..\r\n") == 0);
    free(out);
}

/* RFC 5321 4.5.3.1 asks for no limit on line length where it can be helped: a 100 KB line goes
 * through unchanged, whatever the pieces. */
static void test_data_long_line(void)
{
    size_t n = 100 * 1024;
    char *msg = malloc(n + 64);
    memcpy(msg, "Subject: l\r\n\r\n", 14);
    memset(msg + 14, 'x', n);
    memcpy(msg + 14 + n, "\r\n.\r\n", 6);
    size_t len = strlen(msg);
    static const size_t steps[] = {1, 7, 999, 1000, 4096, 65536, 200000};
    for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
        for (int unstuff = 0; unstuff < 2; unstuff++) {
            struct smtp_data_scan s;
            long end;
            char *out = scan_pieces(msg, len, steps[k], &end, &s, unstuff, !unstuff);
            CHECK(end == (long)len);
            CHECK(s.size == len - 3);
            CHECK(strlen(out) == (unstuff ? len - 3 : len) && memcmp(out, msg, len - 3) == 0);
            CHECK(!s.lone_dot && !s.bare_lf);
            free(out);
        }
    }
    /* A line of bare CRs costs no search per CR for the LF far ahead (linear, not quadratic:
     * 64 KiB of them would otherwise be 2 GB of memchr). */
    memset(msg, '\r', n);
    struct smtp_data_scan s;
    size_t ol;
    char *out = malloc(2 * n + 2);
    smtp_data_scan_init(&s);
    CHECK(smtp_data_scan(&s, msg, n, out, &ol) == -1 && ol == n && memcmp(out, msg, n) == 0);
    free(out);
    free(msg);
}

/* 1 when relayed bytes hold a "." between two line-end bytes (or the start) other than their
 * final end marker: what some receiver could take for the end of the data. */
static int has_fake_end(const char *out, size_t len)
{
    size_t last = len - 3;
    for (size_t i = 0; i < len; i++) {
        if (out[i] != '.' || i == last)
            continue;
        int before = i == 0 || out[i - 1] == '\r' || out[i - 1] == '\n';
        int after = i + 1 < len && (out[i + 1] == '\r' || out[i + 1] == '\n');
        if (before && after)
            return 1;
    }
    return 0;
}

/* SMTP smuggling: every "end" that is not CRLF . CRLF leaves the message going, the smuggled
 * transaction behind it stays message text, the relayed bytes hold no fake end for any reading
 * of line ends, and lone_dot says the message is to be refused. */
static void test_data_smuggling(void)
{
    static const char *const fakes[] = {"\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r\n", "\r\n.\r",
                                        "\r.\n", "\r.\r", "\n.\r"};
    const char *smuggled = "MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.com>\r\n"
                           "DATA\r\nSubject: smuggled\r\n\r\nevil\r\n";
    for (size_t f = 0; f < sizeof fakes / sizeof fakes[0]; f++) {
        char msg[512];
        snprintf(msg, sizeof msg, "Subject: s\r\n\r\nbody%s%s.\r\nQUIT\r\n", fakes[f], smuggled);
        size_t len = strlen(msg);
        size_t expect_end = len - strlen("QUIT\r\n");
        char *first = NULL;
        for (size_t step = 1; step <= len; step++) {
            for (int mode = 0; mode < 3; mode++) { /* relayed, relayed as it came, kept */
                struct smtp_data_scan s;
                long end;
                char *out = scan_pieces(msg, len, step, &end, &s, mode == 2, mode == 1);
                size_t ol = strlen(out);
                CHECK(end == (long)expect_end);
                CHECK(s.lone_dot);
                if (mode != 2) /* the kept message is no SMTP stream: its "." is text */
                    CHECK(!has_fake_end(out, ol));
                CHECK(strstr(out, "MAIL FROM:<evil@example.com>\r\n") != NULL);
                if (mode == 0 && first == NULL)
                    first = strdup(out);
                else if (mode != 2)
                    CHECK(strcmp(out, first) == 0); /* the same bytes, whatever the pieces */
                free(out);
            }
        }
        free(first);
    }
    /* What the relayed and the kept message look like: the lone dot as a line of its own. */
    struct smtp_data_scan s;
    long end;
    const char *m = "a\n.\nb\r\n.\r\n";
    char *out = scan_in_steps(m, strlen(m), 1, &end, &s);
    CHECK(end == (long)strlen(m) && strcmp(out, "a\r\n..\r\nb\r\n.\r\n") == 0);
    free(out);
    out = scan_pieces(m, strlen(m), 1, &end, &s, 1, 0);
    CHECK(end == (long)strlen(m) && strcmp(out, "a\r\n.\r\nb\r\n") == 0);
    free(out);
    /* At the very start, and a fake end right before the real one. */
    m = ".\n\n.\r\n.\r\n";
    out = scan_in_steps(m, strlen(m), 1, &end, &s);
    CHECK(end == (long)strlen(m) && s.lone_dot);
    CHECK(strcmp(out, "..\r\n\r\n..\r\n.\r\n") == 0);
    free(out);
}

static void test_path_line(void)
{
    struct smtp_command c;
    char buf[600];
    const char *l = "MAIL FROM:scan@example.com SIZE=10 BODY=8BITMIME";
    CHECK(smtp_parse_command(l, strlen(l), &c) == SMTP_PARSE_OK && !c.bracketed);
    CHECK(c.path_len == 16 && memcmp(c.path, "scan@example.com", 16) == 0);
    CHECK(c.params_len == 21 && memcmp(c.params, "SIZE=10 BODY=8BITMIME", 21) == 0);
    CHECK(smtp_path_line(&c, buf, sizeof buf) == (long)strlen(l) + 2);
    CHECK(strcmp(buf, "MAIL FROM:<scan@example.com> SIZE=10 BODY=8BITMIME") == 0);
    l = "rcpt to: boss@example.com";
    CHECK(smtp_parse_command(l, strlen(l), &c) == SMTP_PARSE_OK && !c.bracketed);
    CHECK(c.verb == SMTP_CMD_RCPT && c.params_len == 0);
    CHECK(smtp_path_line(&c, buf, sizeof buf) > 0);
    CHECK(strcmp(buf, "RCPT TO:<boss@example.com>") == 0);
    CHECK(smtp_path_line(&c, buf, 26) == -1); /* one byte short */
    l = "MAIL FROM:<a@b>";
    CHECK(smtp_parse_command(l, strlen(l), &c) == SMTP_PARSE_OK && c.bracketed);
    /* Still refused: nothing, brackets half there, quotes or control characters. */
    static const char *const bad[] = {"MAIL FROM:", "MAIL FROM: ", "MAIL FROM:a@b>",
                                      "MAIL FROM:a<b@c", "RCPT TO:\"a b\"@c", "RCPT TO:a\x01@b",
                                      "RCPT TO:", "MAIL FROMa@b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(smtp_parse_command(bad[i], strlen(bad[i]), &c) == SMTP_PARSE_SYNTAX);
}

int main(void)
{
    test_line_framing();
    test_commands();
    test_reply_lines();
    test_data_scan();
    test_data_long_line();
    test_data_smuggling();
    test_path_line();
    return CHECK_DONE();
}
