/* Unit tests for config.c: a full valid file, presets, and every class of error with its exact
 * FILE:LINE prefix. Test files are written to a private temp directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "check.h"
#include "config.h"
#include "localauth.h"
#include "sender_rules.h"

static char test_dir[64];
static char test_path[128];
static char *test_hash; /* a real password hash, for local_password */

/* Replaces every "@HASH@" in tmpl with test_hash; malloc'ed. */
static char *expand(const char *tmpl)
{
    size_t n = 0;
    for (const char *p = strstr(tmpl, "@HASH@"); p != NULL; p = strstr(p + 6, "@HASH@"))
        n++;
    char *out = malloc(strlen(tmpl) + n * strlen(test_hash) + 1);
    if (out == NULL)
        abort();
    char *o = out;
    const char *p = tmpl;
    for (const char *hit = strstr(p, "@HASH@"); hit != NULL; hit = strstr(p, "@HASH@")) {
        memcpy(o, p, (size_t)(hit - p));
        o += hit - p;
        strcpy(o, test_hash);
        o += strlen(test_hash);
        p = hit + 6;
    }
    strcpy(o, p);
    return out;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

/* Loads path; *errs gets everything config_load printed (malloc'ed). */
static struct config *load_file(const char *path, char **errs)
{
    size_t errlen = 0;
    FILE *err = open_memstream(errs, &errlen);
    if (err == NULL)
        abort();
    struct config *cfg = config_load(path, err);
    fclose(err);
    return cfg;
}

/* Loads tmpl (after expand) from test_path; *errs gets everything printed to err. */
static struct config *load_text(const char *tmpl, char **errs)
{
    char *text = expand(tmpl);
    write_file(test_path, text);
    free(text);
    return load_file(test_path, errs);
}

/* 1 when errs has a line "PATH:LINE: ...sub..." */
static int has_error(const char *errs, const char *path, int line, const char *sub)
{
    char prefix[256];
    snprintf(prefix, sizeof prefix, "%s:%d: ", path, line);
    const char *p = errs;
    while (*p != '\0') {
        const char *eol = strchr(p, '\n');
        size_t len = eol != NULL ? (size_t)(eol - p) : strlen(p);
        char *one = strndup(p, len);
        int hit = one != NULL && strncmp(one, prefix, strlen(prefix)) == 0 &&
                  strstr(one, sub) != NULL;
        free(one);
        if (hit)
            return 1;
        p += len;
        if (*p == '\n')
            p++;
    }
    return 0;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s != '\0'; s++)
        n += *s == '\n';
    return n;
}

/* The file must be rejected with an error on line with sub in it. */
static int expect_error(const char *tmpl, int line, const char *sub)
{
    char *errs = NULL;
    struct config *cfg = load_text(tmpl, &errs);
    int ok = cfg == NULL && has_error(errs, test_path, line, sub);
    if (!ok)
        fprintf(stderr, "expected %s:%d: ...%s...\n--- got:\n%s---\n", test_path, line, sub,
                errs);
    config_free(cfg);
    free(errs);
    return ok;
}

/* The file must load without a word: the config, or NULL (the errors were printed). */
static struct config *load_ok(const char *tmpl)
{
    char *errs = NULL;
    struct config *cfg = load_text(tmpl, &errs);
    if (cfg == NULL || errs[0] != '\0') {
        fprintf(stderr, "expected no errors, got:\n%s---\n", errs);
        config_free(cfg);
        cfg = NULL;
    }
    free(errs);
    return cfg;
}

static int expect_ok(const char *tmpl)
{
    struct config *cfg = load_ok(tmpl);
    int ok = cfg != NULL;
    config_free(cfg);
    return ok;
}

/* The same file with a few lines after head: the error is on line, with sub in it. */
static int expect_error_after(const char *head, const char *lines, int line, const char *sub)
{
    size_t n = strlen(head) + strlen(lines) + 1;
    char *text = malloc(n);
    if (text == NULL)
        abort();
    snprintf(text, n, "%s%s", head, lines);
    int ok = expect_error(text, line, sub);
    free(text);
    return ok;
}

/* A scanner account reachable only through allow_networks; with it, a file is valid. */
#define OK_TAIL                                                                           \
    "[account tail]\n"                                                                    \
    "local_user = tail\n"                                                                 \
    "local_password = @HASH@\n"                                                           \
    "provider = google\n"                                                                 \
    "username = tail@example.com\n"                                                       \
    "flow = static\n"                                                                     \
    "access_token = ya29.x\n"

/* A file that must be refused: text (OK_TAIL follows it), the error's line and part of it. */
struct bad_file {
    const char *text;
    int line;
    const char *error;
};

static void expect_bad_files(const struct bad_file *rows, size_t n)
{
    for (size_t i = 0; i < n; i++)
        CHECK(expect_error_after(rows[i].text, OK_TAIL, rows[i].line, rows[i].error));
}

#define EXPECT_BAD_FILES(rows) expect_bad_files(rows, sizeof rows / sizeof rows[0])

static int freed_count;
static void count_freed(struct config *cfg, void *arg)
{
    (void)cfg;
    (void)arg;
    freed_count++;
}

/* The life of configurations in the daemon: each account knows its configuration; a replaced
 * configuration holds its successor; the last release frees (a chain at once, oldest first). */
static void test_holds(void)
{
    struct config *a = load_ok(OK_TAIL), *b = load_ok(OK_TAIL), *c = load_ok(OK_TAIL);
    CHECK(a != NULL && b != NULL && c != NULL);
    if (a == NULL || b == NULL || c == NULL) {
        config_free(a);
        config_free(b);
        config_free(c);
        return;
    }
    CHECK(a->refs == 1 && a->n_accounts == 1 && a->accounts[0].owner == a);
    a->on_free = b->on_free = count_freed;
    freed_count = 0;
    config_hold(a);      /* a session accepted under a */
    config_supersede(a, b);
    config_release(a);   /* the server switched to b */
    config_supersede(b, c);
    config_release(b);   /* and to c: b lives on through a */
    CHECK(freed_count == 0 && b->refs == 1 && c->refs == 2);
    config_release(a);   /* the session ends: a and then b go */
    CHECK(freed_count == 2);
    CHECK(c->refs == 1);
    config_hold(NULL);   /* harmless */
    config_release(NULL);
    config_release(c);
}

static void test_full(void)
{
    char token[3001];
    memset(token, 'R', 3000);
    token[0] = '1';
    token[1] = '/';
    token[2999] = 'Z';
    token[3000] = '\0';
    static const char head[] =
        "\xef\xbb\xbf; xoauthd test file\n"
        "# hash comment\n"
        "\n"
        "[xoauthd]\n"
        "state_dir = /var/lib/xoauthd-unit-test\n"
        "log_level = debug\r\n"
        "user = nobody\n"
        "max_message_size = 52428800\n"
        "token_timeout = 10\n"
        "\n"
        "[listen submission]\n"
        "protocol = smtp\n"
        "address = 127.0.0.1:2525\n"
        "tls = starttls\n"
        "tls_cert = /etc/xoauthd/cert.pem\n"
        "tls_key = /etc/xoauthd/key.pem\n"
        "allow_plaintext_auth = never\n"
        "allow_networks = 10.0.0.0/24, 192.168.7.9 -> scanner\n"
        "allow_networks = 2001:db8::/32 -> relay\n"
        "max_connections = 50\n"
        "\n"
        "[listen imap6]\n"
        "protocol = imap\n"
        "address = [::1]:1143\n"
        "\n"
        "[provider mock]\n"
        "token_url = http://127.0.0.1:8080/token\n"
        "smtp = 127.0.0.1:2526 none\n"
        "imap = [::1]:1993 implicit\n"
        "ca_file = /tmp/ca.pem\n"
        "tls_verify = no\n"
        "\n"
        "[account scanner]\n"
        "provider = microsoft\n"
        "username = scanner@contoso.com\n"
        "flow = refresh_token\n"
        "client_id = 11111111-2222-3333-4444-555555555555\n"
        "client_secret = ab ; x\n"
        "tenant = contoso.onmicrosoft.com\n"
        "scope = https://outlook.office.com/SMTP.Send offline_access\n"
        "mechanism = oauthbearer\n"
        "submit = graph, smtp\n"
        "envelope_from = account\n"
        "header_from = account-with-name\n"
        "refresh_margin = 120\n"
        "refresh_token = ";
    static const char tail[] =
        "\n"
        "\n"
        "[account relay]\n"
        "local_user = postfix\n"
        "local_password = @HASH@\n"
        "provider = google\n"
        "username = relay@gmail.com\n"
        "flow = authorization_code\n"
        "client_id = cid.apps.googleusercontent.com\n"
        "client_secret = =x==;#\n"
        "\n"
        "[account tester]\n"
        "local_user = tester\n"
        "local_password = @HASH@\n"
        "provider = mock\n"
        "username = tester@example.test\n"
        "flow = password\n"
        "client_id = c\n"
        "upstream_password = p w\n";
    size_t sz = sizeof head + sizeof tail + sizeof token;
    char *tmpl = malloc(sz);
    CHECK(tmpl != NULL);
    if (tmpl == NULL)
        return;
    snprintf(tmpl, sz, "%s%s%s", head, token, tail);
    char *errs = NULL;
    struct config *cfg = load_text(tmpl, &errs);
    free(tmpl);
    CHECK(cfg != NULL);
    CHECK(errs[0] == '\0');
    if (cfg == NULL) {
        fprintf(stderr, "%s", errs);
        free(errs);
        return;
    }
    free(errs);
    CHECK(strcmp(cfg->path, test_path) == 0);
    CHECK(strcmp(cfg->state_dir, "/var/lib/xoauthd-unit-test") == 0);
    CHECK(cfg->log_level == LOG_DEBUG);
    CHECK(cfg->user != NULL && strcmp(cfg->user, "nobody") == 0);
    CHECK(cfg->max_message_size == 52428800);
    CHECK(cfg->token_timeout == 10);

    CHECK(cfg->n_listens == 2);
    const struct config_listen *l = &cfg->listens[0];
    CHECK(strcmp(l->name, "submission") == 0 && l->line == 11);
    CHECK(l->protocol == CONFIG_PROTO_SMTP);
    CHECK(strcmp(l->host, "127.0.0.1") == 0 && l->port == 2525);
    CHECK(l->tls == CONFIG_TLS_STARTTLS);
    CHECK(strcmp(l->tls_cert, "/etc/xoauthd/cert.pem") == 0);
    CHECK(strcmp(l->tls_key, "/etc/xoauthd/key.pem") == 0);
    CHECK(l->allow_plaintext_auth == CONFIG_PLAINTEXT_NEVER);
    CHECK(l->max_connections == 50);
    CHECK(l->n_allow_networks == 3);
    if (l->n_allow_networks == 3) {
        const struct sockaddr_in *a0 = (const struct sockaddr_in *)&l->allow_networks[0].net;
        const struct sockaddr_in *a1 = (const struct sockaddr_in *)&l->allow_networks[1].net;
        const struct sockaddr_in6 *a2 = (const struct sockaddr_in6 *)&l->allow_networks[2].net;
        CHECK(a0->sin_family == AF_INET && ntohl(a0->sin_addr.s_addr) == 0x0a000000 &&
              l->allow_networks[0].prefix == 24);
        CHECK(a1->sin_family == AF_INET && ntohl(a1->sin_addr.s_addr) == 0xc0a80709 &&
              l->allow_networks[1].prefix == 32);
        CHECK(a2->sin6_family == AF_INET6 && a2->sin6_addr.s6_addr[0] == 0x20 &&
              a2->sin6_addr.s6_addr[1] == 0x01 && a2->sin6_addr.s6_addr[3] == 0xb8 &&
              l->allow_networks[2].prefix == 32);
        CHECK(strcmp(l->allow_networks[0].account_name, "scanner") == 0);
        CHECK(l->allow_networks[0].account == config_find_account(cfg, "scanner"));
        CHECK(l->allow_networks[1].account == config_find_account(cfg, "scanner"));
        CHECK(l->allow_networks[2].account == config_find_account(cfg, "relay"));
    }
    l = &cfg->listens[1];
    CHECK(l->protocol == CONFIG_PROTO_IMAP && strcmp(l->host, "::1") == 0 && l->port == 1143);
    CHECK(l->tls == CONFIG_TLS_NONE && l->allow_plaintext_auth == CONFIG_PLAINTEXT_LOOPBACK);
    CHECK(l->max_connections == 0 && l->n_allow_networks == 0);

    CHECK(cfg->n_providers == 3);
    const struct config_provider *p = config_find_provider(cfg, "mock");
    CHECK(p != NULL && p == &cfg->providers[2]);
    if (p != NULL) {
        CHECK(p->line == 26);
        CHECK(strcmp(p->token_url, "http://127.0.0.1:8080/token") == 0);
        CHECK(p->smtp.present && strcmp(p->smtp.host, "127.0.0.1") == 0 &&
              p->smtp.port == 2526 && p->smtp.tls == CONFIG_TLS_NONE);
        CHECK(p->imap.present && strcmp(p->imap.host, "::1") == 0 && p->imap.port == 1993 &&
              p->imap.tls == CONFIG_TLS_IMPLICIT);
        CHECK(!p->pop3.present && p->ews_url == NULL && p->graph_url == NULL);
        CHECK(strcmp(p->ca_file, "/tmp/ca.pem") == 0);
        CHECK(p->tls_verify == 0);
    }

    CHECK(cfg->n_accounts == 3);
    const struct config_account *a = config_find_account(cfg, "scanner");
    CHECK(a != NULL);
    if (a != NULL) {
        CHECK(a->line == 33);
        CHECK(a->local_user == NULL && a->local_password == NULL);
        CHECK(a->provider == config_find_provider(cfg, "microsoft"));
        CHECK(strcmp(a->username, "scanner@contoso.com") == 0);
        CHECK(a->flow == CONFIG_FLOW_REFRESH_TOKEN);
        CHECK(strcmp(a->client_secret, "ab ; x") == 0);
        CHECK(strcmp(a->tenant, "contoso.onmicrosoft.com") == 0);
        CHECK(strcmp(a->scope, "https://outlook.office.com/SMTP.Send offline_access") == 0);
        CHECK(a->mechanism == CONFIG_MECH_OAUTHBEARER);
        CHECK(a->n_submit == 2 && a->submit[0] == CONFIG_SUBMIT_GRAPH &&
              a->submit[1] == CONFIG_SUBMIT_SMTP);
        CHECK(a->envelope_from == CONFIG_ENVFROM_ACCOUNT);
        CHECK(a->header_from == CONFIG_HDRFROM_ACCOUNT_WITH_NAME);
        CHECK(a->refresh_margin == 120);
        CHECK(a->refresh_token != NULL && strlen(a->refresh_token) == 3000 &&
              strcmp(a->refresh_token, token) == 0);
        char *url = config_token_url(a);
        CHECK(url != NULL && strcmp(url, "https://login.microsoftonline.com/"
                                         "contoso.onmicrosoft.com/oauth2/v2.0/token") == 0);
        free(url);
    }
    a = config_find_account_by_local_user(cfg, "postfix");
    CHECK(a != NULL && a == config_find_account(cfg, "relay"));
    if (a != NULL) {
        CHECK(strcmp(a->local_password, test_hash) == 0);
        CHECK(strcmp(a->client_secret, "=x==;#") == 0);
        CHECK(a->flow == CONFIG_FLOW_AUTHORIZATION_CODE);
        CHECK(a->scope != NULL && strcmp(a->scope, "https://mail.google.com/") == 0);
        CHECK(a->mechanism == CONFIG_MECH_XOAUTH2 && a->n_submit == 1 &&
              a->submit[0] == CONFIG_SUBMIT_SMTP && a->refresh_margin == 300);
        CHECK(a->envelope_from == CONFIG_ENVFROM_KEEP && a->header_from == CONFIG_HDRFROM_KEEP);
        char *url = config_token_url(a);
        CHECK(url != NULL && strcmp(url, "https://oauth2.googleapis.com/token") == 0);
        free(url);
    }
    a = config_find_account(cfg, "tester");
    CHECK(a != NULL && a->flow == CONFIG_FLOW_PASSWORD && strcmp(a->upstream_password, "p w") == 0);
    CHECK(a != NULL && a->scope == NULL);
    CHECK(config_find_account_by_local_user(cfg, "nobody") == NULL);
    CHECK(config_find_account(cfg, "nobody") == NULL);
    CHECK(config_find_provider(cfg, "nobody") == NULL);
    config_free(cfg);
}

static void test_defaults_and_presets(void)
{
    static const char text[] =
        "[provider google]\n"
        "imap = 127.0.0.1:1993 none\n"
        "\n"
        OK_TAIL
        "[account ms]\n"
        "local_user = ms\n"
        "local_password = @HASH@\n"
        "provider = microsoft\n"
        "username = u@contoso.com\n"
        "flow = device_code\n"
        "client_id = x\n";
    char *errs = NULL;
    struct config *cfg = load_text(text, &errs);
    CHECK(cfg != NULL && errs[0] == '\0');
    free(errs);
    if (cfg == NULL)
        return;
    CHECK(strcmp(cfg->state_dir, "/var/lib/xoauthd") == 0);
    CHECK(cfg->log_level == LOG_INFO && cfg->user == NULL);
    CHECK(cfg->max_message_size == 36700160 && cfg->token_timeout == 30);
    CHECK(cfg->n_listens == 0 && cfg->n_providers == 2);

    const struct config_provider *g = config_find_provider(cfg, "google");
    CHECK(g == &cfg->providers[0] && g->line == 1);
    CHECK(strcmp(g->token_url, "https://oauth2.googleapis.com/token") == 0);
    CHECK(g->smtp.present && strcmp(g->smtp.host, "smtp.gmail.com") == 0 &&
          g->smtp.port == 465 && g->smtp.tls == CONFIG_TLS_IMPLICIT);
    CHECK(g->imap.present && strcmp(g->imap.host, "127.0.0.1") == 0 && g->imap.port == 1993 &&
          g->imap.tls == CONFIG_TLS_NONE); /* overridden */
    CHECK(g->pop3.present && strcmp(g->pop3.host, "pop.gmail.com") == 0 &&
          g->pop3.port == 995 && g->pop3.tls == CONFIG_TLS_IMPLICIT);
    CHECK(g->ews_url == NULL && g->graph_url == NULL && g->ca_file == NULL && g->tls_verify);

    const struct config_provider *m = config_find_provider(cfg, "microsoft");
    CHECK(m == &cfg->providers[1] && m->line == 0);
    CHECK(strcmp(m->token_url,
                 "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token") == 0);
    CHECK(strcmp(m->smtp.host, "smtp.office365.com") == 0 && m->smtp.port == 587 &&
          m->smtp.tls == CONFIG_TLS_STARTTLS);
    CHECK(strcmp(m->imap.host, "outlook.office365.com") == 0 && m->imap.port == 993 &&
          m->imap.tls == CONFIG_TLS_IMPLICIT);
    CHECK(strcmp(m->pop3.host, "outlook.office365.com") == 0 && m->pop3.port == 995 &&
          m->pop3.tls == CONFIG_TLS_IMPLICIT);
    CHECK(strcmp(m->ews_url, "https://outlook.office365.com/EWS/Exchange.asmx") == 0);
    CHECK(strcmp(m->graph_url, "https://graph.microsoft.com/v1.0") == 0);

    const struct config_account *a = config_find_account(cfg, "ms");
    CHECK(a != NULL && a->provider == m);
    char *url = config_token_url(a);
    CHECK(url != NULL &&
          strcmp(url, "https://login.microsoftonline.com/common/oauth2/v2.0/token") == 0);
    free(url);
    a = config_find_account(cfg, "tail");
    CHECK(a != NULL && a->provider == g && a->flow == CONFIG_FLOW_STATIC &&
          strcmp(a->access_token, "ya29.x") == 0);
    config_free(cfg);

    /* Removing a preset endpoint with an empty value. */
    CHECK(expect_ok("[provider microsoft]\npop3 =\n" OK_TAIL));

    CHECK(strcmp(config_protocol_name(CONFIG_PROTO_POP3), "pop3") == 0);
    CHECK(strcmp(config_flow_name(CONFIG_FLOW_CLIENT_CREDENTIALS), "client_credentials") == 0);
    CHECK(config_token_url(NULL) == NULL);
}

static void test_reader_errors(void)
{
    static const struct bad_file bad_syntax[] = {
        {"[xoauthd]\n  log_level = info\n", 2, "starts with whitespace"},
        {"[xoauthd]\nlog_level info\n", 2, "expected 'key = value'"},
        {"log_level = info\n", 1, "outside any section"},
        {"[xoauthd]\nlog level = info\n", 2, "bad key name"},
        {"[xoauthd]\n= info\n", 2, "bad key name"},
        {"[xoauthd] ; main\n", 1, "section header"},
        {"[xoauthd\n", 1, "section header"},
        {"[account ../etc]\n", 1, "needs a NAME"},
        {"[account]\n", 1, "needs a NAME"},
        {"[xoauthd main]\n", 1, "takes no name"},
    };
    EXPECT_BAD_FILES(bad_syntax);
    /* Indented comments and blank lines with spaces are fine. */
    CHECK(expect_ok("   ; indented comment\n \t \n[xoauthd]\n\t# also\n" OK_TAIL));
    /* Unknown section: reported once, its keys are not reported again. */
    char *errs = NULL;
    struct config *cfg = load_text("[bogus thing]\nx = 1\n" OK_TAIL, &errs);
    CHECK(cfg == NULL);
    CHECK(has_error(errs, test_path, 1, "unknown section type \"bogus\""));
    CHECK(count_lines(errs) == 1);
    free(errs);
    config_free(cfg);
}

static void test_nul_byte(void)
{
    static const char text[] = "[xoauthd]\nuser = a\0b\n";
    FILE *f = fopen(test_path, "w");
    CHECK(f != NULL);
    if (f == NULL)
        return;
    fwrite(text, 1, sizeof text - 1, f);
    fclose(f);
    char *errs = NULL;
    struct config *cfg = load_file(test_path, &errs);
    CHECK(cfg == NULL && has_error(errs, test_path, 2, "NUL byte"));
    config_free(cfg);
    free(errs);
}

static void test_value_errors(void)
{
    /* [xoauthd] */
    static const struct bad_file bad_main[] = {
        {"[xoauthd]\ncolour = blue\n", 2, "unknown key 'colour' in [xoauthd]"},
        {"[xoauthd]\nlog_level = loud\n", 2,
         "bad value \"loud\" for key 'log_level' in [xoauthd]: expected error, warn, info or "
         "debug"},
        {"[xoauthd]\nlog_level = info\nlog_level = debug\n", 3,
         "duplicate key 'log_level' in [xoauthd] (first at line 2)"},
        {"[xoauthd]\n[xoauthd]\n", 2, "duplicate section [xoauthd] (first at line 1)"},
        {"[xoauthd]\nmax_message_size = 10\n", 2, "max_message_size"},
        {"[xoauthd]\nmax_message_size = 12abc\n", 2, "bytes"},
        {"[xoauthd]\ntoken_timeout = 0\n", 2, "token_timeout"},
        {"[xoauthd]\nstate_dir =\n", 2, "state_dir"},
    };
    EXPECT_BAD_FILES(bad_main);

    /* [listen] */
    static const char *const listen_head = "[listen in]\nprotocol = smtp\n";
    char buf[1024];
#define LISTEN(extra) (snprintf(buf, sizeof buf, "%s%s" OK_TAIL, listen_head, extra), buf)
    CHECK(expect_error(LISTEN("address = localhost:25\n"), 3, "numeric IP address"));
    CHECK(expect_error(LISTEN("address = 127.0.0.1\n"), 3, "bad value \"127.0.0.1\" for key 'address'"));
    CHECK(expect_error(LISTEN("address = 127.0.0.1:0\n"), 3, "port from 1 to 65535"));
    CHECK(expect_error(LISTEN("address = 127.0.0.1:65536\n"), 3, "port from 1 to 65535"));
    CHECK(expect_error(LISTEN("address = 127.0.0.1:x\n"), 3, "'address'"));
    CHECK(expect_error(LISTEN("address = ::1:25\n"), 3, "IPv6 address needs brackets"));
    CHECK(expect_error(LISTEN("address = [::1:25\n"), 3, "'address'"));
    CHECK(expect_error(LISTEN("address = [nothex]:25\n"), 3, "IPv6"));
    CHECK(expect_ok(LISTEN("address = [::1]:25\n")));
    CHECK(expect_ok(LISTEN("address = 0.0.0.0:65535\n")));
    CHECK(expect_error(LISTEN("address = 127.0.0.1:25\ntls = yes\n"), 4,
                       "expected none, starttls or implicit"));
    CHECK(expect_error(LISTEN("address = 127.0.0.1:25\nallow_plaintext_auth = sometimes\n"), 4,
                       "expected loopback, always or never"));
    CHECK(expect_error(LISTEN("address = 127.0.0.1:25\nmax_connections = -1\n"), 4,
                       "max_connections"));
    CHECK(expect_error(LISTEN("address = 127.0.0.1:25\nbacklog = 5\n"), 4,
                       "unknown key 'backlog' in [listen in]"));
    CHECK(expect_error(LISTEN("address = 127.0.0.1:25\ntls = implicit\ntls_key = k.pem\n"), 1,
                       "missing key 'tls_cert' in [listen in]"));
    CHECK(expect_error(LISTEN("address = 127.0.0.1:25\ntls = starttls\ntls_cert = c.pem\n"), 1,
                       "missing key 'tls_key' in [listen in]"));
    CHECK(expect_error("[listen in]\nprotocol = smtp\n" OK_TAIL, 1,
                       "missing key 'address' in [listen in]"));
    CHECK(expect_error("[listen in]\naddress = 127.0.0.1:25\n" OK_TAIL, 1,
                       "missing key 'protocol' in [listen in]"));
    CHECK(expect_error("[listen in]\nprotocol = nntp\naddress = 127.0.0.1:25\n" OK_TAIL, 2,
                       "expected smtp, imap or pop3"));
    CHECK(expect_error("[listen a]\nprotocol = smtp\naddress = 127.0.0.1:25\n"
                       "[listen b]\nprotocol = imap\naddress = 127.0.0.1:25\n" OK_TAIL,
                       6, "already used by [listen a]"));
    CHECK(expect_error("[listen a]\nprotocol = smtp\naddress = 127.0.0.1:25\n"
                       "[listen a]\nprotocol = imap\naddress = 127.0.0.1:26\n" OK_TAIL,
                       4, "duplicate section [listen a] (first at line 1)"));

    /* allow_networks */
    CHECK(expect_error(LISTEN("address = 127.0.0.1:25\nallow_networks = 10.0.0.0/33 -> tail\n"),
                       4, "bad network \"10.0.0.0/33\""));
    CHECK(expect_error(LISTEN("address = 127.0.0.1:25\nallow_networks = banana -> tail\n"), 4,
                       "bad network \"banana\""));
    CHECK(expect_error(LISTEN("address = 127.0.0.1:25\nallow_networks = 10.0.0.1/24 -> tail\n"),
                       4, "did you mean 10.0.0.0/24?"));
    CHECK(expect_error(LISTEN("address = 127.0.0.1:25\nallow_networks = 2001:db8::1/32 -> tail\n"),
                       4, "did you mean 2001:db8::/32?"));
    CHECK(expect_error(LISTEN("address = 127.0.0.1:25\nallow_networks = 10.0.0.0/8\n"), 4,
                       "expected CIDR[, CIDR...] -> ACCOUNT"));
    CHECK(expect_error(LISTEN("address = 127.0.0.1:25\nallow_networks = 10.0.0.0/8, -> tail\n"),
                       4, "expected CIDR"));
    CHECK(expect_error(LISTEN("address = 127.0.0.1:25\nallow_networks = 10.0.0.0/8 -> ghost\n"),
                       4, "allow_networks in [listen in] names unknown account \"ghost\""));
    CHECK(expect_error(LISTEN("address = 127.0.0.1:25\nallow_networks = 10.0.0.0/x -> tail\n"),
                       4, "bad network"));
    CHECK(expect_ok(LISTEN("address = 127.0.0.1:25\n"
                           "allow_networks = 10.0.0.0/8, fd00::/8, 192.0.2.1 -> tail\n")));
#undef LISTEN
}

static void test_provider_errors(void)
{
    static const struct bad_file bad_provider[] = {
        {"[provider x]\nsmtp = mail.example.com:587\n", 2,
         "expected HOST:PORT starttls|implicit|none"},
        {"[provider x]\nsmtp = mail.example.com:587 tls\n", 2,
         "bad value \"mail.example.com:587 tls\" for key 'smtp' in [provider x]"},
        {"[provider x]\nimap = mail.example.com:0 implicit\n", 2, "key 'imap'"},
        {"[provider x]\npop3 = mail example.com:995 implicit\n", 2, "key 'pop3'"},
        {"[provider x]\nsmtp = mail.example.com:25 none\n", 2,
         "plain-text upstream (none) is allowed only to a loopback host"},
        {"[provider x]\ntoken_url = http://idp.example.com/token\n", 2,
         "http:// is allowed only to a loopback host"},
        {"[provider x]\ntoken_url = ftp://idp.example.com/token\n", 2, "expected an https:// URL"},
        {"[provider x]\news_url = https://u:p@ews.example.com/\n", 2, "'ews_url'"},
        {"[provider x]\ngraph_url = http://graph.example.com/v1.0\n", 2, "graph_url"},
        {"[provider x]\ntls_verify = maybe\n", 2, "expected yes or no"},
        {"[provider x]\nscope = all\n", 2, "unknown key 'scope' in [provider x]"},
    };
    EXPECT_BAD_FILES(bad_provider);
    /* tls_verify = no: only when every endpoint is loopback, preset hosts included. */
    CHECK(expect_error("[provider x]\ntoken_url = https://127.0.0.1/t\n"
                       "imap = imap.example.com:993 implicit\ntls_verify = no\n" OK_TAIL,
                       4, "imap.example.com is not"));
    CHECK(expect_error("[provider google]\ntls_verify = no\n" OK_TAIL, 2, "tls_verify = no"));
    CHECK(expect_ok("[provider x]\ntoken_url = https://[::1]:8443/t\n"
                    "imap = localhost:993 implicit\ntls_verify = no\n" OK_TAIL));
    /* A new provider needs a token endpoint unless all its accounts are static. */
    CHECK(expect_error("[provider x]\nimap = 127.0.0.1:143 none\n"
                       "[account a]\nlocal_user = a\nlocal_password = @HASH@\nprovider = x\n"
                       "username = a@x\nflow = refresh_token\nclient_id = c\n",
                       1, "missing key 'token_url' in [provider x] ([account a] uses flow = "
                          "refresh_token)"));
    CHECK(expect_ok("[provider x]\nimap = 127.0.0.1:143 none\n"
                    "[account a]\nlocal_user = a\nlocal_password = @HASH@\nprovider = x\n"
                    "username = a@x\nflow = static\naccess_token = t\n"));
}

#define ACCT_HEAD                                                                         \
    "[account a]\n"                                                                       \
    "local_user = a\n"                                                                    \
    "local_password = @HASH@\n"                                                           \
    "provider = microsoft\n"                                                              \
    "username = a@contoso.com\n"

/* ACCT_HEAD with a flow that needs nothing more: lines 1-7. */
#define DEVICE_CODE_HEAD ACCT_HEAD "flow = device_code\nclient_id = c\n"

static void test_account_errors(void)
{
    /* Lines 1-5 are ACCT_HEAD; the line under test is 6. */
    CHECK(expect_error(ACCT_HEAD "flow = magic\n", 6,
                       "expected static, refresh_token, client_credentials, password, "
                       "device_code or authorization_code"));
    CHECK(expect_error(ACCT_HEAD "flow = refresh_token\n", 1,
                       "missing key 'client_id' in [account a] (required by flow = "
                       "refresh_token)"));
    CHECK(expect_error(ACCT_HEAD "flow = static\n", 1,
                       "missing key 'access_token' in [account a] (required by flow = static)"));
    CHECK(expect_error(ACCT_HEAD "flow = password\nclient_id = c\n", 1,
                       "missing key 'upstream_password'"));
    CHECK(expect_error(ACCT_HEAD "flow = client_credentials\nclient_id = c\ntenant = t\n", 1,
                       "missing key 'client_secret'"));
    CHECK(expect_error(ACCT_HEAD "flow = client_credentials\nclient_id = c\nclient_secret = s\n",
                       1, "missing key 'tenant'"));
    CHECK(expect_ok(ACCT_HEAD "flow = client_credentials\nclient_id = c\ntenant = t\n"
                              "client_certificate = c.pem\nclient_key = k.pem\n"));
    CHECK(expect_error(DEVICE_CODE_HEAD "client_key = k.pem\n", 1,
                       "missing key 'client_certificate'"));
    /* One bad key after a valid account (lines 1-7): the error is on line 8. */
    static const struct {
        const char *lines, *error;
    } bad_line_8[] = {
        {"mechanism = plain\n", "expected xoauth2 or oauthbearer"},
        {"envelope_from = x\n", "expected keep or account"},
        {"header_from = x\n", "expected keep, account or account-with-name"},
        {"refresh_margin = 9999\n", "refresh_margin"},
        {"password = x\n", "unknown key 'password' in [account a]"},
        {"flow = static\n", "duplicate key 'flow' in [account a] (first at line 6)"},
        /* submit */
        {"submit = smtp, smtp\n", "without repeats"},
        {"submit = fax\n", "bad value \"fax\" for key 'submit'"},
        {"submit = smtp, ews, graph, smtp\n", "'submit'"},
        {"submit = smtp,\n", "'submit'"},
    };
    for (size_t i = 0; i < sizeof bad_line_8 / sizeof bad_line_8[0]; i++)
        CHECK(expect_error_after(DEVICE_CODE_HEAD, bad_line_8[i].lines, 8, bad_line_8[i].error));
    CHECK(expect_ok(DEVICE_CODE_HEAD "submit = ews, graph, smtp\n"));
    CHECK(expect_error("[account a]\nlocal_user = a\nlocal_password = @HASH@\n"
                       "provider = google\nusername = a@gmail.com\nflow = static\n"
                       "access_token = t\nsubmit = graph\n",
                       8, "provider 'google' has no graph_url"));
    /* provider, username, flow */
    CHECK(expect_error("[account a]\nlocal_user = a\nlocal_password = @HASH@\n", 1,
                       "missing key 'provider' in [account a]"));
    CHECK(expect_error("[account a]\nlocal_user = a\nlocal_password = @HASH@\n", 1,
                       "missing key 'username' in [account a]"));
    CHECK(expect_error("[account a]\nlocal_user = a\nlocal_password = @HASH@\n", 1,
                       "missing key 'flow' in [account a]"));
    CHECK(expect_error("[account a]\nlocal_user = a\nlocal_password = @HASH@\nprovider = yahoo\n"
                       "username = a@x\nflow = static\naccess_token = t\n",
                       4, "[account a] names unknown provider \"yahoo\""));
    /* local login */
    CHECK(expect_error("[account a]\nlocal_user = a\nlocal_password = secret\nprovider = google\n"
                       "username = a@x\nflow = static\naccess_token = t\n",
                       3, "local_password in [account a] is not a hash"));
    CHECK(expect_error("[account a]\nlocal_user = a\nprovider = google\n"
                       "username = a@x\nflow = static\naccess_token = t\n",
                       1, "missing key 'local_password' in [account a]"));
    CHECK(expect_error("[account a]\nlocal_password = @HASH@\nprovider = google\n"
                       "username = a@x\nflow = static\naccess_token = t\n",
                       1, "missing key 'local_user' in [account a]"));
    CHECK(expect_error("[account a]\nprovider = google\n"
                       "username = a@x\nflow = static\naccess_token = t\n",
                       1, "nobody can use it"));
    /* Duplicate local_user: both lines. */
    static const char dup[] = "[account a]\nlocal_user = same\nlocal_password = @HASH@\n"
                              "provider = google\nusername = a@x\nflow = static\n"
                              "access_token = t\n"
                              "[account b]\nlocal_user = same\nlocal_password = @HASH@\n"
                              "provider = google\nusername = b@x\nflow = static\n"
                              "access_token = t\n";
    CHECK(expect_error(dup, 2, "duplicate local_user \"same\" (also in [account b] at line 9)"));
    CHECK(expect_error(dup, 9, "duplicate local_user \"same\" (also in [account a] at line 2)"));
}

/* graph_scope / ews_scope / smtp_scope: the first path keeps scope, a fallback path gets the
 * preset of its resource, explicit keys win; misuse is an error on the key's line. */
/* Account a of cfg asks for want on the submit path. */
static int scope_is(const struct config *cfg, enum config_submit path, const char *want)
{
    const struct config_account *a = cfg != NULL ? config_find_account(cfg, "a") : NULL;
    if (a == NULL || strcmp(config_account_scope(a, path), want) != 0) {
        fprintf(stderr, "expected scope %s\n", want);
        return 0;
    }
    return 1;
}

static void test_path_scopes(void)
{
    struct config *cfg = load_ok(ACCT_HEAD "flow = refresh_token\nclient_id = c\n"
                                 "submit = graph, ews\n"
                                 "scope = https://graph.microsoft.com/.default\n" OK_TAIL);
    CHECK(scope_is(cfg, CONFIG_SUBMIT_GRAPH, "https://graph.microsoft.com/.default"));
    CHECK(scope_is(cfg, CONFIG_SUBMIT_EWS,
                   "https://outlook.office365.com/EWS.AccessAsUser.All offline_access"));
    config_free(cfg);

    cfg = load_ok(ACCT_HEAD "flow = client_credentials\nclient_id = c\nclient_secret = s\n"
                  "tenant = t\nsubmit = graph, smtp\n" OK_TAIL);
    /* scope, as before */
    CHECK(scope_is(cfg, CONFIG_SUBMIT_GRAPH, "https://outlook.office365.com/.default"));
    CHECK(scope_is(cfg, CONFIG_SUBMIT_SMTP, "https://outlook.office365.com/.default"));
    config_free(cfg);

    cfg = load_ok(DEVICE_CODE_HEAD "submit = graph, smtp\n"
                  "graph_scope = https://graph.microsoft.com/Mail.Send offline_access\n" OK_TAIL);
    CHECK(scope_is(cfg, CONFIG_SUBMIT_GRAPH,
                   "https://graph.microsoft.com/Mail.Send offline_access"));
    CHECK(scope_is(cfg, CONFIG_SUBMIT_SMTP,
                   "https://outlook.office.com/SMTP.Send offline_access"));
    const struct config_account *a = cfg != NULL ? config_find_account(cfg, "a") : NULL;
    CHECK(a != NULL && strstr(a->scope, "IMAP.AccessAsUser.All") != NULL); /* IMAP, POP3 */
    config_free(cfg);

    CHECK(expect_error(DEVICE_CODE_HEAD
                       "ews_scope = https://outlook.office365.com/.default\n", 8,
                       "ews_scope in [account a] has no effect: submit does not list ews"));
    CHECK(expect_error(DEVICE_CODE_HEAD "submit = graph, ews\n"
                       "graph_scope =\n", 9, "graph_scope in [account a] must be a non-empty"));
    CHECK(expect_error(ACCT_HEAD "flow = static\naccess_token = t\nsmtp_scope = x\n", 8,
                       "smtp_scope in [account a] has no effect with flow = static"));
}

static void test_all_errors_reported(void)
{
    char *errs = NULL;
    struct config *cfg = load_text("[xoauthd]\n"
                                   "log_level = loud\n"
                                   "[listen x]\n"
                                   "protocol = smtp\n"
                                   "address = 127.0.0.1:99999\n"
                                   "[account a]\n"
                                   "provider = nowhere\n"
                                   "colour = red\n",
                                   &errs);
    CHECK(cfg == NULL);
    CHECK(has_error(errs, test_path, 2, "log_level"));
    CHECK(has_error(errs, test_path, 5, "address"));
    CHECK(has_error(errs, test_path, 8, "unknown key 'colour'"));
    CHECK(has_error(errs, test_path, 7, "unknown provider"));
    CHECK(has_error(errs, test_path, 6, "missing key 'username'"));
    CHECK(has_error(errs, test_path, 6, "missing key 'flow'"));
    CHECK(has_error(errs, test_path, 6, "nobody can use it"));
    CHECK(count_lines(errs) == 7);
    config_free(cfg);
    free(errs);
}

static void test_unreadable(void)
{
    char missing[200];
    snprintf(missing, sizeof missing, "%s/does-not-exist.ini", test_dir);
    char *errs = NULL;
    struct config *cfg = load_file(missing, &errs);
    CHECK(cfg == NULL);
    CHECK(has_error(errs, missing, 0, "cannot read: No such file or directory"));
    free(errs);

    errs = NULL;
    cfg = load_file(test_dir, &errs); /* a directory */
    CHECK(cfg == NULL);
    CHECK(has_error(errs, test_dir, 0, "cannot read: Is a directory"));
    free(errs);

    /* A NULL err stream is allowed: loading still fails quietly. */
    CHECK(config_load(missing, NULL) == NULL);
}

static void test_example_file(void)
{
    const char *srcdir = getenv("XOAUTHD_TEST_SRCDIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/../conf/xoauthd.ini", srcdir != NULL ? srcdir : "tests");
    char *errs = NULL;
    struct config *cfg = load_file(path, &errs);
    CHECK(cfg != NULL);
    CHECK(errs[0] == '\0');
    if (errs[0] != '\0')
        fprintf(stderr, "%s", errs);
    if (cfg != NULL) {
        CHECK(cfg->n_listens >= 2 && cfg->n_accounts >= 3);
        CHECK(config_find_provider(cfg, "google") != NULL);
        CHECK(config_find_provider(cfg, "microsoft") != NULL);
    }
    config_free(cfg);
    free(errs);
}

/* A file of the source tree (relative to its top), malloc'ed, or NULL. */
static char *read_source_file(const char *rel)
{
    const char *srcdir = getenv("XOAUTHD_TEST_SRCDIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/../%s", srcdir != NULL ? srcdir : "tests", rel);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    int c;
    while (mem != NULL && (c = fgetc(f)) != EOF)
        fputc(c, mem);
    fclose(f);
    if (mem != NULL)
        fclose(mem);
    return text;
}

/* The value of the first line of text starting with prefix ("" when there is none). */
static void doc_value(const char *text, const char *prefix, char *out, size_t outsz)
{
    out[0] = '\0';
    size_t n = strlen(prefix);
    for (const char *p = text;;) {
        const char *eol = strchr(p, '\n');
        if (strncmp(p, prefix, n) == 0) {
            int len = (int)(eol != NULL ? (size_t)(eol - p - n) : strlen(p + n));
            snprintf(out, outsz, "%.*s", len, p + n);
            return;
        }
        if (eol == NULL)
            return;
        p = eol + 1;
    }
}

/* allowed_senders as README.md and conf/xoauthd.ini document it: their example loads, and
 * does what the text next to it says; a bad entry names the file and line. */
static void test_allowed_senders_documented(void)
{
    static const struct {
        const char *file, *prefix;
    } docs[] = {
        {"README.md", "allowed_senders = "},
        {"conf/xoauthd.ini", ";allowed_senders = "},
    };
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        char *text = read_source_file(docs[i].file);
        CHECK(text != NULL);
        char value[256];
        doc_value(text != NULL ? text : "", docs[i].prefix, value, sizeof value);
        free(text);
        CHECK(value[0] != '\0');
        if (value[0] == '\0') {
            fprintf(stderr, "%s has no example line \"%s...\"\n", docs[i].file, docs[i].prefix);
            continue;
        }
        char tmpl[1024];
        snprintf(tmpl, sizeof tmpl, DEVICE_CODE_HEAD "allowed_senders = %s\n", value);
        struct config *cfg = load_ok(tmpl);
        CHECK(cfg != NULL);
        const struct config_account *a = cfg != NULL ? config_find_account(cfg, "a") : NULL;
        CHECK(a != NULL);
        if (a == NULL) {
            config_free(cfg);
            continue;
        }
        CHECK(a->n_allowed_senders == 3);
        /* An address, case-insensitive; *@domain: that domain, not its subdomains; <>. */
        CHECK(sender_rules_allowed(a, "SCAN@Printer.Local", 18));
        CHECK(sender_rules_allowed(a, "mfp1@scanners.contoso.com", 25));
        CHECK(!sender_rules_allowed(a, "mfp1@x.scanners.contoso.com", 27));
        CHECK(sender_rules_allowed(a, "", 0));
        CHECK(!sender_rules_allowed(a, "ceo@contoso.com", 15));
        config_free(cfg);
    }
    /* Lines 1-7 are DEVICE_CODE_HEAD. */
    CHECK(expect_error_after(DEVICE_CODE_HEAD, "allowed_senders = a@b.c, printer\n", 8,
                             "bad entry \"printer\" in allowed_senders of [account a]"));
    CHECK(expect_error_after(DEVICE_CODE_HEAD, "allowed_senders = <a@b.c>\n", 8,
                             "in allowed_senders"));
    CHECK(expect_error_after(DEVICE_CODE_HEAD, "allowed_senders = a*@b.c\n", 8,
                             "in allowed_senders"));
}

/* auth_lockout = FAILURES/WINDOW/DURATION and auth_lockout_exempt in [xoauthd]. */
static void test_auth_lockout(void)
{
    struct config *cfg = load_ok("[xoauthd]\n" OK_TAIL);
    CHECK(cfg != NULL && cfg->auth_lockout_failures == 10 && cfg->auth_lockout_window == 600 &&
          cfg->auth_lockout_duration == 900 && cfg->n_auth_lockout_exempt == 0);
    config_free(cfg);
    cfg = load_ok("[xoauthd]\nauth_lockout = 5/90/2h\n"
                  "auth_lockout_exempt = 10.0.0.0/8, 192.0.2.7, 2001:db8::/32\n" OK_TAIL);
    CHECK(cfg != NULL && cfg->auth_lockout_failures == 5 && cfg->auth_lockout_window == 90 &&
          cfg->auth_lockout_duration == 7200 && cfg->n_auth_lockout_exempt == 3);
    if (cfg != NULL && cfg->n_auth_lockout_exempt == 3)
        CHECK(cfg->auth_lockout_exempt[1].prefix == 32 &&
              cfg->auth_lockout_exempt[2].net.ss_family == AF_INET6 &&
              cfg->auth_lockout_exempt[2].prefix == 32);
    config_free(cfg);
    cfg = load_ok("[xoauthd]\nauth_lockout = 32/7d/1s\n" OK_TAIL);
    CHECK(cfg != NULL && cfg->auth_lockout_failures == 32 && cfg->auth_lockout_window == 604800 &&
          cfg->auth_lockout_duration == 1);
    config_free(cfg);
    static const struct bad_file bad[] = {
        {"[xoauthd]\nauth_lockout = 10/10m\n", 2, "'auth_lockout' in [xoauthd]: expected "
         "FAILURES/WINDOW/DURATION"},
        {"[xoauthd]\nauth_lockout = 0/10m/15m\n", 2, "'auth_lockout'"},
        {"[xoauthd]\nauth_lockout = 33/10m/15m\n", 2, "'auth_lockout'"},
        {"[xoauthd]\nauth_lockout = 10/10x/15m\n", 2, "'auth_lockout'"},
        {"[xoauthd]\nauth_lockout = 10/m/15m\n", 2, "'auth_lockout'"},
        {"[xoauthd]\nauth_lockout = 10/0/15m\n", 2, "'auth_lockout'"},
        {"[xoauthd]\nauth_lockout = 10/10m/8d\n", 2, "'auth_lockout'"},
        {"[xoauthd]\nauth_lockout = 10/10m/15m/1\n", 2, "'auth_lockout'"},
        {"[xoauthd]\nauth_lockout = 10/99999999999999999999d/15m\n", 2, "'auth_lockout'"},
        {"[xoauthd]\nauth_lockout = 10/-1m/15m\n", 2, "'auth_lockout'"},
        {"[xoauthd]\nauth_lockout = 123456789/1m/15m\n", 2, "'auth_lockout'"},
        {"[xoauthd]\nauth_lockout_exempt = 10.0.0.1/8\n", 2,
         "network 10.0.0.1/8 in auth_lockout_exempt of [xoauthd] has host bits set"},
        {"[xoauthd]\nauth_lockout_exempt = 10.0.0.0/33\n", 2,
         "bad network \"10.0.0.0/33\" in auth_lockout_exempt of [xoauthd]"},
        {"[xoauthd]\nauth_lockout_exempt = 127.0.0.1,\n", 2, "'auth_lockout_exempt'"},
    };
    EXPECT_BAD_FILES(bad);
}

int main(void)
{
    snprintf(test_dir, sizeof test_dir, "/tmp/xoauthd-test-config-XXXXXX");
    if (mkdtemp(test_dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(test_path, sizeof test_path, "%s/t.ini", test_dir);
    test_hash = localauth_hash("test password", 13);
    if (test_hash == NULL)
        return 1;

    test_full();
    test_holds();
    test_defaults_and_presets();
    test_reader_errors();
    test_nul_byte();
    test_value_errors();
    test_provider_errors();
    test_account_errors();
    test_path_scopes();
    test_auth_lockout();
    test_all_errors_reported();
    test_unreadable();
    test_example_file();
    test_allowed_senders_documented();

    free(test_hash);
    unlink(test_path);
    rmdir(test_dir);
    return CHECK_DONE();
}
