/* xoauthd: one binary, several sub-commands.
 *   run            the daemon, in the foreground, logging to stderr
 *   check          validate a configuration and exit
 *   hash-password  turn a local password into the hash string for local_password
 *   auth           first sign-in of an account (token_cli.c)
 *   tokens         token state of every account (token_cli.c)
 *   status         the running daemon's state, from its control socket (control.c)
 */
#include <getopt.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/ssl.h>
#include <curl/curl.h>
#include <uv.h>

#include "authlimit.h"
#include "config.h"
#include "config_keys.h"
#include "config_perms.h"
#include "control.h"
#include "localauth.h"
#include "log.h"
#include "privileges.h"
#include "sd_notify.h"
#include "secmem.h"
#include "server_lifecycle.h"
#include "session.h"
#include "token.h"
#include "token_cli.h"

#define XOAUTHD_DEFAULT_CONFIG "/etc/xoauthd/xoauthd.ini"

static void main_usage(FILE *out)
{
    fprintf(out,
            "usage: xoauthd COMMAND [options]\n"
            "\n"
            "commands:\n"
            "  run [-c FILE]        run the proxy in the foreground (logs to stderr)\n"
            "  check [-c FILE]      validate the configuration; errors as FILE:LINE: message\n"
            "                       (also user =, group = and state_dir; changes nothing)\n"
            "  hash-password        read a password (tty without echo, or one line of stdin)\n"
            "                       and print its hash for local_password\n"
            "  auth ACCOUNT [-c FILE] [--device|--browser|--paste]\n"
            "                       sign in once (device code or browser) and store the\n"
            "                       refresh token, encrypted\n"
            "  tokens [-c FILE]     token state of every account (never a secret)\n"
            "  status [-c FILE]     listeners, sessions, token state and counters of the\n"
            "                       running daemon (its control socket)\n"
            "  unlock [-c FILE] NAME|ADDRESS\n"
            "                       the running daemon forgets the failed logins and the\n"
            "                       lockout of that user name or client address\n"
            "  version              print the version\n"
            "\n"
            "default configuration file: " XOAUTHD_DEFAULT_CONFIG "\n");
}

static const char *main_config_path(int argc, char **argv)
{
    const char *path = XOAUTHD_DEFAULT_CONFIG;
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
        if (c == 'c') {
            path = optarg;
        } else {
            main_usage(stderr);
            return NULL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "xoauthd: unexpected argument %s\n", argv[optind]);
        return NULL;
    }
    return path;
}

static int main_check(int argc, char **argv)
{
    const char *path = main_config_path(argc, argv);
    if (path == NULL)
        return 2;
    struct config *cfg = config_load(path, stderr);
    if (cfg == NULL)
        return 1;
    /* Every check reports, so that one run shows every problem. user =, group = and state_dir
     * are judged as `run` started now by the same user would judge them (the unit's
     * ExecStartPre= runs as the daemon's user), without creating or chowning anything. */
    int bad = token_config_check(cfg, stderr) != 0;
    bad |= config_perms_check(cfg, stderr) != 0;
    struct privileges priv;
    int state_dir = -1;
    if (privileges_prepare(cfg, &priv, stderr) == 0)
        state_dir = privileges_state_dir_check(cfg->state_dir, &priv, stderr);
    bad |= state_dir < 0;
    if (bad) {
        config_free(cfg);
        return 1;
    }
    printf("%s: ok (%zu listeners, %zu accounts)\n", path, cfg->n_listens, cfg->n_accounts);
    if (state_dir == 1)
        printf("%s: state_dir %s does not exist yet; xoauthd run creates it (mode 0700, owner "
               "%s)\n", path, cfg->state_dir, priv.user);
    config_free(cfg);
    return 0;
}

static void main_walk_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    log_error(NULL, "event=handle_left_open type=%s", uv_handle_type_name(h->type));
}

/* Process-wide hardening and limits for the daemon: no core dumps (they would hold tokens and
 * passwords; PR_SET_DUMPABLE 0 also keeps other processes of the same user out of /proc/PID/mem
 * and ptrace), and the descriptor limit raised to its hard maximum, since every session holds
 * two sockets and 1024 is the common soft default. */
static void main_harden(void)
{
    struct rlimit rl = {0, 0};
    if (setrlimit(RLIMIT_CORE, &rl) != 0)
        fprintf(stderr, "xoauthd: cannot disable core dumps (RLIMIT_CORE)\n");
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        fprintf(stderr, "xoauthd: cannot set PR_SET_DUMPABLE 0\n");
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rlim_t want = rl.rlim_max;
        if (want == RLIM_INFINITY || want > 1048576)
            want = 1048576;
        if (want > rl.rlim_cur) {
            rl.rlim_cur = want;
            if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
                fprintf(stderr, "xoauthd: cannot raise RLIMIT_NOFILE\n");
        }
    }
}

static int main_run(int argc, char **argv)
{
    main_harden();
    /* Before anything can start libuv's thread pool, which reads the size once. */
    unsigned hash_threads = localauth_threadpool_setup();
    const char *path = main_config_path(argc, argv);
    if (path == NULL)
        return 2;
    struct config *cfg = config_load(path, stderr);
    if (cfg == NULL)
        return 1;
    log_set_level(cfg->log_level);
    log_set_syslog(cfg->log_syslog);
    struct privileges priv;
    if (config_perms_check(cfg, stderr) != 0 || privileges_prepare(cfg, &priv, stderr) != 0 ||
        privileges_state_dir(cfg->state_dir, &priv, stderr) != 0) {
        fprintf(stderr, "xoauthd: not started\n");
        config_free(cfg);
        return 1;
    }
    /* A client that vanishes mid-write must not kill the daemon. */
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "xoauthd: cannot initialise libcurl\n");
        config_free(cfg);
        return 1;
    }
    uv_loop_t loop;
    int lr = uv_loop_init(&loop);
    if (lr != 0) {
        fprintf(stderr, "xoauthd: cannot create the event loop: %s\n", uv_strerror(lr));
        curl_global_cleanup();
        config_free(cfg);
        return 1;
    }
    struct server srv;
    int rc = 0;
    if (server_init(&srv, &loop, cfg, &priv) != 0) {
        fprintf(stderr, "xoauthd: start-up failed\n");
        rc = 1;
        server_shutdown(&srv);
    } else {
        session_auth_configure(cfg);
        /* After the privilege drop (in server_init): the file belongs to the daemon's user. */
        authlimit_known_open(cfg->state_dir);
        log_info(NULL, "event=started config=%s listeners=%zu accounts=%zu hash_threads=%u "
                 "thread_pool=%s", path, srv.n_listeners, cfg->n_accounts, hash_threads,
                 getenv("UV_THREADPOOL_SIZE") != NULL ? getenv("UV_THREADPOOL_SIZE") : "-");
        /* Type=notify: every listener is bound now (sd_notify.h). */
        sd_notify_sendf("READY=1\nMAINPID=%ld\nSTATUS=serving %zu listeners, %zu accounts",
                        (long)getpid(), srv.n_listeners, cfg->n_accounts);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0) {
        uv_walk(&loop, main_walk_cb, NULL);
        log_error(NULL, "event=loop_not_closed");
        rc = 1;
    }
    server_free(&srv); /* frees cfg and every configuration a reload replaced */
    curl_global_cleanup();
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        main_usage(stderr);
        return 2;
    }
    /* Before any other curl call (the later curl_global_init calls only count): libcurl's
     * own buffers - a token request with its client_secret and refresh token among them -
     * are cleansed when it frees them (secmem.h). The process exits after one command, so
     * the matching cleanup is the exit. */
    if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, secmem_alloc, secmem_release, secmem_realloc,
                             secmem_strdup, secmem_calloc) != CURLE_OK) {
        fprintf(stderr, "xoauthd: cannot initialise libcurl\n");
        return 1;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "run") == 0)
        return main_run(argc - 1, argv + 1);
    if (strcmp(cmd, "check") == 0)
        return main_check(argc - 1, argv + 1);
    if (strcmp(cmd, "hash-password") == 0)
        return localauth_cmd_hash_password();
    if (strcmp(cmd, "auth") == 0)
        return token_cli_auth(argc - 1, argv + 1);
    if (strcmp(cmd, "status") == 0)
        return control_cmd_status(argc - 1, argv + 1);
    if (strcmp(cmd, "unlock") == 0)
        return control_cmd_unlock(argc - 1, argv + 1);
    if (strcmp(cmd, "tokens") == 0)
        return token_cli_tokens(argc - 1, argv + 1);
    /* Not in the usage: the key tables as xoauthd.ini(5) text, for whoever edits the page
     * (tests/unit/test_config_keys.c checks that the page lists the same keys). */
    if (strcmp(cmd, "config-keys") == 0) {
        config_keys_print_man(stdout);
        return fflush(stdout) == 0 ? 0 : 1;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("xoauthd 0.1.0\n");
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        main_usage(stdout);
        return 0;
    }
    fprintf(stderr, "xoauthd: unknown command %s\n", cmd);
    main_usage(stderr);
    return 2;
}
