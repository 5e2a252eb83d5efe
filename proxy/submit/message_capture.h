/* message_capture: holds one message that xoauthd accepted itself (submit = ews | graph) until
 * the provider has it.
 *
 * The bytes (already un-dot-stuffed, CRLF line ends) stay in memory up to a bound; a larger
 * message moves to a spool file in state_dir. The spool file is created with O_TMPFILE (or
 * opened 0600 and unlinked at once where O_TMPFILE is missing), so it has no name while it
 * exists: whatever happens — the client drops, the daemon is killed — no message is ever left
 * behind on disk, and freeing the capture closes the only reference to it.
 *
 * Writes to the spool file run on libuv's thread pool (uv_fs_write) with a bounded backlog:
 * capture_congested() tells the session to stop reading from its client until the drain
 * callback. Reads (capture_read, while curl sends the request body) are synchronous pread()s of
 * at most a curl buffer from a file that was just written: they come from the page cache and
 * cost microseconds, which is cheaper than bouncing every 64 KB through the thread pool.
 *
 * An optional prefix (the Bcc: header message_header builds) is presented before the message
 * bytes without rewriting them. */
#ifndef XOAUTHD_MESSAGE_CAPTURE_H
#define XOAUTHD_MESSAGE_CAPTURE_H

#include <stddef.h>
#include <uv.h>

#define CAPTURE_READ_ERROR ((size_t)-1)

/* Something a request body can be read from at any offset (a retry starts again at 0). */
struct capture_source {
    size_t (*read)(void *arg, size_t off, char *buf, size_t len); /* bytes, CAPTURE_READ_ERROR */
    void *arg;
    size_t size;
};

struct capture;
typedef void (*capture_drain_cb)(void *arg);
/* status 0: every byte is stored; -1: the spool file could not be written (disk full...). */
typedef void (*capture_done_cb)(void *arg, int status);

/* mem_limit: bytes kept in memory before spooling (0 = 1 MiB). */
struct capture *capture_new(uv_loop_t *loop, const char *state_dir, size_t mem_limit,
                            const char *sid, capture_drain_cb drain_cb, void *arg);
/* Appends message bytes. -1 once storing failed (the error is logged once). */
int capture_append(struct capture *c, const char *buf, size_t len);
int capture_congested(const struct capture *c);
/* cb runs once every byte reached its store (maybe before this returns). */
void capture_finish(struct capture *c, capture_done_cb cb, void *arg);
/* Text shown before the message; copied. 0 / -1. */
int capture_set_prefix(struct capture *c, const char *prefix, size_t len);
/* Size of the message as read: prefix included. */
size_t capture_size(const struct capture *c);
int capture_spooled(const struct capture *c);
size_t capture_read(struct capture *c, size_t off, char *buf, size_t len);
struct capture_source capture_source(struct capture *c);
/* No callback runs afterwards; a write in flight finishes on its own and then frees. */
void capture_free(struct capture *c);

/* A source over a memory buffer (tests, small bodies). The buffer must outlive its use. */
struct capture_mem {
    const char *data;
    size_t len;
};
struct capture_source capture_source_mem(struct capture_mem *m);

/* A source over len bytes of a file from offset 0 (a part mime_split wrote), read with
 * pread. The struct must outlive its use; fd is not closed. */
struct capture_fd {
    int fd;
    size_t len;
};
struct capture_source capture_source_fd(struct capture_fd *f);

#endif
