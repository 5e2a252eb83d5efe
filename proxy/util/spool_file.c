#include "spool_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int spool_file_open(const char *dir, const char *tag)
{
#ifdef O_TMPFILE
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
#endif
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/spool-%s-XXXXXX", dir, tag ? tag : "tmp");
    if (n < 0 || (size_t)n >= sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = path + strlen(dir) + 1; *p; p++)
        if (*p == '/')
            *p = '_';
    int tfd = mkstemp(path); /* 0600 */
    if (tfd < 0)
        return -1;
    (void)fcntl(tfd, F_SETFD, FD_CLOEXEC);
    unlink(path);
    return tfd;
}
