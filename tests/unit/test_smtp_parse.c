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
    CHECK(smtp_parse_command(l, strlen(l), &c) == SMTP_PARSE_SYNTAX);
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

/* Runs the scanner over msg in pieces of step bytes; returns the relayed bytes. */
static char *scan_in_steps(const char *msg, size_t len, size_t step, long *end_at,
                           struct smtp_data_scan *s)
{
    char *out = malloc(2 * len + 16);
    size_t o = 0;
    smtp_data_scan_init(s);
    *end_at = -1;
    for (size_t i = 0; i < len; i += step) {
        size_t n = len - i < step ? len - i : step;
        size_t ol;
        long r = smtp_data_scan(s, msg + i, n, out + o, &ol);
        o += ol;
        if (r >= 0) {
            *end_at = (long)i + r;
            break;
        }
    }
    out[o] = '\0';
    return out;
}

static void test_data_scan(void)
{
    const char *msg = "Subject: x\r\n\r\n..stuffed\r\n.x\r\nend\r\n.\r\nMAIL FROM:<a@b>\r\n";
    size_t len = strlen(msg);
    size_t expect_end = strlen("Subject: x\r\n\r\n..stuffed\r\n.x\r\nend\r\n.\r\n");
    for (size_t step = 1; step <= len; step++) {
        struct smtp_data_scan s;
        long end;
        char *out = scan_in_steps(msg, len, step, &end, &s);
        CHECK(end == (long)expect_end);
        CHECK(strcmp(out, "Subject: x\r\n\r\n..stuffed\r\n.x\r\nend\r\n.\r\n") == 0);
        CHECK(s.size == expect_end - 3);
        CHECK(!s.bare_lf && !s.line_too_long);
        free(out);
    }
    /* Bare LF becomes CRLF, and "\n.\n" ends the message just like CRLF.CRLF would. */
    const char *lf = "a\nb\r\n.\n";
    struct smtp_data_scan s;
    long end;
    char *out = scan_in_steps(lf, strlen(lf), 1, &end, &s);
    CHECK(end == (long)strlen(lf));
    CHECK(strcmp(out, "a\r\nb\r\n.\r\n") == 0);
    CHECK(s.bare_lf);
    free(out);
    /* Empty message. */
    out = scan_in_steps(".\r\n", 3, 3, &end, &s);
    CHECK(end == 3 && strcmp(out, ".\r\n") == 0 && s.size == 0);
    free(out);
    /* A lone CR inside a line is data, and ".\r" followed by text is not the end. */
    const char *cr = "a\rb\r\n.\rx\r\n.\r\n";
    out = scan_in_steps(cr, strlen(cr), 1, &end, &s);
    CHECK(end == (long)strlen(cr));
    CHECK(strcmp(out, cr) == 0);
    free(out);
    /* Line length: 998 characters + CRLF is fine, 999 is not. */
    char *longl = malloc(1100);
    memset(longl, 'x', 998);
    memcpy(longl + 998, "\r\n.\r\n", 6);
    out = scan_in_steps(longl, strlen(longl), 7, &end, &s);
    CHECK(end == 1003 && !s.line_too_long);
    free(out);
    memset(longl, 'x', 999);
    memcpy(longl + 999, "\r\n.\r\n", 6);
    out = scan_in_steps(longl, strlen(longl), 7, &end, &s);
    CHECK(end == 1004 && s.line_too_long);
    free(out);
    free(longl);
    /* No end marker: everything belongs to the message. */
    out = scan_in_steps("abc\r\n..\r\n", 9, 4, &end, &s);
    CHECK(end == -1 && strcmp(out, "abc\r\n..\r\n") == 0);
    free(out);
}

int main(void)
{
    test_line_framing();
    test_commands();
    test_reply_lines();
    test_data_scan();
    return CHECK_DONE();
}
