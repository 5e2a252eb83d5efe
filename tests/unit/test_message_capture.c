/* The local submission's message path: DATA un-dot-stuffing, the header scan that adds Bcc:
 * (both fed whole and one byte at a time), the memory/spool store on a real loop, and the
 * base64 body stream. */
#include <dirent.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "body_stream.h"
#include "check.h"
#include "message_capture.h"
#include "message_header.h"
#include "smtp_parse.h"
#include "tmpdir.h"

/* Runs the unstuffing scan over in, in pieces of step bytes (0 = whole). */
static char *unstuff(const char *in, size_t len, size_t step, long *used_out, size_t *out_len)
{
    struct smtp_data_scan s;
    char *out = malloc(2 * len + 16);
    size_t o = 0, i = 0;
    smtp_data_scan_init(&s);
    smtp_data_scan_unstuffed(&s);
    *used_out = -1;
    while (i < len) {
        size_t n = step == 0 ? len - i : (len - i < step ? len - i : step);
        size_t ol = 0;
        long r = smtp_data_scan(&s, in + i, n, out + o, &ol);
        o += ol;
        if (r >= 0) {
            *used_out = (long)(i + (size_t)r);
            break;
        }
        i += n;
    }
    out[o] = '\0';
    *out_len = o;
    CHECK(s.size == o);
    return out;
}

static void check_unstuff(const char *in, const char *want, long want_used)
{
    for (size_t step = 0; step <= 3; step++) {
        long used;
        size_t ol;
        char *out = unstuff(in, strlen(in), step, &used, &ol);
        if (strcmp(out, want) != 0 || used != want_used)
            fprintf(stderr, "unstuff step %zu: got [%s] used %ld\n", step, out, used);
        CHECK(strcmp(out, want) == 0);
        CHECK(used == want_used);
        free(out);
    }
}

static void test_unstuff(void)
{
    check_unstuff("a\r\n..b\r\n.\r\n", "a\r\n.b\r\n", 11);
    check_unstuff(".\r\n", "", 3);
    check_unstuff("..\r\n.\r\nQUIT\r\n", ".\r\n", 7);
    check_unstuff("x\r\n.y\r\n.\r\n", "x\r\ny\r\n", 10);
    check_unstuff("bare\nlf\r\n.\r\n", "bare\r\nlf\r\n", 12);
    /* "\n.\r\n" is no end (SMTP smuggling): its "." stays text, the real end follows */
    check_unstuff("bare\nlf\n.\r\n.\r\n", "bare\r\nlf\r\n.\r\n", 14);
    check_unstuff("...\r\n.\r\n", "..\r\n", 8);
    check_unstuff("a.b\r\n.\r\n", "a.b\r\n", 8);
    /* the relay path still keeps the stuffing and the marker */
    struct smtp_data_scan s;
    char out[64];
    size_t ol;
    smtp_data_scan_init(&s);
    CHECK(smtp_data_scan(&s, "..b\r\n.\r\n", 8, out, &ol) == 8);
    CHECK(ol == 8 && memcmp(out, "..b\r\n.\r\n", 8) == 0);
}

static char *bcc_for(const char *msg, size_t step, const char *const *rcpts, size_t n,
                     size_t *missing, int *done)
{
    struct message_header_scan h;
    message_header_scan_init(&h);
    size_t len = strlen(msg);
    for (size_t i = 0; i < len;) {
        size_t k = step == 0 ? len - i : (len - i < step ? len - i : step);
        message_header_scan_feed(&h, msg + i, k);
        i += k;
    }
    *done = h.done;
    char *b = message_header_bcc(&h, rcpts, n, missing);
    message_header_scan_free(&h);
    return b;
}

static void check_bcc(const char *msg, const char *const *rcpts, size_t n, const char *want,
                      int want_done)
{
    for (size_t step = 0; step <= 2; step++) {
        size_t missing;
        int done;
        char *b = bcc_for(msg, step, rcpts, n, &missing, &done);
        if (strcmp(b, want) != 0)
            fprintf(stderr, "bcc step %zu: got [%s] want [%s]\n", step, b, want);
        CHECK(strcmp(b, want) == 0);
        CHECK(done == want_done);
        free(b);
    }
}

static void test_bcc(void)
{
    const char *r1[] = {"to@example.com", "hidden@example.com"};
    check_bcc("From: a@example.com\r\nTo: To <TO@example.com>\r\nSubject: x\r\n\r\n"
              "body mentions hidden@example.com\r\n",
              r1, 2, "Bcc: hidden@example.com\r\n", 1);
    /* folded Cc, an existing Bcc, the body is not looked at */
    const char *r2[] = {"c2@example.com", "b@example.com", "new@example.com", "NEW@example.com"};
    check_bcc("To: x@example.com\r\nCc: c1@example.com,\r\n\tc2@example.com\r\n"
              "bcc: b@example.com\r\n\r\nTo: new@example.com\r\n",
              r2, 4, "Bcc: new@example.com\r\n", 1);
    /* a longer address containing the recipient is not a match */
    const char *r3[] = {"b@example.com", "c@example.com"};
    check_bcc("To: bob@example.com, xb@example.com.au\r\n\r\n", r3, 2,
              "Bcc: b@example.com,\r\n c@example.com\r\n", 1);
    /* a Subject: naming the address does not count, nor does X-To: */
    const char *r4[] = {"s@example.com"};
    check_bcc("Subject: for s@example.com\r\nX-To: s@example.com\r\n\r\n", r4, 1,
              "Bcc: s@example.com\r\n", 1);
    /* everyone present: nothing added */
    const char *r5[] = {"a@example.com"};
    check_bcc("To: a@example.com\n\nbody\n", r5, 1, "", 1);
    /* no header end at all */
    check_bcc("To: z@example.com\r\n", r5, 1, "Bcc: a@example.com\r\n", 0);
}

struct cap_test {
    uv_loop_t loop;
    int done;
    int status;
    int drains;
};

static void cap_done_cb(void *arg, int status)
{
    struct cap_test *t = arg;
    t->done = 1;
    t->status = status;
}

static void cap_drain_cb(void *arg) { ((struct cap_test *)arg)->drains++; }

static int dir_entries(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    struct dirent *de;
    if (d == NULL)
        return -1;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static void test_capture(void)
{
    char dir[] = "/tmp/xoauthd-test-capture-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    struct cap_test t = {0};
    uv_loop_init(&t.loop);

    /* small: memory only */
    struct capture *c = capture_new(&t.loop, dir, 1024, "t1", cap_drain_cb, &t);
    CHECK(capture_append(c, "hello\r\n", 7) == 0);
    capture_finish(c, cap_done_cb, &t);
    CHECK(t.done == 1 && t.status == 0);
    CHECK(!capture_spooled(c));
    CHECK(capture_set_prefix(c, "Bcc: x@y\r\n", 10) == 0);
    char buf[64];
    CHECK(capture_size(c) == 17);
    CHECK(capture_read(c, 0, buf, sizeof buf) == 17 && memcmp(buf, "Bcc: x@y\r\nhello\r\n", 17) == 0);
    CHECK(capture_read(c, 12, buf, 3) == 3 && memcmp(buf, "llo", 3) == 0);
    capture_free(c);

    /* large: spooled, written on the thread pool, never visible as a file */
    size_t total = 5u << 20;
    char *msg = malloc(total);
    for (size_t i = 0; i < total; i++)
        msg[i] = (char)('a' + (i * 7) % 26);
    t.done = 0;
    c = capture_new(&t.loop, dir, 64 * 1024, "t2", cap_drain_cb, &t);
    size_t off = 0;
    while (off < total) {
        size_t n = total - off < 10000 ? total - off : 10000;
        CHECK(capture_append(c, msg + off, n) == 0);
        off += n;
        while (capture_congested(c))
            uv_run(&t.loop, UV_RUN_ONCE);
    }
    CHECK(capture_spooled(c));
    CHECK(dir_entries(dir) == 0);
    capture_finish(c, cap_done_cb, &t);
    while (!t.done)
        uv_run(&t.loop, UV_RUN_ONCE);
    CHECK(t.status == 0);
    CHECK(capture_size(c) == total);
    char *back = malloc(total);
    size_t got = 0;
    while (got < total) {
        size_t r = capture_read(c, got, back + got, 70000);
        CHECK(r != CAPTURE_READ_ERROR && r > 0);
        if (r == CAPTURE_READ_ERROR || r == 0)
            break;
        got += r;
    }
    CHECK(got == total && memcmp(back, msg, total) == 0);

    /* the base64 stream over it, read in odd pieces */
    const char *head = "<x>", *tail = "</x>";
    struct body_stream bs;
    body_stream_init(&bs, head, 3, capture_source(c), tail, 4);
    size_t bsz = body_stream_size(&bs);
    CHECK(bsz == 3 + (total + 2) / 3 * 4 + 4);
    char *enc = malloc(bsz + 1);
    size_t eo = 0;
    for (;;) {
        size_t r = body_stream_read(&bs, enc + eo, eo % 2 ? 777 : 16384);
        CHECK(r != (size_t)-1);
        if (r == 0 || r == (size_t)-1)
            break;
        eo += r;
    }
    CHECK(eo == bsz);
    CHECK(memcmp(enc, "<x>", 3) == 0 && memcmp(enc + bsz - 4, "</x>", 4) == 0);
    unsigned char *dec = malloc(total + 4);
    int dn = EVP_DecodeBlock(dec, (unsigned char *)enc + 3, (int)(bsz - 7));
    /* DecodeBlock counts the padding bytes too */
    CHECK(dn >= (int)total && memcmp(dec, msg, total) == 0);
    free(dec);
    free(enc);
    free(back);

    /* freed with a write in flight: no callback, no file, the loop still closes */
    t.done = 0;
    struct capture *c2 = capture_new(&t.loop, dir, 1024, "t3", cap_drain_cb, &t);
    CHECK(capture_append(c2, msg, 200000) == 0);
    capture_free(c2);
    capture_free(c);
    uv_run(&t.loop, UV_RUN_DEFAULT);
    CHECK(t.done == 0);
    CHECK(dir_entries(dir) == 0);
    free(msg);

    /* a state_dir that cannot be written: an error, not a crash */
    c = capture_new(&t.loop, "/nonexistent/xoauthd", 16, "t4", cap_drain_cb, &t);
    CHECK(capture_append(c, "0123456789abcdef0123456789", 26) == -1);
    capture_free(c);

    CHECK(uv_loop_close(&t.loop) == 0);
    remove_tree(dir);
}

static void test_body_stream_small(void)
{
    /* 0, 1, 2, 3 bytes: padding and empty messages */
    const char *inputs[] = {"", "a", "ab", "abc"};
    const char *want[] = {"[]", "[YQ==]", "[YWI=]", "[YWJj]"};
    for (size_t i = 0; i < 4; i++) {
        struct capture_mem m = {inputs[i], strlen(inputs[i])};
        struct body_stream b;
        char out[64];
        body_stream_init(&b, "[", 1, capture_source_mem(&m), "]", 1);
        size_t o = 0, r;
        while ((r = body_stream_read(&b, out + o, 1)) > 0 && r != (size_t)-1)
            o += r;
        out[o] = '\0';
        CHECK(strcmp(out, want[i]) == 0);
        CHECK(o == body_stream_size(&b));
    }
}

int main(void)
{
    test_unstuff();
    test_bcc();
    test_capture();
    test_body_stream_small();
    return CHECK_DONE();
}
