/* mkostemp (O_CLOEXEC: a write may run on the thread pool while the loop thread starts a child
 * process, which must not inherit the file). */
#define _GNU_SOURCE
#include "atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "secmem.h"

static int atomic_file_fail(struct atomic_file_result *r, const char *step, int err)
{
    r->step = step;
    r->err = err;
    return -1;
}

int atomic_file_ensure_dir(const char *dir, struct atomic_file_result *r)
{
    struct stat st;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return atomic_file_fail(r, "mkdir", errno);
    if (stat(dir, &st) != 0)
        return atomic_file_fail(r, "stat dir", errno);
    if (!S_ISDIR(st.st_mode))
        return atomic_file_fail(r, "stat dir", ENOTDIR);
    r->loose_dir = (st.st_mode & 077) != 0;
    return 0;
}

static int atomic_file_write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int atomic_file_read(const char *path, size_t max, char **out, size_t *len, size_t *cap,
                     struct atomic_file_result *r)
{
    struct stat st;
    size_t got = 0;
    char *buf;
    int fd;

    *out = NULL;
    *len = 0;
    *cap = max + 1;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        /* ENOTDIR: a path component is not a directory, so there is no file either; the save
         * that follows fails loudly. */
        if (errno == ENOENT || errno == ENOTDIR)
            return 0;
        return atomic_file_fail(r, "open", errno);
    }
    if (fstat(fd, &st) == 0)
        r->loose_file = (st.st_mode & 077) != 0;
    buf = malloc(*cap);
    if (buf == NULL) {
        close(fd);
        return atomic_file_fail(r, "malloc", ENOMEM);
    }
    for (;;) {
        ssize_t n = read(fd, buf + got, *cap - got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            atomic_file_fail(r, "read", errno);
            goto fail;
        }
        if (n == 0)
            break;
        got += (size_t)n;
        if (got > max) {
            atomic_file_fail(r, "file too large", EFBIG);
            goto fail;
        }
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return 1;
fail:
    close(fd);
    secmem_free(buf, *cap);
    return -1;
}

int atomic_file_write(const char *dir, const char *name, const char *data, size_t len,
                      int durable, int exclusive, struct atomic_file_result *r)
{
    char *path = NULL, *tmp = NULL;
    size_t plen = strlen(dir) + strlen(name) + 2;
    size_t tlen = strlen(dir) + strlen(name) + sizeof "/..XXXXXX";
    int fd = -1, dfd = -1, rc = -1;

    if (atomic_file_ensure_dir(dir, r) != 0)
        return -1;
    path = malloc(plen);
    tmp = malloc(tlen);
    if (path == NULL || tmp == NULL) {
        atomic_file_fail(r, "malloc", ENOMEM);
        goto done;
    }
    snprintf(path, plen, "%s/%s", dir, name);
    /* The leading dot keeps temp files out of the names a caller uses (token_store's account
     * names never start with '.'); mkostemp creates the file 0600 whatever the umask. */
    snprintf(tmp, tlen, "%s/.%s.XXXXXX", dir, name);
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        atomic_file_fail(r, "create temp file", errno);
        tmp[0] = '\0';
        goto done;
    }
    if (fchmod(fd, 0600) != 0) {
        atomic_file_fail(r, "chmod", errno);
        goto done;
    }
    if (atomic_file_write_all(fd, data, len) != 0) {
        atomic_file_fail(r, "write", errno);
        goto done;
    }
    if (durable && fsync(fd) != 0) {
        atomic_file_fail(r, "fsync", errno);
        goto done;
    }
    if (close(fd) != 0) {
        fd = -1;
        atomic_file_fail(r, "close", errno);
        goto done;
    }
    fd = -1;
    if (exclusive) {
        if (link(tmp, path) != 0) {
            if (errno == EEXIST) {
                rc = 1;
                goto done;
            }
            atomic_file_fail(r, "link", errno);
            goto done;
        }
        unlink(tmp);
    } else if (rename(tmp, path) != 0) {
        atomic_file_fail(r, "rename", errno);
        goto done;
    }
    tmp[0] = '\0';
    if (durable) {
        /* Without this the rename itself may be lost in a crash, bringing a dead token back. */
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || fsync(dfd) != 0) {
            atomic_file_fail(r, "fsync dir", errno);
            goto done;
        }
    }
    rc = 0;
done:
    if (fd >= 0)
        close(fd);
    if (dfd >= 0)
        close(dfd);
    if (tmp != NULL && tmp[0] != '\0')
        unlink(tmp);
    free(tmp);
    free(path);
    return rc;
}
