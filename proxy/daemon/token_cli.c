/* token_cli: `xoauthd auth` and `xoauthd tokens`, see token_cli.h.
 *
 * These run in a terminal, not in the daemon: reading the local password, the pasted redirect
 * and the store happens before or after the loop runs, never while it has work. The sign-in
 * itself (HTTP, timers, the loopback listener) runs on a loop of its own. */
#include "token_cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <uv.h>

#include "config.h"
#include "http.h"
#include "localauth.h"
#include "log.h"
#include "token.h"
#include "token_grant.h"
#include "token_store.h"
#include "tty_line.h"

#define TOKEN_CLI_DEFAULT_CONFIG "/etc/xoauthd/xoauthd.ini"
#define TOKEN_CLI_MAX_LINE 16384

enum token_cli_method { TOKEN_CLI_AUTO, TOKEN_CLI_DEVICE, TOKEN_CLI_BROWSER, TOKEN_CLI_PASTE };

/* ---- secrets ---- */

static void token_cli_free_secret(char **p)
{
    if (*p != NULL) {
        OPENSSL_cleanse(*p, strlen(*p));
        free(*p);
        *p = NULL;
    }
}

/* ---- shared bits ---- */

static void token_cli_time(char *out, size_t outsz, long long t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (t <= 0) {
        snprintf(out, outsz, "-");
        return;
    }
    gmtime_r(&tt, &tm);
    strftime(out, outsz, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

/* Files written as root for a daemon that runs as another user must stay readable by it: they
 * take the owner of state_dir. */
static void token_cli_fix_owner(const char *dir, const char *account)
{
    struct stat st;
    const char *suffixes[] = {".refresh", ".status"};
    char path[1024];
    if (geteuid() != 0 || stat(dir, &st) != 0 || st.st_uid == 0)
        return;
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        snprintf(path, sizeof path, "%s/%s%s", dir, account, suffixes[i]);
        if (chown(path, st.st_uid, st.st_gid) != 0 && errno != ENOENT)
            fprintf(stderr, "xoauthd: warning: cannot give %s to the owner of %s: %s\n", path,
                    dir, strerror(errno));
    }
    snprintf(path, sizeof path, "%s/%s", dir, TOKEN_STORE_KEYFILE);
    if (chown(path, st.st_uid, st.st_gid) != 0 && errno != ENOENT)
        fprintf(stderr, "xoauthd: warning: cannot give %s to the owner of %s: %s\n", path, dir,
                strerror(errno));
}

/* ---- xoauthd auth: flows without a sign-in ---- */

struct token_cli_probe {
    int done;
    enum token_status st;
};

static void token_cli_probe_cb(void *arg, enum token_status st, const char *token)
{
    struct token_cli_probe *p = arg;
    (void)token;
    p->done = 1;
    p->st = st;
}

static int token_cli_probe(const struct config *cfg, const struct config_account *acct)
{
    uv_loop_t loop;
    struct http *http;
    struct token_manager *tm;
    struct token_cli_probe p = {0};
    int rc = 1;

    printf("Account %s uses flow = %s, which needs no sign-in: xoauthd gets its tokens by "
           "itself.\nAsking once to check the configuration...\n",
           acct->name, config_flow_name(acct->flow));
    fflush(stdout);
    if (uv_loop_init(&loop) != 0)
        return 1;
    http = http_new(&loop);
    tm = http != NULL ? token_manager_new(&loop, http, cfg) : NULL;
    if (tm != NULL) {
        token_get(tm, acct, 0, "auth", token_cli_probe_cb, &p);
        while (!p.done && uv_run(&loop, UV_RUN_ONCE) != 0)
            ;
        token_manager_free(tm);
    }
    if (http != NULL)
        http_close(http);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    if (p.done && p.st == TOKEN_OK) {
        printf("ok: the token endpoint issued an access token for %s.\n", acct->name);
        rc = 0;
    } else {
        printf("failed: %s (the log line above says why and what to do).\n",
               p.done ? token_status_name(p.st) : "no answer");
    }
    return rc;
}

/* ---- xoauthd auth: interactive sign-in ---- */

struct token_cli_signin {
    uv_loop_t *loop;
    int done;
    enum token_status st;
    char reason[512];
    char *refresh_token;
    long expires_in;
};

static void token_cli_signin_cb(void *arg, enum token_status st, struct token_response *r,
                                const char *reason)
{
    struct token_cli_signin *c = arg;
    c->done = 1;
    c->st = st;
    snprintf(c->reason, sizeof c->reason, "%s", reason != NULL ? reason : "");
    if (st == TOKEN_OK && r != NULL) {
        c->refresh_token = r->refresh_token;
        r->refresh_token = NULL;
        c->expires_in = r->expires_in;
    }
    uv_stop(c->loop);
}

static void token_cli_usage_auth(FILE *out)
{
    fprintf(out, "usage: xoauthd auth ACCOUNT [-c FILE] [--device | --browser | --paste] "
                 "[--timeout SECONDS]\n");
}

int token_cli_auth(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"device", no_argument, NULL, 'd'},
                                         {"browser", no_argument, NULL, 'b'},
                                         {"paste", no_argument, NULL, 'p'},
                                         {"timeout", required_argument, NULL, 't'},
                                         {NULL, 0, NULL, 0}};
    const char *path = TOKEN_CLI_DEFAULT_CONFIG, *name = NULL;
    enum token_cli_method method = TOKEN_CLI_AUTO;
    unsigned timeout_s = 0;
    struct config *cfg = NULL;
    const struct config_account *acct;
    const struct token_grant *grant;
    struct token_store_key key;
    struct token_store_info info;
    struct token_cli_signin c;
    struct token_signin *flow = NULL;
    struct token_signin_opts so;
    struct http *http = NULL;
    uv_loop_t loop;
    int loop_ok = 0, rc = 1, ch;
    char *pw = NULL, *old = NULL, *pasted = NULL;

    memset(&key, 0, sizeof key);
    memset(&c, 0, sizeof c);
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            path = optarg;
            break;
        case 'd':
            method = TOKEN_CLI_DEVICE;
            break;
        case 'b':
            method = TOKEN_CLI_BROWSER;
            break;
        case 'p':
            method = TOKEN_CLI_PASTE;
            break;
        case 't':
            timeout_s = (unsigned)strtoul(optarg, NULL, 10);
            break;
        default:
            token_cli_usage_auth(stderr);
            return 2;
        }
    }
    if (optind + 1 != argc) {
        token_cli_usage_auth(stderr);
        return 2;
    }
    name = argv[optind];
    cfg = config_load(path, stderr);
    if (cfg == NULL)
        return 1;
    log_set_level(LOG_WARN); /* problems only: stdout is for the human */
    acct = config_find_account(cfg, name);
    if (acct == NULL) {
        fprintf(stderr, "xoauthd: %s has no [account %s]\n", path, name);
        rc = 2;
        goto done;
    }
    grant = token_grant_for(acct->flow);
    if (acct->flow == CONFIG_FLOW_STATIC) {
        printf("Account %s uses flow = static: the access token is in the config; there is "
               "nothing to sign in.\n", acct->name);
        rc = 0;
        goto done;
    }
    if (!grant->uses_refresh_token) {
        rc = token_cli_probe(cfg, acct);
        goto done;
    }
    if (cfg->state_dir == NULL || !token_store_account_ok(acct->name)) {
        fprintf(stderr, "xoauthd: no usable token store for %s (state_dir, account name)\n",
                acct->name);
        goto done;
    }
    if (method == TOKEN_CLI_AUTO) {
        if (acct->flow == CONFIG_FLOW_AUTHORIZATION_CODE)
            method = TOKEN_CLI_BROWSER;
        else if (acct->flow == CONFIG_FLOW_DEVICE_CODE)
            method = TOKEN_CLI_DEVICE;
        else /* refresh_token: whatever the provider offers; Google has no device flow for mail */
            method = acct->provider->device_code_url != NULL &&
                             strcmp(acct->provider->name, "google") != 0
                         ? TOKEN_CLI_DEVICE
                         : TOKEN_CLI_BROWSER;
    }

    /* The key first: nobody should sign in at the provider only to learn that the local
     * password was mistyped. */
    if (token_account_password_key(cfg, acct)) {
        long n = tty_line_read("Local password of the account (local_user): ", 1,
                               TOKEN_CLI_MAX_LINE, &pw);
        if (n < 0) {
            fprintf(stderr, "xoauthd: account %s encrypts its token store with its local "
                            "password: type it (or give it as one line on standard input)\n",
                    acct->name);
            goto done;
        }
        if (localauth_verify(acct->local_password, pw, (size_t)n) != 1) {
            fprintf(stderr, "xoauthd: that is not the local password of account %s\n",
                    acct->name);
            goto done;
        }
        if (token_store_key_derive(acct->name, acct->local_password, pw, (size_t)n, &key) != 0) {
            fprintf(stderr, "xoauthd: deriving the store key failed (OpenSSL)\n");
            goto done;
        }
        token_cli_free_secret(&pw);
    } else {
        key.kind = TOKEN_KEY_FILE;
    }
    switch (token_store_load(cfg->state_dir, acct->name, &key, &old, &info)) {
    case TOKEN_STORE_FOUND:
        printf("(a refresh token is stored already; it is replaced after the sign-in)\n");
        break;
    case TOKEN_STORE_UNUSABLE:
        printf("(the stored file cannot be used: %s; it is kept aside as .corrupt-TIMESTAMP "
               "once the sign-in worked)\n", info.detail);
        break;
    case TOKEN_STORE_IOERR:
        fprintf(stderr, "xoauthd: the token store cannot be read (see above); fix that first, "
                        "so that nothing is overwritten blindly\n");
        goto done;
    default:
        break;
    }
    token_cli_free_secret(&old);

    if (uv_loop_init(&loop) != 0)
        goto done;
    loop_ok = 1;
    http = http_new(&loop);
    if (http == NULL)
        goto done;
    memset(&so, 0, sizeof so);
    so.loop = &loop;
    so.http = http;
    so.acct = acct;
    so.out = stdout;
    so.timeout_s = timeout_s;
    so.http_timeout_s = cfg->token_timeout;
    so.paste = method == TOKEN_CLI_PASTE;
    c.loop = &loop;
    if (method == TOKEN_CLI_DEVICE) {
        if (acct->provider != NULL && strcmp(acct->provider->name, "google") == 0)
            printf("Note: Google does not issue mail scopes through the device flow; if the "
                   "sign-in fails with invalid_scope, use --browser or --paste.\n");
        flow = token_signin_device_code(&so, token_cli_signin_cb, &c);
    } else {
        flow = token_signin_auth_code(&so, token_cli_signin_cb, &c);
    }
    fflush(stdout);
    if (flow == NULL)
        goto done;
    if (method == TOKEN_CLI_PASTE) {
        if (tty_line_read(NULL, 0, TOKEN_CLI_MAX_LINE, &pasted) < 0) {
            fprintf(stderr, "xoauthd: nothing was pasted\n");
            token_signin_cancel(flow);
            flow = NULL;
            goto done;
        }
        token_signin_auth_code_paste(flow, pasted);
        token_cli_free_secret(&pasted);
    }
    if (!c.done)
        uv_run(&loop, UV_RUN_DEFAULT);
    flow = NULL; /* finished: it frees itself */
    if (!c.done) {
        fprintf(stderr, "xoauthd: the sign-in stopped without an answer\n");
        goto done;
    }
    if (c.st != TOKEN_OK) {
        printf("Sign-in failed: %s\n", c.reason[0] != '\0' ? c.reason : token_status_name(c.st));
        goto done;
    }
    if (c.refresh_token == NULL) {
        printf("Sign-in failed: the provider sent an access token but no refresh token (the "
               "scope needs offline_access for Microsoft; Google sends one only with "
               "access_type=offline and a fresh consent)\n");
        goto done;
    }
    if (token_store_save_sync(cfg->state_dir, acct->name, &key, c.refresh_token, &info) != 0) {
        printf("Sign-in worked, but the refresh token could not be stored (see above).\n");
        goto done;
    }
    {
        struct token_store_status st;
        long long now = (long long)time(NULL);
        memset(&st, 0, sizeof st);
        snprintf(st.state, sizeof st.state, "signed_in");
        st.last_refresh = now;
        st.last_attempt = now;
        st.valid_until = now + c.expires_in;
        token_store_status_save_sync(cfg->state_dir, acct->name, &st);
    }
    token_cli_fix_owner(cfg->state_dir, acct->name);
    char *where = token_store_path(cfg->state_dir, acct->name);
    printf("Signed in. The refresh token of %s is stored, encrypted with %s, in %s.\n",
           acct->name, key.kind == TOKEN_KEY_PASSWORD ? "its local password" : "store.key",
           where != NULL ? where : cfg->state_dir);
    if (info.set_aside[0] != '\0')
        printf("The unusable old file was kept as %s.\n", info.set_aside);
    printf("A running xoauthd uses it from the next login on; no restart is needed.\n");
    free(where);
    rc = 0;
done:
    if (flow != NULL)
        token_signin_cancel(flow);
    if (http != NULL)
        http_close(http);
    if (loop_ok) {
        uv_run(&loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&loop) != 0)
            fprintf(stderr, "xoauthd: internal error: a handle was left open\n");
    }
    token_cli_free_secret(&c.refresh_token);
    token_cli_free_secret(&pw);
    token_cli_free_secret(&old);
    token_cli_free_secret(&pasted);
    OPENSSL_cleanse(&key, sizeof key);
    fflush(stdout);
    config_free(cfg);
    return rc;
}

/* ---- xoauthd tokens ---- */

int token_cli_tokens(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {NULL, 0, NULL, 0}};
    const char *path = TOKEN_CLI_DEFAULT_CONFIG;
    struct config *cfg;
    int ch;

    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
        if (ch == 'c') {
            path = optarg;
        } else {
            fprintf(stderr, "usage: xoauthd tokens [-c FILE]\n");
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "usage: xoauthd tokens [-c FILE]\n");
        return 2;
    }
    cfg = config_load(path, stderr);
    if (cfg == NULL)
        return 1;
    log_set_level(LOG_ERROR);
    if (cfg->n_accounts == 0)
        printf("%s has no accounts.\n", path);
    for (size_t i = 0; i < cfg->n_accounts; i++) {
        const struct config_account *a = &cfg->accounts[i];
        const struct token_grant *grant = token_grant_for(a->flow);
        struct token_store_status st;
        struct token_store_info info;
        char store[240], t1[40], t2[40], t3[40];
        int have_status = token_store_status_load(cfg->state_dir, a->name, &st);

        if (!grant->uses_refresh_token) {
            snprintf(store, sizeof store, "- (flow %s stores nothing)",
                     config_flow_name(a->flow));
        } else {
            int fmt = token_store_peek(cfg->state_dir, a->name, &info);
            if (fmt == 0)
                snprintf(store, sizeof store, "%s",
                         a->refresh_token != NULL
                             ? "empty (the config's refresh_token seeds it at the first refresh)"
                             : "empty: run `xoauthd auth` for this account");
            else if (fmt == 1)
                snprintf(store, sizeof store, "unencrypted (old v1 file; encrypted at the next "
                                              "refresh)");
            else if (fmt == 2)
                snprintf(store, sizeof store, "encrypted with %s",
                         info.key_kind == TOKEN_KEY_PASSWORD ? "the local password"
                                                             : "store.key");
            else
                snprintf(store, sizeof store, "UNUSABLE: %s", info.detail);
        }
        printf("account %s\n", a->name);
        printf("  flow:         %s (provider %s, mailbox %s)\n", config_flow_name(a->flow),
               a->provider_name != NULL ? a->provider_name : "-",
               a->username != NULL ? a->username : "-");
        printf("  token store:  %s\n", store);
        if (have_status == 1) {
            long long now = (long long)time(NULL);
            token_cli_time(t1, sizeof t1, st.valid_until);
            token_cli_time(t2, sizeof t2, st.last_refresh);
            token_cli_time(t3, sizeof t3, st.last_attempt);
            printf("  state:        %s\n", st.state[0] != '\0' ? st.state : "-");
            printf("  valid until:  %s%s\n", t1,
                   st.valid_until > 0 && st.valid_until <= now ? " (expired)" : "");
            printf("  last refresh: %s\n", t2);
            printf("  last attempt: %s\n", t3);
            printf("  last error:   %s\n", st.last_error[0] != '\0' ? st.last_error : "-");
        } else {
            printf("  state:        - (no token requested yet)\n");
        }
    }
    fflush(stdout);
    config_free(cfg);
    return 0;
}
