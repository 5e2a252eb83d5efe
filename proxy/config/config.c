/* config: the life of a loaded struct config (held, released, superseded by a reload,
 * freed with its secrets cleansed) and the lookups in it. Loading is config_load.c. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "config_loader.h"
#include "lockout_defaults.h"

void config_lockout_defaults(struct config *cfg)
{
    cfg->auth_lockout_failures = AUTHLIMIT_MAX_FAILURES;
    cfg->auth_lockout_window = (unsigned)(AUTHLIMIT_WINDOW_MS / 1000);
    cfg->auth_lockout_duration = (unsigned)(AUTHLIMIT_LOCK_MS / 1000);
}

unsigned config_lockout_failures_max(void)
{
    return AUTHLIMIT_HISTORY;
}

void config_endpoint_clear(struct config_endpoint *ep)
{
    free(ep->host);
    memset(ep, 0, sizeof *ep);
}

/* ---- freeing and queries ---- */
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

const char *config_account_scope(const struct config_account *acct, enum config_submit p)
{
    if (acct == NULL)
        return NULL;
    if ((size_t)p < CONFIG_COUNT(acct->path_scope) && acct->path_scope[p] != NULL)
        return acct->path_scope[p];
    return acct->scope;
}

const char *config_protocol_name(enum config_protocol p)
{
    return (size_t)p <= CONFIG_PROTO_POP3 ? config_protocol_names[p] : "?";
}

const char *config_flow_name(enum config_flow f)
{
    return (size_t)f <= CONFIG_FLOW_COMMAND ? config_flow_names[f] : "?";
}