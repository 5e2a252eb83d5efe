/* token: the token manager, see token.h.
 *
 * One entry per account (found by name), holding the refresh token and one slot per scope asked
 * for (the access token, its failure window and its waiters). The entry works for one slot at a
 * time (e->cur); callers of another scope wait in their slot and are served, in order, once the
 * entry is IDLE again, with the refresh token the previous request may have rotated. An entry
 * is IDLE, or busy with exactly one of:
 * UNLOCKING (waiting for the store key's derivation, see token_unlock), LOADING (reading the
 * token store on the thread pool), REQUESTING (one request to the token endpoint, or one
 * token_command run) or SAVING (writing a rotated refresh token). Callers that arrive while it
 * is busy join the waiter list, so an account never has two requests in flight. Waiters are
 * called once the entry is IDLE again, from a private list, so a callback may call token_get or
 * token_wait_cancel freely.
 *
 * Refresh token life cycle: the first need loads the store (asynchronously); when the store has
 * no file, the config's seed is used and written to the store after the first success ("seeds
 * the store once"). A rotated token replaces the old one in memory at once and is saved before
 * the access token is handed out; a token read from an old unencrypted file is saved again
 * (encrypted) after the next success. After invalid_grant the entry forgets the rejected token
 * (keeping only its digest, so neither the store nor the seed can bring it back) and answers
 * NEEDS_SIGNIN without asking the endpoint; a get re-reads the store at most once a second, so
 * `xoauthd auth ACCOUNT` takes effect at once without a restart. Grants without a refresh token
 * (password, client credentials) stop asking after NEEDS_SIGNIN until a restart: repeating a
 * rejected password is how mailboxes get locked.
 *
 * Keys: accounts with a local password need the key token_unlock derives before the store can
 * be read or written; the others use state_dir/store.key, which the store's own jobs read.
 *
 * Time is token_now() for lifetimes: uv_now() (cached per loop iteration, precise enough for
 * seconds and free of system calls) unless a test set its own clock; time() is for what is
 * shown to humans and signed into JWTs. */
#include "token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include "log.h"
#include "stats.h"
#include "token_cert_cache.h"
#include "token_grant.h"
#include "token_response.h"
#include "token_store.h"

/* Fail fast for this long after a failure that needs a human (sign-in, config). */
#define TOKEN_HARD_FAIL_MS 60000u
/* ...and after a temporary failure, doubling with each one in a row up to the max, so that 200
 * scanners retrying at once do not turn an outage of the token endpoint into a flood. A
 * Retry-After replaces the backoff (capped at the max too). */
#define TOKEN_TEMP_FAIL_MS 5000u
#define TOKEN_TEMP_FAIL_MAX_MS 120000u
/* In the NEEDS_SIGNIN window, the store is re-read at most this often. */
#define TOKEN_RELOAD_MIN_MS 1000u
#define TOKEN_DEFAULT_TIMEOUT_S 30u
/* A cached token with less life than this (or half the margin, when smaller) is not handed out:
 * the upstream login that follows takes a moment. */
#define TOKEN_MIN_LIFE_MS 30000u
/* Token endpoint answers are small; a bigger one is garbage or an attack. */
#define TOKEN_MAX_RESPONSE (256u * 1024u)

enum token_entry_state {
    TOKEN_ENTRY_IDLE,
    TOKEN_ENTRY_UNLOCKING,
    TOKEN_ENTRY_LOADING,
    TOKEN_ENTRY_REQUESTING,
    TOKEN_ENTRY_SAVING
};

struct token_entry;

/* Callers waiting for one scope's token, in the order they asked. */
TAILQ_HEAD(token_wait_list, token_wait);

/* One scope's access token. A refresh token serves every resource the user (or the admin)
 * consented to, so an account has one refresh token and one slot per scope asked for (Graph,
 * EWS and SMTP each need a token for their own resource). */
struct token_slot {
    struct token_slot *next;
    char *scope;        /* "" = no scope sent */
    char *access_token; /* cached, NULL when none */
    uint64_t expiry_ms;
    uint64_t margin_ms;
    enum token_status neg_status; /* remembered failure, valid while now < neg_until */
    uint64_t neg_until;
    unsigned temp_fails;           /* temporary failures in a row, for the backoff */
    struct token_wait_list waiters; /* waiting for this scope's request */
};

struct token_wait {
    struct token_entry *e;
    struct token_wait_list *list;
    TAILQ_ENTRY(token_wait) link; /* in *list */
    token_cb cb;
    void *arg;
    char sid[48];
};

/* Context of one thread-pool job. The job cannot be cancelled once running, so the context
 * outlives the manager when needed: token_manager_free sets e to NULL and the job's callback
 * just frees the context. */
struct token_io {
    struct token_entry *e;
};

struct token_entry {
    struct token_manager *tm;
    struct token_entry *next;
    char *name;
    char log_name[TOKEN_STORE_MAX_ACCOUNT + 8];
    const struct config_account *acct; /* the latest pointer a caller passed */
    enum token_entry_state state;

    /* Access tokens by scope. Requests of one account never overlap, whatever their scope: they
     * share the refresh token, and a rotated one must be used by the next request. */
    struct token_slot *slots;
    struct token_slot *cur; /* the scope being served; set before leaving IDLE */

    char *refresh_token; /* current one, in memory */
    int rt_loaded;       /* the store (or seed) was consulted */
    int rt_unsaved;      /* refresh_token differs from what the store holds (or it is plain) */
    int rt_reload;       /* re-read the store before the next request (after NEEDS_SIGNIN) */
    int have_rejected;
    unsigned char rejected[32]; /* SHA-256 of the refresh token the endpoint rejected */
    int store_bad;              /* the store file is unusable: a human must sign in */
    int sticky;                 /* NEEDS_SIGNIN of a grant without refresh token: until restart */

    /* The store key: derived from the local password (token_unlock) or the key file. */
    enum token_store_key_kind key_kind;
    int key_ready;
    struct token_store_key key;
    struct token_io *derive_io;
    unsigned char key_hash[32]; /* SHA-256 of the local_password string the key is for */

    uint64_t last_reload_ms;

    struct http_request *req;
    struct token_job *job;
    const struct token_grant *job_grant;
    struct token_io *io;
    char *pending_access; /* got while SAVING; published after the save */
    long pending_expires_in;

    struct token_store_status status; /* what `xoauthd tokens` shows */
    struct token_io *status_io;
    int status_dirty;

    int flow_logged;                   /* misconfiguration already logged at error level */
    int store_logged;                  /* "no usable store" already logged */
    int locked_logged;                 /* "store locked" already logged */
};

struct token_manager {
    uv_loop_t *loop;
    struct http *http;
    const struct config *cfg;
    struct token_entry *entries;
    struct token_cert_cache certs;
    int busy;         /* > 0 while callbacks run */
    int free_pending; /* token_manager_free was called from a callback */
    token_clock_fn now_ms;
};

static uint64_t token_clock_default(uv_loop_t *loop)
{
    return uv_now(loop);
}

/* Every lifetime and window is read through here, so a test's clock sees all of them. */
static uint64_t token_now(const struct token_manager *tm)
{
    return tm->now_ms(tm->loop);
}

void token_manager_set_clock(struct token_manager *tm, token_clock_fn now_ms)
{
    tm->now_ms = now_ms != NULL ? now_ms : token_clock_default;
}

static const struct token_store_key token_keyfile_key = {.kind = TOKEN_KEY_FILE};

const char *token_status_name(enum token_status s)
{
    switch (s) {
    case TOKEN_OK:
        return "ok";
    case TOKEN_TEMPFAIL:
        return "tempfail";
    case TOKEN_NEEDS_SIGNIN:
        return "needs_signin";
    case TOKEN_MISCONFIGURED:
        return "misconfigured";
    }
    return "unknown";
}

static void token_secret_free(char **p)
{
    if (*p != NULL) {
        OPENSSL_cleanse(*p, strlen(*p));
        free(*p);
        *p = NULL;
    }
}

static void token_digest(const char *s, unsigned char out[32])
{
    unsigned int len = 0;
    memset(out, 0, 32);
    if (s != NULL)
        EVP_Digest(s, strlen(s), out, &len, EVP_sha256(), NULL);
}

int token_account_password_key(const struct config *cfg, const struct config_account *acct)
{
    if (acct == NULL || acct->local_password == NULL || acct->local_password[0] == '\0')
        return 0;
    /* A client from an allowlisted network acts as the account without any password, so the
     * daemon must be able to open the store without one. */
    for (size_t i = 0; cfg != NULL && i < cfg->n_listens; i++) {
        const struct config_listen *l = &cfg->listens[i];
        for (size_t j = 0; j < l->n_allow_networks; j++)
            if (l->allow_networks[j].account_name != NULL && acct->name != NULL &&
                strcmp(l->allow_networks[j].account_name, acct->name) == 0)
                return 0;
    }
    return 1;
}

/* --- waiter lists --- */

static void token_list_append(struct token_wait_list *l, struct token_wait *w)
{
    w->list = l;
    TAILQ_INSERT_TAIL(l, w, link);
}

static void token_list_unlink(struct token_wait *w)
{
    struct token_wait_list *l = w->list;
    if (l == NULL)
        return;
    TAILQ_REMOVE(l, w, link);
    w->list = NULL;
}

static void token_list_free_all(struct token_wait_list *l)
{
    struct token_wait *w;
    while ((w = TAILQ_FIRST(l)) != NULL) {
        token_list_unlink(w);
        free(w);
    }
}

int token_config_check(const struct config *cfg, FILE *err)
{
    int problems = 0;
    for (size_t i = 0; cfg != NULL && i < cfg->n_accounts; i++) {
        const struct config_account *a = &cfg->accounts[i];
        char why[300];
        if (a->client_certificate == NULL || a->client_key == NULL)
            continue;
        struct token_client_cert *c = token_client_cert_load(a->client_certificate,
                                                             a->client_key, why, sizeof why);
        if (c == NULL) {
            fprintf(err, "%s:%d: [account %s]: %s\n", cfg->path, a->line, a->name, why);
            problems++;
        }
        token_client_cert_free(c);
    }
    return problems;
}

/* --- manager life cycle --- */

static void token_entry_bind(struct token_entry *e, const struct config_account *acct);

static void token_manager_destroy(struct token_manager *tm)
{
    while (tm->entries != NULL) {
        struct token_entry *e = tm->entries;
        tm->entries = e->next;
        while (e->slots != NULL) {
            struct token_slot *slot = e->slots;
            e->slots = slot->next;
            token_list_free_all(&slot->waiters);
            token_secret_free(&slot->access_token);
            free(slot->scope);
            free(slot);
        }
        token_secret_free(&e->refresh_token);
        token_secret_free(&e->pending_access);
        OPENSSL_cleanse(e->rejected, sizeof e->rejected);
        OPENSSL_cleanse(&e->key, sizeof e->key);
        token_entry_bind(e, NULL);
        free(e->name);
        free(e);
    }
    token_cert_cache_clear(&tm->certs);
    free(tm);
}

struct token_manager *token_manager_new(uv_loop_t *loop, struct http *http,
                                        const struct config *cfg)
{
    struct token_manager *tm;
    if (loop == NULL || cfg == NULL)
        return NULL;
    tm = calloc(1, sizeof *tm);
    if (tm == NULL)
        return NULL;
    tm->loop = loop;
    tm->http = http;
    tm->cfg = cfg;
    tm->now_ms = token_clock_default;
    token_cert_cache_load(&tm->certs, cfg);
    return tm;
}

void token_manager_set_config(struct token_manager *tm, const struct config *cfg)
{
    if (tm == NULL || cfg == NULL)
        return;
    tm->cfg = cfg;
    token_cert_cache_load(&tm->certs, cfg);
    for (struct token_entry *e = tm->entries; e != NULL; e = e->next) {
        const struct config_account *a = config_find_account(cfg, e->name);
        unsigned char d[32];
        if (a == NULL) {
            /* The account is gone: its configuration (and secrets) may go too once nothing
             * in flight reads e->acct; a session still using it binds it again. */
            if (e->state == TOKEN_ENTRY_IDLE && e->req == NULL && e->job == NULL &&
                e->io == NULL && e->derive_io == NULL)
                token_entry_bind(e, NULL);
            continue;
        }
        enum token_store_key_kind kind =
            token_account_password_key(cfg, a) ? TOKEN_KEY_PASSWORD : TOKEN_KEY_FILE;
        token_digest(a->local_password, d);
        if (kind != e->key_kind ||
            (e->key_ready && CRYPTO_memcmp(d, e->key_hash, sizeof d) != 0)) {
            log_info(NULL, "event=token_store_rekey account=%s reason=\"the local password "
                           "(or allow_networks) changed\" action=\"the next local login "
                           "derives the new key; the next save re-encrypts the refresh "
                           "token\"", e->log_name);
            e->key_kind = kind;
            e->key_ready = 0;
            OPENSSL_cleanse(&e->key, sizeof e->key);
            e->locked_logged = 0;
        }
        token_entry_bind(e, a);
    }
}

/* e->acct points into a configuration that e holds (config.h) for as long as it does. The
 * configuration in use is preferred for the account of that name: the entry outlives every
 * session, and the secrets of a configuration a reload replaced should go with the last
 * session that used it, not stay for the daemon's life. acct NULL lets go. */
static void token_entry_bind(struct token_entry *e, const struct config_account *acct)
{
    if (acct != NULL) {
        const struct config_account *cur = config_find_account(e->tm->cfg, e->name);
        if (cur != NULL)
            acct = cur;
    }
    if (acct == e->acct)
        return;
    struct config *old = e->acct != NULL ? e->acct->owner : NULL;
    e->acct = acct;
    config_hold(acct != NULL ? acct->owner : NULL);
    config_release(old);
}

static void token_io_detach(struct token_io **io)
{
    if (*io != NULL) {
        (*io)->e = NULL;
        *io = NULL;
    }
}

void token_manager_free(struct token_manager *tm)
{
    if (tm == NULL || tm->free_pending)
        return;
    for (struct token_entry *e = tm->entries; e != NULL; e = e->next) {
        for (struct token_slot *slot = e->slots; slot != NULL; slot = slot->next)
            token_list_free_all(&slot->waiters);
        if (e->req != NULL) {
            http_request_cancel(e->req);
            e->req = NULL;
        }
        if (e->job != NULL) {
            e->job_grant->cancel(e->job);
            e->job = NULL;
        }
        /* A save still completes: the rotated token reaches the disk. */
        token_io_detach(&e->io);
        token_io_detach(&e->derive_io);
        token_io_detach(&e->status_io);
        e->state = TOKEN_ENTRY_IDLE;
    }
    if (tm->busy > 0) {
        tm->free_pending = 1;
        return;
    }
    token_manager_destroy(tm);
}

/* Calls one callback with the manager marked busy, so that the callback may free it. Returns
 * 1 when the manager was freed meanwhile (the caller must not touch it again). */
static int token_call(struct token_manager *tm, token_cb cb, void *arg, enum token_status st,
                      const char *token)
{
    /* A copy: the callback may FORCE a refresh, which frees the cached token. */
    char *copy = st == TOKEN_OK ? strdup(token) : NULL;
    if (st == TOKEN_OK && copy == NULL)
        st = TOKEN_TEMPFAIL;
    tm->busy++;
    cb(arg, st, copy);
    tm->busy--;
    token_secret_free(&copy);
    if (tm->busy == 0 && tm->free_pending) {
        token_manager_destroy(tm);
        return 1;
    }
    return 0;
}

static int token_entry_begin(struct token_entry *e, enum token_status *fail);

/* Calls every waiter of e's current scope once, then starts the next scope that has waiters.
 * The entry must be IDLE (or at least consistent): callbacks may call token_get for the same
 * account. May free the manager; e must not be used afterwards. */
static void token_entry_deliver(struct token_entry *e, enum token_status st, const char *token)
{
    struct token_manager *tm = e->tm;
    /* being called back right now */
    struct token_wait_list delivering = TAILQ_HEAD_INITIALIZER(delivering);
    char *copy = NULL;
    struct token_wait *w;

    /* A callback may FORCE a refresh and so free the cached token: hand out a private copy. */
    if (st == TOKEN_OK) {
        copy = strdup(token);
        if (copy == NULL)
            st = TOKEN_TEMPFAIL;
    }
    while (e->cur != NULL && (w = TAILQ_FIRST(&e->cur->waiters)) != NULL) {
        token_list_unlink(w);
        token_list_append(&delivering, w);
    }
    tm->busy++;
    while (!tm->free_pending && (w = TAILQ_FIRST(&delivering)) != NULL) {
        token_list_unlink(w);
        log_debug(w->sid[0] != '\0' ? w->sid : NULL, "event=token_result account=%s status=%s",
                  e->log_name, token_status_name(st));
        w->cb(w->arg, st, st == TOKEN_OK ? copy : NULL);
        free(w);
    }
    token_list_free_all(&delivering); /* the manager was freed meanwhile: nobody is called */
    tm->busy--;
    token_secret_free(&copy);
    if (tm->busy == 0 && tm->free_pending) {
        token_manager_destroy(tm);
        return;
    }
    if (tm->free_pending || e->state != TOKEN_ENTRY_IDLE)
        return;
    /* Callers of other scopes that arrived meanwhile: their turn now, with the refresh token
     * this request may have rotated. */
    for (struct token_slot *slot = e->slots; slot != NULL; slot = slot->next) {
        enum token_status fail;
        if (TAILQ_EMPTY(&slot->waiters))
            continue;
        e->cur = slot;
        if (token_entry_begin(e, &fail) != 0)
            token_entry_deliver(e, fail, NULL);
        return;
    }
}

/* --- entries --- */

static struct token_entry *token_entry_get(struct token_manager *tm,
                                           const struct config_account *acct)
{
    struct token_entry *e;
    const char *name = acct->name != NULL ? acct->name : "";

    for (e = tm->entries; e != NULL; e = e->next) {
        if (strcmp(e->name, name) == 0) {
            token_entry_bind(e, acct);
            return e;
        }
    }
    e = calloc(1, sizeof *e);
    if (e == NULL)
        return NULL;
    e->name = strdup(name);
    if (e->name == NULL) {
        free(e);
        return NULL;
    }
    e->tm = tm;
    token_entry_bind(e, acct);
    e->key_kind = token_account_password_key(tm->cfg, acct) ? TOKEN_KEY_PASSWORD
                                                             : TOKEN_KEY_FILE;
    if (token_store_account_ok(name))
        snprintf(e->log_name, sizeof e->log_name, "%s", name);
    else
        log_quote(e->log_name, sizeof e->log_name, name, strlen(name));
    e->next = tm->entries;
    tm->entries = e;
    return e;
}

static int token_entry_store_usable(const struct token_entry *e)
{
    const char *dir = e->tm->cfg->state_dir;
    return dir != NULL && dir[0] != '\0' && token_store_account_ok(e->name);
}

static int token_entry_store_ok(struct token_entry *e)
{
    const char *dir = e->tm->cfg->state_dir;
    if (token_entry_store_usable(e))
        return 1;
    if (!e->store_logged) {
        e->store_logged = 1;
        log_warn(NULL, "event=token_store_unavailable account=%s reason=\"%s\" "
                       "action=\"%s\"",
                 e->log_name,
                 dir == NULL || dir[0] == '\0' ? "no state_dir" :
                 "the account name is not usable as a file name ([A-Za-z0-9._-], no leading dot)",
                 "rotated refresh tokens live in memory only and are lost on restart; fix it");
    }
    return 0;
}

static const struct token_store_key *token_entry_key(const struct token_entry *e)
{
    if (e->key_kind == TOKEN_KEY_FILE)
        return &token_keyfile_key;
    return e->key_ready ? &e->key : NULL;
}

/* --- the status file --- */

static void token_status_write(struct token_entry *e);

static void token_status_saved_cb(void *arg, int result)
{
    struct token_io *io = arg;
    struct token_entry *e = io->e;
    (void)result;
    free(io);
    if (e == NULL)
        return;
    e->status_io = NULL;
    if (e->status_dirty)
        token_status_write(e);
}

static void token_status_write(struct token_entry *e)
{
    struct token_io *io;
    if (!token_entry_store_usable(e))
        return;
    if (e->status_io != NULL) {
        e->status_dirty = 1; /* written again when the running write is done */
        return;
    }
    e->status_dirty = 0;
    io = calloc(1, sizeof *io);
    if (io == NULL)
        return;
    io->e = e;
    if (token_store_status_save(e->tm->loop, e->tm->cfg->state_dir, e->name, &e->status,
                                token_status_saved_cb, io) != 0) {
        free(io);
        return;
    }
    e->status_io = io;
}

static void token_status_update(struct token_entry *e, enum token_status st, const char *error,
                                long expires_in)
{
    long long now = (long long)time(NULL);
    snprintf(e->status.state, sizeof e->status.state, "%s", token_status_name(st));
    e->status.last_attempt = now;
    if (st == TOKEN_OK) {
        e->status.last_refresh = now;
        e->status.valid_until = now + expires_in;
        e->status.last_error[0] = '\0';
    } else {
        snprintf(e->status.last_error, sizeof e->status.last_error, "%s", error);
    }
    token_status_write(e);
}

/* --- failures --- */

/* Remembers a failure (fail fast for a while) and logs it with what the admin should do. */
static void token_entry_fail(struct token_entry *e, enum token_status st, int http_status,
                             const struct token_response *r, long retry_after)
{
    uint64_t now = token_now(e->tm);
    uint64_t window;
    char reason[256], desc[300], action[300], qaction[340];

    stats_token_failure(e->name);

    if (st == TOKEN_TEMPFAIL) {
        if (retry_after > 0) {
            uint64_t ra = (uint64_t)retry_after * 1000u;
            window = ra > TOKEN_TEMP_FAIL_MAX_MS ? TOKEN_TEMP_FAIL_MAX_MS : ra;
        } else {
            unsigned shift = e->cur->temp_fails > 1 ? e->cur->temp_fails - 1 : 0;
            window = TOKEN_TEMP_FAIL_MS << (shift > 5 ? 5 : shift);
            if (window > TOKEN_TEMP_FAIL_MAX_MS)
                window = TOKEN_TEMP_FAIL_MAX_MS;
        }
    } else {
        window = TOKEN_HARD_FAIL_MS;
    }
    e->cur->neg_status = st;
    e->cur->neg_until = now + window;

    if (st == TOKEN_NEEDS_SIGNIN && e->sticky)
        snprintf(action, sizeof action, "check the account's credentials and the mailbox at the "
                 "provider, then restart xoauthd (no further attempts until then, so the "
                 "mailbox is not locked out)");
    else if (st == TOKEN_NEEDS_SIGNIN)
        snprintf(action, sizeof action, "run `xoauthd auth %s`", e->log_name);
    else
        snprintf(action, sizeof action, "%s", r->action);
    log_quote(reason, sizeof reason, r->reason, strlen(r->reason));
    log_quote(desc, sizeof desc, r->error_description, strlen(r->error_description));
    log_quote(qaction, sizeof qaction, action, strlen(action));
    log_msg(st == TOKEN_TEMPFAIL ? LOG_WARN : LOG_ERROR, NULL,
            "event=token_error account=%s status=%s http=%d error=%s aadsts=%ld reason=%s "
            "description=%s retry_in=%us action=%s",
            e->log_name, token_status_name(st), http_status,
            r->error[0] != '\0' ? r->error : "-", r->aadsts, reason, desc,
            (unsigned)(window / 1000u), qaction);
}

/* A failure found before any request (config, store): same as a response failure. */
static void token_entry_fail_local(struct token_entry *e, enum token_status st,
                                   const char *reason, const char *action)
{
    struct token_response r;
    memset(&r, 0, sizeof r);
    /* Cut to fit, on purpose (a store's detail can be long); the precision says so to the
     * compiler, whose -Wformat-truncation otherwise fails the Release build. */
    snprintf(r.reason, sizeof r.reason, "%.*s", (int)sizeof r.reason - 1, reason);
    snprintf(r.action, sizeof r.action, "%.*s", (int)sizeof r.action - 1, action);
    token_entry_fail(e, st, 0, &r, -1);
    token_status_update(e, st, reason, 0);
}

/* --- success --- */

static void token_entry_publish(struct token_entry *e)
{
    uint64_t now = token_now(e->tm);
    uint64_t life = (uint64_t)e->pending_expires_in * 1000u;
    uint64_t margin = (uint64_t)e->acct->refresh_margin * 1000u;

    struct token_slot *slot = e->cur;

    token_secret_free(&slot->access_token);
    slot->access_token = e->pending_access;
    e->pending_access = NULL;
    slot->expiry_ms = now + life;
    /* A margin above half the lifetime would refresh on every use: cap it there. */
    slot->margin_ms = margin < life / 2 ? margin : life / 2;
    e->state = TOKEN_ENTRY_IDLE;
    token_entry_deliver(e, TOKEN_OK, slot->access_token);
}

static void token_save_cb(void *arg, int result)
{
    struct token_io *io = arg;
    struct token_entry *e = io->e;
    free(io);
    if (e == NULL)
        return;
    e->io = NULL;
    if (result == 0) {
        e->rt_unsaved = 0;
    } else {
        /* The old refresh token may be dead at the provider already: handing out the access
         * token loses nothing more, and the new refresh token stays in memory for the next
         * refresh (and the next save attempt). */
        char *path = token_store_path(e->tm->cfg->state_dir, e->name);
        char qpath[512];
        log_quote(qpath, sizeof qpath, path != NULL ? path : "-", path != NULL ? strlen(path) : 1);
        log_error(NULL, "event=token_store_failed account=%s path=%s reason=\"the rotated "
                        "refresh token could not be persisted (see the token_store_error "
                        "line)\" action=\"fix state_dir (permissions, space); until then the "
                        "token lives in memory only and a restart needs `xoauthd auth %s`\"",
                  e->log_name, qpath, e->log_name);
        free(path);
    }
    token_entry_publish(e);
}

/* Starts writing the refresh token. 0 when the save runs (state SAVING), -1 when it cannot
 * (logged; the token stays in memory). */
static int token_entry_save(struct token_entry *e)
{
    struct token_manager *tm = e->tm;
    const struct token_store_key *key = token_entry_key(e);
    struct token_io *io;

    if (key == NULL) {
        log_error(NULL, "event=token_store_failed account=%s reason=\"the store key is not "
                        "known (no local login since the start)\" action=\"the token lives in "
                        "memory only until the next local login\"", e->log_name);
        return -1;
    }
    io = calloc(1, sizeof *io);
    if (io != NULL) {
        io->e = e;
        if (token_store_save(tm->loop, tm->cfg->state_dir, e->name, key, e->refresh_token,
                             token_save_cb, io) == 0) {
            e->io = io;
            e->state = TOKEN_ENTRY_SAVING;
            return 0;
        }
        free(io);
    }
    log_error(NULL, "event=token_store_failed account=%s reason=\"could not start writing "
                    "the refresh token\" action=\"the token lives in memory only\"",
              e->log_name);
    return -1;
}

/* The answer of the endpoint (or of token_command), classified. Takes the tokens out of r. */
static void token_entry_result(struct token_entry *e, const struct token_grant *grant,
                               int http_status, struct token_response *r, long retry_after)
{
    struct token_manager *tm = e->tm;
    int rotated = 0;

    e->state = TOKEN_ENTRY_IDLE;
    if (r->status != TOKEN_OK) {
        enum token_status st = r->status;
        char err[sizeof e->status.last_error + 80];
        if (st == TOKEN_NEEDS_SIGNIN) {
            if (grant->uses_refresh_token) {
                /* Never again: neither from memory nor from the store nor from the seed. */
                if (e->refresh_token != NULL) {
                    token_digest(e->refresh_token, e->rejected);
                    e->have_rejected = 1;
                    token_secret_free(&e->refresh_token);
                }
                e->rt_reload = 1;
                e->last_reload_ms = token_now(tm); /* the store was as good as just read */
            } else {
                e->sticky = 1;
            }
        }
        if (st == TOKEN_TEMPFAIL)
            e->cur->temp_fails++;
        else
            e->cur->temp_fails = 0;
        token_entry_fail(e, st, http_status, r, retry_after);
        snprintf(err, sizeof err, "%s%s%s", r->reason, r->error[0] != '\0' ? " " : "",
                 r->error[0] != '\0' ? r->error : "");
        token_status_update(e, st, err, 0);
        token_response_clear(r);
        token_entry_deliver(e, st, NULL);
        return;
    }

    if (grant->uses_refresh_token) {
        rotated = r->refresh_token != NULL &&
                  (e->refresh_token == NULL || strcmp(r->refresh_token, e->refresh_token) != 0);
        if (rotated) {
            token_secret_free(&e->refresh_token);
            e->refresh_token = r->refresh_token;
            r->refresh_token = NULL;
            e->rt_unsaved = 1;
        }
    }
    e->rt_reload = 0;
    e->have_rejected = 0;
    e->cur->neg_until = 0;
    e->cur->temp_fails = 0;
    char qscope[300];
    log_quote(qscope, sizeof qscope, e->cur->scope, strlen(e->cur->scope));
    log_info(NULL, "event=token_refreshed account=%s grant=%s scope=%s expires_in=%ld "
             "rotated=%s", e->log_name, grant->name, qscope, r->expires_in,
             rotated ? "yes" : "no");
    token_secret_free(&e->pending_access);
    e->pending_access = r->access_token;
    r->access_token = NULL;
    e->pending_expires_in = r->expires_in;
    token_status_update(e, TOKEN_OK, "", r->expires_in);
    token_response_clear(r);

    if (grant->uses_refresh_token && e->rt_unsaved && e->refresh_token != NULL &&
        token_entry_store_ok(e) && token_entry_save(e) == 0)
        return;
    token_entry_publish(e);
}

static void token_http_done_cb(void *arg, const struct http_response *resp)
{
    struct token_entry *e = arg;
    struct token_response r;

    e->req = NULL;
    token_response_from_http(resp, &r);
    token_entry_result(e, token_grant_for(e->acct->flow), resp->status, &r, resp->retry_after);
}

static void token_job_done_cb(void *arg, struct token_response *r)
{
    struct token_entry *e = arg;
    const struct token_grant *grant = e->job_grant;
    e->job = NULL;
    token_entry_result(e, grant, 0, r, -1);
}

static int token_entry_request(struct token_entry *e, enum token_status *fail)
{
    struct token_manager *tm = e->tm;
    const struct config_account *acct = e->acct;
    const struct token_grant *grant = token_grant_for(acct->flow);
    struct token_grant_ctx ctx;
    struct token_form form;
    const char *why = NULL, *body;
    char *url = NULL;
    struct http_header hdr = {"Accept", "application/json"};
    struct http_opts opts;
    unsigned timeout_s;

    token_form_init(&form);
    memset(&ctx, 0, sizeof ctx);
    ctx.acct = acct;
    ctx.refresh_token = grant->uses_refresh_token ? e->refresh_token : NULL;
    ctx.scope = e->cur->scope[0] != '\0' ? e->cur->scope : NULL;
    ctx.now = time(NULL);
    timeout_s = tm->cfg->token_timeout != 0 ? tm->cfg->token_timeout : TOKEN_DEFAULT_TIMEOUT_S;

    if (grant->uses_refresh_token && e->refresh_token == NULL) {
        *fail = TOKEN_NEEDS_SIGNIN;
        e->rt_reload = 1; /* pick up `xoauthd auth` without a restart */
        token_entry_fail_local(e, *fail,
                               e->have_rejected ? "the refresh token was rejected and no new "
                                                  "one has been stored since"
                               : e->store_bad ? "the token store file cannot be used (see the "
                                                "token_store_unusable line)"
                                              : "no refresh token: none in the token store and "
                                                "no refresh_token= in the config",
                               "");
        goto fail;
    }
    if (grant->start != NULL) {
        e->job_grant = grant;
        e->job = grant->start(tm->loop, &ctx, timeout_s * 1000u, token_job_done_cb, e, &why);
        if (e->job == NULL) {
            *fail = TOKEN_MISCONFIGURED;
            token_entry_fail_local(e, *fail, why != NULL ? why : "the job could not start",
                                   "complete the account's section in the config");
            goto fail;
        }
        log_debug(NULL, "event=token_request account=%s grant=%s", e->log_name, grant->name);
        e->state = TOKEN_ENTRY_REQUESTING;
        stats_token_request(e->name);
        token_form_free(&form);
        return 0;
    }

    url = config_token_url(acct);
    if (url == NULL) {
        *fail = TOKEN_MISCONFIGURED;
        token_entry_fail_local(e, *fail, "no token_url for the account's provider",
                               "set token_url in the provider section");
        goto fail;
    }
    ctx.token_url = url;
    if (acct->flow == CONFIG_FLOW_CLIENT_CREDENTIALS && acct->client_certificate != NULL) {
        const char *err = NULL;
        ctx.cert = token_cert_cache_get(&tm->certs, acct, &err);
        if (ctx.cert == NULL) {
            *fail = TOKEN_MISCONFIGURED;
            token_entry_fail_local(e, *fail, err != NULL && err[0] != '\0' ? err
                                   : "the client certificate could not be loaded",
                                   "fix client_certificate / client_key and restart");
            goto fail;
        }
    }
    if (grant->build_form(&ctx, &form, &why) != 0) {
        *fail = TOKEN_MISCONFIGURED;
        token_entry_fail_local(e, *fail, why != NULL ? why : "incomplete account",
                               "complete the account's section in the config");
        goto fail;
    }
    body = token_form_finish(&form);
    if (body == NULL) {
        *fail = TOKEN_TEMPFAIL;
        token_entry_fail_local(e, *fail, "out of memory", "");
        goto fail;
    }
    memset(&opts, 0, sizeof opts);
    opts.url = url;
    opts.body = body;
    opts.body_len = strlen(body);
    opts.headers = &hdr;
    opts.n_headers = 1;
    opts.ca_file = acct->provider != NULL ? acct->provider->ca_file : NULL;
    opts.timeout_ms = timeout_s * 1000u;
    opts.max_response = TOKEN_MAX_RESPONSE;
    e->req = http_request_start(tm->http, &opts, token_http_done_cb, e);
    if (e->req == NULL) {
        *fail = TOKEN_MISCONFIGURED;
        token_entry_fail_local(e, *fail, "the token request could not start (token_url must be "
                                         "https://, or http:// to a loopback address)",
                               "check token_url");
        goto fail;
    }
    if (log_get_level() >= LOG_DEBUG) {
        char qurl[256];
        http_url_for_log(url, qurl, sizeof qurl);
        log_debug(NULL, "event=token_request account=%s grant=%s url=%s", e->log_name,
                  grant->name, qurl);
    }
    e->state = TOKEN_ENTRY_REQUESTING;
    stats_token_request(e->name);
    free(url);
    token_form_free(&form);
    return 0;

fail:
    free(url);
    token_form_free(&form);
    e->state = TOKEN_ENTRY_IDLE;
    return -1;
}

/* 1 when s is the refresh token the endpoint rejected. */
static int token_entry_is_rejected(const struct token_entry *e, const char *s)
{
    unsigned char d[32];
    int same;
    if (!e->have_rejected || s == NULL)
        return 0;
    token_digest(s, d);
    same = CRYPTO_memcmp(d, e->rejected, sizeof d) == 0;
    OPENSSL_cleanse(d, sizeof d);
    return same;
}

static void token_load_cb(void *arg, int result, char *rt, const struct token_store_info *info)
{
    struct token_io *io = arg;
    struct token_entry *e = io->e;
    int changed = 0;

    free(io);
    if (e == NULL) {
        token_secret_free(&rt);
        return;
    }
    e->io = NULL;
    e->state = TOKEN_ENTRY_IDLE;
    if (result == TOKEN_STORE_IOERR) {
        token_secret_free(&rt);
        token_entry_fail_local(e, TOKEN_TEMPFAIL, "the token store could not be read (see the "
                                                  "token_store_error line)",
                               "fix the file or its permissions");
        token_entry_deliver(e, TOKEN_TEMPFAIL, NULL);
        return;
    }
    if (result == TOKEN_STORE_UNUSABLE) {
        /* Left alone on disk; a human decides (see token_store.h). */
        char why[240];
        token_secret_free(&rt);
        e->store_bad = 1;
        e->rt_loaded = 1;
        e->rt_reload = 1;
        snprintf(why, sizeof why, "the token store file cannot be used: %s",
                 info != NULL ? info->detail : "?");
        token_entry_fail_local(e, TOKEN_NEEDS_SIGNIN, why, "");
        token_entry_deliver(e, TOKEN_NEEDS_SIGNIN, NULL);
        return;
    }
    e->store_bad = 0;
    if (result == TOKEN_STORE_FOUND) {
        if (token_entry_is_rejected(e, rt)) {
            token_secret_free(&rt);
        } else if (e->refresh_token != NULL && strcmp(e->refresh_token, rt) == 0) {
            token_secret_free(&rt);
        } else {
            token_secret_free(&e->refresh_token);
            e->refresh_token = rt;
            e->rt_unsaved = 0;
            changed = 1;
        }
        /* An old unencrypted file: write it again, encrypted, after the next success. */
        if (info != NULL && info->format == 1 && e->refresh_token != NULL)
            e->rt_unsaved = 1;
    } else if (!e->rt_loaded && e->acct->refresh_token != NULL &&
               e->acct->refresh_token[0] != '\0' &&
               !token_entry_is_rejected(e, e->acct->refresh_token)) {
        e->refresh_token = strdup(e->acct->refresh_token);
        e->rt_unsaved = 1; /* the seed goes to the store after its first success */
        changed = 1;
    }
    e->rt_loaded = 1;
    if (e->rt_reload) {
        if (changed && e->refresh_token != NULL) {
            e->rt_reload = 0;
            e->have_rejected = 0;
            for (struct token_slot *slot = e->slots; slot != NULL; slot = slot->next)
                slot->neg_until = 0; /* a new sign-in: every scope may try again */
            log_info(NULL, "event=token_store_changed account=%s reason=\"a new refresh token "
                           "was stored\"", e->log_name);
        } else if (token_now(e->tm) < e->cur->neg_until) {
            token_entry_deliver(e, e->cur->neg_status, NULL);
            return;
        }
    }
    enum token_status st;
    if (token_entry_request(e, &st) != 0)
        token_entry_deliver(e, st, NULL);
}

/* Leaves IDLE: reads the store first when the refresh token is not known (or suspect), else
 * goes to the endpoint. Returns -1 with *fail set when it failed at once (already logged). */
static int token_entry_begin(struct token_entry *e, enum token_status *fail)
{
    struct token_manager *tm = e->tm;
    const struct token_grant *grant = token_grant_for(e->acct->flow);

    int need_load = grant->uses_refresh_token && (!e->rt_loaded || e->rt_reload);
    /* A refresh may rotate the token, which must then be saved: a password account needs its
     * key before any request, not only before a load. */
    int need_key = grant->uses_refresh_token && e->key_kind == TOKEN_KEY_PASSWORD &&
                   !e->key_ready && token_entry_store_usable(e);
    if ((need_load && token_entry_store_ok(e)) || need_key) {
        const struct token_store_key *key = token_entry_key(e);
        struct token_io *io;
        if (key == NULL) {
            if (e->derive_io != NULL) {
                e->state = TOKEN_ENTRY_UNLOCKING; /* token_derive_cb goes on */
                return 0;
            }
            /* A session that did not call token_unlock, or a client let in without a password
             * for an account that has one: no window, the next login unlocks it. */
            log_msg(e->locked_logged ? LOG_DEBUG : LOG_WARN, NULL,
                    "event=token_store_locked account=%s reason=\"the token store is "
                    "encrypted with the local password and nobody has logged in with it since "
                    "the start\"", e->log_name);
            e->locked_logged = 1;
            *fail = TOKEN_TEMPFAIL;
            return -1;
        }
        if (!need_load)
            return token_entry_request(e, fail);
        io = calloc(1, sizeof *io);
        if (io != NULL) {
            io->e = e;
            if (token_store_load_async(tm->loop, tm->cfg->state_dir, e->name, key,
                                       token_load_cb, io) == 0) {
                e->io = io;
                e->state = TOKEN_ENTRY_LOADING;
                e->last_reload_ms = token_now(tm);
                return 0;
            }
            free(io);
        }
        *fail = TOKEN_TEMPFAIL;
        token_entry_fail_local(e, *fail, "could not queue the token store read", "");
        return -1;
    }
    if (grant->uses_refresh_token && !e->rt_loaded) {
        /* No usable store: the seed is all there is. */
        if (e->acct->refresh_token != NULL && e->acct->refresh_token[0] != '\0')
            e->refresh_token = strdup(e->acct->refresh_token);
        e->rt_loaded = 1;
    }
    return token_entry_request(e, fail);
}

/* --- unlocking --- */

static void token_derive_cb(void *arg, int result, const struct token_store_key *key)
{
    struct token_io *io = arg;
    struct token_entry *e = io->e;
    enum token_status st;

    free(io);
    if (e == NULL)
        return;
    e->derive_io = NULL;
    unsigned char d[32];
    token_digest(e->acct->local_password, d);
    if (result == 0 && CRYPTO_memcmp(d, e->key_hash, sizeof d) != 0) {
        /* The local password changed (reload) while this ran: the key is for the old one. */
        log_info(NULL, "event=token_store_key_discarded account=%s reason=\"the local password "
                       "changed meanwhile\"", e->log_name);
    } else if (result == 0) {
        e->key = *key;
        e->key_ready = 1;
        log_debug(NULL, "event=token_store_unlocked account=%s", e->log_name);
    } else {
        log_error(NULL, "event=token_store_error account=%s step=\"derive key\" reason=\"scrypt "
                        "failed (OpenSSL, memory)\"", e->log_name);
    }
    if (e->state != TOKEN_ENTRY_UNLOCKING)
        return;
    e->state = TOKEN_ENTRY_IDLE;
    if (!e->key_ready) {
        token_entry_deliver(e, TOKEN_TEMPFAIL, NULL);
        return;
    }
    if (token_entry_begin(e, &st) != 0)
        token_entry_deliver(e, st, NULL);
}

void token_unlock(struct token_manager *tm, const struct config_account *acct,
                  const char *password, size_t len)
{
    struct token_entry *e;
    struct token_io *io;

    if (tm == NULL || acct == NULL || password == NULL || tm->free_pending ||
        !token_account_password_key(tm->cfg, acct))
        return;
    if (!token_grant_for(acct->flow)->uses_refresh_token)
        return; /* nothing of this account is ever stored */
    e = token_entry_get(tm, acct);
    if (e == NULL || e->key_ready || e->derive_io != NULL || !token_store_account_ok(e->name))
        return;
    io = calloc(1, sizeof *io);
    if (io == NULL)
        return;
    io->e = e;
    token_digest(acct->local_password, e->key_hash);
    if (token_store_key_derive_async(tm->loop, e->name, acct->local_password, password, len,
                                     token_derive_cb, io) != 0) {
        free(io);
        log_error(NULL, "event=token_store_error account=%s step=\"derive key\" reason=\"could "
                        "not queue the work\"", e->log_name);
        return;
    }
    e->derive_io = io;
}

/* --- token_get --- */

/* Logged once per account at error level: the config will not change until a restart. */
static void token_flow_misconfigured(struct token_entry *e, const char *sid, const char *why,
                                     const char *action)
{
    const char *flow = config_flow_name(e->acct->flow);
    log_msg(e->flow_logged ? LOG_DEBUG : LOG_ERROR, sid,
            "event=token_error account=%s status=misconfigured flow=%s reason=\"%s\" "
            "action=\"%s\"",
            e->log_name, flow != NULL ? flow : "?", why, action);
    e->flow_logged = 1;
}

/* Refresh ahead of expiry, with no caller waiting; the cached token is handed out meanwhile. */
static void token_entry_background(struct token_entry *e)
{
    enum token_status st;
    log_debug(NULL, "event=token_refresh_ahead account=%s", e->log_name);
    if (token_entry_begin(e, &st) != 0)
        token_entry_deliver(e, st, NULL); /* nobody waits; keeps the state consistent */
}

/* The slot of scope in e, made on first use (NULL: out of memory). */
/* The slot of scope, or the link where a new one goes (*pp == NULL). */
static struct token_slot **token_slot_find(struct token_entry *e, const char *scope)
{
    struct token_slot **pp;
    if (scope == NULL)
        scope = "";
    for (pp = &e->slots; *pp != NULL; pp = &(*pp)->next)
        if (strcmp((*pp)->scope, scope) == 0)
            break;
    return pp;
}

static struct token_slot *token_slot_get(struct token_entry *e, const char *scope)
{
    struct token_slot **pp = token_slot_find(e, scope);
    if (*pp != NULL)
        return *pp;
    if (scope == NULL)
        scope = "";
    struct token_slot *slot = calloc(1, sizeof *slot);
    if (slot == NULL)
        return NULL;
    TAILQ_INIT(&slot->waiters);
    slot->scope = strdup(scope);
    if (slot->scope == NULL) {
        free(slot);
        return NULL;
    }
    *pp = slot; /* appended: scopes waiting for their turn are served in order */
    return slot;
}

struct token_wait *token_get(struct token_manager *tm, const struct config_account *acct,
                             int flags, const char *sid, token_cb cb, void *arg)
{
    return token_get_scope(tm, acct, acct != NULL ? acct->scope : NULL, flags, sid, cb, arg);
}

struct token_wait *token_get_scope(struct token_manager *tm, const struct config_account *acct,
                                   const char *scope, int flags, const char *sid, token_cb cb,
                                   void *arg)
{
    struct token_entry *e;
    struct token_slot *s;
    const struct token_grant *grant;
    struct token_wait *w;
    uint64_t now;
    enum token_status st;

    if (tm == NULL || acct == NULL || cb == NULL || tm->free_pending) {
        if (cb != NULL)
            cb(arg, TOKEN_TEMPFAIL, NULL);
        return NULL;
    }
    e = token_entry_get(tm, acct);
    if (e == NULL) {
        token_call(tm, cb, arg, TOKEN_TEMPFAIL, NULL);
        return NULL;
    }
    grant = token_grant_for(acct->flow);
    if (grant == NULL) {
        token_flow_misconfigured(e, sid, "unknown flow", "fix flow=");
        token_call(tm, cb, arg, TOKEN_MISCONFIGURED, NULL);
        return NULL;
    }
    if (grant->static_token != NULL) {
        const char *t = grant->static_token(acct);
        if (t == NULL) {
            token_flow_misconfigured(e, sid, "flow = static needs access_token",
                                     "set access_token in the account's section");
            token_call(tm, cb, arg, TOKEN_MISCONFIGURED, NULL);
        } else {
            token_call(tm, cb, arg, TOKEN_OK, t);
        }
        return NULL;
    }
    s = token_slot_get(e, scope);
    if (s == NULL) {
        token_call(tm, cb, arg, TOKEN_TEMPFAIL, NULL);
        return NULL;
    }

    now = token_now(tm);
    if (!(flags & TOKEN_FORCE_REFRESH) && s->access_token != NULL) {
        uint64_t hard = s->margin_ms / 2 < TOKEN_MIN_LIFE_MS ? s->margin_ms / 2
                                                             : TOKEN_MIN_LIFE_MS;
        if (now + hard < s->expiry_ms) {
            if (now + s->margin_ms >= s->expiry_ms && e->state == TOKEN_ENTRY_IDLE &&
                now >= s->neg_until && !e->sticky &&
                !(grant->uses_refresh_token && e->key_kind == TOKEN_KEY_PASSWORD &&
                  !e->key_ready && token_entry_store_usable(e))) {
                e->cur = s;
                token_entry_background(e);
            }
            if (s->access_token != NULL) { /* a failed background start leaves it alone */
                token_call(tm, cb, arg, TOKEN_OK, s->access_token);
                return NULL;
            }
        }
    }
    /* Busy with another scope: this one's remembered failure still counts. */
    int settled = e->state == TOKEN_ENTRY_IDLE || e->cur != s;
    if (settled && e->sticky) {
        log_debug(sid, "event=token_fail_fast account=%s status=needs_signin reason=sticky",
                  e->log_name);
        token_call(tm, cb, arg, TOKEN_NEEDS_SIGNIN, NULL);
        return NULL;
    }
    if (settled && now < s->neg_until) {
        /* In the NEEDS_SIGNIN window the store may hold a new token: look, now and then. */
        int look = s->neg_status == TOKEN_NEEDS_SIGNIN && e->rt_reload &&
                   now - e->last_reload_ms >= TOKEN_RELOAD_MIN_MS && token_entry_store_ok(e);
        if (!look) {
            log_debug(sid, "event=token_fail_fast account=%s status=%s retry_in=%lums",
                      e->log_name, token_status_name(s->neg_status),
                      (unsigned long)(s->neg_until - now));
            token_call(tm, cb, arg, s->neg_status, NULL);
            return NULL;
        }
    }

    w = calloc(1, sizeof *w);
    if (w == NULL) {
        token_call(tm, cb, arg, TOKEN_TEMPFAIL, NULL);
        return NULL;
    }
    w->e = e;
    w->cb = cb;
    w->arg = arg;
    if (sid != NULL)
        snprintf(w->sid, sizeof w->sid, "%s", sid);

    if (e->state == TOKEN_ENTRY_IDLE) {
        e->cur = s;
        if (flags & TOKEN_FORCE_REFRESH)
            token_secret_free(&s->access_token);
        if (token_entry_begin(e, &st) != 0) {
            free(w);
            token_call(tm, cb, arg, st, NULL);
            return NULL;
        }
    } else {
        /* The same scope joins the running request; another one waits for its turn (see
         * token_entry_deliver), without the rejected token. */
        if (e->cur != s && (flags & TOKEN_FORCE_REFRESH))
            token_secret_free(&s->access_token);
        log_debug(sid, "event=token_join account=%s", e->log_name);
    }
    token_list_append(&s->waiters, w);
    return w;
}

/* 1 when the cached token of s is the one a caller saw rejected. Digests compared in constant
 * time: no token value is compared byte by byte, copied or logged. */
static int token_slot_holds(const struct token_slot *s, const char *token)
{
    unsigned char a[32], b[32];
    int same;
    if (s->access_token == NULL || token == NULL)
        return 0;
    token_digest(s->access_token, a);
    token_digest(token, b);
    same = CRYPTO_memcmp(a, b, sizeof a) == 0;
    OPENSSL_cleanse(a, sizeof a);
    OPENSSL_cleanse(b, sizeof b);
    return same;
}

void token_rejected(struct token_manager *tm, const struct config_account *acct,
                    const char *scope, const char *token, const char *sid)
{
    if (tm == NULL || acct == NULL || tm->free_pending)
        return;
    struct token_entry *e;
    for (e = tm->entries; e != NULL; e = e->next)
        if (strcmp(e->name, acct->name != NULL ? acct->name : "") == 0)
            break;
    struct token_slot *s = e != NULL ? *token_slot_find(e, scope) : NULL;
    if (s == NULL)
        return;
    /* Many sessions may hold the token the provider just revoked: only the first rejection
     * drops it (the next token_get starts one refresh, which the others join while it runs);
     * a rejection that arrives after the refresh finds a newer token and leaves it alone. */
    int current = token_slot_holds(s, token);
    log_debug(sid, "event=token_rejected account=%s action=%s", e->log_name,
              current ? "refresh" : s->access_token != NULL ? "use_newer" : "join");
    if (current)
        token_secret_free(&s->access_token);
}

void token_wait_cancel(struct token_wait *w)
{
    if (w == NULL)
        return;
    token_list_unlink(w);
    free(w);
}

void token_account_info(struct token_manager *tm, const char *account,
                        struct token_account_info *out)
{
    memset(out, 0, sizeof *out);
    if (tm == NULL || account == NULL)
        return;
    uint64_t now = token_now(tm);
    for (const struct token_entry *e = tm->entries; e != NULL; e = e->next) {
        if (strcmp(e->name, account) != 0)
            continue;
        out->known = 1;
        /* Over every scope: the token that expires first, the failure that lasts longest. */
        for (const struct token_slot *slot = e->slots; slot != NULL; slot = slot->next) {
            if (slot->access_token != NULL && slot->expiry_ms > now) {
                long long left = (long long)((slot->expiry_ms - now) / 1000u);
                if (!out->cached || left < out->expires_in)
                    out->expires_in = left;
                out->cached = 1;
            }
            if (slot->neg_until > now) {
                long long retry = (long long)((slot->neg_until - now + 999u) / 1000u);
                if (retry > out->retry_in)
                    out->retry_in = retry;
                out->failing = 1;
            }
        }
        out->busy = e->state != TOKEN_ENTRY_IDLE;
        snprintf(out->state, sizeof out->state, "%s", e->status.state);
        out->last_refresh = e->status.last_refresh;
        snprintf(out->last_error, sizeof out->last_error, "%s", e->status.last_error);
        return;
    }
}
