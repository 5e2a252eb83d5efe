/* config_secret_file: see config_secret_file.h. */
#include "config_secret_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_perms.h"
#include "secmem.h"

#define CONFIG_SECRET_FILE_MAX 65536 /* a refresh token is 1-2 KB; a JWT maybe 8 */

/* The path kv names, into path; 0, or -1 after reporting. */
static int config_secret_file_path(struct config_loader *ld, const struct config_section *sec,
                                   const struct config_kv *kv, char *path, size_t pathsz)
{
    const char *v = kv->value;
    if (v[0] == '\0') {
        config_error(ld, kv->line, "key '%s' in %s needs a file name", kv->key, sec->label);
        return -1;
    }
    if (v[0] == '/') {
        if (strlen(v) >= pathsz) {
            config_error(ld, kv->line, "key '%s' in %s: the path is too long", kv->key,
                         sec->label);
            return -1;
        }
        snprintf(path, pathsz, "%s", v);
        return 0;
    }
    const char *dir = getenv("CREDENTIALS_DIRECTORY");
    if (strchr(v, '/') != NULL || strcmp(v, "..") == 0 || strcmp(v, ".") == 0) {
        config_error(ld, kv->line, "key '%s' in %s: a relative name is a systemd credential "
                     "name, without '/'; give an absolute path otherwise", kv->key, sec->label);
        return -1;
    }
    if (dir == NULL || dir[0] == '\0') {
        config_error(ld, kv->line, "key '%s' in %s names credential '%s', but "
                     "$CREDENTIALS_DIRECTORY is not set (load it with LoadCredential=%s:PATH "
                     "in the systemd unit, or give an absolute path)", kv->key, sec->label, v, v);
        return -1;
    }
    if ((size_t)snprintf(path, pathsz, "%s/%s", dir, v) >= pathsz) {
        config_error(ld, kv->line, "key '%s' in %s: the path is too long", kv->key, sec->label);
        return -1;
    }
    return 0;
}

char *config_secret_file_read(struct config_loader *ld, const struct config_section *sec,
                              const struct config_kv *kv)
{
    char path[4096];
    struct stat st;
    char *buf = NULL;
    size_t cap = 0, len = 0;
    if (config_secret_file_path(ld, sec, kv, path, sizeof path) != 0)
        return NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        config_error(ld, kv->line, "key '%s' in %s: cannot read %s: %s", kv->key, sec->label,
                     path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        config_error(ld, kv->line, "key '%s' in %s: %s is not a regular file", kv->key,
                     sec->label, path);
        goto fail;
    }
    if (config_perms_exposed(st.st_mode)) {
        config_error(ld, kv->line, "key '%s' in %s: %s is readable by every user (mode %04o) "
                     "and holds a secret; refusing it (fix: chmod 600 %s, or chmod 640 and a "
                     "group the daemon is in)", kv->key, sec->label, path,
                     (unsigned)(st.st_mode & 07777), path);
        goto fail;
    }
    for (;;) {
        if (secmem_grow(&buf, &cap, len, len + 1025, 1025) != 0) {
            ld->oom = 1;
            goto fail;
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            config_error(ld, kv->line, "key '%s' in %s: cannot read %s: %s", kv->key,
                         sec->label, path, strerror(errno));
            goto fail;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > CONFIG_SECRET_FILE_MAX) {
            config_error(ld, kv->line, "key '%s' in %s: %s is longer than %d bytes", kv->key,
                         sec->label, path, CONFIG_SECRET_FILE_MAX);
            goto fail;
        }
    }
    close(fd);
    fd = -1;
    if (len > 0 && buf[len - 1] == '\n')
        len--;
    if (len > 0 && buf[len - 1] == '\r')
        len--;
    buf[len] = '\0';
    if (len == 0) {
        config_error(ld, kv->line, "key '%s' in %s: %s is empty", kv->key, sec->label, path);
        goto fail;
    }
    if (memchr(buf, '\0', len) != NULL || memchr(buf, '\n', len) != NULL ||
        memchr(buf, '\r', len) != NULL) {
        config_error(ld, kv->line, "key '%s' in %s: %s must hold the value on one line "
                     "(without NUL bytes)", kv->key, sec->label, path);
        goto fail;
    }
    char *value = strdup(buf);
    secmem_free(buf, cap);
    if (value == NULL)
        ld->oom = 1;
    return value;
fail:
    if (fd >= 0)
        close(fd);
    secmem_free(buf, cap);
    return NULL;
}
