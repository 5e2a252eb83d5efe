/* config_values: the parsers of single values (numbers, names, addresses, URLs, endpoints,
 * networks, lists) and the error helpers they share. Each parser either stores the value or
 * reports "FILE:LINE: bad value ..." naming the key and the section; none echoes a secret. */
#include "config_values.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "config.h"
#include "netaddr.h"

const char *const config_protocol_names[] = {"smtp", "imap", "pop3", NULL};
const char *const config_tls_names[] = {"none", "starttls", "implicit", NULL};
const char *const config_flow_names[] = {"static", "refresh_token", "client_credentials",
                                         "password", "device_code", "authorization_code",
                                         "command", NULL};
const char *const config_submit_names[] = {"smtp", "ews", "graph", NULL};

void config_error(struct config_loader *ld, int line, const char *fmt, ...)
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

char *config_strdup(struct config_loader *ld, const char *s)
{
    char *d = strdup(s);
    if (d == NULL)
        ld->oom = 1;
    return d;
}

void config_free_secret(char *s)
{
    if (s != NULL) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

void config_set_str(struct config_loader *ld, char **dst, const char *v)
{
    config_free_secret(*dst);
    *dst = *v != '\0' ? config_strdup(ld, v) : NULL;
}

int config_is_space(char c) { return c == ' ' || c == '\t'; }

/* Trims spaces and tabs in place; returns the new start. */
char *config_trim(char *s)
{
    while (config_is_space(*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && config_is_space(s[n - 1]))
        s[--n] = '\0';
    return s;
}

int config_enum(const char *v, const char *const *names, int *out)
{
    for (size_t i = 0; names[i] != NULL; i++) {
        if (strcmp(v, names[i]) == 0) {
            *out = (int)i;
            return 0;
        }
    }
    return -1;
}

int config_uint(const char *v, unsigned long long min, unsigned long long max,
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

int config_bool(const char *v, int *out)
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
int config_name_ok(const char *s)
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

int config_key_ok(const char *s, size_t n)
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

const char *config_q(char *buf, size_t sz, const char *v)
{
    return log_quote(buf, sz, v, strlen(v));
}

void config_bad_value(struct config_loader *ld, const struct config_section *sec,
                             const struct config_kv *kv, const char *accepted)
{
    char q[128];
    config_error(ld, kv->line, "bad value %s for key '%s' in %s: expected %s",
                 config_q(q, sizeof q, kv->value), kv->key, sec->label, accepted);
}

void config_unknown_key(struct config_loader *ld, const struct config_section *sec,
                               const struct config_kv *kv)
{
    config_error(ld, kv->line, "unknown key '%s' in %s", kv->key, sec->label);
}

const struct config_kv *config_sec_kv(const struct config_section *sec, const char *key)
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
int config_hostport(struct config_loader *ld, const char *v, int numeric, char **host,
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
int config_url_host(const char *v, char *host, size_t hostsz)
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
void config_url(struct config_loader *ld, const struct config_section *sec,
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

/* "host:port starttls|implicit|none"; an empty value removes the endpoint. */
void config_endpoint(struct config_loader *ld, const struct config_section *sec,
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
    if (config_enum(modestr, config_tls_names, &mode) < 0)
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
void config_allow_networks(struct config_loader *ld, const struct config_section *sec,
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
void config_cidr_list(struct config_loader *ld, const struct config_section *sec,
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
void config_allowed_senders(struct config_loader *ld, const struct config_section *sec,
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


/* "90", "90s", "10m", "2h", "1d" (n bytes at s) in seconds, from 1 to max. */
int config_duration(const char *s, size_t n, unsigned long long max, unsigned *out)
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


/* "smtp", "graph, smtp": up to three distinct submission paths, tried in order. */
void config_submit(struct config_loader *ld, const struct config_section *sec,
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
        if (config_enum(config_trim(item), config_submit_names, &e) < 0 || n == 3)
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
