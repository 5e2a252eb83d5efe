/* Unit tests for the key tables (config_keys.h) and the loader they drive: every row of every
 * type takes its bounds and allowed values and refuses the rest with the row's "expected"
 * text, every documented default is what a file without the key gets, secrets are what the
 * permission check looks for, and contrib/man/xoauthd.ini.5 lists exactly the table's keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "config_keys.h"

static char test_dir[64];
static char test_path[128];

/* A file with every section, reachable without a password hash; KEY_LINE goes into the section
 * of the key under test, in place of the base line of the same key. */
static const char *const base_lines[4][12] = {
    [CONFIG_SEC_MAIN] = {NULL},
    [CONFIG_SEC_LISTEN] = {"protocol = imap", "address = 127.0.0.1:1143", "tls_cert = /c.pem",
                           "tls_key = /k.pem", "proxy_trusted = 127.0.0.1",
                           "allow_networks = 127.0.0.1 -> a", NULL},
    [CONFIG_SEC_PROVIDER] = {"token_url = https://127.0.0.1/token", NULL},
    [CONFIG_SEC_ACCOUNT] = {"provider = p", "username = a@example.com", "flow = device_code",
                            "client_id = c", "client_secret = s", "access_token = t",
                            "upstream_password = u", "token_command = echo t", NULL},
};
static const char *const headers[4] = {"[xoauthd]", "[listen l]", "[provider p]", "[account a]"};

/* Writes the file with line (may be NULL) in section type; returns the line number it got. */
static int write_with(enum config_sec_type type, const char *key, const char *line)
{
    FILE *f = fopen(test_path, "w");
    int n = 0, at = 0;
    if (f == NULL)
        abort();
    for (int s = 0; s < 4; s++) {
        fprintf(f, "%s\n", headers[s]);
        n++;
        for (size_t i = 0; base_lines[s][i] != NULL; i++) {
            size_t kl = strlen(key);
            if ((int)type == s && strncmp(base_lines[s][i], key, kl) == 0 &&
                base_lines[s][i][kl] == ' ')
                continue;
            fprintf(f, "%s\n", base_lines[s][i]);
            n++;
        }
        if ((int)type == s && line != NULL) {
            fprintf(f, "%s\n", line);
            at = ++n;
        }
    }
    fclose(f);
    return at;
}

static struct config *load(char **errs)
{
    size_t len = 0;
    FILE *err = open_memstream(errs, &len);
    if (err == NULL)
        abort();
    struct config *cfg = config_load(test_path, err);
    fclose(err);
    return cfg;
}

/* The struct a row of section type fills, in cfg. */
static void *section_obj(struct config *cfg, enum config_sec_type type)
{
    switch (type) {
    case CONFIG_SEC_MAIN:
        return cfg;
    case CONFIG_SEC_LISTEN:
        return &cfg->listens[0];
    case CONFIG_SEC_PROVIDER:
        return (void *)config_find_provider(cfg, "p");
    case CONFIG_SEC_ACCOUNT:
        return (void *)config_find_account(cfg, "a");
    }
    return NULL;
}

static unsigned long long field_value(const struct config_key *k, void *obj)
{
    const char *f = (const char *)obj + k->offset;
    if (k->type == CONFIG_KEY_SIZE)
        return *(const size_t *)(const void *)f;
    if (k->type == CONFIG_KEY_UINT)
        return *(const unsigned *)(const void *)f;
    return (unsigned long long)*(const int *)(const void *)f;
}

/* key = value loads and stores want (want < 0: only loads). */
static int accepts(enum config_sec_type type, const struct config_key *k, const char *value,
                   long long want)
{
    char line[256], *errs = NULL;
    snprintf(line, sizeof line, "%s = %s", k->name, value);
    write_with(type, k->name, line);
    struct config *cfg = load(&errs);
    int ok = cfg != NULL && errs[0] == '\0';
    if (ok && want >= 0)
        ok = field_value(k, section_obj(cfg, type)) == (unsigned long long)want;
    if (!ok)
        fprintf(stderr, "%s = %s: expected %lld, got:\n%s", k->name, value, want, errs);
    config_free(cfg);
    free(errs);
    return ok;
}

/* key = value is refused on its line, saying what the row accepts. */
static int refuses(enum config_sec_type type, const struct config_key *k, const char *value)
{
    char line[256], want[512], *errs = NULL;
    snprintf(line, sizeof line, "%s = %s", k->name, value);
    int at = write_with(type, k->name, line);
    snprintf(want, sizeof want, "%s:%d: bad value \"%s\" for key '%s' in %s: expected %s\n",
             test_path, at, value, k->name, headers[type], k->accepted);
    struct config *cfg = load(&errs);
    int ok = cfg == NULL && strstr(errs, want) != NULL;
    if (!ok)
        fprintf(stderr, "wanted %s--- got:\n%s", want, errs);
    config_free(cfg);
    free(errs);
    return ok;
}

static void test_rows(void)
{
    for (size_t t = 0; t < 4; t++) {
        const struct config_key_table *tab = &config_key_tables[t];
        CHECK(config_key_table(tab->type) == tab);
        for (size_t i = 0; i < tab->n_keys; i++) {
            const struct config_key *k = &tab->keys[i];
            char v[32];
            CHECK(config_key_find(tab->type, k->name) == k);
            CHECK(k->doc != NULL && strchr(k->doc, '\n') == NULL);
            switch (k->type) {
            case CONFIG_KEY_UINT:
            case CONFIG_KEY_SIZE:
                CHECK(k->accepted != NULL);
                snprintf(v, sizeof v, "%llu", k->min);
                CHECK(accepts(tab->type, k, v, (long long)k->min));
                snprintf(v, sizeof v, "%llu", k->max);
                CHECK(accepts(tab->type, k, v, (long long)k->max));
                snprintf(v, sizeof v, "%llu", k->max + 1);
                CHECK(refuses(tab->type, k, v));
                if (k->min > 0) {
                    snprintf(v, sizeof v, "%llu", k->min - 1);
                    CHECK(refuses(tab->type, k, v));
                }
                CHECK(refuses(tab->type, k, "-1"));
                CHECK(refuses(tab->type, k, "ten"));
                break;
            case CONFIG_KEY_ENUM:
                CHECK(k->accepted != NULL && k->values != NULL);
                for (int e = 0; k->values[e] != NULL; e++)
                    CHECK(accepts(tab->type, k, k->values[e], k->base + e));
                CHECK(refuses(tab->type, k, "bogus"));
                break;
            case CONFIG_KEY_BOOL:
                CHECK(accepts(tab->type, k, "yes", 1));
                CHECK(accepts(tab->type, k, "off", 0));
                CHECK(refuses(tab->type, k, "maybe"));
                break;
            case CONFIG_KEY_CUSTOM:
                CHECK(k->parse != NULL);
                break;
            default:
                break;
            }
        }
    }
}

/* A file without the key has its documented default. */
static void test_defaults(void)
{
    char *errs = NULL;
    write_with(CONFIG_SEC_MAIN, "", NULL);
    struct config *cfg = load(&errs);
    CHECK(cfg != NULL && errs[0] == '\0');
    for (size_t t = 0; cfg != NULL && t < 4; t++) {
        const struct config_key_table *tab = &config_key_tables[t];
        void *obj = section_obj(cfg, tab->type);
        for (size_t i = 0; i < tab->n_keys; i++) {
            const struct config_key *k = &tab->keys[i];
            if (k->def == NULL)
                continue;
            unsigned long long want = 0;
            if (k->type == CONFIG_KEY_UINT || k->type == CONFIG_KEY_SIZE) {
                want = strtoull(k->def, NULL, 10);
            } else if (k->type == CONFIG_KEY_ENUM) {
                int e = 0;
                while (k->values[e] != NULL && strcmp(k->values[e], k->def) != 0)
                    e++;
                CHECK(k->values[e] != NULL);
                want = (unsigned long long)(k->base + e);
            } else if (k->type == CONFIG_KEY_BOOL) {
                want = strcmp(k->def, "yes") == 0;
            } else {
                continue;
            }
            if (field_value(k, obj) != want)
                fprintf(stderr, "default of %s is not %s\n", k->name, k->def);
            CHECK(field_value(k, obj) == want);
        }
    }
    if (cfg != NULL) {
        CHECK(strcmp(cfg->state_dir, "/var/lib/xoauthd") == 0 && cfg->log_level == LOG_INFO);
        const struct config_account *a = config_find_account(cfg, "a");
        CHECK(a != NULL && a->n_submit == 1 && a->submit[0] == CONFIG_SUBMIT_SMTP);
    }
    config_free(cfg);
    free(errs);
}

/* The secret rows are what the permission check counts; their twins are not secrets. */
static void test_secrets(void)
{
    static const char *const secrets[] = {"local_password", "client_secret", "upstream_password",
                                          "refresh_token", "access_token"};
    size_t n = 0;
    for (size_t t = 0; t < 4; t++)
        for (size_t i = 0; i < config_key_tables[t].n_keys; i++)
            n += config_key_tables[t].keys[i].secret != 0;
    CHECK(n == sizeof secrets / sizeof secrets[0]);
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++) {
        const struct config_key *k = config_key_find(CONFIG_SEC_ACCOUNT, secrets[i]);
        char twin[64];
        snprintf(twin, sizeof twin, "%s_file", secrets[i]);
        CHECK(k != NULL && k->secret);
        CHECK(config_key_twin(CONFIG_SEC_ACCOUNT, twin) == k);
        CHECK(config_key_find(CONFIG_SEC_ACCOUNT, twin) == NULL);
    }
    CHECK(config_key_twin(CONFIG_SEC_ACCOUNT, "username_file") == NULL);
    CHECK(config_key_twin(CONFIG_SEC_ACCOUNT, "_file") == NULL);
    CHECK(config_key_twin(CONFIG_SEC_MAIN, "client_secret_file") == NULL);
    /* client_secret is the account's fifth line, line 16 of the file. */
    char *errs = NULL;
    write_with(CONFIG_SEC_MAIN, "", NULL);
    struct config *cfg = load(&errs);
    CHECK(cfg != NULL && cfg->secret_line == 16 && strcmp(cfg->secret_key, "client_secret") == 0);
    config_free(cfg);
    free(errs);
}

/* Lines inih reads itself (short, no ';') and lines the reader keeps from it (longer than
 * inih's 200 bytes, or with a ';' that inih would take for a comment) give the same value. */
static void test_line_lengths(void)
{
    static const char *const tails[] = {"", " ; not a comment", ";x", " # kept"};
    for (size_t len = 150; len <= 260; len++) {
        for (size_t t = 0; t < sizeof tails / sizeof tails[0]; t++) {
            char value[400], line[512], *errs = NULL;
            memset(value, 'v', len);
            snprintf(value + len, sizeof value - len, "%s", tails[t]);
            snprintf(line, sizeof line, "client_id =\t %s \t", value);
            write_with(CONFIG_SEC_ACCOUNT, "client_id", line);
            struct config *cfg = load(&errs);
            const struct config_account *a = cfg != NULL ? config_find_account(cfg, "a") : NULL;
            int ok = a != NULL && strcmp(a->client_id, value) == 0;
            if (!ok)
                fprintf(stderr, "client_id of %zu bytes + \"%s\": %s\n", len, tails[t], errs);
            CHECK(ok);
            config_free(cfg);
            free(errs);
        }
    }
}

/* ---- the man page ---- */

static char *read_source_file(const char *rel)
{
    const char *srcdir = getenv("XOAUTHD_TEST_SRCDIR");
    char path[1024], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/../%s", srcdir != NULL ? srcdir : "tests", rel);
    FILE *f = fopen(path, "rb"), *mem = open_memstream(&text, &len);
    int c;
    while (f != NULL && mem != NULL && (c = fgetc(f)) != EOF)
        fputc(c, mem);
    if (f != NULL)
        fclose(f);
    if (mem != NULL)
        fclose(mem);
    if (f == NULL) {
        free(text);
        return NULL;
    }
    return text;
}

struct man_keys {
    char section[32];
    char names[64][40];
    size_t n;
};

/* The keys named by the .TP entries of each .SH "[SECTION]" of man(7) text: the bold words of
 * the line after .TP (.B KEY, .BR KEY " roman" KEY2 ..., .BI KEY " roman"). */
static size_t man_keys(const char *text, struct man_keys *out, size_t max)
{
    size_t n = 0;
    struct man_keys *cur = NULL;
    int after_tp = 0;
    for (const char *p = text; p != NULL && *p != '\0';) {
        const char *eol = strchr(p, '\n');
        size_t len = eol != NULL ? (size_t)(eol - p) : strlen(p);
        char line[512];
        snprintf(line, sizeof line, "%.*s", (int)len, p);
        p = eol != NULL ? eol + 1 : NULL;
        if (strncmp(line, ".SH ", 4) == 0) {
            cur = NULL;
            char *lb = strchr(line, '['), *rb = strchr(line, ']');
            if (lb != NULL && rb != NULL && n < max) {
                cur = &out[n++];
                memset(cur, 0, sizeof *cur);
                snprintf(cur->section, sizeof cur->section, "%.*s", (int)(rb - lb - 1), lb + 1);
            }
            continue;
        }
        if (strcmp(line, ".TP") == 0) {
            after_tp = 1;
            continue;
        }
        if (!after_tp || cur == NULL)
            continue;
        after_tp = 0;
        int bold_every_other = strncmp(line, ".BR ", 4) == 0 || strncmp(line, ".BI ", 4) == 0;
        if (!bold_every_other && strncmp(line, ".B ", 3) != 0)
            continue;
        char *q = line + (bold_every_other ? 4 : 3);
        for (int arg = 0; *q != '\0'; arg++) {
            while (*q == ' ')
                q++;
            char word[128];
            size_t w = 0;
            if (*q == '"') {
                for (q++; *q != '\0' && *q != '"'; q++)
                    if (w + 1 < sizeof word)
                        word[w++] = *q;
                if (*q == '"')
                    q++;
            } else {
                for (; *q != '\0' && *q != ' '; q++)
                    if (w + 1 < sizeof word)
                        word[w++] = *q;
            }
            word[w] = '\0';
            if (w > 0 && (arg % 2 == 0 || !bold_every_other) && cur->n < 64)
                snprintf(cur->names[cur->n++], sizeof cur->names[0], "%s", word);
            if (!bold_every_other)
                break;
        }
    }
    return n;
}

static int man_has(const struct man_keys *m, const char *name)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->names[i], name) == 0)
            return 1;
    return 0;
}

/* Every key and twin of the table is in the text's section, and nothing else is. */
static int man_agrees(const char *what, const char *text)
{
    static struct man_keys found[16];
    size_t n = man_keys(text, found, 16);
    int ok = 1;
    for (size_t t = 0; t < 4; t++) {
        const struct config_key_table *tab = &config_key_tables[t];
        const struct man_keys *m = NULL;
        for (size_t i = 0; i < n; i++)
            if (strcmp(found[i].section, tab->section) == 0)
                m = &found[i];
        if (m == NULL) {
            fprintf(stderr, "%s has no section [%s]\n", what, tab->section);
            ok = 0;
            continue;
        }
        size_t want = 0;
        for (size_t i = 0; i < tab->n_keys; i++) {
            const struct config_key *k = &tab->keys[i];
            char twin[64];
            snprintf(twin, sizeof twin, "%s_file", k->name);
            want += 1 + (k->secret != 0);
            if (!man_has(m, k->name) || (k->secret && !man_has(m, twin))) {
                fprintf(stderr, "%s: [%s] does not list %s%s\n", what, tab->section, k->name,
                        k->secret ? " or its _file twin" : "");
                ok = 0;
            }
        }
        for (size_t i = 0; i < m->n; i++) {
            if (config_key_find(tab->type, m->names[i]) == NULL &&
                config_key_twin(tab->type, m->names[i]) == NULL) {
                fprintf(stderr, "%s: [%s] lists %s, which is no key\n", what, tab->section,
                        m->names[i]);
                ok = 0;
            }
        }
        if (m->n != want) {
            fprintf(stderr, "%s: [%s] lists %zu keys, the table has %zu\n", what, tab->section,
                    m->n, want);
            ok = 0;
        }
    }
    return ok;
}

static void test_man_page(void)
{
    char *page = read_source_file("contrib/man/xoauthd.ini.5");
    CHECK(page != NULL);
    if (page != NULL)
        CHECK(man_agrees("contrib/man/xoauthd.ini.5", page));
    free(page);
    /* What `xoauthd config-keys` prints agrees with the table by the same reading. */
    char *printed = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&printed, &len);
    CHECK(out != NULL);
    if (out == NULL)
        return;
    config_keys_print_man(out);
    fclose(out);
    CHECK(man_agrees("config_keys_print_man", printed));
    CHECK(strstr(printed, ".BR state_dir \" (default /var/lib/xoauthd)\"\n") != NULL);
    CHECK(strstr(printed, ".TP\n.B refresh_token_file\n") != NULL);
    free(printed);
}

int main(void)
{
    snprintf(test_dir, sizeof test_dir, "/tmp/xoauthd-test-config-keys-XXXXXX");
    if (mkdtemp(test_dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(test_path, sizeof test_path, "%s/t.ini", test_dir);
    test_rows();
    test_defaults();
    test_secrets();
    test_line_lengths();
    test_man_page();
    unlink(test_path);
    rmdir(test_dir);
    return CHECK_DONE();
}
