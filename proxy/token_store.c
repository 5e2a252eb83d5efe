/* token_store: see token_store.h.
 *
 * The blocking cores (token_store_do_save/token_store_do_load) never log: they run on libuv's
 * worker threads too, and report what failed (step + errno) so that the loop thread logs it. */
#include "token_store.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* Far above any real refresh token (Microsoft's are about 1.5 KiB); bounds the read. */
#define TOKEN_STORE_MAX_FILE 65536

struct token_store_result {
    const char *step; /* what failed, for the log: "mkdir", "write", ... */
    int err;          /* errno of the failure, 0 for a format problem */
    int loose_dir;    /* state_dir is readable by group or others */
    int loose_file;   /* the token file is readable by group or others */
};

int token_store_account_ok(const char *account)
{
    size_t len;
    if (account == NULL || account[0] == '\0' || account[0] == '.')
        return 0;
    len = strlen(account);
    if (len > TOKEN_STORE_MAX_ACCOUNT)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = account[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* Same rule as token_response_token_ok: the token must fit on one line of the file. */
static int token_store_token_ok(const char *t, size_t len)
{
    if (len == 0 || len > TOKEN_STORE_MAX_FILE / 2)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c <= 0x20 || c >= 0x7f)
            return 0;
    }
    return 1;
}

char *token_store_path(const char *state_dir, const char *account)
{
    size_t len;
    char *p;
    if (state_dir == NULL || !token_store_account_ok(account))
        return NULL;
    len = strlen(state_dir) + 1 + strlen(account) + sizeof ".refresh";
    p = malloc(len);
    if (p != NULL)
        snprintf(p, len, "%s/%s.refresh", state_dir, account);
    return p;
}

static void token_store_cleanse_free(char *p, size_t len)
{
    if (p != NULL) {
        OPENSSL_cleanse(p, len);
        free(p);
    }
}

static int token_store_fail(struct token_store_result *r, const char *step, int err)
{
    r->step = step;
    r->err = err;
    return -1;
}

static int token_store_ensure_dir(const char *dir, struct token_store_result *r)
{
    struct stat st;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return token_store_fail(r, "mkdir", errno);
    if (stat(dir, &st) != 0)
        return token_store_fail(r, "stat dir", errno);
    if (!S_ISDIR(st.st_mode))
        return token_store_fail(r, "stat dir", ENOTDIR);
    r->loose_dir = (st.st_mode & 077) != 0;
    return 0;
}

static int token_store_write_all(int fd, const char *p, size_t len)
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

static int token_store_do_save(const char *dir, const char *account, const char *token,
                               struct token_store_result *r)
{
    char *path = NULL, *tmp = NULL, *buf = NULL;
    size_t tlen = token != NULL ? strlen(token) : 0;
    size_t blen = 0, len;
    int fd = -1, dfd = -1, rc = -1;

    if (!token_store_account_ok(account))
        return token_store_fail(r, "account name", EINVAL);
    if (!token_store_token_ok(token, tlen))
        return token_store_fail(r, "token format", EINVAL);
    if (token_store_ensure_dir(dir, r) != 0)
        return -1;
    path = token_store_path(dir, account);
    len = strlen(dir) + strlen(account) + sizeof "/..refresh.XXXXXX";
    tmp = malloc(len);
    blen = sizeof TOKEN_STORE_MAGIC + tlen + 2;
    buf = malloc(blen);
    if (path == NULL || tmp == NULL || buf == NULL) {
        token_store_fail(r, "malloc", ENOMEM);
        goto done;
    }
    /* The leading dot keeps temp files out of the account namespace (names never start
     * with '.'); mkstemp creates the file 0600 whatever the umask. */
    snprintf(tmp, len, "%s/.%s.refresh.XXXXXX", dir, account);
    fd = mkstemp(tmp);
    if (fd < 0) {
        token_store_fail(r, "create temp file", errno);
        tmp[0] = '\0';
        goto done;
    }
    (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
    if (fchmod(fd, 0600) != 0) {
        token_store_fail(r, "chmod", errno);
        goto done;
    }
    snprintf(buf, blen, "%s\n%s\n", TOKEN_STORE_MAGIC, token);
    if (token_store_write_all(fd, buf, strlen(buf)) != 0) {
        token_store_fail(r, "write", errno);
        goto done;
    }
    if (fsync(fd) != 0) {
        token_store_fail(r, "fsync", errno);
        goto done;
    }
    if (close(fd) != 0) {
        fd = -1;
        token_store_fail(r, "close", errno);
        goto done;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        token_store_fail(r, "rename", errno);
        goto done;
    }
    tmp[0] = '\0';
    /* Without this the rename itself may be lost in a crash, bringing the dead token back. */
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        token_store_fail(r, "fsync dir", errno);
        goto done;
    }
    rc = 0;
done:
    if (fd >= 0)
        close(fd);
    if (dfd >= 0)
        close(dfd);
    if (tmp != NULL && tmp[0] != '\0')
        unlink(tmp);
    token_store_cleanse_free(buf, blen);
    free(tmp);
    free(path);
    return rc;
}

static int token_store_do_load(const char *dir, const char *account, char **out,
                               struct token_store_result *r)
{
    char *path = NULL, *buf = NULL;
    size_t got = 0;
    struct stat st;
    int fd = -1, rc = -1;

    *out = NULL;
    if (!token_store_account_ok(account))
        return token_store_fail(r, "account name", EINVAL);
    path = token_store_path(dir, account);
    buf = malloc(TOKEN_STORE_MAX_FILE + 1);
    if (path == NULL || buf == NULL) {
        token_store_fail(r, "malloc", ENOMEM);
        goto done;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        /* ENOTDIR: a path component is not a directory, so there is no file either; the
         * save that follows a refresh fails loudly. */
        if (errno == ENOENT || errno == ENOTDIR) {
            rc = 0;
            goto done;
        }
        token_store_fail(r, "open", errno);
        goto done;
    }
    if (fstat(fd, &st) == 0)
        r->loose_file = (st.st_mode & 077) != 0;
    for (;;) {
        ssize_t n = read(fd, buf + got, TOKEN_STORE_MAX_FILE + 1 - got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            token_store_fail(r, "read", errno);
            goto done;
        }
        if (n == 0)
            break;
        got += (size_t)n;
        if (got > TOKEN_STORE_MAX_FILE) {
            token_store_fail(r, "file too large", EFBIG);
            goto done;
        }
    }
    buf[got] = '\0';
    size_t mlen = sizeof TOKEN_STORE_MAGIC - 1;
    if (got < mlen + 1 || memcmp(buf, TOKEN_STORE_MAGIC, mlen) != 0 || buf[mlen] != '\n') {
        /* Includes future formats (encrypted): refuse rather than send garbage upstream. */
        token_store_fail(r, "unknown file format", 0);
        goto done;
    }
    char *tok = buf + mlen + 1;
    size_t tlen = strcspn(tok, "\n");
    if (tok[tlen] == '\n' && tok[tlen + 1] != '\0') {
        token_store_fail(r, "unexpected data after the token", 0);
        goto done;
    }
    if (!token_store_token_ok(tok, tlen)) {
        token_store_fail(r, "bad token in file", 0);
        goto done;
    }
    *out = malloc(tlen + 1);
    if (*out == NULL) {
        token_store_fail(r, "malloc", ENOMEM);
        goto done;
    }
    memcpy(*out, tok, tlen);
    (*out)[tlen] = '\0';
    rc = 1;
done:
    if (fd >= 0)
        close(fd);
    token_store_cleanse_free(buf, TOKEN_STORE_MAX_FILE + 1);
    free(path);
    return rc;
}

static void token_store_log(const char *what, const char *dir, const char *account, int rc,
                            const struct token_store_result *r)
{
    char *path = token_store_path(dir, account);
    char acct[TOKEN_STORE_MAX_ACCOUNT + 8];
    char qpath[512];

    if (account == NULL)
        account = "";
    /* Valid names go out bare like everywhere else; refused ones are quoted to be seen. */
    if (token_store_account_ok(account))
        snprintf(acct, sizeof acct, "%s", account);
    else
        log_quote(acct, sizeof acct, account, strlen(account));
    if (path != NULL)
        log_quote(qpath, sizeof qpath, path, strlen(path));
    else
        snprintf(qpath, sizeof qpath, "-");
    if (rc < 0) {
        if (r->err != 0)
            log_error(NULL, "event=token_store_error op=%s account=%s path=%s step=\"%s\" "
                            "errno=%d error=\"%s\"",
                      what, acct, qpath, r->step, r->err, strerror(r->err));
        else
            log_error(NULL, "event=token_store_error op=%s account=%s path=%s step=\"%s\"", what,
                      acct, qpath, r->step);
    }
    if (r->loose_dir) {
        char qdir[512];
        log_quote(qdir, sizeof qdir, dir, strlen(dir));
        log_warn(NULL, "event=token_store_permissions dir=%s reason=\"state_dir is accessible "
                       "by group or others\" action=\"chmod 700 it\"", qdir);
    }
    if (r->loose_file)
        log_warn(NULL, "event=token_store_permissions path=%s reason=\"token file is readable "
                       "by group or others\" action=\"chmod 600 it\"", qpath);
    free(path);
}

int token_store_load(const char *state_dir, const char *account, char **out)
{
    struct token_store_result r = {0};
    int rc = token_store_do_load(state_dir, account, out, &r);
    token_store_log("load", state_dir, account, rc, &r);
    return rc;
}

int token_store_save_sync(const char *state_dir, const char *account, const char *refresh_token)
{
    struct token_store_result r = {0};
    int rc = token_store_do_save(state_dir, account, refresh_token, &r);
    token_store_log("save", state_dir, account, rc, &r);
    return rc;
}

struct token_store_work {
    uv_work_t req;
    int is_save;
    char *dir;
    char *account;
    char *token; /* save: the token to write; load: the token read */
    int rc;
    struct token_store_result r;
    token_store_cb save_cb;
    token_store_load_cb load_cb;
    void *arg;
};

static void token_store_work_free(struct token_store_work *w)
{
    if (w->token != NULL)
        token_store_cleanse_free(w->token, strlen(w->token));
    free(w->dir);
    free(w->account);
    free(w);
}

static void token_store_work_cb(uv_work_t *req)
{
    struct token_store_work *w = req->data;
    if (w->is_save) {
        w->rc = token_store_do_save(w->dir, w->account, w->token, &w->r);
    } else {
        char *t = NULL;
        w->rc = token_store_do_load(w->dir, w->account, &t, &w->r);
        w->token = t;
    }
}

static void token_store_after_work_cb(uv_work_t *req, int status)
{
    struct token_store_work *w = req->data;
    if (status != 0) { /* UV_ECANCELED: never ran */
        w->rc = -1;
        w->r.step = "thread pool";
        w->r.err = -status;
    }
    token_store_log(w->is_save ? "save" : "load", w->dir, w->account, w->rc, &w->r);
    if (w->is_save) {
        w->save_cb(w->arg, w->rc < 0 ? -1 : 0);
    } else {
        char *t = w->rc == 1 ? w->token : NULL;
        if (t != NULL)
            w->token = NULL; /* handed over */
        w->load_cb(w->arg, w->rc, t);
    }
    token_store_work_free(w);
}

static struct token_store_work *token_store_work_new(const char *state_dir, const char *account)
{
    struct token_store_work *w;
    if (state_dir == NULL || !token_store_account_ok(account))
        return NULL;
    w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    w->req.data = w;
    w->dir = strdup(state_dir);
    w->account = strdup(account);
    if (w->dir == NULL || w->account == NULL) {
        token_store_work_free(w);
        return NULL;
    }
    return w;
}

int token_store_save(uv_loop_t *loop, const char *state_dir, const char *account,
                     const char *refresh_token, token_store_cb cb, void *arg)
{
    struct token_store_work *w;
    if (refresh_token == NULL || cb == NULL)
        return -1;
    w = token_store_work_new(state_dir, account);
    if (w == NULL)
        return -1;
    w->is_save = 1;
    w->save_cb = cb;
    w->arg = arg;
    w->token = strdup(refresh_token);
    if (w->token == NULL || uv_queue_work(loop, &w->req, token_store_work_cb,
                                          token_store_after_work_cb) != 0) {
        token_store_work_free(w);
        return -1;
    }
    return 0;
}

int token_store_load_async(uv_loop_t *loop, const char *state_dir, const char *account,
                           token_store_load_cb cb, void *arg)
{
    struct token_store_work *w;
    if (cb == NULL)
        return -1;
    w = token_store_work_new(state_dir, account);
    if (w == NULL)
        return -1;
    w->load_cb = cb;
    w->arg = arg;
    if (uv_queue_work(loop, &w->req, token_store_work_cb, token_store_after_work_cb) != 0) {
        token_store_work_free(w);
        return -1;
    }
    return 0;
}
