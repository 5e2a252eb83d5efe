/* spool_file: a temporary file in a directory that has no name while it exists.
 *
 * O_TMPFILE where the kernel and file system have it; otherwise mkstemp() (mode 0600) and
 * unlink() at once. Either way, closing the descriptor is all the cleanup there is: a daemon
 * that is killed leaves nothing behind on disk. */
#ifndef XOAUTHD_SPOOL_FILE_H
#define XOAUTHD_SPOOL_FILE_H

/* A read-write, close-on-exec descriptor, or -1 with errno. tag (may be NULL) names the
 * short-lived file of the mkstemp() fallback, for whoever looks at the directory meanwhile. */
int spool_file_open(const char *dir, const char *tag);

#endif
