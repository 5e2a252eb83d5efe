/* config_check: what only several keys or sections together can tell: what each flow needs,
 * local logins, submission paths the provider lacks, duplicate local users, providers without
 * a token endpoint. Run after every section is built. */
#include "config.h"
#include "config_loader.h"

#include <stdio.h>
#include <string.h>

#include "config_sections.h"
#include "config_values.h"

static void config_missing(struct config_loader *ld, const struct config_section *sec,
                           const char *key, const char *why)
{
    if (why != NULL)
        config_error(ld, sec->line, "missing key '%s' in %s (%s)", key, sec->label, why);
    else
        config_error(ld, sec->line, "missing key '%s' in %s", key, sec->label);
}

void config_check_account(struct config_loader *ld, const struct config_section *sec,
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
        config_enum(kv->value, config_flow_names, &flow) == 0) {
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
    kv = config_sec_secret_kv(sec, "local_password");
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

void config_check_local_users(struct config_loader *ld,
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

/* A provider defined here needs a token endpoint unless all its accounts bring a token. */
void config_check_token_urls(struct config_loader *ld)
{
    const struct config *cfg = ld->cfg;
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
}
