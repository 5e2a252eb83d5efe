#include "message_capture.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "spool_file.h"

#define CAPTURE_DEFAULT_MEM ((size_t)1 << 20)
#define CAPTURE_WRITE_MIN (64 * 1024)       /* submit a file write once this much waits */
#define CAPTURE_HIGH_WATER (1024 * 1024)    /* congested above this backlog */

struct capture {
    uv_loop_t *loop;
    char *state_dir;
    char sid[32];
    size_t mem_limit;
    capture_drain_cb drain_cb;
    void *arg;

    char *mem;        /* the message while it is small; NULL once spooled */
    size_t mem_len, mem_cap;

    int fd;           /* spool file, -1 while in memory */
    size_t file_len;  /* bytes known written */
    char *pend;       /* waiting for the next write */
    size_t pend_len, pend_cap;
    char *inflight;   /* owned by the write in flight */
    size_t inflight_len, inflight_cap;
    uv_fs_t req;
    uv_buf_t iov;
    int writing;
    int was_congested;
    int failed;
    int freed;        /* capture_free ran while a write was in flight or a callback ran */
    int busy;         /* inside capture_write_cb: a callback may call capture_free */

    char *prefix;
    size_t prefix_len;

    int finishing;
    capture_done_cb done_cb;
    void *done_arg;
};

static void capture_write_next(struct capture *c);

struct capture *capture_new(uv_loop_t *loop, const char *state_dir, size_t mem_limit,
                            const char *sid, capture_drain_cb drain_cb, void *arg)
{
    struct capture *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->loop = loop;
    c->state_dir = strdup(state_dir != NULL ? state_dir : ".");
    if (c->state_dir == NULL) {
        free(c);
        return NULL;
    }
    snprintf(c->sid, sizeof c->sid, "%s", sid != NULL ? sid : "-");
    c->mem_limit = mem_limit != 0 ? mem_limit : CAPTURE_DEFAULT_MEM;
    c->drain_cb = drain_cb;
    c->arg = arg;
    c->fd = -1;
    return c;
}

static void capture_cleanse_free(char *p, size_t cap)
{
    if (p == NULL)
        return;
    OPENSSL_cleanse(p, cap); /* mail is private data */
    free(p);
}

static void capture_destroy(struct capture *c)
{
    /* Closing the only descriptor of a nameless file is what deletes it. */
    if (c->fd >= 0)
        close(c->fd);
    capture_cleanse_free(c->mem, c->mem_cap);
    capture_cleanse_free(c->pend, c->pend_cap);
    capture_cleanse_free(c->inflight, c->inflight_cap);
    if (c->prefix != NULL)
        capture_cleanse_free(c->prefix, c->prefix_len);
    free(c->state_dir);
    free(c);
}

static int capture_grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap != 0 ? *cap : 16 * 1024;
    while (ncap < need)
        ncap *= 2;
    char *p = realloc(*buf, ncap);
    if (p == NULL)
        return -1;
    *buf = p;
    *cap = ncap;
    return 0;
}

static void capture_fail(struct capture *c, const char *what, int err)
{
    if (!c->failed)
        log_error(c->sid, "event=spool_failed dir=%s op=%s reason=\"%s\" note=\"the client is "
                  "told 451 and retries; check free space and permissions of state_dir\"",
                  c->state_dir, what, strerror(err));
    c->failed = 1;
}

/* Opening is a metadata operation on a local directory, once per large message; it is done
 * synchronously, the data writes are not. */
static int capture_open_spool(struct capture *c)
{
    c->fd = spool_file_open(c->state_dir, c->sid);
    if (c->fd < 0) {
        capture_fail(c, "create", errno);
        return -1;
    }
    return 0;
}

static void capture_write_cb(uv_fs_t *req)
{
    struct capture *c = req->data;
    ssize_t r = req->result;
    uv_fs_req_cleanup(req);
    c->writing = 0;
    if (c->freed) {
        capture_destroy(c);
        return;
    }
    if (r < 0) {
        capture_fail(c, "write", (int)-r);
    } else if ((size_t)r < c->inflight_len) {
        /* Short write: the rest goes again, from where it stopped. */
        memmove(c->inflight, c->inflight + r, c->inflight_len - (size_t)r);
        c->file_len += (size_t)r;
        c->inflight_len -= (size_t)r;
        c->iov = uv_buf_init(c->inflight, (unsigned)c->inflight_len);
        c->writing = 1;
        if (uv_fs_write(c->loop, &c->req, c->fd, &c->iov, 1, (int64_t)c->file_len,
                        capture_write_cb) != 0) {
            c->writing = 0;
            capture_fail(c, "write", EIO);
        } else {
            return;
        }
    } else {
        c->file_len += (size_t)r;
    }
    c->inflight_len = 0;
    c->busy = 1;
    capture_write_next(c); /* may run the done callback */
    if (!c->freed && c->was_congested && !capture_congested(c)) {
        c->was_congested = 0;
        if (c->drain_cb != NULL)
            c->drain_cb(c->arg);
    }
    c->busy = 0;
    if (c->freed && !c->writing)
        capture_destroy(c);
}

/* Swaps the pending bytes into flight when it is worth it (or when finishing). */
static void capture_write_next(struct capture *c)
{
    if (c->writing || c->failed)
        goto check_done;
    if (c->pend_len == 0 || (c->pend_len < CAPTURE_WRITE_MIN && !c->finishing))
        goto check_done;
    /* Two buffers trade places: the thread pool reads one while the session fills the other. */
    char *b = c->inflight;
    size_t bcap = c->inflight_cap;
    c->inflight = c->pend;
    c->inflight_cap = c->pend_cap;
    c->inflight_len = c->pend_len;
    c->pend = b;
    c->pend_cap = bcap;
    c->pend_len = 0;
    c->iov = uv_buf_init(c->inflight, (unsigned)c->inflight_len);
    c->req.data = c;
    c->writing = 1;
    if (uv_fs_write(c->loop, &c->req, c->fd, &c->iov, 1, (int64_t)c->file_len,
                    capture_write_cb) != 0) {
        c->writing = 0;
        capture_fail(c, "write", EIO);
    }
    return;
check_done:
    if (c->finishing && !c->writing && (c->pend_len == 0 || c->failed) && c->done_cb != NULL) {
        capture_done_cb cb = c->done_cb;
        c->done_cb = NULL;
        cb(c->done_arg, c->failed ? -1 : 0);
    }
}

int capture_append(struct capture *c, const char *buf, size_t len)
{
    if (c->failed)
        return -1;
    if (len == 0)
        return 0;
    if (c->fd < 0 && c->mem_len + len <= c->mem_limit) {
        if (capture_grow(&c->mem, &c->mem_cap, c->mem_len + len) != 0) {
            capture_fail(c, "memory", ENOMEM);
            return -1;
        }
        memcpy(c->mem + c->mem_len, buf, len);
        c->mem_len += len;
        return 0;
    }
    if (c->fd < 0) {
        if (capture_open_spool(c) != 0)
            return -1;
        log_debug(c->sid, "event=spool_start bytes=%zu", c->mem_len + len);
        /* The memory copy becomes the first pending write. */
        c->pend = c->mem;
        c->pend_len = c->mem_len;
        c->pend_cap = c->mem_cap;
        c->mem = NULL;
        c->mem_len = c->mem_cap = 0;
    }
    if (capture_grow(&c->pend, &c->pend_cap, c->pend_len + len) != 0) {
        capture_fail(c, "memory", ENOMEM);
        return -1;
    }
    memcpy(c->pend + c->pend_len, buf, len);
    c->pend_len += len;
    capture_write_next(c);
    if (capture_congested(c))
        c->was_congested = 1;
    return c->failed ? -1 : 0;
}

int capture_congested(const struct capture *c)
{
    return c->fd >= 0 && c->writing && c->pend_len >= CAPTURE_HIGH_WATER;
}

void capture_finish(struct capture *c, capture_done_cb cb, void *arg)
{
    c->finishing = 1;
    c->done_cb = cb;
    c->done_arg = arg;
    if (c->fd < 0) {
        c->done_cb = NULL;
        cb(arg, c->failed ? -1 : 0);
        return;
    }
    capture_write_next(c);
}

int capture_set_prefix(struct capture *c, const char *prefix, size_t len)
{
    char *p = malloc(len + 1);
    if (p == NULL)
        return -1;
    memcpy(p, prefix, len);
    p[len] = '\0';
    if (c->prefix != NULL)
        capture_cleanse_free(c->prefix, c->prefix_len);
    c->prefix = p;
    c->prefix_len = len;
    return 0;
}

size_t capture_size(const struct capture *c)
{
    return c->prefix_len + (c->fd >= 0 ? c->file_len + c->inflight_len + c->pend_len : c->mem_len);
}

int capture_spooled(const struct capture *c) { return c->fd >= 0; }

size_t capture_read(struct capture *c, size_t off, char *buf, size_t len)
{
    size_t done = 0;
    if (off < c->prefix_len) {
        size_t n = c->prefix_len - off < len ? c->prefix_len - off : len;
        memcpy(buf, c->prefix + off, n);
        done = n;
        off += n;
    }
    if (done == len)
        return done;
    off -= c->prefix_len;
    if (c->fd < 0) {
        if (off >= c->mem_len)
            return done;
        size_t n = c->mem_len - off < len - done ? c->mem_len - off : len - done;
        memcpy(buf + done, c->mem + off, n);
        return done + n;
    }
    /* Only a finished capture is read; see the header for why pread is synchronous. */
    if (off >= c->file_len)
        return done;
    size_t want = c->file_len - off < len - done ? c->file_len - off : len - done;
    ssize_t r;
    do
        r = pread(c->fd, buf + done, want, (off_t)off);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        capture_fail(c, "read", errno);
        return CAPTURE_READ_ERROR;
    }
    return done + (size_t)r;
}

static size_t capture_source_read(void *arg, size_t off, char *buf, size_t len)
{
    return capture_read(arg, off, buf, len);
}

struct capture_source capture_source(struct capture *c)
{
    struct capture_source s = {capture_source_read, c, capture_size(c)};
    return s;
}

static size_t capture_mem_read(void *arg, size_t off, char *buf, size_t len)
{
    struct capture_mem *m = arg;
    if (off >= m->len)
        return 0;
    size_t n = m->len - off < len ? m->len - off : len;
    memcpy(buf, m->data + off, n);
    return n;
}

struct capture_source capture_source_mem(struct capture_mem *m)
{
    struct capture_source s = {capture_mem_read, m, m->len};
    return s;
}

static size_t capture_fd_read(void *arg, size_t off, char *buf, size_t len)
{
    struct capture_fd *f = arg;
    if (off >= f->len)
        return 0;
    size_t want = f->len - off < len ? f->len - off : len;
    ssize_t n = pread(f->fd, buf, want, (off_t)off);
    return n > 0 ? (size_t)n : CAPTURE_READ_ERROR;
}

struct capture_source capture_source_fd(struct capture_fd *f)
{
    struct capture_source s = {capture_fd_read, f, f->len};
    return s;
}

void capture_free(struct capture *c)
{
    if (c == NULL)
        return;
    c->done_cb = NULL;
    c->drain_cb = NULL;
    if (c->writing || c->busy) {
        /* The thread pool owns c->inflight until the callback; it frees then. */
        c->freed = 1;
        return;
    }
    capture_destroy(c);
}
