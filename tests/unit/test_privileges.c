/* Unit tests for the pure parts of config_perms.c and privileges.c: the permission rules, the
 * messages a refused configuration or key file produces (file, mode, line, fix; never the
 * secret), and the state_dir check on real directories in a private temp directory. The
 * privilege drop itself needs root and is tested end to end (tests/e2e/test_privileges.py). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "config_perms.h"
#include "privileges.h"
#include "tmpdir.h"

static char test_dir[64];

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0 || chmod(path, mode) != 0) {
        perror(path);
        abort();
    }
}

static FILE *capture(char **out, size_t *len)
{
    FILE *err = open_memstream(out, len);
    if (err == NULL)
        abort();
    return err;
}

/* Gives file mode, then runs config_perms_check on cfg; returns its result, *out gets what it
 * printed. */
static int perms(const struct config *cfg, const char *file, mode_t mode, char **out)
{
    size_t len = 0;
    if (chmod(file, mode) != 0) {
        perror(file);
        abort();
    }
    FILE *err = capture(out, &len);
    int rc = config_perms_check(cfg, err);
    fclose(err);
    return rc;
}

/* privileges_state_dir (create 1) or privileges_state_dir_check (create 0) on dir for p;
 * returns its result, *out gets what it printed. */
static int state_dir(const char *dir, const struct privileges *p, int create, char **out)
{
    size_t len = 0;
    FILE *err = capture(out, &len);
    int rc = create ? privileges_state_dir(dir, p, err) : privileges_state_dir_check(dir, p, err);
    fclose(err);
    return rc;
}

static void test_rules(void)
{
    CHECK(config_perms_exposed(0644));
    CHECK(config_perms_exposed(0604));
    CHECK(config_perms_exposed(0444));
    CHECK(!config_perms_exposed(0600));
    CHECK(!config_perms_exposed(0640)); /* root:xoauthd 0640, the recommended deployment */
    CHECK(!config_perms_exposed(0660));
    CHECK(!config_perms_exposed(0602)); /* writable by others is bad, but it leaks nothing */

    CHECK(privileges_state_dir_problem(1000, S_IFDIR | 0700, 1000) == NULL);
    CHECK(privileges_state_dir_problem(1000, S_IFDIR | 0750, 1000) == NULL);
    CHECK(privileges_state_dir_problem(1000, S_IFDIR | 0755, 1000) == NULL);
    CHECK(privileges_state_dir_problem(0, S_IFDIR | 0700, 1000) != NULL);
    CHECK(privileges_state_dir_problem(1000, S_IFDIR | 0700, 0) != NULL);
    CHECK(privileges_state_dir_problem(1000, S_IFDIR | 0770, 1000) != NULL);
    CHECK(privileges_state_dir_problem(1000, S_IFDIR | 0702, 1000) != NULL);
    CHECK(privileges_state_dir_problem(1000, S_IFDIR | 01777, 1000) != NULL);
    CHECK(strstr(privileges_state_dir_problem(0, S_IFDIR | 0700, 1000), "owned") != NULL);
    CHECK(strstr(privileges_state_dir_problem(1000, S_IFDIR | 0777, 1000), "writable") != NULL);
}

static const char *const with_secret =
    "; a comment\n"
    "[xoauthd]\n"
    "state_dir = /nonexistent\n"
    "\n"
    "[provider x]\n"
    "token_url = https://127.0.0.1/t\n"
    "smtp = 127.0.0.1:25 none\n"
    "[account a]\n"
    "provider = x\n"
    "username = a@x\n"
    "flow = client_credentials\n"
    "tenant = t\n"
    "client_id = c\n"
    "client_secret = SECRET-VALUE-123\n" /* line 14 */
    "refresh_token = LATER-SECRET\n"
    "[listen in]\n"
    "protocol = smtp\n"
    "address = 127.0.0.1:2525\n"
    "allow_networks = 10.0.0.0/8 -> a\n";

static void test_config_file(void)
{
    char path[128], *out = NULL;
    snprintf(path, sizeof path, "%s/x.ini", test_dir);
    write_file(path, with_secret, 0600);
    struct config *cfg = config_load(path, stderr);
    CHECK(cfg != NULL);
    if (cfg == NULL)
        return;
    CHECK(cfg->secret_line == 14);
    CHECK(cfg->secret_key != NULL && strcmp(cfg->secret_key, "client_secret") == 0);

    CHECK(perms(cfg, path, 0600, &out) == 0);
    CHECK(out[0] == '\0');
    free(out);
    CHECK(perms(cfg, path, 0640, &out) == 0);
    free(out);

    CHECK(perms(cfg, path, 0644, &out) == -1);
    CHECK(strstr(out, path) != NULL);
    CHECK(strstr(out, "mode 0644") != NULL);
    CHECK(strstr(out, "client_secret on line 14") != NULL);
    CHECK(strstr(out, "chmod 600 ") != NULL);
    CHECK(strstr(out, "chown root:xoauthd ") != NULL);
    CHECK(strstr(out, "chmod 640 ") != NULL);
    CHECK(strstr(out, "SECRET-VALUE") == NULL);
    CHECK(strstr(out, "LATER-SECRET") == NULL);
    free(out);
    config_free(cfg);

    /* The same file without secrets may be read by anyone. */
    write_file(path,
               "[xoauthd]\nstate_dir = /nonexistent\nuser = mailproxy\n"
               "[provider x]\ntoken_url = https://127.0.0.1/t\nsmtp = 127.0.0.1:25 none\n"
               "[account a]\nprovider = x\nusername = a@x\nflow = command\n"
               "token_command = cat /run/token\n"
               "[listen in]\nprotocol = smtp\naddress = 127.0.0.1:2525\n"
               "allow_networks = 10.0.0.0/8 -> a\n", 0644);
    cfg = config_load(path, stderr);
    CHECK(cfg != NULL);
    if (cfg == NULL)
        return;
    CHECK(cfg->secret_line == 0);
    CHECK(perms(cfg, path, 0644, &out) == 0);
    free(out);
    config_free(cfg);
}

static void test_key_files(void)
{
    char path[128], key[128], tmpl[1024], *out = NULL;
    snprintf(path, sizeof path, "%s/k.ini", test_dir);
    snprintf(key, sizeof key, "%s/app.key", test_dir);
    write_file(key, "-----BEGIN PRIVATE KEY-----\n", 0600);
    snprintf(tmpl, sizeof tmpl,
             "[xoauthd]\nstate_dir = /nonexistent\nuser = mailproxy\ngroup = mail\n"
             "[provider x]\ntoken_url = https://127.0.0.1/t\nsmtp = 127.0.0.1:25 none\n"
             "[account app]\nprovider = x\nusername = a@x\nflow = client_credentials\n"
             "tenant = t\nclient_id = c\nclient_certificate = %s/app.crt\nclient_key = %s\n"
             "[listen in]\nprotocol = smtp\naddress = 127.0.0.1:2525\n"
             "allow_networks = 10.0.0.0/8 -> app\n", test_dir, key);
    write_file(path, tmpl, 0644); /* no secret in the file itself */
    struct config *cfg = config_load(path, stderr);
    CHECK(cfg != NULL);
    if (cfg == NULL)
        return;
    CHECK(cfg->secret_line == 0);
    CHECK(perms(cfg, key, 0600, &out) == 0);
    free(out);
    CHECK(perms(cfg, key, 0644, &out) == -1);
    CHECK(strstr(out, key) != NULL);
    CHECK(strstr(out, "client_key") != NULL);
    CHECK(strstr(out, "[account app]") != NULL);
    CHECK(strstr(out, "mode 0644") != NULL);
    CHECK(strstr(out, "chown root:mail ") != NULL); /* the configured group */
    free(out);
    CHECK(perms(cfg, key, 0640, &out) == 0);
    free(out);
    config_free(cfg);
}

static void test_state_dir(void)
{
    char dir[128], *out = NULL, *run_out = NULL;
    struct privileges p;
    struct stat st;
    memset(&p, 0, sizeof p);
    p.uid = geteuid();
    p.gid = getegid();
    snprintf(p.user, sizeof p.user, "me");
    snprintf(p.group, sizeof p.group, "me");

    /* Missing: the check only says it would be created; run creates it 0700. */
    snprintf(dir, sizeof dir, "%s/state", test_dir);
    CHECK(state_dir(dir, &p, 0, &out) == 1);
    CHECK(out[0] == '\0');
    free(out);
    CHECK(stat(dir, &st) != 0);
    CHECK(state_dir(dir, &p, 1, &out) == 0);
    CHECK(stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0700);
    CHECK(st.st_uid == p.uid);
    free(out);
    CHECK(state_dir(dir, &p, 0, &out) == 0);
    CHECK(out[0] == '\0');
    free(out);

    /* World-writable: refused with the fix, by the check in the same words. */
    chmod(dir, 0777);
    CHECK(state_dir(dir, &p, 1, &run_out) == -1);
    CHECK(strstr(run_out, dir) != NULL && strstr(run_out, "writable") != NULL);
    CHECK(strstr(run_out, "mode 0777") != NULL && strstr(run_out, "chmod 700") != NULL);
    CHECK(state_dir(dir, &p, 0, &out) == -1);
    CHECK(strcmp(out, run_out) == 0);
    free(out);
    free(run_out);

    /* Owned by someone else (as far as p is concerned). */
    chmod(dir, 0700);
    p.uid = geteuid() + 1;
    CHECK(state_dir(dir, &p, 1, &run_out) == -1);
    CHECK(strstr(run_out, "owned by another user") != NULL);
    CHECK(strstr(run_out, "chown me:me") != NULL);
    CHECK(state_dir(dir, &p, 0, &out) == -1);
    CHECK(strcmp(out, run_out) == 0);
    free(out);
    free(run_out);
    p.uid = geteuid();

    /* A file is no directory, and a missing parent cannot hold one: the check and run say so
     * in the same words, and the check creates nothing. */
    char file[160];
    snprintf(file, sizeof file, "%s/plain", test_dir);
    write_file(file, "x", 0600);
    CHECK(state_dir(file, &p, 0, &out) == -1);
    CHECK(state_dir(file, &p, 1, &run_out) == -1);
    CHECK(strstr(run_out, "not a directory") != NULL && strcmp(out, run_out) == 0);
    free(out);
    free(run_out);
    snprintf(file, sizeof file, "%s/no/such", test_dir);
    CHECK(state_dir(file, &p, 0, &out) == -1);
    CHECK(state_dir(file, &p, 1, &run_out) == -1);
    CHECK(strstr(run_out, "cannot be created") != NULL && strcmp(out, run_out) == 0);
    free(out);
    free(run_out);
    snprintf(dir, sizeof dir, "%s/no", test_dir);
    CHECK(stat(dir, &st) != 0);

    /* A parent we may not write to (root may write anywhere). */
    if (geteuid() != 0) {
        snprintf(dir, sizeof dir, "%s/ro", test_dir);
        CHECK(mkdir(dir, 0500) == 0);
        snprintf(file, sizeof file, "%s/ro/state", test_dir);
        CHECK(state_dir(file, &p, 0, &out) == -1);
        CHECK(state_dir(file, &p, 1, &run_out) == -1);
        CHECK(strstr(run_out, "cannot be created: Permission denied") != NULL);
        CHECK(strcmp(out, run_out) == 0);
        free(out);
        free(run_out);
        chmod(dir, 0700);
    }
}

int main(void)
{
    snprintf(test_dir, sizeof test_dir, "/tmp/xoauthd-priv-XXXXXX");
    if (mkdtemp(test_dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_rules();
    test_config_file();
    test_key_files();
    test_state_dir();
    remove_tree(test_dir);
    return CHECK_DONE();
}
