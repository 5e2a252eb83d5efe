/* mime_split: a spooled message taken apart for Graph's draft path. Large attachments (an
 * inline image of an HTML body, a PDF, one in quoted-printable) come out decoded and
 * byte-equal; the reduced MIME keeps the headers (the Bcc: prefix included), the bodies and
 * the small attachments, and no trace of the large ones; a message that is only an
 * attachment gets an empty text body; a part under the threshold stays; splitting a 64 MB
 * message raises the peak resident memory by less than 8 MB (the parser keeps contents in
 * the file); the thread-pool job delivers the same result on the loop, and a cancelled job
 * calls nothing back. */
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "check.h"
#include "mime_split.h"
#include "tmpdir.h"

static char dir[] = "/tmp/xoauthd-mime-split-XXXXXX";

struct buf {
    char *p;
    size_t len, cap;
};

static void put(struct buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void puts_(struct buf *b, const char *s) { put(b, s, strlen(s)); }

static void put_base64(struct buf *b, const unsigned char *data, size_t len)
{
    unsigned char line[80];
    for (size_t off = 0; off < len; off += 57) {
        size_t n = len - off < 57 ? len - off : 57;
        int k = EVP_EncodeBlock(line, data + off, (int)n);
        put(b, (const char *)line, (size_t)k);
        puts_(b, "\r\n");
    }
}

static void put_qp(struct buf *b, const unsigned char *data, size_t len)
{
    char tmp[8];
    size_t col = 0;
    for (size_t i = 0; i < len; i++) {
        if (col >= 72) {
            puts_(b, "=\r\n");
            col = 0;
        }
        snprintf(tmp, sizeof tmp, "=%02X", data[i]);
        puts_(b, tmp);
        col += 3;
    }
    puts_(b, "\r\n");
}

static unsigned char *random_bytes(size_t n, unsigned seed)
{
    unsigned char *p = malloc(n);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (unsigned char)(seed >> 16);
    }
    return p;
}

static int spool(const struct buf *b)
{
    char path[128];
    snprintf(path, sizeof path, "%s/in-XXXXXX", dir);
    int fd = mkstemp(path);
    unlink(path);
    if (write(fd, b->p, b->len) != (ssize_t)b->len)
        abort();
    return fd;
}

static char *read_all(int fd, size_t *len)
{
    struct stat st;
    fstat(fd, &st);
    char *p = malloc((size_t)st.st_size + 1);
    ssize_t n = pread(fd, p, (size_t)st.st_size, 0);
    p[n < 0 ? 0 : n] = 0;
    *len = n < 0 ? 0 : (size_t)n;
    return p;
}

static int fd_equals(int fd, const unsigned char *data, size_t len)
{
    size_t n;
    char *p = read_all(fd, &n);
    int eq = n == len && memcmp(p, data, len) == 0;
    free(p);
    return eq;
}

#define IMG_SIZE ((size_t)3 * 1024 * 1024 + 777)
#define PDF_SIZE ((size_t)5 * 1024 * 1024 + 3)
#define SMALL_SIZE ((size_t)100 * 1024)

static unsigned char *img, *pdf, *small;

static struct buf scan_message(void)
{
    struct buf b = {0};
    puts_(&b, "From: Scanner <scanner@contoso.test>\r\nTo: boss@contoso.test\r\n"
              "Subject: test scan\r\nMessage-ID: <scan-1@test>\r\nMIME-Version: 1.0\r\n"
              "Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n"
              "preamble\r\n--outer\r\n"
              "Content-Type: multipart/related; boundary=\"rel\"\r\n\r\n--rel\r\n"
              "Content-Type: text/html; charset=utf-8\r\n\r\n"
              "<p>Scan attached <img src=\"cid:img1@test\"></p>\r\n--rel\r\n"
              "Content-Type: image/png\r\nContent-ID: <img1@test>\r\n"
              "Content-Transfer-Encoding: base64\r\n\r\n");
    put_base64(&b, img, IMG_SIZE);
    puts_(&b, "--rel--\r\n--outer\r\n"
              "Content-Type: application/pdf; name=\"scan.pdf\"\r\n"
              "Content-Disposition: attachment; filename=\"scan.pdf\"\r\n"
              "Content-Transfer-Encoding: base64\r\n\r\n");
    put_base64(&b, pdf, PDF_SIZE);
    puts_(&b, "--outer\r\n"
              "Content-Type: image/jpeg; name=\"thumb.jpg\"\r\n"
              "Content-Disposition: attachment; filename=\"thumb.jpg\"\r\n"
              "Content-Transfer-Encoding: base64\r\n\r\n");
    put_base64(&b, small, SMALL_SIZE);
    puts_(&b, "--outer\r\nContent-Type: text/plain\r\n"
              "Content-Disposition: attachment; filename=\"notes.txt\"\r\n\r\n"
              "small notes\r\n--outer--\r\n");
    return b;
}

static void test_split(void)
{
    struct buf b = scan_message();
    int fd = spool(&b);
    const char *bcc = "Bcc: hidden@contoso.test\r\n";
    struct mime_split s;
    CHECK(mime_split_run(fd, bcc, strlen(bcc), dir, MIME_SPLIT_MIN_ATTACHMENT, &s) == 0);
    CHECK(s.n_att == 2);
    if (s.n_att == 2) {
        CHECK(s.att[0].size == IMG_SIZE && fd_equals(s.att[0].fd, img, IMG_SIZE));
        CHECK(strcmp(s.att[0].content_type, "image/png") == 0);
        CHECK(s.att[0].content_id != NULL && strcmp(s.att[0].content_id, "img1@test") == 0);
        CHECK(s.att[0].is_inline == 1);
        CHECK(s.att[1].size == PDF_SIZE && fd_equals(s.att[1].fd, pdf, PDF_SIZE));
        CHECK(s.att[1].name != NULL && strcmp(s.att[1].name, "scan.pdf") == 0);
        CHECK(strcmp(s.att[1].content_type, "application/pdf") == 0);
        CHECK(s.att[1].is_inline == 0 && s.att[1].content_id == NULL);
    }
    size_t n;
    char *r = read_all(s.reduced_fd, &n);
    CHECK(n == s.reduced_size);
    CHECK(n < 200 * 1024); /* the small attachment's base64 and the headers */
    CHECK(strncmp(r, "Bcc: hidden@contoso.test\r\n", 26) == 0);
    CHECK(strstr(r, "\r\nSubject: test scan\r\n") != NULL);
    CHECK(strstr(r, "\r\nMessage-ID: <scan-1@test>\r\n") != NULL);
    CHECK(strstr(r, "<p>Scan attached <img src=\"cid:img1@test\"></p>") != NULL);
    CHECK(strstr(r, "thumb.jpg") != NULL && strstr(r, "small notes") != NULL);
    CHECK(strstr(r, "scan.pdf") == NULL && strstr(r, "img1@test>") == NULL);
    for (char *p = strchr(r, '\n'); p != NULL; p = strchr(p + 1, '\n'))
        if (p == r || p[-1] != '\r') {
            CHECK(!"bare LF in the reduced MIME");
            break;
        }
    free(r);
    mime_split_free(&s);
    close(fd);
    free(b.p);
}

static void test_only_attachment_and_threshold(void)
{
    struct buf b = {0};
    puts_(&b, "From: a@contoso.test\r\nTo: b@contoso.test\r\nSubject: bare\r\n"
              "MIME-Version: 1.0\r\nContent-Type: application/pdf; name=\"only.pdf\"\r\n"
              "Content-Transfer-Encoding: base64\r\n\r\n");
    put_base64(&b, pdf, PDF_SIZE);
    int fd = spool(&b);
    struct mime_split s;
    CHECK(mime_split_run(fd, NULL, 0, dir, MIME_SPLIT_MIN_ATTACHMENT, &s) == 0);
    CHECK(s.n_att == 1 && s.att[0].size == PDF_SIZE && fd_equals(s.att[0].fd, pdf, PDF_SIZE));
    CHECK(s.n_att == 1 && strcmp(s.att[0].name, "only.pdf") == 0);
    size_t n;
    char *r = read_all(s.reduced_fd, &n);
    CHECK(strstr(r, "Subject: bare\r\n") != NULL && strstr(r, "text/plain") != NULL);
    CHECK(n < 4096);
    free(r);
    mime_split_free(&s);
    /* Above the size of everything: nothing is taken out, the message stays whole. */
    CHECK(mime_split_run(fd, NULL, 0, dir, PDF_SIZE + 1, &s) == 0);
    CHECK(s.n_att == 0 && s.reduced_size >= b.len - 8);
    mime_split_free(&s);
    close(fd);
    free(b.p);
}

static void test_quoted_printable(void)
{
    struct buf b = {0};
    puts_(&b, "From: a@contoso.test\r\nSubject: qp\r\nMIME-Version: 1.0\r\n"
              "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
              "Content-Type: text/plain\r\n\r\nbody\r\n--b\r\n"
              "Content-Type: application/octet-stream\r\n"
              "Content-Disposition: attachment; filename=blob.bin\r\n"
              "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
    put_qp(&b, small, SMALL_SIZE);
    puts_(&b, "--b--\r\n");
    int fd = spool(&b);
    struct mime_split s;
    CHECK(mime_split_run(fd, NULL, 0, dir, 1024, &s) == 0);
    /* The part's last line break belongs to the boundary (RFC 2046 5.1.1). */
    CHECK(s.n_att == 1 && s.att[0].size == SMALL_SIZE &&
          fd_equals(s.att[0].fd, small, SMALL_SIZE));
    mime_split_free(&s);
    close(fd);
    free(b.p);
}

static long max_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* The message goes to the file piece by piece, so only the split can raise the peak. */
static void test_memory_bound(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/big-XXXXXX", dir);
    int fd = mkstemp(path);
    unlink(path);
    const char *head = "From: a@contoso.test\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
                       "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
                       "Content-Type: text/plain\r\n\r\nbig one\r\n--b\r\n"
                       "Content-Type: application/pdf\r\n"
                       "Content-Disposition: attachment; filename=big.pdf\r\n"
                       "Content-Transfer-Encoding: base64\r\n\r\n";
    CHECK(write(fd, head, strlen(head)) == (ssize_t)strlen(head));
    struct buf chunk = {0};
    put_base64(&chunk, small, SMALL_SIZE - SMALL_SIZE % 57); /* whole lines */
    size_t decoded = 0, total = (size_t)48 * 1024 * 1024;
    while (decoded < total) {
        CHECK(write(fd, chunk.p, chunk.len) == (ssize_t)chunk.len);
        decoded += SMALL_SIZE - SMALL_SIZE % 57;
    }
    CHECK(write(fd, "--b--\r\n", 7) == 7);
    free(chunk.p);
    long before = max_rss_kb();
    struct mime_split s;
    CHECK(mime_split_run(fd, NULL, 0, dir, MIME_SPLIT_MIN_ATTACHMENT, &s) == 0);
    CHECK(s.n_att == 1 && s.att[0].size == decoded);
    long grew = max_rss_kb() - before;
    if (grew >= 8 * 1024)
        fprintf(stderr, "peak RSS grew by %ld kB splitting %zu bytes\n", grew, decoded);
    CHECK(grew < 8 * 1024);
    mime_split_free(&s);
    close(fd);
}

static int cb_calls;
static struct mime_split *cb_result;
static int cb_status;

static void on_split(void *arg, struct mime_split *s, int status)
{
    (void)arg;
    cb_calls++;
    cb_result = s;
    cb_status = status;
}

static void test_queue(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct buf b = scan_message();
    int fd = spool(&b);
    struct mime_split_job *j =
        mime_split_queue(&loop, fd, NULL, 0, dir, MIME_SPLIT_MIN_ATTACHMENT, on_split, NULL);
    close(fd); /* the job has its own descriptor */
    CHECK(j != NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(cb_calls == 1 && cb_status == 0 && cb_result != NULL && cb_result->n_att == 2);
    if (cb_result != NULL) {
        mime_split_free(cb_result);
        free(cb_result);
    }
    fd = spool(&b);
    j = mime_split_queue(&loop, fd, NULL, 0, dir, MIME_SPLIT_MIN_ATTACHMENT, on_split, NULL);
    CHECK(j != NULL);
    mime_split_cancel(j);
    close(fd);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(cb_calls == 1);
    CHECK(uv_loop_close(&loop) == 0);
    free(b.p);
}

int main(void)
{
    if (mkdtemp(dir) == NULL)
        return 1;
    img = random_bytes(IMG_SIZE, 1);
    pdf = random_bytes(PDF_SIZE, 2);
    small = random_bytes(SMALL_SIZE, 3);
    test_split();
    test_only_attachment_and_threshold();
    test_quoted_printable();
    test_memory_bound();
    test_queue();
    /* Every temporary file had no name: the directory is empty. */
    int names = 0;
    DIR *d = opendir(dir);
    for (struct dirent *de; d != NULL && (de = readdir(d)) != NULL;)
        names += de->d_name[0] != '.';
    if (d != NULL)
        closedir(d);
    CHECK(names == 0);
    free(img);
    free(pdf);
    free(small);
    remove_tree(dir);
    return CHECK_DONE();
}
