/* config: INI file -> struct config, with every problem reported as FILE:LINE. See config.h.
 *
 * Why a custom reader in front of inih: Debian's libinih is built with a 200-byte line limit
 * (longer lines are cut silently) and with inline comments on (" ;" ends a value). Refresh
 * tokens are 1-2 KB and secrets may contain ';', so inih must never see a value. config_reader
 * reads the file itself line by line (any length), counts lines, and hands inih a surrogate:
 *   "key = value"  ->  "key="      (the real key and trimmed value wait in the loader)
 *   "[type name]"  ->  "[type name]" (checked and normalized; the section is recorded here,
 *                                     so that a section without keys still exists)
 *   comment, blank ->  ""
 * inih calls the handler right after the reader returned that line, so the handler takes the
 * stashed value and the current line number from the loader. Lines inih would misread are
 * reported here and handed over as "": a line starting with whitespace (inih would glue it to
 * the previous value as a continuation) and a line without '='. A value is everything after
 * the first '=', trimmed; there are no inline comments.
 *
 * After parsing, each section is turned into its struct and validated; cross-references
 * (account -> provider, allow_networks -> account, local users) are checked last. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>
#include <openssl/crypto.h>

#include "authlimit.h"
#include "localauth.h"
#include "netaddr.h"
#include "secmem.h"

#define CONFIG_NAME_MAX 64 /* section names and key names */
#define CONFIG_DEFAULT_STATE_DIR "/var/lib/xoauthd"
#define CONFIG_DEFAULT_MAX_MESSAGE 36700160u
#define CONFIG_DEFAULT_TOKEN_TIMEOUT 30u
#define CONFIG_DEFAULT_REFRESH_MARGIN 300u
#define CONFIG_N_PRESETS 2

enum config_sec_type { CONFIG_SEC_MAIN, CONFIG_SEC_LISTEN, CONFIG_SEC_PROVIDER, CONFIG_SEC_ACCOUNT };

struct config_kv {
    char *key;
    char *value; /* may be a secret: cleansed on free */
    int line;
};

struct config_section {
    enum config_sec_type type;
    char *name;      /* NULL for [xoauthd] */
    char label[96];  /* "[listen submission]", for messages */
    int line;
    struct config_kv *kv;
    size_t n_kv, cap_kv;
};

struct config_loader {
    const char *path;
    FILE *err;
    int errors;
    int oom;
    FILE *fp;
    char *buf;
    size_t bufcap;
    int lineno;
    int read_errno;
    char iobuf[4096]; /* ld->fp's buffer */
    struct config_section *sections;
    size_t n_sections, cap_sections;
    long cur; /* index of the current section; CONFIG_CUR_NONE / CONFIG_CUR_SKIP otherwise */
    char *pending_key;
    char *pending_value;
    struct config *cfg;
};

#define CONFIG_CUR_NONE (-1L) /* before the first section header */
#define CONFIG_CUR_SKIP (-2L) /* inside a section that was rejected: its keys are ignored */

static const char *const config_protocol_names[] = {"smtp", "imap", "pop3"};
static const char *const config_tls_names[] = {"none", "starttls", "implicit"};
static const char *const config_plaintext_names[] = {"loopback", "always", "never"};
static const char *const config_flow_names[] = {"static", "refresh_token", "client_credentials",
                                                "password", "device_code",
                                                "authorization_code", "command"};
static const char *const config_mech_names[] = {"xoauth2", "oauthbearer"};
static const char *const config_submit_names[] = {"smtp", "ews", "graph"};
static const char *const config_envfrom_names[] = {"keep", "account"};
static const char *const config_hdrfrom_names[] = {"keep", "account", "account-with-name"};

#define CONFIG_COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- small helpers ---- */

static void config_error(struct config_loader *ld, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void config_error(struct config_loader *ld, int line, const char *fmt, ...)
{
    ld->errors++;
    if (ld->err == NULL)
        return;
    va_list ap;
    fprintf(ld->err, "%s:%d: ", ld->path, line);
    va_start(ap, fmt);
    vfprintf(ld->err, fmt, ap);
    va_end(ap);
    fputc('\n', ld->err);
}

static char *config_strdup(struct config_loader *ld, const char *s)
{
    char *d = strdup(s);
    if (d == NULL)
        ld->oom = 1;
    return d;
}

static void config_free_secret(char *s)
{
    if (s != NULL) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

/* Replaces *dst with a copy of v, or NULL when v is empty: an empty value means "not set". */
static void config_set_str(struct config_loader *ld, char **dst, const char *v)
{
    config_free_secret(*dst);
    *dst = *v != '\0' ? config_strdup(ld, v) : NULL;
}

static int config_is_space(char c) { return c == ' ' || c == '\t'; }

/* Trims spaces and tabs in place; returns the new start. */
static char *config_trim(char *s)
{
    while (config_is_space(*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && config_is_space(s[n - 1]))
        s[--n] = '\0';
    return s;
}

static int config_enum(const char *v, const char *const *names, size_t n, int *out)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v, names[i]) == 0) {
            *out = (int)i;
            return 0;
        }
    }
    return -1;
}

static int config_uint(const char *v, unsigned long long min, unsigned long long max,
                       unsigned long long *out)
{
    unsigned long long n = 0;
    if (*v == '\0')
        return -1;
    for (; *v != '\0'; v++) {
        if (*v < '0' || *v > '9')
            return -1;
        n = n * 10 + (unsigned long long)(*v - '0');
        if (n > max)
            return -1;
    }
    if (n < min)
        return -1;
    *out = n;
    return 0;
}

static int config_bool(const char *v, int *out)
{
    if (strcmp(v, "yes") == 0 || strcmp(v, "true") == 0 || strcmp(v, "on") == 0 ||
        strcmp(v, "1") == 0) {
        *out = 1;
        return 0;
    }
    if (strcmp(v, "no") == 0 || strcmp(v, "false") == 0 || strcmp(v, "off") == 0 ||
        strcmp(v, "0") == 0) {
        *out = 0;
        return 0;
    }
    return -1;
}

/* Section and account names end up in file names (token store) and log lines. */
static int config_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CONFIG_NAME_MAX)
        return 0;
    if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') ||
          (s[0] >= '0' && s[0] <= '9')))
        return 0;
    for (; *s != '\0'; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return 0;
    }
    return 1;
}

static int config_key_ok(const char *s, size_t n)
{
    if (n == 0 || n > CONFIG_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* A value quoted for an error message. Never used for secrets. */
static const char *config_q(char *buf, size_t sz, const char *v)
{
    return log_quote(buf, sz, v, strlen(v));
}

static void config_bad_value(struct config_loader *ld, const struct config_section *sec,
                             const struct config_kv *kv, const char *accepted)
{
    char q[128];
    config_error(ld, kv->line, "bad value %s for key '%s' in %s: expected %s",
                 config_q(q, sizeof q, kv->value), kv->key, sec->label, accepted);
}

static void config_unknown_key(struct config_loader *ld, const struct config_section *sec,
                               const struct config_kv *kv)
{
    config_error(ld, kv->line, "unknown key '%s' in %s", kv->key, sec->label);
}

static const struct config_kv *config_sec_kv(const struct config_section *sec, const char *key)
{
    if (sec == NULL)
        return NULL;
    for (size_t i = 0; i < sec->n_kv; i++)
        if (strcmp(sec->kv[i].key, key) == 0)
            return &sec->kv[i];
    return NULL;
}

/* ---- addresses ---- */

static int config_host_name_ok(const char *h)
{
    size_t n = strlen(h);
    if (n == 0 || n > 253)
        return 0;
    for (; *h != '\0'; h++) {
        char c = *h;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

/* Splits "host:port" or "[v6]:port". numeric: the host must be an IP address (listeners bind
 * to what is written; a name would be resolved at a surprising time). On error *why says what
 * is wrong. Returns 0 or -1; *host is malloc'ed. */
static int config_hostport(struct config_loader *ld, const char *v, int numeric, char **host,
                           uint16_t *port, const char **why)
{
    char buf[300];
    char *h, *p;
    unsigned long long pn;
    struct in_addr a4;
    struct in6_addr a6;
    *why = "HOST:PORT or [IPV6]:PORT";
    if (strlen(v) >= sizeof buf)
        return -1;
    strcpy(buf, v);
    if (buf[0] == '[') {
        char *end = strchr(buf, ']');
        if (end == NULL || end[1] != ':')
            return -1;
        *end = '\0';
        h = buf + 1;
        p = end + 2;
        if (inet_pton(AF_INET6, h, &a6) != 1) {
            *why = "an IPv6 address inside [ ]";
            return -1;
        }
    } else {
        char *colon = strrchr(buf, ':');
        if (colon == NULL)
            return -1;
        *colon = '\0';
        h = buf;
        p = colon + 1;
        if (strchr(h, ':') != NULL) {
            *why = "[IPV6]:PORT (an IPv6 address needs brackets)";
            return -1;
        }
        if (numeric && inet_pton(AF_INET, h, &a4) != 1) {
            *why = "a numeric IP address as HOST (IPV4:PORT or [IPV6]:PORT)";
            return -1;
        }
        if (!numeric && !config_host_name_ok(h))
            return -1;
    }
    if (config_uint(p, 0, 99999, &pn) < 0)
        return -1;
    if (pn < 1 || pn > 65535) {
        *why = "a port from 1 to 65535";
        return -1;
    }
    *host = config_strdup(ld, h);
    *port = (uint16_t)pn;
    return *host != NULL ? 0 : -1;
}

/* Extracts the host of an http(s) URL into host (without brackets). Returns 1 for https,
 * 0 for http, -1 when v is not such a URL. */
static int config_url_host(const char *v, char *host, size_t hostsz)
{
    const char *p;
    int https;
    if (strncasecmp(v, "https://", 8) == 0) {
        https = 1;
        p = v + 8;
    } else if (strncasecmp(v, "http://", 7) == 0) {
        https = 0;
        p = v + 7;
    } else {
        return -1;
    }
    for (const char *c = v; *c != '\0'; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f)
            return -1;
    size_t alen = strcspn(p, "/?#");
    if (memchr(p, '@', alen) != NULL)
        return -1; /* credentials in the URL: never */
    size_t hlen;
    if (*p == '[') {
        const char *end = memchr(p, ']', alen);
        if (end == NULL)
            return -1;
        p++;
        hlen = (size_t)(end - p);
    } else {
        hlen = strcspn(p, ":/?#");
    }
    if (hlen == 0 || hlen >= hostsz)
        return -1;
    memcpy(host, p, hlen);
    host[hlen] = '\0';
    return https;
}

/* A token/EWS/Graph URL: https, or http to a loopback host only. */
static void config_url(struct config_loader *ld, const struct config_section *sec,
                       const struct config_kv *kv, char **dst)
{
    char host[300];
    if (kv->value[0] == '\0') {
        config_set_str(ld, dst, "");
        return;
    }
    int https = config_url_host(kv->value, host, sizeof host);
    if (https < 0) {
        config_bad_value(ld, sec, kv, "an https:// URL");
        return;
    }
    if (!https && !netaddr_host_is_loopback(host)) {
        config_error(ld, kv->line,
                     "key '%s' in %s: http:// is allowed only to a loopback host; use https://",
                     kv->key, sec->label);
        return;
    }
    config_set_str(ld, dst, kv->value);
}

static void config_endpoint_clear(struct config_endpoint *ep)
{
    free(ep->host);
    memset(ep, 0, sizeof *ep);
}

/* "host:port starttls|implicit|none"; an empty value removes the endpoint. */
static void config_endpoint(struct config_loader *ld, const struct config_section *sec,
                            const struct config_kv *kv, struct config_endpoint *ep)
{
    static const char accepted[] = "HOST:PORT starttls|implicit|none";
    char buf[300];
    char *host = NULL;
    uint16_t port;
    int mode;
    const char *why;
    if (kv->value[0] == '\0') {
        config_endpoint_clear(ep);
        return;
    }
    if (strlen(kv->value) >= sizeof buf)
        goto bad;
    strcpy(buf, kv->value);
    char *sp = buf + strcspn(buf, " \t");
    if (*sp == '\0')
        goto bad;
    *sp++ = '\0';
    char *modestr = config_trim(sp);
    if (config_enum(modestr, config_tls_names, CONFIG_COUNT(config_tls_names), &mode) < 0)
        goto bad;
    if (config_hostport(ld, buf, 0, &host, &port, &why) < 0)
        goto bad;
    if (mode == CONFIG_TLS_NONE && !netaddr_host_is_loopback(host)) {
        config_error(ld, kv->line,
                     "key '%s' in %s: a plain-text upstream (none) is allowed only to a loopback "
                     "host; use starttls or implicit",
                     kv->key, sec->label);
        free(host);
        return;
    }
    config_endpoint_clear(ep);
    ep->present = 1;
    ep->host = host;
    ep->port = port;
    ep->tls = (enum config_tls)mode;
    return;
bad:
    free(host);
    config_bad_value(ld, sec, kv, accepted);
}

/* One network of allow_networks: "10.0.0.0/24", "2001:db8::/32", or a bare address (one host).
 * Returns 0, or -1 after reporting. */
static int config_cidr(struct config_loader *ld, const struct config_section *sec,
                       const struct config_kv *kv, char *s, struct config_allow_network *an)
{
    char q[128];
    enum netaddr_parse_result r = netaddr_parse(s, &an->net, &an->prefix);
    if (r == NETADDR_HOST_BITS) {
        /* Host bits set usually means a typo in the prefix; refuse rather than guess. */
        char fixed[NETADDR_TEXT_MAX];
        netaddr_text(&an->net, fixed, sizeof fixed);
        s[strcspn(s, "/")] = '\0';
        config_error(ld, kv->line,
                     "network %s/%d in %s of %s has host bits set (did you "
                     "mean %s/%d?)",
                     s, an->prefix, kv->key, sec->label, fixed, an->prefix);
        return -1;
    }
    if (r != NETADDR_OK) {
        config_error(ld, kv->line,
                     "bad network %s in %s of %s: expected ADDRESS/PREFIX such as "
                     "10.0.0.0/24 or 2001:db8::/32",
                     config_q(q, sizeof q, s), kv->key, sec->label);
        return -1;
    }
    return 0;
}

/* "CIDR[, CIDR...] -> ACCOUNT", appended to l->allow_networks. Accounts are built before
 * listeners, so the account is resolved here; named[i] records that account i is reachable. */
static void config_allow_networks(struct config_loader *ld, const struct config_section *sec,
                                  const struct config_kv *kv, struct config_listen *l, int *named)
{
    static const char accepted[] = "CIDR[, CIDR...] -> ACCOUNT";
    char *copy = config_strdup(ld, kv->value);
    if (copy == NULL)
        return;
    char *arrow = strstr(copy, "->");
    if (arrow == NULL) {
        config_bad_value(ld, sec, kv, accepted);
        goto out;
    }
    *arrow = '\0';
    char *acct = config_trim(arrow + 2);
    if (!config_name_ok(acct)) {
        config_bad_value(ld, sec, kv, accepted);
        goto out;
    }
    const struct config_account *account = config_find_account(ld->cfg, acct);
    if (account == NULL) {
        char q[128];
        config_error(ld, kv->line, "allow_networks in %s names unknown account %s", sec->label,
                     config_q(q, sizeof q, acct));
    } else {
        named[account - ld->cfg->accounts] = 1;
    }
    char *nets = copy;
    for (;;) {
        char *comma = strchr(nets, ',');
        if (comma != NULL)
            *comma = '\0';
        char *one = config_trim(nets);
        if (*one == '\0') {
            config_bad_value(ld, sec, kv, accepted);
            goto out;
        }
        struct config_allow_network an;
        memset(&an, 0, sizeof an);
        if (config_cidr(ld, sec, kv, one, &an) == 0) {
            struct config_allow_network *grown =
                realloc(l->allow_networks, (l->n_allow_networks + 1) * sizeof *grown);
            if (grown == NULL) {
                ld->oom = 1;
                goto out;
            }
            l->allow_networks = grown;
            an.account_name = config_strdup(ld, acct);
            an.account = account;
            if (an.account_name == NULL)
                goto out;
            l->allow_networks[l->n_allow_networks++] = an;
        }
        if (comma == NULL)
            break;
        nets = comma + 1;
    }
out:
    free(copy);
}

/* "CIDR[, CIDR...]" appended to *list: the proxies allowed to send a PROXY protocol header
 * (proxy_trusted), the clients the lockout leaves alone (auth_lockout_exempt). */
static void config_cidr_list(struct config_loader *ld, const struct config_section *sec,
                             const struct config_kv *kv, struct config_allow_network **list,
                             size_t *n_list)
{
    char *copy = config_strdup(ld, kv->value);
    if (copy == NULL)
        return;
    for (char *nets = copy;;) {
        char *comma = strchr(nets, ',');
        if (comma != NULL)
            *comma = '\0';
        char *one = config_trim(nets);
        struct config_allow_network an;
        memset(&an, 0, sizeof an);
        if (*one == '\0') {
            config_bad_value(ld, sec, kv, "CIDR[, CIDR...] such as 127.0.0.1, 10.0.0.0/24");
            break;
        }
        if (config_cidr(ld, sec, kv, one, &an) == 0) {
            struct config_allow_network *grown =
                realloc(*list, (*n_list + 1) * sizeof *grown);
            if (grown == NULL) {
                ld->oom = 1;
                break;
            }
            *list = grown;
            (*list)[(*n_list)++] = an;
        }
        if (comma == NULL)
            break;
        nets = comma + 1;
    }
    free(copy);
}

/* "addr, *@domain, <>": who may appear in MAIL FROM for the account (sender_rules.h). */
static void config_allowed_senders(struct config_loader *ld, const struct config_section *sec,
                                   const struct config_kv *kv, struct config_account *a)
{
    char *copy = config_strdup(ld, kv->value);
    if (copy == NULL)
        return;
    for (char *p = copy;;) {
        char *comma = strchr(p, ',');
        if (comma != NULL)
            *comma = '\0';
        char *one = config_trim(p);
        const char *at = strchr(one, '@');
        int ok = strcmp(one, "<>") == 0 ||
                 (at != NULL && at[1] != '\0' && strchr(at + 1, '@') == NULL &&
                  strpbrk(one, " \t<>") == NULL && (one[0] != '*' || at == one + 1) &&
                  strchr(one + 1, '*') == NULL);
        if (!ok) {
            char q[128];
            config_error(ld, kv->line,
                         "bad entry %s in allowed_senders of %s: expected addresses such as "
                         "scanner@example.com, *@example.com or <> (the null sender)",
                         config_q(q, sizeof q, one), sec->label);
        } else {
            char **grown = realloc(a->allowed_senders, (a->n_allowed_senders + 1) * sizeof *grown);
            if (grown == NULL) {
                ld->oom = 1;
                break;
            }
            a->allowed_senders = grown;
            a->allowed_senders[a->n_allowed_senders] = config_strdup(ld, one);
            if (a->allowed_senders[a->n_allowed_senders] != NULL)
                a->n_allowed_senders++;
        }
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    free(copy);
}

/* ---- reading: the surrogate reader and the inih handler ---- */

static struct config_section *config_add_section(struct config_loader *ld)
{
    if (ld->n_sections == ld->cap_sections) {
        size_t cap = ld->cap_sections ? ld->cap_sections * 2 : 8;
        struct config_section *grown = realloc(ld->sections, cap * sizeof *grown);
        if (grown == NULL) {
            ld->oom = 1;
            return NULL;
        }
        ld->sections = grown;
        ld->cap_sections = cap;
    }
    struct config_section *sec = &ld->sections[ld->n_sections++];
    memset(sec, 0, sizeof *sec);
    return sec;
}

/* A "[...]" line (already trimmed, no line end). Writes the surrogate into sur. */
static void config_section_line(struct config_loader *ld, char *line, char *sur, size_t surcap)
{
    static const char *const types[] = {"xoauthd", "listen", "provider", "account"};
    size_t n = strlen(line);
    ld->cur = CONFIG_CUR_SKIP;
    if (n < 2 || line[n - 1] != ']') {
        config_error(ld, ld->lineno, "a section header must be '[TYPE NAME]' on a line of its own");
        return;
    }
    line[n - 1] = '\0';
    char *inner = config_trim(line + 1);
    char *name = inner + strcspn(inner, " \t");
    if (*name != '\0') {
        *name++ = '\0';
        name = config_trim(name);
    }
    int type;
    if (config_enum(inner, types, CONFIG_COUNT(types), &type) < 0) {
        char q[128];
        config_error(ld, ld->lineno,
                     "unknown section type %s (expected xoauthd, listen NAME, provider NAME or "
                     "account NAME)",
                     config_q(q, sizeof q, inner));
        return;
    }
    if (type == CONFIG_SEC_MAIN && *name != '\0') {
        config_error(ld, ld->lineno, "section [xoauthd] takes no name");
        return;
    }
    if (type != CONFIG_SEC_MAIN && !config_name_ok(name)) {
        char q[128];
        config_error(ld, ld->lineno,
                     "section [%s] needs a NAME of letters, digits, '.', '_' or '-' (at most %d, "
                     "starting with a letter or digit), got %s",
                     inner, CONFIG_NAME_MAX, config_q(q, sizeof q, name));
        return;
    }
    for (size_t i = 0; i < ld->n_sections; i++) {
        const struct config_section *o = &ld->sections[i];
        if ((int)o->type == type &&
            (type == CONFIG_SEC_MAIN || strcmp(o->name, name) == 0)) {
            config_error(ld, ld->lineno, "duplicate section %s (first at line %d)", o->label,
                         o->line);
            return;
        }
    }
    struct config_section *sec = config_add_section(ld);
    if (sec == NULL)
        return;
    sec->type = (enum config_sec_type)type;
    sec->line = ld->lineno;
    if (type == CONFIG_SEC_MAIN) {
        snprintf(sec->label, sizeof sec->label, "[xoauthd]");
    } else {
        sec->name = config_strdup(ld, name);
        snprintf(sec->label, sizeof sec->label, "[%s %s]", inner, name);
    }
    ld->cur = (long)(ld->n_sections - 1);
    /* inih keeps only 50 bytes of a section name; the label is at most ~75, so fall back. */
    if (strlen(sec->label) < surcap)
        snprintf(sur, surcap, "%s", sec->label);
    else
        snprintf(sur, surcap, "[s]");
}

/* A "key = value" line (no leading whitespace, no line end). */
static void config_key_line(struct config_loader *ld, char *line, char *sur, size_t surcap)
{
    char *eq = strchr(line, '=');
    if (eq == NULL) {
        config_error(ld, ld->lineno, "expected 'key = value' or '[section]'");
        return;
    }
    *eq = '\0';
    char *key = config_trim(line);
    char *value = config_trim(eq + 1);
    if (!config_key_ok(key, strlen(key))) {
        char q[128];
        config_error(ld, ld->lineno, "bad key name %s", config_q(q, sizeof q, key));
        return;
    }
    if (ld->cur == CONFIG_CUR_SKIP)
        return;
    if (ld->cur == CONFIG_CUR_NONE) {
        config_error(ld, ld->lineno, "key '%s' outside any section", key);
        return;
    }
    free(ld->pending_key);
    config_free_secret(ld->pending_value);
    ld->pending_key = config_strdup(ld, key);
    ld->pending_value = config_strdup(ld, value);
    if (ld->pending_key == NULL || ld->pending_value == NULL)
        return;
    if (strlen(key) + 2 <= surcap)
        snprintf(sur, surcap, "%s=", key);
    else
        snprintf(sur, surcap, "k=");
}

/* getline(3) into ld->buf, except that the buffer grows through secmem_grow: getline's
 * realloc would leave earlier lines (secrets) in freed memory. The length, -1 at the end of
 * the file or on a read error, -2 out of memory. */
static ssize_t config_getline(struct config_loader *ld)
{
    size_t len = 0;
    int ch;
    while ((ch = getc(ld->fp)) != EOF) {
        if (len + 2 > ld->bufcap &&
            secmem_grow(&ld->buf, &ld->bufcap, len, len + 2, 256) != 0)
            return -2;
        ld->buf[len++] = (char)ch;
        if (ch == '\n')
            break;
    }
    if (len == 0)
        return -1;
    ld->buf[len] = '\0';
    return (ssize_t)len;
}

static char *config_reader(char *str, int num, void *stream)
{
    struct config_loader *ld = stream;
    if (num < 4)
        return NULL;
    errno = 0;
    ssize_t n = config_getline(ld);
    if (n < 0) {
        if (ferror(ld->fp))
            ld->read_errno = errno ? errno : EIO;
        else if (n == -2)
            ld->oom = 1;
        return NULL;
    }
    ld->lineno++;
    str[0] = '\0';
    char *line = ld->buf;
    size_t len = (size_t)n;
    if (len > 0 && line[len - 1] == '\n')
        line[--len] = '\0';
    if (len > 0 && line[len - 1] == '\r')
        line[--len] = '\0';
    if (memchr(line, '\0', len) != NULL) {
        config_error(ld, ld->lineno, "NUL byte in line");
        return str;
    }
    if (ld->lineno == 1 && len >= 3 && memcmp(line, "\xef\xbb\xbf", 3) == 0)
        line += 3;
    char *start = line;
    while (config_is_space(*start))
        start++;
    if (*start == '\0' || *start == ';' || *start == '#')
        return str;
    if (start != line) {
        config_error(ld, ld->lineno,
                     "line starts with whitespace (continuation lines are not supported)");
        return str;
    }
    if (*start == '[')
        config_section_line(ld, config_trim(start), str, (size_t)num);
    else
        config_key_line(ld, start, str, (size_t)num);
    return str;
}

#if INI_HANDLER_LINENO
static int config_handler(void *user, const char *section, const char *name, const char *value,
                          int lineno)
#else
static int config_handler(void *user, const char *section, const char *name, const char *value)
#endif
{
    struct config_loader *ld = user;
    (void)section; /* the reader keeps the real section; inih's copy may be shortened */
    (void)name;
    (void)value;
#if INI_HANDLER_LINENO
    (void)lineno;
#endif
    if (ld->pending_key == NULL || ld->pending_value == NULL || ld->cur < 0)
        return ld->oom ? 1 : 0;
    struct config_section *sec = &ld->sections[ld->cur];
    char *key = ld->pending_key, *val = ld->pending_value;
    ld->pending_key = NULL;
    ld->pending_value = NULL;
    /* allow_networks may repeat: one line per account. */
    const struct config_kv *prev = config_sec_kv(sec, key);
    if (prev != NULL && strcmp(key, "allow_networks") != 0) {
        config_error(ld, ld->lineno, "duplicate key '%s' in %s (first at line %d)", key,
                     sec->label, prev->line);
        free(key);
        config_free_secret(val);
        return 1;
    }
    if (sec->n_kv == sec->cap_kv) {
        size_t cap = sec->cap_kv ? sec->cap_kv * 2 : 8;
        struct config_kv *grown = realloc(sec->kv, cap * sizeof *grown);
        if (grown == NULL) {
            ld->oom = 1;
            free(key);
            config_free_secret(val);
            return 1;
        }
        sec->kv = grown;
        sec->cap_kv = cap;
    }
    sec->kv[sec->n_kv].key = key;
    sec->kv[sec->n_kv].value = val;
    sec->kv[sec->n_kv].line = ld->lineno;
    sec->n_kv++;
    return 1;
}

/* "90", "90s", "10m", "2h", "1d" (n bytes at s) in seconds, from 1 to max. */
static int config_duration(const char *s, size_t n, unsigned long long max, unsigned *out)
{
    static const struct { char unit; unsigned mult; } units[] = {
        {'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}};
    char num[16];
    unsigned long long v, mult = 1;
    if (n > 0) {
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
            if (s[n - 1] == units[i].unit) {
                mult = units[i].mult;
                n--;
                break;
            }
    }
    if (n == 0 || n >= sizeof num)
        return -1;
    memcpy(num, s, n);
    num[n] = '\0';
    if (config_uint(num, 1, max, &v) < 0 || v * mult > max)
        return -1;
    *out = (unsigned)(v * mult);
    return 0;
}

/* auth_lockout = FAILURES/WINDOW/DURATION: "10/10m/15m". */
static void config_auth_lockout(struct config_loader *ld, const struct config_section *sec,
                                const struct config_kv *kv)
{
    static const char accepted[] = "FAILURES/WINDOW/DURATION such as 10/10m/15m (FAILURES 1 to "
                                   "32; WINDOW and DURATION in s, m, h or d, at most 7d)";
    const char *v = kv->value;
    const char *s1 = strchr(v, '/');
    const char *s2 = s1 != NULL ? strchr(s1 + 1, '/') : NULL;
    char num[8];
    unsigned long long failures;
    unsigned window, duration;
    if (s2 == NULL || (size_t)(s1 - v) >= sizeof num) {
        config_bad_value(ld, sec, kv, accepted);
        return;
    }
    memcpy(num, v, (size_t)(s1 - v));
    num[s1 - v] = '\0';
    if (config_uint(num, 1, AUTHLIMIT_HISTORY, &failures) < 0 ||
        config_duration(s1 + 1, (size_t)(s2 - s1 - 1), 7 * 86400, &window) < 0 ||
        config_duration(s2 + 1, strlen(s2 + 1), 7 * 86400, &duration) < 0) {
        config_bad_value(ld, sec, kv, accepted);
        return;
    }
    ld->cfg->auth_lockout_failures = (unsigned)failures;
    ld->cfg->auth_lockout_window = window;
    ld->cfg->auth_lockout_duration = duration;
}

/* ---- building: one function per section type ---- */

static void config_build_main(struct config_loader *ld, const struct config_section *sec)
{
    struct config *cfg = ld->cfg;
    for (size_t i = 0; i < sec->n_kv; i++) {
        const struct config_kv *kv = &sec->kv[i];
        const char *k = kv->key, *v = kv->value;
        unsigned long long n;
        if (strcmp(k, "state_dir") == 0) {
            if (*v == '\0')
                config_bad_value(ld, sec, kv, "a directory path");
            else
                config_set_str(ld, &cfg->state_dir, v);
        } else if (strcmp(k, "log_level") == 0) {
            if (log_level_parse(v, &cfg->log_level) < 0)
                config_bad_value(ld, sec, kv, "error, warn, info or debug");
        } else if (strcmp(k, "log_target") == 0) {
            if (strcmp(v, "stderr") == 0 || strcmp(v, "syslog") == 0)
                cfg->log_syslog = strcmp(v, "syslog") == 0;
            else
                config_bad_value(ld, sec, kv, "stderr or syslog");
        } else if (strcmp(k, "user") == 0) {
            config_set_str(ld, &cfg->user, v);
        } else if (strcmp(k, "group") == 0) {
            config_set_str(ld, &cfg->group, v);
        } else if (strcmp(k, "max_message_size") == 0) {
            if (config_uint(v, 1024, 1073741824ULL, &n) < 0)
                config_bad_value(ld, sec, kv, "a number of bytes from 1024 to 1073741824");
            else
                cfg->max_message_size = (size_t)n;
        } else if (strcmp(k, "token_timeout") == 0) {
            if (config_uint(v, 1, 600, &n) < 0)
                config_bad_value(ld, sec, kv, "a number of seconds from 1 to 600");
            else
                cfg->token_timeout = (unsigned)n;
        } else if (strcmp(k, "control_socket") == 0) {
            if (*v != '/')
                config_bad_value(ld, sec, kv, "an absolute path");
            else
                config_set_str(ld, &cfg->control_socket, v);
        } else if (strcmp(k, "metrics") == 0) {
            const char *why;
            free(cfg->metrics_host);
            cfg->metrics_host = NULL;
            if (*v == '\0' || strcmp(v, "no") == 0)
                continue;
            if (config_hostport(ld, v, 1, &cfg->metrics_host, &cfg->metrics_port, &why) < 0)
                config_bad_value(ld, sec, kv, why);
            else if (!netaddr_host_is_loopback(cfg->metrics_host))
                config_bad_value(ld, sec, kv, "a loopback address such as 127.0.0.1:9125 "
                                 "(the metrics page has no authentication)");
        } else if (strcmp(k, "shutdown_timeout") == 0) {
            if (config_uint(v, 0, 3600, &n) < 0)
                config_bad_value(ld, sec, kv, "a number of seconds from 0 to 3600");
            else
                cfg->shutdown_timeout = (unsigned)n;
        } else if (strcmp(k, "auth_lockout") == 0) {
            config_auth_lockout(ld, sec, kv);
        } else if (strcmp(k, "auth_lockout_exempt") == 0) {
            config_cidr_list(ld, sec, kv, &cfg->auth_lockout_exempt, &cfg->n_auth_lockout_exempt);
        } else {
            config_unknown_key(ld, sec, kv);
        }
    }
}

static void config_build_listen(struct config_loader *ld, const struct config_section *sec,
                                struct config_listen *l, int *named)
{
    int e;
    l->name = config_strdup(ld, sec->name);
    l->line = sec->line;
    l->tls = CONFIG_TLS_NONE;
    l->allow_plaintext_auth = CONFIG_PLAINTEXT_LOOPBACK;
    for (size_t i = 0; i < sec->n_kv; i++) {
        const struct config_kv *kv = &sec->kv[i];
        const char *k = kv->key, *v = kv->value;
        unsigned long long n;
        if (strcmp(k, "protocol") == 0) {
            if (config_enum(v, config_protocol_names, CONFIG_COUNT(config_protocol_names), &e) < 0)
                config_bad_value(ld, sec, kv, "smtp, imap or pop3");
            else
                l->protocol = (enum config_protocol)e;
        } else if (strcmp(k, "address") == 0) {
            const char *why;
            if (config_hostport(ld, v, 1, &l->host, &l->port, &why) < 0)
                config_bad_value(ld, sec, kv, why);
        } else if (strcmp(k, "tls") == 0) {
            if (config_enum(v, config_tls_names, CONFIG_COUNT(config_tls_names), &e) < 0)
                config_bad_value(ld, sec, kv, "none, starttls or implicit");
            else
                l->tls = (enum config_tls)e;
        } else if (strcmp(k, "tls_cert") == 0) {
            config_set_str(ld, &l->tls_cert, v);
        } else if (strcmp(k, "tls_key") == 0) {
            config_set_str(ld, &l->tls_key, v);
        } else if (strcmp(k, "allow_plaintext_auth") == 0) {
            if (config_enum(v, config_plaintext_names, CONFIG_COUNT(config_plaintext_names),
                            &e) < 0)
                config_bad_value(ld, sec, kv, "loopback, always or never");
            else
                l->allow_plaintext_auth = (enum config_plaintext_auth)e;
        } else if (strcmp(k, "allow_networks") == 0) {
            config_allow_networks(ld, sec, kv, l, named);
        } else if (strcmp(k, "max_connections") == 0) {
            if (config_uint(v, 1, 1000000, &n) < 0)
                config_bad_value(ld, sec, kv, "a number from 1 to 1000000");
            else
                l->max_connections = (unsigned)n;
        } else if (strcmp(k, "max_connections_per_ip") == 0) {
            if (config_uint(v, 0, 100000, &n) < 0)
                config_bad_value(ld, sec, kv, "a number from 0 (no limit) to 100000");
            else
                l->max_connections_per_ip = (unsigned)n;
        } else if (strcmp(k, "idle_timeout") == 0) {
            if (config_uint(v, 1, 86400, &n) < 0)
                config_bad_value(ld, sec, kv, "seconds from 1 to 86400");
            else
                l->idle_timeout = (unsigned)n;
        } else if (strcmp(k, "tls_min_version") == 0) {
            static const char *const vers[] = {"1.0", "1.1", "1.2", "1.3"};
            if (config_enum(v, vers, CONFIG_COUNT(vers), &e) < 0)
                config_bad_value(ld, sec, kv, "1.0, 1.1, 1.2 or 1.3");
            else
                l->tls_min_version = 10 + e;
        } else if (strcmp(k, "tls_ciphers") == 0) {
            config_set_str(ld, &l->tls_ciphers, v);
        } else if (strcmp(k, "proxy_protocol") == 0) {
            if (config_bool(v, &l->proxy_protocol) < 0)
                config_bad_value(ld, sec, kv, "yes or no");
        } else if (strcmp(k, "proxy_trusted") == 0) {
            config_cidr_list(ld, sec, kv, &l->proxy_trusted, &l->n_proxy_trusted);
        } else {
            config_unknown_key(ld, sec, kv);
        }
    }
    if (config_sec_kv(sec, "protocol") == NULL)
        config_error(ld, sec->line, "missing key 'protocol' in %s", sec->label);
    if (config_sec_kv(sec, "address") == NULL)
        config_error(ld, sec->line, "missing key 'address' in %s", sec->label);
    if (l->idle_timeout != 0 && l->protocol == CONFIG_PROTO_SMTP)
        config_error(ld, config_sec_kv(sec, "idle_timeout")->line, "idle_timeout in %s: only "
                     "imap and pop3 listeners have one (SMTP keeps RFC 5321's 5 minutes)",
                     sec->label);
    if (l->proxy_protocol && l->n_proxy_trusted == 0 && config_sec_kv(sec, "proxy_trusted") == NULL)
        config_error(ld, sec->line, "missing key 'proxy_trusted' in %s (required when "
                     "proxy_protocol = yes: the addresses of the proxies, such as 127.0.0.1)",
                     sec->label);
    if (l->tls != CONFIG_TLS_NONE) {
        if (l->tls_cert == NULL)
            config_error(ld, sec->line, "missing key 'tls_cert' in %s (required when tls is %s)",
                         sec->label, config_tls_names[l->tls]);
        if (l->tls_key == NULL)
            config_error(ld, sec->line, "missing key 'tls_key' in %s (required when tls is %s)",
                         sec->label, config_tls_names[l->tls]);
    }
}

static void config_build_provider(struct config_loader *ld, const struct config_section *sec,
                                  struct config_provider *p)
{
    int b;
    p->line = sec->line;
    for (size_t i = 0; i < sec->n_kv; i++) {
        const struct config_kv *kv = &sec->kv[i];
        const char *k = kv->key;
        if (strcmp(k, "token_url") == 0)
            config_url(ld, sec, kv, &p->token_url);
        else if (strcmp(k, "device_code_url") == 0)
            config_url(ld, sec, kv, &p->device_code_url);
        else if (strcmp(k, "authorize_url") == 0)
            config_url(ld, sec, kv, &p->authorize_url);
        else if (strcmp(k, "smtp") == 0)
            config_endpoint(ld, sec, kv, &p->smtp);
        else if (strcmp(k, "imap") == 0)
            config_endpoint(ld, sec, kv, &p->imap);
        else if (strcmp(k, "pop3") == 0)
            config_endpoint(ld, sec, kv, &p->pop3);
        else if (strcmp(k, "ews_url") == 0)
            config_url(ld, sec, kv, &p->ews_url);
        else if (strcmp(k, "graph_url") == 0)
            config_url(ld, sec, kv, &p->graph_url);
        else if (strcmp(k, "ews_version") == 0) {
            /* Goes into an XML attribute; the server rejects names it does not know. */
            if (kv->value[0] == '\0' || strlen(kv->value) > 40 ||
                strspn(kv->value, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                  "0123456789_") != strlen(kv->value))
                config_bad_value(ld, sec, kv, "a RequestServerVersion such as Exchange2013_SP1, "
                                 "Exchange2016 or V2017_07_11");
            else
                config_set_str(ld, &p->ews_version, kv->value);
        }
        else if (strcmp(k, "ca_file") == 0)
            config_set_str(ld, &p->ca_file, kv->value);
        else if (strcmp(k, "tls_verify") == 0) {
            if (config_bool(kv->value, &b) < 0)
                config_bad_value(ld, sec, kv, "yes or no");
            else
                p->tls_verify = b;
        } else {
            config_unknown_key(ld, sec, kv);
        }
    }
    /* Switching verification off is for test rigs with throwaway certificates: only when
     * nothing of this provider leaves the machine. */
    const struct config_kv *tv = config_sec_kv(sec, "tls_verify");
    if (tv != NULL && !p->tls_verify) {
        const struct config_endpoint *eps[] = {&p->smtp, &p->imap, &p->pop3};
        const char *urls[] = {p->token_url, p->ews_url, p->graph_url, p->device_code_url,
                              p->authorize_url};
        const char *remote = NULL;
        char host[300];
        for (size_t i = 0; i < 3 && remote == NULL; i++)
            if (eps[i]->present && !netaddr_host_is_loopback(eps[i]->host))
                remote = eps[i]->host;
        for (size_t i = 0; i < sizeof urls / sizeof urls[0] && remote == NULL; i++)
            if (urls[i] != NULL && config_url_host(urls[i], host, sizeof host) >= 0 &&
                !netaddr_host_is_loopback(host))
                remote = urls[i];
        if (remote != NULL)
            config_error(ld, tv->line,
                         "tls_verify = no in %s is allowed only when every endpoint is on a "
                         "loopback host, but %s is not",
                         sec->label, remote);
    }
}

/* "smtp", "graph, smtp": up to three distinct submission paths, tried in order. */
static void config_submit(struct config_loader *ld, const struct config_section *sec,
                          const struct config_kv *kv, struct config_account *a)
{
    static const char accepted[] = "smtp, ews or graph, or a comma list of them without repeats";
    char buf[128];
    size_t n = 0;
    enum config_submit list[3];
    if (strlen(kv->value) >= sizeof buf)
        goto bad;
    strcpy(buf, kv->value);
    char *item = buf;
    for (;;) {
        char *comma = strchr(item, ',');
        if (comma != NULL)
            *comma = '\0';
        int e;
        if (config_enum(config_trim(item), config_submit_names, CONFIG_COUNT(config_submit_names),
                        &e) < 0 || n == 3)
            goto bad;
        for (size_t i = 0; i < n; i++)
            if ((int)list[i] == e)
                goto bad;
        list[n++] = (enum config_submit)e;
        if (comma == NULL)
            break;
        item = comma + 1;
    }
    memcpy(a->submit, list, n * sizeof list[0]);
    a->n_submit = n;
    return;
bad:
    config_bad_value(ld, sec, kv, accepted);
}

static void config_build_account(struct config_loader *ld, const struct config_section *sec,
                                 struct config_account *a)
{
    int e;
    a->name = config_strdup(ld, sec->name);
    a->line = sec->line;
    a->mechanism = CONFIG_MECH_XOAUTH2;
    a->submit[0] = CONFIG_SUBMIT_SMTP;
    a->n_submit = 1;
    a->envelope_from = CONFIG_ENVFROM_KEEP;
    a->header_from = CONFIG_HDRFROM_KEEP;
    a->refresh_margin = CONFIG_DEFAULT_REFRESH_MARGIN;
    for (size_t i = 0; i < sec->n_kv; i++) {
        const struct config_kv *kv = &sec->kv[i];
        const char *k = kv->key, *v = kv->value;
        unsigned long long n;
        if (strcmp(k, "local_user") == 0) {
            config_set_str(ld, &a->local_user, v);
        } else if (strcmp(k, "local_password") == 0) {
            /* Never echo it: someone may have pasted the password itself. */
            if (*v != '\0' && !localauth_hash_is_valid(v))
                config_error(ld, kv->line,
                             "local_password in %s is not a hash made by `xoauthd "
                             "hash-password` (expected $scrypt$... or $pbkdf2-sha256$...)",
                             sec->label);
            else
                config_set_str(ld, &a->local_password, v);
        } else if (strcmp(k, "provider") == 0) {
            config_set_str(ld, &a->provider_name, v);
        } else if (strcmp(k, "username") == 0) {
            config_set_str(ld, &a->username, v);
        } else if (strcmp(k, "flow") == 0) {
            if (config_enum(v, config_flow_names, CONFIG_COUNT(config_flow_names), &e) < 0)
                config_bad_value(ld, sec, kv,
                                 "static, refresh_token, client_credentials, password, "
                                 "device_code or authorization_code, or command");
            else
                a->flow = (enum config_flow)e;
        } else if (strcmp(k, "client_id") == 0) {
            config_set_str(ld, &a->client_id, v);
        } else if (strcmp(k, "client_secret") == 0) {
            config_set_str(ld, &a->client_secret, v);
        } else if (strcmp(k, "client_certificate") == 0) {
            config_set_str(ld, &a->client_certificate, v);
        } else if (strcmp(k, "client_key") == 0) {
            config_set_str(ld, &a->client_key, v);
        } else if (strcmp(k, "upstream_password") == 0) {
            config_set_str(ld, &a->upstream_password, v);
        } else if (strcmp(k, "tenant") == 0) {
            config_set_str(ld, &a->tenant, v);
        } else if (strcmp(k, "scope") == 0) {
            config_set_str(ld, &a->scope, v);
        } else if (strcmp(k, "smtp_scope") == 0) {
            config_set_str(ld, &a->path_scope[CONFIG_SUBMIT_SMTP], v);
        } else if (strcmp(k, "ews_scope") == 0) {
            config_set_str(ld, &a->path_scope[CONFIG_SUBMIT_EWS], v);
        } else if (strcmp(k, "graph_scope") == 0) {
            config_set_str(ld, &a->path_scope[CONFIG_SUBMIT_GRAPH], v);
        } else if (strcmp(k, "refresh_token") == 0) {
            config_set_str(ld, &a->refresh_token, v);
        } else if (strcmp(k, "access_token") == 0) {
            config_set_str(ld, &a->access_token, v);
        } else if (strcmp(k, "token_command") == 0) {
            config_set_str(ld, &a->token_command, v);
        } else if (strcmp(k, "redirect_uri") == 0) {
            char host[300];
            /* The browser comes back to xoauthd itself: plain http to loopback only (RFC 8252
             * section 7.3). */
            if (*v != '\0' && (config_url_host(v, host, sizeof host) != 0 ||
                               !netaddr_host_is_loopback(host)))
                config_bad_value(ld, sec, kv,
                                 "an http:// URL on a loopback address, such as "
                                 "http://127.0.0.1:8400/ or http://localhost/");
            else
                config_set_str(ld, &a->redirect_uri, v);
        } else if (strcmp(k, "mechanism") == 0) {
            if (config_enum(v, config_mech_names, CONFIG_COUNT(config_mech_names), &e) < 0)
                config_bad_value(ld, sec, kv, "xoauth2 or oauthbearer");
            else
                a->mechanism = (enum config_mechanism)e;
        } else if (strcmp(k, "submit") == 0) {
            config_submit(ld, sec, kv, a);
        } else if (strcmp(k, "ews_impersonation") == 0) {
            static const char *const imp_names[] = {"auto", "yes", "no"};
            if (config_enum(v, imp_names, CONFIG_COUNT(imp_names), &e) < 0)
                config_bad_value(ld, sec, kv, "auto (only for flow = client_credentials), yes "
                                 "or no");
            else
                a->ews_impersonation = (enum config_ews_impersonation)e;
        } else if (strcmp(k, "envelope_from") == 0) {
            if (config_enum(v, config_envfrom_names, CONFIG_COUNT(config_envfrom_names), &e) < 0)
                config_bad_value(ld, sec, kv, "keep or account");
            else
                a->envelope_from = (enum config_envelope_from)e;
        } else if (strcmp(k, "header_from") == 0) {
            if (config_enum(v, config_hdrfrom_names, CONFIG_COUNT(config_hdrfrom_names), &e) < 0)
                config_bad_value(ld, sec, kv, "keep, account or account-with-name");
            else
                a->header_from = (enum config_header_from)e;
        } else if (strcmp(k, "allowed_senders") == 0) {
            config_allowed_senders(ld, sec, kv, a);
        } else if (strcmp(k, "refresh_margin") == 0) {
            if (config_uint(v, 0, 3000, &n) < 0)
                config_bad_value(ld, sec, kv, "a number of seconds from 0 to 3000");
            else
                a->refresh_margin = (unsigned)n;
        } else {
            config_unknown_key(ld, sec, kv);
        }
    }
}

/* ---- cross-checks ---- */

static void config_missing(struct config_loader *ld, const struct config_section *sec,
                           const char *key, const char *why)
{
    if (why != NULL)
        config_error(ld, sec->line, "missing key '%s' in %s (%s)", key, sec->label, why);
    else
        config_error(ld, sec->line, "missing key '%s' in %s", key, sec->label);
}

static void config_check_account(struct config_loader *ld, const struct config_section *sec,
                                 struct config_account *a, int named_by_network)
{
    const struct config_kv *kv;
    char why[96];
    if (a->provider_name == NULL) {
        config_missing(ld, sec, "provider", NULL);
    } else {
        a->provider = config_find_provider(ld->cfg, a->provider_name);
        if (a->provider == NULL) {
            char q[128];
            kv = config_sec_kv(sec, "provider");
            config_error(ld, kv != NULL ? kv->line : sec->line,
                         "%s names unknown provider %s (define a [provider NAME] section, or "
                         "use google or microsoft)",
                         sec->label, config_q(q, sizeof q, a->provider_name));
        }
    }
    if (a->username == NULL)
        config_missing(ld, sec, "username", NULL);
    kv = config_sec_kv(sec, "flow");
    int flow;
    if (kv == NULL)
        config_missing(ld, sec, "flow", NULL);

    /* What each grant needs to talk to the token endpoint (skipped when flow was bad). */
    snprintf(why, sizeof why, "required by flow = %s", config_flow_names[a->flow]);
    if (kv != NULL &&
        config_enum(kv->value, config_flow_names, CONFIG_COUNT(config_flow_names), &flow) == 0) {
        switch (a->flow) {
        case CONFIG_FLOW_STATIC:
            if (a->access_token == NULL)
                config_missing(ld, sec, "access_token", why);
            break;
        case CONFIG_FLOW_CLIENT_CREDENTIALS:
            if (a->client_id == NULL)
                config_missing(ld, sec, "client_id", why);
            if (a->client_secret == NULL && a->client_certificate == NULL)
                config_missing(ld, sec, "client_secret",
                               "or client_certificate + client_key; required by flow = "
                               "client_credentials");
            /* The "common" endpoint issues no app-only tokens. */
            if (a->tenant == NULL && a->provider != NULL && a->provider->token_url != NULL &&
                strstr(a->provider->token_url, "{tenant}") != NULL)
                config_missing(ld, sec, "tenant", why);
            break;
        case CONFIG_FLOW_PASSWORD:
            if (a->client_id == NULL)
                config_missing(ld, sec, "client_id", why);
            if (a->upstream_password == NULL)
                config_missing(ld, sec, "upstream_password", why);
            break;
        case CONFIG_FLOW_REFRESH_TOKEN:
        case CONFIG_FLOW_DEVICE_CODE:
        case CONFIG_FLOW_AUTHORIZATION_CODE:
            if (a->client_id == NULL)
                config_missing(ld, sec, "client_id", why);
            break;
        case CONFIG_FLOW_COMMAND:
            if (a->token_command == NULL)
                config_missing(ld, sec, "token_command", why);
            break;
        }
    }
    if (a->client_certificate != NULL && a->client_key == NULL)
        config_missing(ld, sec, "client_key", "client_certificate needs its key");
    if (a->client_key != NULL && a->client_certificate == NULL)
        config_missing(ld, sec, "client_certificate", "client_key needs its certificate");

    /* Local login: both halves or neither, and an account nobody can reach is a mistake. An
     * invalid hash was reported already; it still counts as given here. */
    kv = config_sec_kv(sec, "local_password");
    int has_pw = kv != NULL && kv->value[0] != '\0';
    int has_user = a->local_user != NULL;
    if (has_user && !has_pw)
        config_missing(ld, sec, "local_password", "local_user needs a password hash");
    if (has_pw && !has_user)
        config_missing(ld, sec, "local_user", "local_password without a user name");
    if (!has_user && !has_pw && !named_by_network)
        config_error(ld, sec->line,
                     "%s has no local_user/local_password and no allow_networks names it: "
                     "nobody can use it",
                     sec->label);

    /* An explicitly chosen submission path must exist at the provider. */
    kv = config_sec_kv(sec, "submit");
    if (kv != NULL && a->provider != NULL) {
        for (size_t i = 0; i < a->n_submit; i++) {
            const char *missing = NULL;
            if (a->submit[i] == CONFIG_SUBMIT_SMTP && !a->provider->smtp.present)
                missing = "smtp";
            if (a->submit[i] == CONFIG_SUBMIT_EWS && a->provider->ews_url == NULL)
                missing = "ews_url";
            if (a->submit[i] == CONFIG_SUBMIT_GRAPH && a->provider->graph_url == NULL)
                missing = "graph_url";
            if (missing != NULL)
                config_error(ld, kv->line, "submit = %s in %s, but provider '%s' has no %s",
                             config_submit_names[a->submit[i]], sec->label, a->provider->name,
                             missing);
        }
    }
}

static void config_check_local_users(struct config_loader *ld,
                                     const struct config_section *const *acct_sec)
{
    const struct config *cfg = ld->cfg;
    for (size_t i = 0; i < cfg->n_accounts; i++) {
        if (cfg->accounts[i].local_user == NULL)
            continue;
        for (size_t j = i + 1; j < cfg->n_accounts; j++) {
            if (cfg->accounts[j].local_user == NULL ||
                strcmp(cfg->accounts[i].local_user, cfg->accounts[j].local_user) != 0)
                continue;
            const struct config_kv *ki = config_sec_kv(acct_sec[i], "local_user");
            const struct config_kv *kj = config_sec_kv(acct_sec[j], "local_user");
            char q[128];
            config_q(q, sizeof q, cfg->accounts[i].local_user);
            config_error(ld, ki->line, "duplicate local_user %s (also in %s at line %d)", q,
                         acct_sec[j]->label, kj->line);
            config_error(ld, kj->line, "duplicate local_user %s (also in %s at line %d)", q,
                         acct_sec[i]->label, ki->line);
        }
    }
}

/* ---- presets ---- */

static int config_preset_endpoint(struct config_loader *ld, struct config_endpoint *ep,
                                  const char *host, uint16_t port, enum config_tls tls)
{
    ep->present = 1;
    ep->host = config_strdup(ld, host);
    ep->port = port;
    ep->tls = tls;
    return ep->host != NULL ? 0 : -1;
}

static void config_presets(struct config_loader *ld)
{
    struct config_provider *g = &ld->cfg->providers[0];
    struct config_provider *m = &ld->cfg->providers[1];
    g->name = config_strdup(ld, "google");
    g->token_url = config_strdup(ld, "https://oauth2.googleapis.com/token");
    /* Google's device flow exists but does not issue mail scopes; kept for completeness. */
    g->device_code_url = config_strdup(ld, "https://oauth2.googleapis.com/device/code");
    g->authorize_url = config_strdup(ld, "https://accounts.google.com/o/oauth2/v2/auth");
    g->tls_verify = 1;
    config_preset_endpoint(ld, &g->smtp, "smtp.gmail.com", 465, CONFIG_TLS_IMPLICIT);
    config_preset_endpoint(ld, &g->imap, "imap.gmail.com", 993, CONFIG_TLS_IMPLICIT);
    config_preset_endpoint(ld, &g->pop3, "pop.gmail.com", 995, CONFIG_TLS_IMPLICIT);
    m->name = config_strdup(ld, "microsoft");
    m->token_url =
        config_strdup(ld, "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token");
    m->device_code_url =
        config_strdup(ld, "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/devicecode");
    m->authorize_url =
        config_strdup(ld, "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize");
    m->tls_verify = 1;
    config_preset_endpoint(ld, &m->smtp, "smtp.office365.com", 587, CONFIG_TLS_STARTTLS);
    config_preset_endpoint(ld, &m->imap, "outlook.office365.com", 993, CONFIG_TLS_IMPLICIT);
    config_preset_endpoint(ld, &m->pop3, "outlook.office365.com", 995, CONFIG_TLS_IMPLICIT);
    m->ews_url = config_strdup(ld, "https://outlook.office365.com/EWS/Exchange.asmx");
    m->graph_url = config_strdup(ld, "https://graph.microsoft.com/v1.0");
    ld->cfg->n_providers = CONFIG_N_PRESETS;
}

/* Google has one scope for all of IMAP, POP3 and SMTP. Microsoft's depend on the flow: app-only
 * tokens take ".default" of the Exchange resource; a user's sign-in asks for IMAP, POP and SMTP
 * together (one consent, one refresh token for every protocol) plus offline_access, without
 * which there is no refresh token. flow = refresh_token keeps whatever the seed was issued for
 * (no scope is sent unless configured). */
static const char *config_preset_scope(const char *provider, enum config_flow flow)
{
    if (strcmp(provider, "google") == 0)
        return "https://mail.google.com/";
    if (strcmp(provider, "microsoft") != 0)
        return NULL;
    switch (flow) {
    case CONFIG_FLOW_CLIENT_CREDENTIALS:
        return "https://outlook.office365.com/.default";
    case CONFIG_FLOW_PASSWORD:
    case CONFIG_FLOW_DEVICE_CODE:
    case CONFIG_FLOW_AUTHORIZATION_CODE:
        return "https://outlook.office.com/IMAP.AccessAsUser.All "
               "https://outlook.office.com/POP.AccessAsUser.All "
               "https://outlook.office.com/SMTP.Send offline_access";
    default:
        return NULL;
    }
}

/* Each submit path needs a token for its own resource (DESIGN.md section 4): Graph, EWS and
 * Exchange's SMTP are three resources at Microsoft, and one token is issued for one. NULL when
 * the preset has no opinion (then the account's scope is used). */
static const char *config_preset_path_scope(const char *provider, enum config_flow flow,
                                            enum config_submit p)
{
    static const char *const ms_app[] = {
        [CONFIG_SUBMIT_SMTP] = "https://outlook.office365.com/.default",
        [CONFIG_SUBMIT_EWS] = "https://outlook.office365.com/.default",
        [CONFIG_SUBMIT_GRAPH] = "https://graph.microsoft.com/.default",
    };
    static const char *const ms_user[] = {
        [CONFIG_SUBMIT_SMTP] = "https://outlook.office.com/SMTP.Send offline_access",
        [CONFIG_SUBMIT_EWS] = "https://outlook.office365.com/EWS.AccessAsUser.All offline_access",
        [CONFIG_SUBMIT_GRAPH] = "https://graph.microsoft.com/Mail.Send offline_access",
    };
    if (strcmp(provider, "google") == 0)
        return p == CONFIG_SUBMIT_SMTP ? "https://mail.google.com/" : NULL;
    if (strcmp(provider, "microsoft") != 0)
        return NULL;
    switch (flow) {
    case CONFIG_FLOW_CLIENT_CREDENTIALS:
        return ms_app[p];
    case CONFIG_FLOW_REFRESH_TOKEN:
    case CONFIG_FLOW_PASSWORD:
    case CONFIG_FLOW_DEVICE_CODE:
    case CONFIG_FLOW_AUTHORIZATION_CODE:
        return ms_user[p];
    default:
        return NULL; /* static, command: one token, whatever it is for */
    }
}

/* Checks graph_scope / ews_scope / smtp_scope and derives the unset ones. The first submit path
 * keeps the account's scope (what it always used); a fallback path gets its preset. */
static void config_resolve_path_scopes(struct config_loader *ld, const struct config_section *sec,
                                       struct config_account *a)
{
    static const char *const keys[] = {
        [CONFIG_SUBMIT_SMTP] = "smtp_scope",
        [CONFIG_SUBMIT_EWS] = "ews_scope",
        [CONFIG_SUBMIT_GRAPH] = "graph_scope",
    };
    for (size_t p = 0; p < CONFIG_COUNT(keys); p++) {
        const struct config_kv *kv = config_sec_kv(sec, keys[p]);
        int used = 0;
        for (size_t i = 0; i < a->n_submit; i++)
            used |= a->submit[i] == (enum config_submit)p;
        if (kv != NULL) {
            const char *v = kv->value;
            int bad = v[0] == '\0';
            for (; *v != '\0'; v++)
                bad |= (unsigned char)*v < 0x20 || (unsigned char)*v == 0x7f;
            if (bad)
                config_error(ld, kv->line, "%s in %s must be a non-empty, space-separated list "
                             "of scopes", keys[p], sec->label);
            else if (!used)
                config_error(ld, kv->line, "%s in %s has no effect: submit does not list %s",
                             keys[p], sec->label, config_submit_names[p]);
            else if (a->flow == CONFIG_FLOW_STATIC || a->flow == CONFIG_FLOW_COMMAND)
                config_error(ld, kv->line, "%s in %s has no effect with flow = %s (one token "
                             "for every path)", keys[p], sec->label, config_flow_names[a->flow]);
            continue;
        }
        if (!used || a->n_submit == 0 || a->submit[0] == (enum config_submit)p ||
            a->provider == NULL)
            continue;
        const char *def = config_preset_path_scope(a->provider->name, a->flow,
                                                   (enum config_submit)p);
        if (def != NULL)
            a->path_scope[p] = config_strdup(ld, def);
    }
}

const char *config_account_scope(const struct config_account *acct, enum config_submit p)
{
    if (acct == NULL)
        return NULL;
    if ((size_t)p < CONFIG_COUNT(acct->path_scope) && acct->path_scope[p] != NULL)
        return acct->path_scope[p];
    return acct->scope;
}

/* ---- load ---- */

static void config_loader_free(struct config_loader *ld)
{
    for (size_t i = 0; i < ld->n_sections; i++) {
        struct config_section *sec = &ld->sections[i];
        for (size_t j = 0; j < sec->n_kv; j++) {
            free(sec->kv[j].key);
            config_free_secret(sec->kv[j].value);
        }
        free(sec->kv);
        free(sec->name);
    }
    free(ld->sections);
    free(ld->pending_key);
    config_free_secret(ld->pending_value);
    secmem_free(ld->buf, ld->bufcap);
    ld->buf = NULL;
    OPENSSL_cleanse(ld->iobuf, sizeof ld->iobuf);
}

/* Keys whose values are secrets wherever they appear: a file holding one must not be readable
 * by every user (config_perms.h). Only the first line is kept, for the message. */
static void config_note_secrets(struct config_loader *ld)
{
    static const char *const secret_keys[] = {"client_secret", "upstream_password",
                                              "refresh_token", "access_token",
                                              "local_password"};
    for (size_t i = 0; i < ld->n_sections; i++) {
        const struct config_section *sec = &ld->sections[i];
        for (size_t j = 0; j < sec->n_kv; j++) {
            const struct config_kv *kv = &sec->kv[j];
            if (kv->value == NULL || kv->value[0] == '\0')
                continue;
            for (size_t k = 0; k < CONFIG_COUNT(secret_keys); k++) {
                if (strcmp(kv->key, secret_keys[k]) != 0)
                    continue;
                if (ld->cfg->secret_line == 0 || kv->line < ld->cfg->secret_line) {
                    ld->cfg->secret_line = kv->line;
                    ld->cfg->secret_key = secret_keys[k];
                }
            }
        }
    }
}

static void config_build(struct config_loader *ld)
{
    struct config *cfg = ld->cfg;
    size_t nl = 0, np = 0, na = 0;
    const struct config_section **listen_sec = NULL, **acct_sec = NULL;
    int *named = NULL;
    for (size_t i = 0; i < ld->n_sections; i++) {
        const struct config_section *sec = &ld->sections[i];
        if (sec->type == CONFIG_SEC_LISTEN)
            nl++;
        else if (sec->type == CONFIG_SEC_ACCOUNT)
            na++;
        else if (sec->type == CONFIG_SEC_PROVIDER)
            np++;
    }
    /* Fixed-size arrays: accounts and providers are pointed to, so they must never move. */
    cfg->listens = calloc(nl + 1, sizeof *cfg->listens);
    cfg->accounts = calloc(na + 1, sizeof *cfg->accounts);
    cfg->providers = calloc(np + CONFIG_N_PRESETS, sizeof *cfg->providers);
    listen_sec = calloc(nl + 1, sizeof *listen_sec);
    acct_sec = calloc(na + 1, sizeof *acct_sec);
    named = calloc(na + 1, sizeof *named);
    if (cfg->listens == NULL || cfg->accounts == NULL || cfg->providers == NULL ||
        listen_sec == NULL || acct_sec == NULL || named == NULL) {
        ld->oom = 1;
        goto fail;
    }
    config_note_secrets(ld);
    config_presets(ld);
    if (ld->oom)
        goto fail;

    for (size_t i = 0; i < ld->n_sections; i++) {
        const struct config_section *sec = &ld->sections[i];
        if (sec->type == CONFIG_SEC_MAIN) {
            config_build_main(ld, sec);
        } else if (sec->type == CONFIG_SEC_PROVIDER) {
            struct config_provider *p = NULL;
            for (size_t j = 0; j < CONFIG_N_PRESETS; j++)
                if (strcmp(cfg->providers[j].name, sec->name) == 0)
                    p = &cfg->providers[j];
            if (p == NULL) {
                p = &cfg->providers[cfg->n_providers++];
                p->name = config_strdup(ld, sec->name);
                p->tls_verify = 1;
            }
            config_build_provider(ld, sec, p);
        }
    }
    for (size_t i = 0; i < ld->n_sections; i++) {
        const struct config_section *sec = &ld->sections[i];
        if (sec->type == CONFIG_SEC_ACCOUNT) {
            acct_sec[cfg->n_accounts] = sec;
            config_build_account(ld, sec, &cfg->accounts[cfg->n_accounts++]);
        }
    }
    for (size_t i = 0; i < ld->n_sections; i++) {
        const struct config_section *sec = &ld->sections[i];
        if (sec->type != CONFIG_SEC_LISTEN)
            continue;
        struct config_listen *l = &cfg->listens[cfg->n_listens];
        listen_sec[cfg->n_listens++] = sec;
        config_build_listen(ld, sec, l, named);
        for (size_t j = 0; j + 1 < cfg->n_listens; j++) {
            const struct config_listen *o = &cfg->listens[j];
            if (l->host != NULL && o->host != NULL && l->port == o->port &&
                strcmp(l->host, o->host) == 0) {
                const struct config_kv *kv = config_sec_kv(sec, "address");
                config_error(ld, kv->line, "address of %s is already used by %s at line %d",
                             sec->label, listen_sec[j]->label, o->line);
            }
        }
    }
    for (size_t i = 0; i < cfg->n_accounts; i++) {
        struct config_account *a = &cfg->accounts[i];
        config_check_account(ld, acct_sec[i], a, named[i]);
        if (a->scope == NULL && a->provider != NULL &&
            config_preset_scope(a->provider->name, a->flow) != NULL)
            a->scope = config_strdup(ld, config_preset_scope(a->provider->name, a->flow));
        config_resolve_path_scopes(ld, acct_sec[i], a);
    }
    config_check_local_users(ld, acct_sec);
    for (size_t i = 0; i < cfg->n_accounts; i++)
        cfg->accounts[i].owner = cfg;

    /* A provider defined here needs a token endpoint unless all its accounts bring a token. */
    for (size_t i = CONFIG_N_PRESETS; i < cfg->n_providers; i++) {
        const struct config_provider *p = &cfg->providers[i];
        if (p->token_url != NULL)
            continue;
        for (size_t j = 0; j < cfg->n_accounts; j++) {
            const struct config_account *a = &cfg->accounts[j];
            if (a->provider == p && a->flow != CONFIG_FLOW_STATIC &&
                a->flow != CONFIG_FLOW_COMMAND) {
                char why[160];
                snprintf(why, sizeof why, "[account %s] uses flow = %s", a->name,
                         config_flow_names[a->flow]);
                config_error(ld, p->line, "missing key 'token_url' in [provider %s] (%s)",
                             p->name, why);
                break;
            }
        }
    }
fail:
    free(listen_sec);
    free(acct_sec);
    free(named);
}

struct config *config_load(const char *path, FILE *err)
{
    struct config_loader ld;
    struct config *cfg = NULL;
    memset(&ld, 0, sizeof ld);
    ld.path = path != NULL ? path : "(null)";
    ld.err = err;
    ld.cur = CONFIG_CUR_NONE;
    cfg = calloc(1, sizeof *cfg);
    if (cfg == NULL || path == NULL)
        goto fail;
    ld.cfg = cfg;
    cfg->path = config_strdup(&ld, path);
    cfg->state_dir = config_strdup(&ld, CONFIG_DEFAULT_STATE_DIR);
    cfg->log_level = LOG_INFO;
    cfg->max_message_size = CONFIG_DEFAULT_MAX_MESSAGE;
    cfg->token_timeout = CONFIG_DEFAULT_TOKEN_TIMEOUT;
    cfg->shutdown_timeout = 30;
    cfg->refs = 1;
    cfg->auth_lockout_failures = AUTHLIMIT_MAX_FAILURES;
    cfg->auth_lockout_window = (unsigned)(AUTHLIMIT_WINDOW_MS / 1000);
    cfg->auth_lockout_duration = (unsigned)(AUTHLIMIT_LOCK_MS / 1000);

    ld.fp = fopen(path, "r");
    if (ld.fp == NULL) {
        config_error(&ld, 0, "cannot read: %s", strerror(errno));
        goto fail;
    }
    /* stdio's own buffer would hold a block of the file (secrets) and be freed by fclose as
     * it is: this one is cleansed (config_loader_free). */
    setvbuf(ld.fp, ld.iobuf, _IOFBF, sizeof ld.iobuf);
    int rc = ini_parse_stream(config_reader, &ld, config_handler, &ld);
    if (ld.read_errno != 0)
        config_error(&ld, 0, "cannot read: %s", strerror(ld.read_errno));
    else if (rc == -2)
        ld.oom = 1;
    else if (rc != 0 && !ld.oom)
        config_error(&ld, rc, "syntax error"); /* the surrogates make this unreachable */
    if (ld.read_errno == 0 && !ld.oom)
        config_build(&ld);
    if (ld.oom)
        config_error(&ld, 0, "out of memory");
    if (ld.errors != 0)
        goto fail;
    fclose(ld.fp);
    config_loader_free(&ld);
    return cfg;
fail:
    if (ld.fp != NULL)
        fclose(ld.fp);
    config_loader_free(&ld);
    config_free(cfg);
    return NULL;
}

/* ---- freeing and queries ---- */

void config_free(struct config *cfg)
{
    if (cfg == NULL)
        return;
    config_release(cfg->successor);
    for (size_t i = 0; i < cfg->n_listens; i++) {
        struct config_listen *l = &cfg->listens[i];
        free(l->name);
        free(l->host);
        free(l->tls_cert);
        free(l->tls_key);
        free(l->tls_ciphers);
        for (size_t j = 0; j < l->n_allow_networks; j++)
            free(l->allow_networks[j].account_name);
        free(l->allow_networks);
        free(l->proxy_trusted);
    }
    free(cfg->auth_lockout_exempt);
    for (size_t i = 0; i < cfg->n_providers; i++) {
        struct config_provider *p = &cfg->providers[i];
        free(p->name);
        free(p->token_url);
        free(p->device_code_url);
        free(p->authorize_url);
        config_endpoint_clear(&p->smtp);
        config_endpoint_clear(&p->imap);
        config_endpoint_clear(&p->pop3);
        free(p->ews_url);
        free(p->graph_url);
        free(p->ews_version);
        free(p->ca_file);
    }
    for (size_t i = 0; i < cfg->n_accounts; i++) {
        struct config_account *a = &cfg->accounts[i];
        free(a->name);
        free(a->local_user);
        config_free_secret(a->local_password); /* a hash, but a guesser's starting point */
        free(a->provider_name);
        free(a->username);
        free(a->client_id);
        config_free_secret(a->client_secret);
        free(a->client_certificate);
        free(a->client_key);
        config_free_secret(a->upstream_password);
        free(a->tenant);
        free(a->scope);
        for (size_t j = 0; j < CONFIG_COUNT(a->path_scope); j++)
            free(a->path_scope[j]);
        config_free_secret(a->refresh_token);
        config_free_secret(a->access_token);
        config_free_secret(a->token_command); /* may carry a secret on its command line */
        free(a->redirect_uri);
        for (size_t j = 0; j < a->n_allowed_senders; j++)
            free(a->allowed_senders[j]);
        free(a->allowed_senders);
    }
    free(cfg->listens);
    free(cfg->providers);
    free(cfg->accounts);
    free(cfg->path);
    free(cfg->state_dir);
    free(cfg->control_socket);
    free(cfg->metrics_host);
    free(cfg->user);
    free(cfg->group);
    free(cfg);
}

struct config *config_hold(struct config *cfg)
{
    if (cfg != NULL)
        cfg->refs++;
    return cfg;
}

void config_release(struct config *cfg)
{
    /* A loop, not recursion: a long chain of superseded configurations (a session open
     * across many reloads) goes at once when its holder ends. */
    while (cfg != NULL && --cfg->refs == 0) {
        struct config *next = cfg->successor;
        cfg->successor = NULL; /* released here, by the loop */
        if (cfg->on_free != NULL)
            cfg->on_free(cfg, cfg->on_free_arg);
        config_free(cfg);
        cfg = next;
    }
}

void config_supersede(struct config *old, struct config *successor)
{
    config_release(old->successor);
    old->successor = config_hold(successor);
}

const struct config_account *config_find_account_by_local_user(const struct config *cfg,
                                                               const char *local_user)
{
    if (cfg == NULL || local_user == NULL)
        return NULL;
    for (size_t i = 0; i < cfg->n_accounts; i++)
        if (cfg->accounts[i].local_user != NULL &&
            strcmp(cfg->accounts[i].local_user, local_user) == 0)
            return &cfg->accounts[i];
    return NULL;
}

const struct config_account *config_find_account(const struct config *cfg, const char *name)
{
    if (cfg == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < cfg->n_accounts; i++)
        if (cfg->accounts[i].name != NULL && strcmp(cfg->accounts[i].name, name) == 0)
            return &cfg->accounts[i];
    return NULL;
}

const struct config_provider *config_find_provider(const struct config *cfg, const char *name)
{
    if (cfg == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < cfg->n_providers; i++)
        if (cfg->providers[i].name != NULL && strcmp(cfg->providers[i].name, name) == 0)
            return &cfg->providers[i];
    return NULL;
}

char *config_token_url(const struct config_account *acct)
{
    if (acct == NULL || acct->provider == NULL)
        return NULL;
    return config_account_url(acct, acct->provider->token_url);
}

char *config_account_url(const struct config_account *acct, const char *tmpl)
{
    static const char placeholder[] = "{tenant}";
    if (acct == NULL || tmpl == NULL)
        return NULL;
    const char *url = tmpl;
    const char *tenant = acct->tenant != NULL ? acct->tenant : "common";
    size_t plen = sizeof placeholder - 1, tlen = strlen(tenant), count = 0;
    for (const char *p = strstr(url, placeholder); p != NULL; p = strstr(p + plen, placeholder))
        count++;
    size_t len = strlen(url) - count * plen + count * tlen;
    char *out = malloc(len + 1);
    if (out == NULL)
        return NULL;
    char *o = out;
    const char *p = url;
    for (const char *hit = strstr(p, placeholder); hit != NULL; hit = strstr(p, placeholder)) {
        memcpy(o, p, (size_t)(hit - p));
        o += hit - p;
        memcpy(o, tenant, tlen);
        o += tlen;
        p = hit + plen;
    }
    strcpy(o, p);
    return out;
}

const char *config_protocol_name(enum config_protocol p)
{
    return (size_t)p < CONFIG_COUNT(config_protocol_names) ? config_protocol_names[p] : "?";
}

const char *config_flow_name(enum config_flow f)
{
    return (size_t)f < CONFIG_COUNT(config_flow_names) ? config_flow_names[f] : "?";
}
