/* The refresh-token store: round trips, permissions, atomic overwrite, refused names. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "check.h"
#include "tmpdir.h"
#include "log.h"
#include "token_store.h"


static char base[256];
static char state[300];

static int count_entries(const char *dir, int *tmp_files)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    *tmp_files = 0;
    if (d == NULL)
        return -1;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        n++;
        if (de->d_name[0] == '.' || strstr(de->d_name, "XXXX") != NULL)
            (*tmp_files)++;
    }
    closedir(d);
    return n;
}

static void write_file(const char *path, const char *content)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f != NULL) {
        fputs(content, f);
        fclose(f);
    }
}


static void test_round_trip(void)
{
    char *out = NULL;
    struct stat st;
    int tmp;

    /* state_dir does not exist yet: the first save creates it 0700. */
    CHECK(token_store_load(state, "scanner", &out) == 0);
    CHECK(out == NULL);
    CHECK(token_store_save_sync(state, "scanner", "0.AAAA-first_token.x") == 0);
    CHECK(stat(state, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
    char *path = token_store_path(state, "scanner");
    CHECK(path != NULL);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK(token_store_load(state, "scanner", &out) == 1);
    CHECK(out != NULL && strcmp(out, "0.AAAA-first_token.x") == 0);
    free(out);
    out = NULL;

    /* The file starts with the version line (the seam for encryption). */
    FILE *f = fopen(path, "r");
    char line[128] = "";
    CHECK(f != NULL);
    if (f != NULL) {
        CHECK(fgets(line, sizeof line, f) != NULL);
        fclose(f);
    }
    CHECK(strcmp(line, TOKEN_STORE_MAGIC "\n") == 0);

    /* Overwrite: the new token, one file, no temp files left. */
    CHECK(token_store_save_sync(state, "scanner", "second") == 0);
    CHECK(token_store_load(state, "scanner", &out) == 1);
    CHECK(out != NULL && strcmp(out, "second") == 0);
    free(out);
    out = NULL;
    CHECK(count_entries(state, &tmp) == 1);
    CHECK(tmp == 0);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);

    /* Accounts are independent. */
    CHECK(token_store_save_sync(state, "printer-2.floor_1", "other") == 0);
    CHECK(token_store_load(state, "printer-2.floor_1", &out) == 1);
    CHECK(out != NULL && strcmp(out, "other") == 0);
    free(out);
    out = NULL;
    CHECK(token_store_load(state, "scanner", &out) == 1);
    CHECK(out != NULL && strcmp(out, "second") == 0);
    free(out);
    out = NULL;
    CHECK(count_entries(state, &tmp) == 2 && tmp == 0);
    CHECK(token_store_load(state, "nobody", &out) == 0 && out == NULL);
    free(path);
}

static void test_bad_names(void)
{
    const char *bad[] = {"", ".", "..", "../etc", "a/b", "a b", ".hidden", "x\n", "tab\t",
                         "caf\xc3\xa9", "semi;colon", NULL};
    char *out = NULL;
    char longname[TOKEN_STORE_MAX_ACCOUNT + 2];

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(token_store_account_ok(bad[i]) == 0);
        CHECK(token_store_save_sync(state, bad[i], "tok") == -1);
        CHECK(token_store_load(state, bad[i], &out) == -1 && out == NULL);
        CHECK(token_store_path(state, bad[i]) == NULL);
    }
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CHECK(token_store_account_ok(longname) == 0);
    longname[TOKEN_STORE_MAX_ACCOUNT] = '\0';
    CHECK(token_store_account_ok(longname) == 1);
    CHECK(token_store_account_ok("A-z_0.9") == 1);

    /* Tokens that would break the line format are refused too. */
    CHECK(token_store_save_sync(state, "scanner", "two\nlines") == -1);
    CHECK(token_store_save_sync(state, "scanner", "") == -1);
    CHECK(token_store_load(state, "scanner", &out) == 1);
    CHECK(out != NULL && strcmp(out, "second") == 0); /* untouched */
    free(out);
}

static void test_bad_files(void)
{
    char path[600];
    char *out = NULL;

    snprintf(path, sizeof path, "%s/future.refresh", state);
    write_file(path, "xoauthd-token v2 aes-256-gcm\nZm9v\n");
    CHECK(token_store_load(state, "future", &out) == -1 && out == NULL);
    snprintf(path, sizeof path, "%s/raw.refresh", state);
    write_file(path, "1//0gabcdef\n");
    CHECK(token_store_load(state, "raw", &out) == -1 && out == NULL);
    snprintf(path, sizeof path, "%s/empty.refresh", state);
    write_file(path, TOKEN_STORE_MAGIC "\n\n");
    CHECK(token_store_load(state, "empty", &out) == -1 && out == NULL);
    snprintf(path, sizeof path, "%s/extra.refresh", state);
    write_file(path, TOKEN_STORE_MAGIC "\ntok\nmore\n");
    CHECK(token_store_load(state, "extra", &out) == -1 && out == NULL);
    /* No final newline is tolerated (an admin's editor). */
    snprintf(path, sizeof path, "%s/nonl.refresh", state);
    write_file(path, TOKEN_STORE_MAGIC "\ntok");
    CHECK(token_store_load(state, "nonl", &out) == 1 && out != NULL && strcmp(out, "tok") == 0);
    free(out);
    out = NULL;

    /* state_dir is a file: saving fails cleanly. */
    char notdir[600];
    snprintf(notdir, sizeof notdir, "%s/plainfile", base);
    write_file(notdir, "x");
    CHECK(token_store_save_sync(notdir, "scanner", "tok") == -1);
}

struct async_ctx {
    int saves, save_ok, loads, load_result;
    char *loaded;
};

static void save_cb(void *arg, int result)
{
    struct async_ctx *c = arg;
    c->saves++;
    if (result == 0)
        c->save_ok++;
}

static void load_cb(void *arg, int result, char *token)
{
    struct async_ctx *c = arg;
    c->loads++;
    c->load_result = result;
    c->loaded = token;
}

static void test_async(void)
{
    uv_loop_t loop;
    struct async_ctx c = {0};
    char dir2[600];

    snprintf(dir2, sizeof dir2, "%s/async", base);
    CHECK(uv_loop_init(&loop) == 0);
    CHECK(token_store_save(&loop, dir2, "acct", "async-token", save_cb, &c) == 0);
    CHECK(token_store_save(&loop, dir2, "../evil", "x", save_cb, &c) == -1);
    CHECK(token_store_load_async(&loop, dir2, "a/b", load_cb, &c) == -1);
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(c.saves == 1 && c.save_ok == 1);
    CHECK(token_store_load_async(&loop, dir2, "acct", load_cb, &c) == 0);
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(c.loads == 1 && c.load_result == 1);
    CHECK(c.loaded != NULL && strcmp(c.loaded, "async-token") == 0);
    free(c.loaded);
    c.loaded = NULL;
    CHECK(token_store_load_async(&loop, dir2, "missing", load_cb, &c) == 0);
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(c.loads == 2 && c.load_result == 0 && c.loaded == NULL);

    /* A failing save reports -1 through the callback. */
    char notdir[600];
    snprintf(notdir, sizeof notdir, "%s/plainfile", base);
    CHECK(token_store_save(&loop, notdir, "acct", "tok", save_cb, &c) == 0);
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(c.saves == 2 && c.save_ok == 1);
    CHECK(uv_loop_close(&loop) == 0);
}

int main(void)
{
    const char *tmpdir = getenv("TMPDIR");
    log_set_level(LOG_ERROR);
    snprintf(base, sizeof base, "%s/xoauthd-store-XXXXXX",
             tmpdir != NULL && tmpdir[0] != '\0' ? tmpdir : "/tmp");
    if (mkdtemp(base) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(state, sizeof state, "%s/state", base);
    test_round_trip();
    test_bad_names();
    test_bad_files();
    test_async();
    remove_tree(base);
    return CHECK_DONE();
}
