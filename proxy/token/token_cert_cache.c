#include "token_cert_cache.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

struct token_cert_slot {
    struct token_cert_slot *next;
    char *account;
    struct token_client_cert *cert; /* NULL when loading failed */
    char err[300];
};

static struct token_cert_slot *token_cert_cache_add(struct token_cert_cache *c,
                                                    const struct config_account *acct)
{
    struct token_cert_slot *slot = calloc(1, sizeof *slot);
    if (slot == NULL)
        return NULL;
    slot->account = strdup(acct->name != NULL ? acct->name : "");
    if (slot->account == NULL) {
        free(slot);
        return NULL;
    }
    slot->cert = token_client_cert_load(acct->client_certificate, acct->client_key, slot->err,
                                        sizeof slot->err);
    if (slot->cert == NULL)
        log_error(NULL, "event=token_error account=%s status=misconfigured reason=\"%s\" "
                        "action=\"fix client_certificate / client_key and restart\"",
                  slot->account, slot->err);
    slot->next = c->slots;
    c->slots = slot;
    return slot;
}

void token_cert_cache_clear(struct token_cert_cache *c)
{
    while (c->slots != NULL) {
        struct token_cert_slot *slot = c->slots;
        c->slots = slot->next;
        token_client_cert_free(slot->cert);
        free(slot->account);
        free(slot);
    }
}

void token_cert_cache_load(struct token_cert_cache *c, const struct config *cfg)
{
    token_cert_cache_clear(c);
    for (size_t i = 0; i < cfg->n_accounts; i++) {
        const struct config_account *a = &cfg->accounts[i];
        if (a->flow == CONFIG_FLOW_CLIENT_CREDENTIALS && a->client_certificate != NULL &&
            a->client_key != NULL)
            token_cert_cache_add(c, a);
    }
}

const struct token_client_cert *token_cert_cache_get(struct token_cert_cache *c,
                                                     const struct config_account *acct,
                                                     const char **err)
{
    struct token_cert_slot *slot;
    for (slot = c->slots; slot != NULL; slot = slot->next)
        if (acct->name != NULL && strcmp(slot->account, acct->name) == 0)
            break;
    if (slot == NULL)
        slot = token_cert_cache_add(c, acct);
    if (slot == NULL) {
        *err = "out of memory";
        return NULL;
    }
    *err = slot->err;
    return slot->cert;
}
