/* token_store: see token_store.h. The names of files, the synchronous calls and their log
 * lines, peek; the key file and derivation are in token_store_key.c, the file format in
 * token_store_format.c, the thread-pool jobs in token_store_jobs.c, status files in
 * token_store_status.c (token_store_internal.h joins them).
 *
 * The blocking cores (token_store_do_*) never log: they run on libuv's worker threads too, and
 * report what failed (step + errno, or a sentence for format problems) so that the loop thread
 * logs it. Every buffer that held a token or a key is cleansed before it is freed. */
#include "token_store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "log.h"

#include "atomic_file.h"
#include "token_store_internal.h"

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

/* Same rule as token_response_token_ok: the token must fit on one line. */
int token_store_token_ok(const char *t, size_t len)
{
    if (t == NULL || len == 0 || len > TOKEN_STORE_MAX_TOKEN)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c <= 0x20 || c >= 0x7f)
            return 0;
    }
    return 1;
}

char *token_store_file(const char *state_dir, const char *account, const char *suffix)
{
    size_t len;
    char *p;
    if (state_dir == NULL || !token_store_account_ok(account))
        return NULL;
    len = strlen(state_dir) + 1 + strlen(account) + strlen(suffix) + 1;
    p = malloc(len);
    if (p != NULL)
        snprintf(p, len, "%s/%s%s", state_dir, account, suffix);
    return p;
}

char *token_store_path(const char *state_dir, const char *account)
{
    return token_store_file(state_dir, account, ".refresh");
}

void token_store_cleanse_free(void *p, size_t len)
{
    if (p != NULL) {
        OPENSSL_cleanse(p, len);
        free(p);
    }
}

int token_store_fail(struct atomic_file_result *r, const char *step, int err)
{
    r->step = step;
    r->err = err;
    return -1;
}

void token_store_info_init(struct token_store_info *info)
{
    memset(info, 0, sizeof *info);
    info->key_kind = -1;
}

/* ---- logging on the loop thread ---- */

void token_store_log(const char *what, const char *dir, const char *account, int rc,
                     const struct atomic_file_result *r,
                     const struct token_store_info *info)
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
    if (info != NULL && info->set_aside[0] != '\0')
        log_error(NULL, "event=token_store_set_aside account=%s path=%s moved_to=%s "
                        "reason=\"%s\" action=\"the old file is kept for inspection; delete it "
                        "when it is no longer needed\"",
                  acct, qpath, info->set_aside, info->detail);
    if (rc == TOKEN_STORE_UNUSABLE && info != NULL)
        log_error(NULL, "event=token_store_unusable op=%s account=%s path=%s reason=\"%s\" "
                        "action=\"the file is left as it is; run `xoauthd auth %s` to sign in "
                        "again (the old file is then kept as .corrupt-TIMESTAMP)\"",
                  what, acct, qpath, info->detail, acct);
    else if (rc == -1 && r->step != NULL) {
        if (r->err != 0)
            log_error(NULL, "event=token_store_error op=%s account=%s path=%s step=\"%s\" "
                            "errno=%d error=\"%s\"",
                      what, acct, qpath, r->step, r->err, strerror(r->err));
        else
            log_error(NULL, "event=token_store_error op=%s account=%s path=%s step=\"%s\" "
                            "reason=\"%s\"",
                      what, acct, qpath, r->step,
                      info != NULL && info->detail[0] != '\0' ? info->detail : "-");
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

int token_store_load(const char *state_dir, const char *account,
                     const struct token_store_key *key, char **out,
                     struct token_store_info *info)
{
    struct atomic_file_result r = {0};
    struct token_store_info local;
    if (info == NULL)
        info = &local;
    int rc = token_store_do_load(state_dir, account, key, out, info, &r);
    token_store_log("load", state_dir, account, rc, &r, info);
    return rc;
}

int token_store_save_sync(const char *state_dir, const char *account,
                          const struct token_store_key *key, const char *refresh_token,
                          struct token_store_info *info)
{
    struct atomic_file_result r = {0};
    struct token_store_info local;
    if (info == NULL)
        info = &local;
    int rc = token_store_do_save(state_dir, account, key, refresh_token, info, &r);
    token_store_log("save", state_dir, account, rc, &r, info);
    return rc;
}

int token_store_set_aside(const char *state_dir, const char *account,
                          struct token_store_info *info)
{
    struct atomic_file_result r = {0};
    struct token_store_info local;
    if (info == NULL)
        info = &local;
    token_store_info_init(info);
    if (!token_store_account_ok(account) || state_dir == NULL)
        return -1;
    int rc = token_store_do_set_aside(state_dir, account, info, &r);
    snprintf(info->detail, sizeof info->detail, "set aside on request");
    token_store_log("set_aside", state_dir, account, rc, &r, info);
    return rc;
}

