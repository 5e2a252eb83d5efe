/* The refresh-token store: encrypted round trips with both kinds of key, permissions, atomic
 * overwrite, wrong keys, tampering, truncation, moved files, the old plain format, files set
 * aside instead of overwritten, refused names, the thread-pool API and status files. */
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
static const struct token_store_key file_key = {.kind = TOKEN_KEY_FILE};
static struct token_store_key pw_key, pw_key_other;

static const char HASH_A[] = "$scrypt$ln=15,r=8,p=1$pqONkJCgZrhfftvOo0LNBQ$kpiU51ZZQXpHPKPM"
                             "H1wle8WTb9/4IgBGviq5SI8GFuc";
static const char HASH_B[] = "$scrypt$ln=15,r=8,p=1$TqqxoC/WtbNkp1cM+8iQhg$hBXZXR+EjdLgpV6U"
                             "YPlhv1gIAYnA06kw/TAkUCJuhfA";

static int count_entries(const char *dir, int *tmp_files, int *corrupt)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    *tmp_files = 0;
    if (corrupt != NULL)
        *corrupt = 0;
    if (d == NULL)
        return -1;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        n++;
        if (de->d_name[0] == '.' || strstr(de->d_name, "XXXX") != NULL)
            (*tmp_files)++;
        if (corrupt != NULL && strstr(de->d_name, ".corrupt-") != NULL)
            (*corrupt)++;
    }
    closedir(d);
    return n;
}

static void write_file(const char *path, const char *content, size_t len)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f != NULL) {
        CHECK(fwrite(content, 1, len, f) == len);
        fclose(f);
    }
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = malloc(70000);
    size_t n = 0;
    if (f != NULL) {
        n = fread(buf, 1, 69999, f);
        fclose(f);
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static char *load(const char *dir, const char *acct, const struct token_store_key *key,
                  int *rc)
{
    char *out = NULL;
    *rc = token_store_load(dir, acct, key, &out, NULL);
    return out;
}

static void test_round_trip(void)
{
    char *out = NULL;
    struct stat st;
    int tmp, rc;
    struct token_store_info info;

    /* state_dir does not exist yet: the first save creates it 0700, and store.key 0600. */
    out = load(state, "scanner", &file_key, &rc);
    CHECK(rc == TOKEN_STORE_NONE && out == NULL);
    CHECK(token_store_save_sync(state, "scanner", &file_key, "0.AAAA-first_token.x", &info) == 0);
    CHECK(info.format == 2 && info.key_kind == TOKEN_KEY_FILE && info.set_aside[0] == '\0');
    CHECK(stat(state, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
    char *path = token_store_path(state, "scanner");
    CHECK(path != NULL);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    char keypath[600];
    snprintf(keypath, sizeof keypath, "%s/%s", state, TOKEN_STORE_KEYFILE);
    CHECK(stat(keypath, &st) == 0 && (st.st_mode & 0777) == 0600);
    out = load(state, "scanner", &file_key, &rc);
    CHECK(rc == TOKEN_STORE_FOUND && out != NULL && strcmp(out, "0.AAAA-first_token.x") == 0);
    free(out);

    /* The file: version line, key line, data; no token in clear. */
    size_t len;
    char *text = read_file(path, &len);
    CHECK(strncmp(text, TOKEN_STORE_MAGIC "\nkdf=keyfile\n", strlen(TOKEN_STORE_MAGIC) + 13) == 0);
    CHECK(strstr(text, "first_token") == NULL && strstr(text, "0.AAAA") == NULL);
    free(text);
    CHECK(token_store_peek(state, "scanner", &info) == 2 && info.key_kind == TOKEN_KEY_FILE);

    /* Overwrite: the new token, no temp files left; a second encryption uses a new nonce. */
    char *before = read_file(path, &len);
    CHECK(token_store_save_sync(state, "scanner", &file_key, "0.AAAA-first_token.x", NULL) == 0);
    char *after = read_file(path, &len);
    CHECK(strcmp(before, after) != 0);
    free(before);
    free(after);
    CHECK(token_store_save_sync(state, "scanner", &file_key, "second", NULL) == 0);
    out = load(state, "scanner", &file_key, &rc);
    CHECK(rc == TOKEN_STORE_FOUND && out != NULL && strcmp(out, "second") == 0);
    free(out);
    CHECK(count_entries(state, &tmp, NULL) == 2); /* scanner.refresh + store.key */
    CHECK(tmp == 0);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);

    /* Accounts are independent. */
    CHECK(token_store_save_sync(state, "printer-2.floor_1", &file_key, "other", NULL) == 0);
    out = load(state, "printer-2.floor_1", &file_key, &rc);
    CHECK(rc == TOKEN_STORE_FOUND && out != NULL && strcmp(out, "other") == 0);
    free(out);
    out = load(state, "scanner", &file_key, &rc);
    CHECK(rc == TOKEN_STORE_FOUND && out != NULL && strcmp(out, "second") == 0);
    free(out);
    out = load(state, "nobody", &file_key, &rc);
    CHECK(rc == TOKEN_STORE_NONE && out == NULL);

    /* A file moved to another account's name does not open (the name is authenticated). */
    char other[600];
    snprintf(other, sizeof other, "%s/moved.refresh", state);
    CHECK(link(path, other) == 0);
    out = load(state, "moved", &file_key, &rc);
    CHECK(rc == TOKEN_STORE_UNUSABLE && out == NULL);
    unlink(other);
    free(path);
}

static void test_password_key(void)
{
    char dir[600], *out;
    int rc;
    struct token_store_key again;
    struct token_store_info info;

    snprintf(dir, sizeof dir, "%s/pw", base);
    /* The same password and hash give the same key (daemon and CLI agree); another hash (a
     * changed local password) gives another salt. */
    CHECK(token_store_key_derive("alice", HASH_A, "pass;word", 9, &pw_key) == 0);
    CHECK(token_store_key_derive("alice", HASH_A, "pass;word", 9, &again) == 0);
    CHECK(memcmp(&pw_key, &again, sizeof again) == 0);
    CHECK(pw_key.kind == TOKEN_KEY_PASSWORD && pw_key.ln == 15);
    CHECK(token_store_key_derive("alice", HASH_B, "pass;word", 9, &pw_key_other) == 0);
    CHECK(memcmp(pw_key.salt, pw_key_other.salt, sizeof pw_key.salt) != 0);
    CHECK(memcmp(pw_key.key, pw_key_other.key, sizeof pw_key.key) != 0);
    CHECK(token_store_key_derive("bob", HASH_A, "pass;word", 9, &again) == 0);
    CHECK(memcmp(pw_key.salt, again.salt, sizeof again.salt) != 0);

    CHECK(token_store_save_sync(dir, "alice", &pw_key, "RT-alice-secret", &info) == 0);
    CHECK(info.key_kind == TOKEN_KEY_PASSWORD);
    out = load(dir, "alice", &pw_key, &rc);
    CHECK(rc == TOKEN_STORE_FOUND && out != NULL && strcmp(out, "RT-alice-secret") == 0);
    free(out);
    char keypath[700];
    struct stat st;
    snprintf(keypath, sizeof keypath, "%s/%s", dir, TOKEN_STORE_KEYFILE);
    CHECK(stat(keypath, &st) != 0); /* password accounts never create store.key */

    /* Wrong keys: another password, the key file, no key. The file stays as it was. */
    char *path = token_store_path(dir, "alice");
    size_t len0, len1;
    char *before = read_file(path, &len0);
    out = load(dir, "alice", &pw_key_other, &rc);
    CHECK(rc == TOKEN_STORE_UNUSABLE && out == NULL);
    CHECK(token_store_load(dir, "alice", &pw_key_other, &out, &info) == TOKEN_STORE_UNUSABLE);
    CHECK(strstr(info.detail, "different local password") != NULL);
    CHECK(token_store_load(dir, "alice", &file_key, &out, &info) == TOKEN_STORE_UNUSABLE);
    CHECK(token_store_load(dir, "alice", NULL, &out, &info) == TOKEN_STORE_UNUSABLE);
    CHECK(strstr(info.detail, "not known yet") != NULL);
    char *after = read_file(path, &len1);
    CHECK(len0 == len1 && memcmp(before, after, len0) == 0);
    free(after);

    /* Same salt, wrong key bytes (as if the password were wrong): GCM refuses. */
    struct token_store_key forged = pw_key;
    forged.key[0] ^= 1;
    out = load(dir, "alice", &forged, &rc);
    CHECK(rc == TOKEN_STORE_UNUSABLE && out == NULL);

    /* Tampering: every single flipped byte of the data and key lines is detected. */
    char *nl1 = strchr(before, '\n');
    for (size_t i = (size_t)(nl1 - before) + 1; i + 1 < len0; i++) {
        if (before[i] == '\n')
            continue;
        char *t = malloc(len0 + 1);
        memcpy(t, before, len0 + 1);
        t[i] = t[i] == 'A' ? 'B' : 'A';
        write_file(path, t, len0);
        out = load(dir, "alice", &pw_key, &rc);
        CHECK(rc == TOKEN_STORE_UNUSABLE && out == NULL);
        if (rc == TOKEN_STORE_FOUND)
            fprintf(stderr, "tamper at %zu went unnoticed\n", i);
        free(out);
        free(t);
    }
    /* Truncation at every length is reported, never read as a token. */
    for (size_t cut = 0; cut < len0; cut++) {
        write_file(path, before, cut);
        out = load(dir, "alice", &pw_key, &rc);
        CHECK(rc == TOKEN_STORE_UNUSABLE && out == NULL);
        free(out);
    }
    write_file(path, before, len0);
    out = load(dir, "alice", &pw_key, &rc);
    CHECK(rc == TOKEN_STORE_FOUND && out != NULL);
    free(out);

    /* A save with a key that cannot open the file keeps the old file aside, never overwrites
     * it silently. */
    int tmp, corrupt;
    CHECK(token_store_save_sync(dir, "alice", &pw_key_other, "RT-new", &info) == 0);
    CHECK(strstr(info.set_aside, "alice.refresh.corrupt-") == info.set_aside);
    CHECK(count_entries(dir, &tmp, &corrupt) == 2 && corrupt == 1 && tmp == 0);
    char aside[800];
    snprintf(aside, sizeof aside, "%s/%s", dir, info.set_aside);
    after = read_file(aside, &len1);
    CHECK(len0 == len1 && memcmp(before, after, len0) == 0);
    free(after);
    out = load(dir, "alice", &pw_key_other, &rc);
    CHECK(rc == TOKEN_STORE_FOUND && out != NULL && strcmp(out, "RT-new") == 0);
    free(out);
    free(before);
    free(path);
}

static void test_bad_names(void)
{
    const char *bad[] = {"", ".", "..", "../etc", "a/b", "a b", ".hidden", "x\n", "tab\t",
                         "caf\xc3\xa9", "semi;colon", NULL};
    char *out = NULL;
    char longname[TOKEN_STORE_MAX_ACCOUNT + 2];
    int rc;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(token_store_account_ok(bad[i]) == 0);
        CHECK(token_store_save_sync(state, bad[i], &file_key, "tok", NULL) == -1);
        CHECK(token_store_load(state, bad[i], &file_key, &out, NULL) == TOKEN_STORE_IOERR &&
              out == NULL);
        CHECK(token_store_path(state, bad[i]) == NULL);
    }
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CHECK(token_store_account_ok(longname) == 0);
    longname[TOKEN_STORE_MAX_ACCOUNT] = '\0';
    CHECK(token_store_account_ok(longname) == 1);
    CHECK(token_store_account_ok("A-z_0.9") == 1);

    /* Tokens that would break the format are refused; no key, no save. */
    CHECK(token_store_save_sync(state, "scanner", &file_key, "two\nlines", NULL) == -1);
    CHECK(token_store_save_sync(state, "scanner", &file_key, "", NULL) == -1);
    CHECK(token_store_save_sync(state, "scanner", NULL, "tok", NULL) == -1);
    out = load(state, "scanner", &file_key, &rc);
    CHECK(rc == TOKEN_STORE_FOUND && out != NULL && strcmp(out, "second") == 0); /* untouched */
    free(out);
}

static void test_old_and_bad_files(void)
{
    char path[600];
    char *out = NULL;
    int rc;
    struct token_store_info info;

    /* v1 plain files are still read (no key needed), and report their format. */
    snprintf(path, sizeof path, "%s/old.refresh", state);
    write_file(path, TOKEN_STORE_MAGIC_PLAIN "\nold-token\n", strlen(TOKEN_STORE_MAGIC_PLAIN) + 11);
    CHECK(token_store_load(state, "old", NULL, &out, &info) == TOKEN_STORE_FOUND);
    CHECK(out != NULL && strcmp(out, "old-token") == 0 && info.format == 1);
    free(out);
    /* ... and the next save writes it encrypted, without setting anything aside. */
    CHECK(token_store_save_sync(state, "old", &file_key, "old-token", &info) == 0);
    CHECK(info.set_aside[0] == '\0');
    CHECK(token_store_peek(state, "old", &info) == 2);
    /* No final newline is tolerated (an admin's editor). */
    snprintf(path, sizeof path, "%s/nonl.refresh", state);
    write_file(path, TOKEN_STORE_MAGIC_PLAIN "\ntok", strlen(TOKEN_STORE_MAGIC_PLAIN) + 4);
    out = load(state, "nonl", &file_key, &rc);
    CHECK(rc == TOKEN_STORE_FOUND && out != NULL && strcmp(out, "tok") == 0);
    free(out);

    const char *bad[][2] = {
        {"future", "xoauthd-token v3 quantum\nZm9v\n"},
        {"raw", "1//0gabcdef\n"},
        {"empty", TOKEN_STORE_MAGIC_PLAIN "\n\n"},
        {"extra", TOKEN_STORE_MAGIC_PLAIN "\ntok\nmore\n"},
        {"v2short", TOKEN_STORE_MAGIC "\nkdf=keyfile\n"},
        {"v2kdf", TOKEN_STORE_MAGIC "\nkdf=rot13\nAAAA\n"},
        {"v2cost", TOKEN_STORE_MAGIC "\nkdf=scrypt ln=40 r=8 p=1 salt=AAAAAAAAAAAAAAAAAAAAAA==\n"
                   "AAAA\n"},
        {"v2b64", TOKEN_STORE_MAGIC "\nkdf=keyfile\n!!!!\n"},
        {"zero", ""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(path, sizeof path, "%s/%s.refresh", state, bad[i][0]);
        write_file(path, bad[i][1], strlen(bad[i][1]));
        out = load(state, bad[i][0], &file_key, &rc);
        CHECK(rc == TOKEN_STORE_UNUSABLE && out == NULL);
        if (rc != TOKEN_STORE_UNUSABLE)
            fprintf(stderr, "case %s: rc %d\n", bad[i][0], rc);
        /* peek reads headers only: a damaged data line shows up at load time. */
        if (strcmp(bad[i][0], "v2b64") != 0)
            CHECK(token_store_peek(state, bad[i][0], &info) == -1 && info.detail[0] != '\0');
    }

    /* store.key damaged: never replaced, saves fail, loads say UNUSABLE. */
    char dir[600], keypath[700];
    snprintf(dir, sizeof dir, "%s/badkey", base);
    CHECK(token_store_save_sync(dir, "k", &file_key, "tok-k", NULL) == 0);
    snprintf(keypath, sizeof keypath, "%s/%s", dir, TOKEN_STORE_KEYFILE);
    write_file(keypath, "xoauthd-store-key v1\nshort\n", 27);
    out = load(dir, "k", &file_key, &rc);
    CHECK(rc != TOKEN_STORE_FOUND && out == NULL);
    CHECK(token_store_save_sync(dir, "k2", &file_key, "tok", NULL) == -1);
    size_t len;
    char *k = read_file(keypath, &len);
    CHECK(strcmp(k, "xoauthd-store-key v1\nshort\n") == 0);
    free(k);
    /* store.key missing: the old file is unusable, a new key is made for new saves. */
    unlink(keypath);
    out = load(dir, "k", &file_key, &rc);
    CHECK(rc == TOKEN_STORE_UNUSABLE && out == NULL);

    /* state_dir is a file: saving fails cleanly. */
    char notdir[600];
    snprintf(notdir, sizeof notdir, "%s/plainfile", base);
    write_file(notdir, "x", 1);
    CHECK(token_store_save_sync(notdir, "scanner", &file_key, "tok", NULL) == -1);
    out = load(notdir, "scanner", &file_key, &rc);
    CHECK(rc == TOKEN_STORE_NONE && out == NULL);
}

static void test_set_aside_api(void)
{
    char dir[600], path[700];
    int tmp, corrupt;
    struct token_store_info info;
    snprintf(dir, sizeof dir, "%s/aside", base);
    CHECK(token_store_save_sync(dir, "a", &file_key, "tok-a", NULL) == 0);
    CHECK(token_store_set_aside(dir, "a", &info) == 0);
    CHECK(strncmp(info.set_aside, "a.refresh.corrupt-", 18) == 0);
    snprintf(path, sizeof path, "%s/a.refresh", dir);
    CHECK(access(path, F_OK) != 0);
    CHECK(count_entries(dir, &tmp, &corrupt) == 2 && corrupt == 1);
}

struct async_ctx {
    int saves, save_ok, loads, load_result, keys, key_ok;
    char *loaded;
    struct token_store_key key;
};

static void save_cb(void *arg, int result)
{
    struct async_ctx *c = arg;
    c->saves++;
    if (result == 0)
        c->save_ok++;
}

static void load_cb(void *arg, int result, char *token, const struct token_store_info *info)
{
    struct async_ctx *c = arg;
    (void)info;
    c->loads++;
    c->load_result = result;
    c->loaded = token;
}

static void key_cb(void *arg, int result, const struct token_store_key *key)
{
    struct async_ctx *c = arg;
    c->keys++;
    if (result == 0) {
        c->key_ok++;
        c->key = *key;
    }
}

static void test_async(void)
{
    uv_loop_t loop;
    struct async_ctx c;
    char dir2[600];

    memset(&c, 0, sizeof c);
    snprintf(dir2, sizeof dir2, "%s/async", base);
    CHECK(uv_loop_init(&loop) == 0);
    CHECK(token_store_save(&loop, dir2, "acct", &file_key, "async-token", save_cb, &c) == 0);
    CHECK(token_store_save(&loop, dir2, "../evil", &file_key, "x", save_cb, &c) == -1);
    CHECK(token_store_save(&loop, dir2, "acct", NULL, "x", save_cb, &c) == -1);
    CHECK(token_store_load_async(&loop, dir2, "a/b", &file_key, load_cb, &c) == -1);
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(c.saves == 1 && c.save_ok == 1);
    CHECK(token_store_load_async(&loop, dir2, "acct", &file_key, load_cb, &c) == 0);
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(c.loads == 1 && c.load_result == TOKEN_STORE_FOUND);
    CHECK(c.loaded != NULL && strcmp(c.loaded, "async-token") == 0);
    free(c.loaded);
    c.loaded = NULL;
    CHECK(token_store_load_async(&loop, dir2, "missing", &file_key, load_cb, &c) == 0);
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(c.loads == 2 && c.load_result == TOKEN_STORE_NONE && c.loaded == NULL);

    /* The key derivation runs on the thread pool and gives the same key as the sync one. */
    CHECK(token_store_key_derive_async(&loop, "alice", HASH_A, "pass;word", 9, key_cb, &c) == 0);
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(c.keys == 1 && c.key_ok == 1 && memcmp(&c.key, &pw_key, sizeof c.key) == 0);

    /* A failing save reports -1 through the callback. */
    char notdir[600];
    snprintf(notdir, sizeof notdir, "%s/plainfile", base);
    CHECK(token_store_save(&loop, notdir, "acct", &file_key, "tok", save_cb, &c) == 0);
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(c.saves == 2 && c.save_ok == 1);

    /* Status files: written on the pool, read back, no secrets, 0600. */
    struct token_store_status st, back;
    memset(&st, 0, sizeof st);
    snprintf(st.state, sizeof st.state, "ok");
    st.valid_until = 2000000000LL;
    st.last_refresh = 1999996400LL;
    st.last_attempt = 1999996400LL;
    snprintf(st.last_error, sizeof st.last_error, "line\nbreak");
    CHECK(token_store_status_save(&loop, dir2, "acct", &st, save_cb, &c) == 0);
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(c.saves == 3 && c.save_ok == 2);
    CHECK(token_store_status_load(dir2, "acct", &back) == 1);
    CHECK(strcmp(back.state, "ok") == 0 && back.valid_until == 2000000000LL &&
          back.last_refresh == 1999996400LL && strcmp(back.last_error, "line break") == 0);
    CHECK(token_store_status_load(dir2, "nobody", &back) == 0);
    char spath[700];
    struct stat sst;
    snprintf(spath, sizeof spath, "%s/acct.status", dir2);
    CHECK(stat(spath, &sst) == 0 && (sst.st_mode & 0777) == 0600);
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
    test_password_key();
    test_bad_names();
    test_old_and_bad_files();
    test_set_aside_api();
    test_async();
    remove_tree(base);
    return CHECK_DONE();
}
