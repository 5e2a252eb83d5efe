/* mime_split: takes a message apart for Graph's draft path (docs/graph-large-messages.md).
 *
 * Graph refuses a request body over 4 MB of base64, so a larger message cannot be created as
 * a draft from its MIME in one piece; Graph wants every attachment of 3 MB or more through an
 * upload session instead. mime_split_run() parses the message with GMime and writes
 *   - the reduced MIME: the message with those attachments removed, everything else (headers,
 *     body, inline parts and small attachments) as it was, and
 *   - each removed attachment's decoded bytes (transfer encoding undone),
 * each to its own temporary file in state_dir (spool_file: no name on disk, closing is the
 * cleanup).
 *
 * Memory does not grow with the message: GMime's parser keeps part contents as ranges of the
 * input file (persist-stream), and decoding streams through a fixed buffer. The work is
 * blocking file I/O, so the daemon runs it on libuv's thread pool (mime_split_queue). */
#ifndef XOAUTHD_MIME_SPLIT_H
#define XOAUTHD_MIME_SPLIT_H

#include <stddef.h>
#include <uv.h>

/* Graph: attachments of 3 MB and more go through an upload session (attachment-
 * createUploadSession; docs/graph-large-messages.md 3.). */
#define MIME_SPLIT_MIN_ATTACHMENT ((size_t)3 * 1024 * 1024)

struct mime_attachment {
    int fd;              /* decoded bytes, from offset 0 */
    size_t size;
    char *name;          /* file name, or NULL */
    char *content_type;  /* "type/subtype" */
    char *content_id;    /* without <>, or NULL */
    int is_inline;
};

struct mime_split {
    int reduced_fd;      /* the message without the attachments below, from offset 0 */
    size_t reduced_size;
    struct mime_attachment *att;
    size_t n_att;
    char error[160];     /* why mime_split_run failed */
};

/* Reads the message (prefix first, then fd from offset 0 to its end; fd is not moved or
 * closed: only pread-like access through a duplicate). Parts that are not text bodies and
 * decode to min_attachment bytes or more are taken out. 0, or -1 with s->error set; either way
 * mime_split_free() releases what s holds. */
int mime_split_run(int fd, const char *prefix, size_t prefix_len, const char *state_dir,
                   size_t min_attachment, struct mime_split *s);
void mime_split_free(struct mime_split *s);

/* mime_split_run on libuv's thread pool. cb runs on the loop with the result (owned by cb:
 * mime_split_free and free it) and 0 / -1. fd is duplicated and prefix copied, so the caller
 * may close and free them at once. NULL when the job cannot be queued. */
typedef void (*mime_split_cb)(void *arg, struct mime_split *s, int status);
struct mime_split_job;
struct mime_split_job *mime_split_queue(uv_loop_t *loop, int fd, const char *prefix,
                                        size_t prefix_len, const char *state_dir,
                                        size_t min_attachment, mime_split_cb cb, void *arg);
/* cb will not run; a split already running finishes in its thread and is then freed. */
void mime_split_cancel(struct mime_split_job *j);

#endif
