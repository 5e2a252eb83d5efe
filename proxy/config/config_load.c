/* config_load: INI file -> struct config, with every problem reported as FILE:LINE (config.h).
 *
 * The pieces, in the order a file goes through them: config_reader.c (lines, through inih, into
 * sections of key = value), config_sections.c (each section's key table, config_keys.c, applied
 * to its struct with the value parsers of config_values.c; secrets may come from files,
 * config_secret_file.c), config_presets.c (the google and microsoft providers and their scopes)
 * and config_check.c (what only the whole file can tell). Loading goes on after an error, so
 * that one run of `xoauthd check` shows them all. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "config_keys.h"
#include "config_loader.h"
#include "config_presets.h"
#include "config_sections.h"
#include "secmem.h"

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

/* Keys whose values are secrets (the table's secret rows): a file holding one must not be
 * readable by every user (config_perms.h). Only the first line is kept, for the message. A
 * NAME_file twin holds a file name, no secret. */
static void config_note_secrets(struct config_loader *ld)
{
    for (size_t i = 0; i < ld->n_sections; i++) {
        const struct config_section *sec = &ld->sections[i];
        for (size_t j = 0; j < sec->n_kv; j++) {
            const struct config_kv *kv = &sec->kv[j];
            const struct config_key *key = config_key_find(sec->type, kv->key);
            if (kv->value == NULL || kv->value[0] == '\0' || key == NULL || !key->secret)
                continue;
            if (ld->cfg->secret_line == 0 || kv->line < ld->cfg->secret_line) {
                ld->cfg->secret_line = kv->line;
                ld->cfg->secret_key = key->name;
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
    config_build_main_defaults(ld);
    config_presets(ld);
    if (ld->oom)
        goto fail;
    ld->named = named;

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
        config_build_listen(ld, sec, l);
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

    config_check_token_urls(ld);
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
    cfg->refs = 1;
    config_lockout_defaults(cfg);

    ld.fp = fopen(path, "r");
    if (ld.fp == NULL) {
        config_error(&ld, 0, "cannot read: %s", strerror(errno));
        goto fail;
    }
    /* stdio's own buffer would hold a block of the file (secrets) and be freed by fclose as
     * it is: this one is cleansed (config_loader_free). */
    setvbuf(ld.fp, ld.iobuf, _IOFBF, sizeof ld.iobuf);
    int rc = config_read(&ld);
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

