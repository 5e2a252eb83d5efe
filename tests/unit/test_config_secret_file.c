/* Unit tests for the NAME_file twins of secret keys (config_secret_file.h): the value comes
 * from the file with one trailing newline stripped, relative names from $CREDENTIALS_DIRECTORY,
 * and a missing, world-readable, empty or multi-line file is refused with FILE:LINE. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "tmpdir.h"

static char dir[64];
static char ini[128];

static void write_mode(const char *path, const char *text, size_t len, mode_t mode)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(text, 1, len, f) != len || fclose(f) != 0)
        abort();
    chmod(path, mode);
}

/* The account's lines 8 and on follow these 7 (line 7 is [account a]). */
#define HEAD                                                                                  \
    "[listen l]\nprotocol = smtp\naddress = 127.0.0.1:2525\nallow_networks = 127.0.0.1 -> a\n" \
    "\n\n[account a]\nprovider = google\nusername = a@example.com\nflow = refresh_token\n"     \
    "client_id = c\n"

/* Loads HEAD + extra; *errs gets the messages. */
static struct config *load(const char *extra, char **errs)
{
    char text[2048];
    size_t len = 0;
    snprintf(text, sizeof text, HEAD "%s", extra);
    write_mode(ini, text, strlen(text), 0644);
    FILE *err = open_memstream(errs, &len);
    if (err == NULL)
        abort();
    struct config *cfg = config_load(ini, err);
    fclose(err);
    return cfg;
}

static int refused(const char *extra, int line, const char *sub)
{
    char *errs = NULL, prefix[256];
    struct config *cfg = load(extra, &errs);
    snprintf(prefix, sizeof prefix, "%s:%d: ", ini, line);
    int ok = cfg == NULL && strstr(errs, prefix) != NULL && strstr(errs, sub) != NULL;
    if (!ok)
        fprintf(stderr, "wanted %s...%s, got:\n%s", prefix, sub, errs);
    config_free(cfg);
    free(errs);
    return ok;
}

static void test_absolute(void)
{
    char path[160], extra[512], *errs = NULL;
    snprintf(path, sizeof path, "%s/rt", dir);
    write_mode(path, "1//refresh ; with # all\n", 24, 0600);
    snprintf(extra, sizeof extra, "refresh_token_file = %s\n", path);
    struct config *cfg = load(extra, &errs);
    CHECK(cfg != NULL && errs[0] == '\0');
    const struct config_account *a = cfg != NULL ? config_find_account(cfg, "a") : NULL;
    CHECK(a != NULL && strcmp(a->refresh_token, "1//refresh ; with # all") == 0);
    /* No secret in the file itself: a world-readable configuration is fine. */
    CHECK(cfg != NULL && cfg->secret_line == 0);
    config_free(cfg);
    free(errs);

    /* CRLF and no newline at all; a value longer than any INI line. */
    write_mode(path, "tok\r\n", 5, 0640);
    cfg = load(extra, &errs);
    a = cfg != NULL ? config_find_account(cfg, "a") : NULL;
    CHECK(a != NULL && strcmp(a->refresh_token, "tok") == 0);
    config_free(cfg);
    free(errs);
    static char big[5000];
    memset(big, 'x', sizeof big - 1);
    write_mode(path, big, sizeof big - 1, 0400);
    cfg = load(extra, &errs);
    a = cfg != NULL ? config_find_account(cfg, "a") : NULL;
    CHECK(a != NULL && strlen(a->refresh_token) == sizeof big - 1);
    config_free(cfg);
    free(errs);

    write_mode(path, "tok\n", 4, 0644);
    CHECK(refused(extra, 12, "is readable by every user (mode 0644) and holds a secret"));
    write_mode(path, "\n", 1, 0600);
    CHECK(refused(extra, 12, "is empty"));
    write_mode(path, "", 0, 0600);
    CHECK(refused(extra, 12, "is empty"));
    write_mode(path, "a\nb\n", 4, 0600);
    CHECK(refused(extra, 12, "on one line"));
    write_mode(path, "a\0b", 3, 0600);
    CHECK(refused(extra, 12, "on one line"));
    unlink(path);
    CHECK(refused(extra, 12, "cannot read"));
    CHECK(refused("refresh_token_file =\n", 12, "needs a file name"));
    CHECK(refused("refresh_token_file = /\n", 12, "not a regular file"));
    /* A key and its twin: one of them. */
    write_mode(path, "tok\n", 4, 0600);
    snprintf(extra, sizeof extra, "refresh_token = inline\nrefresh_token_file = %s\n", path);
    CHECK(refused(extra, 13, "refresh_token is given already at line 12"));
    /* username has no twin. */
    snprintf(extra, sizeof extra, "username_file = %s\n", path);
    CHECK(refused(extra, 12, "unknown key 'username_file' in [account a]"));
    unlink(path);
}

static void test_credentials_directory(void)
{
    char creds[160], path[200], *errs = NULL;
    snprintf(creds, sizeof creds, "%s/creds", dir);
    mkdir(creds, 0700);
    snprintf(path, sizeof path, "%s/a.secret", creds);
    write_mode(path, "s3cret\n", 7, 0400);
    unsetenv("CREDENTIALS_DIRECTORY");
    CHECK(refused("client_secret_file = a.secret\n", 12, "$CREDENTIALS_DIRECTORY is not set"));
    setenv("CREDENTIALS_DIRECTORY", creds, 1);
    struct config *cfg = load("client_secret_file = a.secret\n", &errs);
    const struct config_account *a = cfg != NULL ? config_find_account(cfg, "a") : NULL;
    CHECK(a != NULL && strcmp(a->client_secret, "s3cret") == 0);
    config_free(cfg);
    free(errs);
    CHECK(refused("client_secret_file = ../a.secret\n", 12, "without '/'"));
    CHECK(refused("client_secret_file = b.secret\n", 12, "cannot read"));
    unsetenv("CREDENTIALS_DIRECTORY");
    unlink(path);
    rmdir(creds);
}

/* local_password_file counts as the local login's password, and its value is checked. */
static void test_local_password_file(void)
{
    char path[160], extra[512];
    snprintf(path, sizeof path, "%s/pw", dir);
    write_mode(path, "plain password\n", 15, 0600);
    snprintf(extra, sizeof extra, "local_user = u\nlocal_password_file = %s\n", path);
    CHECK(refused(extra, 13, "local_password in [account a] is not a hash"));
    snprintf(extra, sizeof extra, "local_password_file = %s\n", path);
    CHECK(refused(extra, 7, "missing key 'local_user' in [account a]"));
    unlink(path);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/xoauthd-test-secret-file-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(ini, sizeof ini, "%s/t.ini", dir);
    test_absolute();
    test_credentials_directory();
    test_local_password_file();
    remove_tree(dir);
    return CHECK_DONE();
}
