/* atomic_file: small files that must never be seen half-written — a rotated refresh token is
 * data, not cache, and losing it locks a mailbox out. A write is temp file (0600) + fsync +
 * rename (or link, for a file two processes may create at once) + fsync of the directory, so
 * after a crash either the old or the new content is there (rename(2) is atomic on POSIX; the
 * directory's fsync makes the rename itself durable). The blocking calls never log: they run on
 * libuv's worker threads too, and say what failed in an atomic_file_result for the loop thread
 * to log. */
#ifndef XOAUTHD_ATOMIC_FILE_H
#define XOAUTHD_ATOMIC_FILE_H

#include <stddef.h>

struct atomic_file_result {
    const char *step; /* what failed, for the log: "mkdir", "write", ... */
    int err;          /* errno of the failure, 0 for a format problem */
    int loose_dir;    /* the directory is accessible by group or others */
    int loose_file;   /* the file read is readable by group or others */
};

/* Creates dir (0700) when missing; notes in r->loose_dir whether it is open to others. 0 / -1. */
int atomic_file_ensure_dir(const char *dir, struct atomic_file_result *r);
/* Reads a whole file of at most max bytes into a malloc'ed, NUL-terminated buffer of *cap
 * bytes (cleanse it with secmem_free(*out, *cap)). Returns 1, 0 when there is no file, -1 on
 * error (r filled; a larger file is EFBIG). */
int atomic_file_read(const char *path, size_t max, char **out, size_t *len, size_t *cap,
                     struct atomic_file_result *r);
/* Writes data to dir/name atomically (dir is created 0700 when missing). durable: fsync the
 * file and the directory (without, a crash may lose the update but never tears it). exclusive:
 * the final name must not exist yet (link instead of rename). Returns 0, 1 (exclusive and the
 * file already existed), or -1. */
int atomic_file_write(const char *dir, const char *name, const char *data, size_t len,
                      int durable, int exclusive, struct atomic_file_result *r);

#endif
