/* config_presets: the providers xoauthd knows without a section (google, microsoft) and the
 * scopes their tokens need per flow and submission path. A [provider google] section
 * overrides single keys of the preset. */
#include "config_presets.h"

#include <string.h>

#include "config_values.h"

static int config_preset_endpoint(struct config_loader *ld, struct config_endpoint *ep,
                                  const char *host, uint16_t port, enum config_tls tls)
{
    ep->present = 1;
    ep->host = config_strdup(ld, host);
    ep->port = port;
    ep->tls = tls;
    return ep->host != NULL ? 0 : -1;
}

void config_presets(struct config_loader *ld)
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
const char *config_preset_scope(const char *provider, enum config_flow flow)
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

/* Each submit path needs a token for its own resource (docs/protocol-notes.md, "Scopes"): Graph,
 * EWS and Exchange's SMTP are three resources at Microsoft, and one token is issued for one. NULL
 * when the preset has no opinion (then the account's scope is used). */
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
void config_resolve_path_scopes(struct config_loader *ld, const struct config_section *sec,
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
