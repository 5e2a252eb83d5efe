/* token_store_status: NAME.status beside each token file, for `xoauthd tokens` (no secrets). */
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

#include "atomic_file.h"
#include "token_store_internal.h"

/* ---- status files ---- */

static void token_store_status_clean(char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            *s = ' ';
}

int token_store_do_status_save(const char *dir, const char *account,
                               const struct token_store_status *st,
                               struct atomic_file_result *r)
{
    char text[512], state[sizeof st->state], err[sizeof st->last_error];
    char name[TOKEN_STORE_MAX_ACCOUNT + 16];
    if (!token_store_account_ok(account))
        return token_store_fail(r, "account name", EINVAL);
    snprintf(state, sizeof state, "%s", st->state);
    snprintf(err, sizeof err, "%s", st->last_error);
    token_store_status_clean(state);
    token_store_status_clean(err);
    snprintf(text, sizeof text,
             "%s\nstate=%s\nvalid_until=%lld\nlast_refresh=%lld\nlast_attempt=%lld\n"
             "last_error=%s\n",
             TOKEN_STORE_STATUS_MAGIC, state, st->valid_until, st->last_refresh,
             st->last_attempt, err);
    snprintf(name, sizeof name, "%s.status", account);
    /* Advisory: no fsync, a lost update only makes `xoauthd tokens` a little stale. */
    return atomic_file_write(dir, name, text, strlen(text), 0, 0, r) == 0 ? 0 : -1;
}

int token_store_status_save_sync(const char *state_dir, const char *account,
                                 const struct token_store_status *st)
{
    struct atomic_file_result r = {0};
    if (state_dir == NULL)
        return -1;
    return token_store_do_status_save(state_dir, account, st, &r);
}

int token_store_status_load(const char *state_dir, const char *account,
                            struct token_store_status *st)
{
    struct atomic_file_result r = {0};
    char *path = token_store_file(state_dir, account, ".status");
    char *buf = NULL, *save = NULL;
    size_t len = 0, cap = 0;
    int rc;

    memset(st, 0, sizeof *st);
    if (path == NULL)
        return -1;
    rc = atomic_file_read(path, TOKEN_STORE_MAX_FILE, &buf, &len, &cap, &r);
    free(path);
    if (rc <= 0)
        return rc;
    rc = -1;
    char *line = strtok_r(buf, "\n", &save);
    if (line == NULL || strcmp(line, TOKEN_STORE_STATUS_MAGIC) != 0)
        goto done;
    while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
        char *eq = strchr(line, '=');
        if (eq == NULL)
            continue;
        *eq++ = '\0';
        if (strcmp(line, "state") == 0)
            snprintf(st->state, sizeof st->state, "%s", eq);
        else if (strcmp(line, "valid_until") == 0)
            st->valid_until = strtoll(eq, NULL, 10);
        else if (strcmp(line, "last_refresh") == 0)
            st->last_refresh = strtoll(eq, NULL, 10);
        else if (strcmp(line, "last_attempt") == 0)
            st->last_attempt = strtoll(eq, NULL, 10);
        else if (strcmp(line, "last_error") == 0)
            snprintf(st->last_error, sizeof st->last_error, "%s", eq);
    }
    token_store_status_clean(st->state);
    token_store_status_clean(st->last_error);
    rc = 1;
done:
    free(buf);
    return rc;
}
