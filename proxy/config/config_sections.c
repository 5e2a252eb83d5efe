/* config_sections: a section's rows (config_keys.h) applied to its struct, then what the
 * section needs as a whole. See config_sections.h. */
#include "config_sections.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "config_key_parsers.h"
#include "config_keys.h"
#include "config_secret_file.h"
#include "config_values.h"
#include "localauth.h"
#include "netaddr.h"

/* ---- one key ---- */

static void config_apply_key(struct config_loader *ld, const struct config_section *sec,
                             const struct config_kv *kv, const struct config_key *key, void *obj)
{
    void *field = (char *)obj + key->offset;
    const char *v = kv->value;
    unsigned long long n;
    int e;
    switch (key->type) {
    case CONFIG_KEY_STRING:
        config_set_str(ld, field, v);
        break;
    case CONFIG_KEY_ENUM:
        if (config_enum(v, key->values, &e) < 0)
            config_bad_value(ld, sec, kv, key->accepted);
        else
            *(int *)field = key->base + e;
        break;
    case CONFIG_KEY_UINT:
        if (config_uint(v, key->min, key->max, &n) < 0)
            config_bad_value(ld, sec, kv, key->accepted);
        else
            *(unsigned *)field = (unsigned)n;
        break;
    case CONFIG_KEY_SIZE:
        if (config_uint(v, key->min, key->max, &n) < 0)
            config_bad_value(ld, sec, kv, key->accepted);
        else
            *(size_t *)field = (size_t)n;
        break;
    case CONFIG_KEY_BOOL:
        if (config_bool(v, &e) < 0)
            config_bad_value(ld, sec, kv, key->accepted);
        else
            *(int *)field = e;
        break;
    case CONFIG_KEY_URL:
        config_url(ld, sec, kv, field);
        break;
    case CONFIG_KEY_ENDPOINT:
        config_endpoint(ld, sec, kv, field);
        break;
    case CONFIG_KEY_NETWORKS:
        config_cidr_list(ld, sec, kv, field, (size_t *)((char *)obj + key->count_offset));
        break;
    case CONFIG_KEY_CUSTOM:
        key->parse(ld, sec, kv, obj);
        break;
    }
}

/* Every documented default of sec's table, as if written first (sec may be a stand-in with no
 * keys: [xoauthd] has defaults when the file has no such section). */
static void config_apply_defaults(struct config_loader *ld, const struct config_section *sec,
                                  void *obj)
{
    const struct config_key_table *t = config_key_table(sec->type);
    for (size_t i = 0; i < t->n_keys; i++) {
        const struct config_key *key = &t->keys[i];
        if (key->def == NULL)
            continue;
        struct config_kv kv = {(char *)key->name, (char *)key->def, sec->line};
        config_apply_key(ld, sec, &kv, key, obj);
    }
}

/* NAME_file: the secret NAME, from a file (config_secret_file.h). */
static void config_apply_twin(struct config_loader *ld, const struct config_section *sec,
                              const struct config_kv *kv, const struct config_key *key, void *obj)
{
    const struct config_kv *inline_kv = config_sec_kv(sec, key->name);
    if (inline_kv != NULL) {
        config_error(ld, kv->line, "%s in %s: %s is given already at line %d; keep one of them",
                     kv->key, sec->label, key->name, inline_kv->line);
        return;
    }
    char *value = config_secret_file_read(ld, sec, kv);
    if (value == NULL)
        return;
    struct config_kv from_file = {(char *)key->name, value, kv->line};
    config_apply_key(ld, sec, &from_file, key, obj);
    config_free_secret(value);
}

/* The section's keys in the order written. */
static void config_apply_keys(struct config_loader *ld, const struct config_section *sec,
                              void *obj)
{
    for (size_t i = 0; i < sec->n_kv; i++) {
        const struct config_kv *kv = &sec->kv[i];
        const struct config_key *key = config_key_find(sec->type, kv->key);
        if (key != NULL) {
            config_apply_key(ld, sec, kv, key, obj);
            continue;
        }
        key = config_key_twin(sec->type, kv->key);
        if (key != NULL)
            config_apply_twin(ld, sec, kv, key, obj);
        else
            config_unknown_key(ld, sec, kv);
    }
}

const struct config_kv *config_sec_secret_kv(const struct config_section *sec,
                                                const char *name)
{
    char twin[CONFIG_NAME_MAX + 8];
    const struct config_kv *kv = config_sec_kv(sec, name);
    if (kv != NULL)
        return kv;
    snprintf(twin, sizeof twin, "%s_file", name);
    return config_sec_kv(sec, twin);
}

/* ---- [xoauthd] ---- */

void config_parse_state_dir(struct config_loader *ld, const struct config_section *sec,
                            const struct config_kv *kv, void *obj)
{
    struct config *cfg = obj;
    if (kv->value[0] == '\0')
        config_bad_value(ld, sec, kv, "a directory path");
    else
        config_set_str(ld, &cfg->state_dir, kv->value);
}

void config_parse_log_level(struct config_loader *ld, const struct config_section *sec,
                            const struct config_kv *kv, void *obj)
{
    struct config *cfg = obj;
    if (log_level_parse(kv->value, &cfg->log_level) < 0)
        config_bad_value(ld, sec, kv, "error, warn, info or debug");
}

void config_parse_control_socket(struct config_loader *ld, const struct config_section *sec,
                                 const struct config_kv *kv, void *obj)
{
    struct config *cfg = obj;
    if (kv->value[0] != '/')
        config_bad_value(ld, sec, kv, "an absolute path");
    else
        config_set_str(ld, &cfg->control_socket, kv->value);
}

void config_parse_metrics(struct config_loader *ld, const struct config_section *sec,
                          const struct config_kv *kv, void *obj)
{
    struct config *cfg = obj;
    const char *v = kv->value, *why;
    free(cfg->metrics_host);
    cfg->metrics_host = NULL;
    if (*v == '\0' || strcmp(v, "no") == 0)
        return;
    if (config_hostport(ld, v, 1, &cfg->metrics_host, &cfg->metrics_port, &why) < 0)
        config_bad_value(ld, sec, kv, why);
    else if (!netaddr_host_is_loopback(cfg->metrics_host))
        config_bad_value(ld, sec, kv, "a loopback address such as 127.0.0.1:9125 "
                         "(the metrics page has no authentication)");
}

/* auth_lockout = FAILURES/WINDOW/DURATION: "10/10m/15m". */
void config_auth_lockout(struct config_loader *ld, const struct config_section *sec,
                         const struct config_kv *kv, void *obj)
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
    if (config_uint(num, 1, config_lockout_failures_max(), &failures) < 0 ||
        config_duration(s1 + 1, (size_t)(s2 - s1 - 1), 7 * 86400, &window) < 0 ||
        config_duration(s2 + 1, strlen(s2 + 1), 7 * 86400, &duration) < 0) {
        config_bad_value(ld, sec, kv, accepted);
        return;
    }
    struct config *cfg = obj;
    cfg->auth_lockout_failures = (unsigned)failures;
    cfg->auth_lockout_window = window;
    cfg->auth_lockout_duration = duration;
}

/* ---- building: one function per section type ---- */

void config_build_main(struct config_loader *ld, const struct config_section *sec)
{
    config_apply_keys(ld, sec, ld->cfg);
}

void config_build_main_defaults(struct config_loader *ld)
{
    static const struct config_section stand_in = {.type = CONFIG_SEC_MAIN,
                                                   .label = "[xoauthd]"};
    config_apply_defaults(ld, &stand_in, ld->cfg);
}

/* ---- [listen NAME] ---- */

void config_parse_address(struct config_loader *ld, const struct config_section *sec,
                          const struct config_kv *kv, void *obj)
{
    struct config_listen *l = obj;
    const char *why;
    if (config_hostport(ld, kv->value, 1, &l->host, &l->port, &why) < 0)
        config_bad_value(ld, sec, kv, why);
}

void config_parse_allow_networks(struct config_loader *ld, const struct config_section *sec,
                                 const struct config_kv *kv, void *obj)
{
    config_allow_networks(ld, sec, kv, obj, ld->named);
}

void config_build_listen(struct config_loader *ld, const struct config_section *sec,
                         struct config_listen *l)
{
    l->name = config_strdup(ld, sec->name);
    l->line = sec->line;
    config_apply_defaults(ld, sec, l);
    config_apply_keys(ld, sec, l);
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

/* ---- [provider NAME] ---- */

void config_parse_ews_version(struct config_loader *ld, const struct config_section *sec,
                              const struct config_kv *kv, void *obj)
{
    struct config_provider *p = obj;
    /* Goes into an XML attribute; the server rejects names it does not know. */
    if (kv->value[0] == '\0' || strlen(kv->value) > 40 ||
        strspn(kv->value, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                          "0123456789_") != strlen(kv->value))
        config_bad_value(ld, sec, kv, "a RequestServerVersion such as Exchange2013_SP1, "
                         "Exchange2016 or V2017_07_11");
    else
        config_set_str(ld, &p->ews_version, kv->value);
}

void config_build_provider(struct config_loader *ld, const struct config_section *sec,
                           struct config_provider *p)
{
    p->line = sec->line;
    config_apply_defaults(ld, sec, p);
    config_apply_keys(ld, sec, p);
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

/* ---- [account NAME] ---- */

void config_parse_local_password(struct config_loader *ld, const struct config_section *sec,
                                 const struct config_kv *kv, void *obj)
{
    struct config_account *a = obj;
    /* Never echo it: someone may have pasted the password itself. */
    if (kv->value[0] != '\0' && !localauth_hash_is_valid(kv->value))
        config_error(ld, kv->line,
                     "local_password in %s is not a hash made by `xoauthd "
                     "hash-password` (expected $scrypt$... or $pbkdf2-sha256$...)",
                     sec->label);
    else
        config_set_str(ld, &a->local_password, kv->value);
}

void config_parse_redirect_uri(struct config_loader *ld, const struct config_section *sec,
                               const struct config_kv *kv, void *obj)
{
    struct config_account *a = obj;
    const char *v = kv->value;
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
}

void config_parse_submit(struct config_loader *ld, const struct config_section *sec,
                         const struct config_kv *kv, void *obj)
{
    config_submit(ld, sec, kv, obj);
}

void config_parse_allowed_senders(struct config_loader *ld, const struct config_section *sec,
                                  const struct config_kv *kv, void *obj)
{
    config_allowed_senders(ld, sec, kv, obj);
}

void config_build_account(struct config_loader *ld, const struct config_section *sec,
                          struct config_account *a)
{
    a->name = config_strdup(ld, sec->name);
    a->line = sec->line;
    config_apply_defaults(ld, sec, a);
    config_apply_keys(ld, sec, a);
}
