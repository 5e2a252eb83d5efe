/* Unit tests of atomic_file: whole-file writes (replace, exclusive create, durable or not), the
 * bounded read, the directory it creates, and that no temp file is left behind. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"
#include "check.h"
#include "secmem.h"

static char base[] = "/tmp/xoauthd-atomic-XXXXXX";

static int entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static int read_back(const char *path, const char *want, size_t max)
{
    struct atomic_file_result r = {0};
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = atomic_file_read(path, max, &buf, &len, &cap, &r);
    int ok = rc == 1 && len == strlen(want) && memcmp(buf, want, len) == 0 && buf[len] == '\0';
    secmem_free(buf, cap);
    return ok;
}

static void test_write_and_read(void)
{
    char dir[128], path[160];
    struct atomic_file_result r = {0};
    struct stat st;
    snprintf(dir, sizeof dir, "%s/state", base);
    snprintf(path, sizeof path, "%s/a.txt", dir);
    /* the directory is made 0700 */
    CHECK(atomic_file_write(dir, "a.txt", "one\n", 4, 1, 0, &r) == 0);
    CHECK(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0700);
    CHECK(!r.loose_dir);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK(read_back(path, "one\n", 100));
    /* replacing, durable or not */
    CHECK(atomic_file_write(dir, "a.txt", "two", 3, 0, 0, &r) == 0);
    CHECK(read_back(path, "two", 100));
    CHECK(atomic_file_write(dir, "a.txt", "", 0, 1, 0, &r) == 0);
    CHECK(read_back(path, "", 100));
    /* exclusive: the first one wins, the file is not touched */
    CHECK(atomic_file_write(dir, "b.key", "first", 5, 1, 1, &r) == 0);
    CHECK(atomic_file_write(dir, "b.key", "second", 6, 1, 1, &r) == 1);
    snprintf(path, sizeof path, "%s/b.key", dir);
    CHECK(read_back(path, "first", 100));
    /* no temp file left behind by any of them */
    CHECK(entries(dir) == 2);
}

static void test_read_limits(void)
{
    char dir[128], path[160];
    struct atomic_file_result r = {0};
    char *buf = (char *)1;
    size_t len = 1, cap = 0;
    snprintf(dir, sizeof dir, "%s/limits", base);
    snprintf(path, sizeof path, "%s/missing", dir);
    /* no file (and no directory): 0, nothing allocated */
    CHECK(atomic_file_read(path, 10, &buf, &len, &cap, &r) == 0 && buf == NULL && len == 0);
    CHECK(atomic_file_write(dir, "big", "0123456789A", 11, 0, 0, &r) == 0);
    snprintf(path, sizeof path, "%s/big", dir);
    CHECK(read_back(path, "0123456789A", 11));
    memset(&r, 0, sizeof r);
    CHECK(atomic_file_read(path, 10, &buf, &len, &cap, &r) == -1 && buf == NULL);
    CHECK(r.err == EFBIG && r.step != NULL);
    /* a path through a file is no file either */
    snprintf(path, sizeof path, "%s/big/x", dir);
    CHECK(atomic_file_read(path, 10, &buf, &len, &cap, &r) == 0);
}

static void test_failures(void)
{
    char dir[128];
    struct atomic_file_result r = {0};
    /* the directory is a file: refused, with the step named */
    snprintf(dir, sizeof dir, "%s/limits/big", base);
    CHECK(atomic_file_write(dir, "x", "y", 1, 1, 0, &r) == -1);
    CHECK(r.step != NULL && r.err == ENOTDIR);
    /* a directory open to others is reported, still used */
    snprintf(dir, sizeof dir, "%s/loose", base);
    CHECK(mkdir(dir, 0755) == 0 && chmod(dir, 0755) == 0);
    memset(&r, 0, sizeof r);
    CHECK(atomic_file_write(dir, "f", "z", 1, 0, 0, &r) == 0);
    CHECK(r.loose_dir);
    memset(&r, 0, sizeof r);
    CHECK(atomic_file_ensure_dir(dir, &r) == 0 && r.loose_dir);
}

int main(void)
{
    if (mkdtemp(base) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_write_and_read();
    test_read_limits();
    test_failures();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    if (system(cmd) != 0)
        fprintf(stderr, "note: could not remove %s\n", base);
    return CHECK_DONE();
}
