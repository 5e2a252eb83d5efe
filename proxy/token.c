/* token: the token manager, see token.h.
 *
 * One entry per account (found by name). An entry is IDLE, or busy with exactly one of:
 * LOADING (reading the token store on the thread pool), REQUESTING (one HTTP request to the
 * token endpoint) or SAVING (writing a rotated refresh token). Callers that arrive while it is
 * busy join the waiter list, so an account never has two requests in flight. Waiters are called
 * once the entry is IDLE again, from a private list, so a callback may call token_get or
 * token_wait_cancel freely.
 *
 * Refresh token life cycle: the first need loads the store (asynchronously); when the store has
 * no file, the config's seed is used and written to the store after the first success ("seeds
 * the store once"). A rotated token replaces the old one in memory at once and is saved before
 * the access token is handed out. After invalid_grant the entry remembers a digest of the
 * rejected token and, for a while, answers NEEDS_SIGNIN without asking the endpoint; a get in
 * that window re-reads the store (at most once a second), so `xoauthd auth ACCOUNT` takes effect
 * at once without a restart.
 *
 * Time is uv_now(): cached per loop iteration, which is precise enough for lifetimes in
 * seconds and costs no system call. */
#include "token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "token_grant.h"
#include "token_response.h"
#include "token_store.h"

/* Fail fast for this long after a failure that needs a human (sign-in, config). */
#define TOKEN_HARD_FAIL_MS 60000u
/* ...and for this long after a temporary failure, so 200 scanners retrying at once do not turn
 * an outage of the token endpoint into a flood. A Retry-After stretches it up to the max. */
#define TOKEN_TEMP_FAIL_MS 5000u
#define TOKEN_TEMP_FAIL_MAX_MS 120000u
/* In the NEEDS_SIGNIN window, the store is re-read at most this often. */
#define TOKEN_RELOAD_MIN_MS 1000u
#define TOKEN_DEFAULT_TIMEOUT_S 30u
/* Token endpoint answers are small; a bigger one is garbage or an attack. */
#define TOKEN_MAX_RESPONSE (256u * 1024u)

enum token_entry_state {
    TOKEN_ENTRY_IDLE,
    TOKEN_ENTRY_LOADING,
    TOKEN_ENTRY_REQUESTING,
    TOKEN_ENTRY_SAVING
};

struct token_entry;

struct token_wait_list {
    struct token_wait *first, *last;
};

struct token_wait {
    struct token_entry *e;
    struct token_wait_list *list;
    struct token_wait *prev, *next;
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

    char *access_token; /* cached, NULL when none */
    uint64_t expiry_ms;
    uint64_t margin_ms;

    char *refresh_token; /* current one, in memory */
    int rt_loaded;       /* the store (or seed) was consulted */
    int rt_unsaved;      /* refresh_token differs from what the store holds */
    int rt_reload;       /* re-read the store before the next request (after NEEDS_SIGNIN) */
    int have_rejected;
    unsigned char rejected[32]; /* SHA-256 of the refresh token the endpoint rejected */

    enum token_status neg_status; /* remembered failure, valid while now < neg_until */
    uint64_t neg_until;
    uint64_t last_reload_ms;

    struct http_request *req;
    struct token_io *io;
    char *pending_access; /* got while SAVING; published after the save */
    long pending_expires_in;

    struct token_wait_list waiters;    /* waiting for the busy state to end */
    struct token_wait_list delivering; /* being called back right now */
    int flow_logged;                   /* misconfiguration already logged at error level */
    int store_logged;                  /* "no usable store" already logged */
};

struct token_manager {
    uv_loop_t *loop;
    struct http *http;
    const struct config *cfg;
    struct token_entry *entries;
    int busy;         /* > 0 while callbacks run */
    int free_pending; /* token_manager_free was called from a callback */
};


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

/* --- waiter lists --- */

static void token_list_append(struct token_wait_list *l, struct token_wait *w)
{
    w->list = l;
    w->next = NULL;
    w->prev = l->last;
    if (l->last != NULL)
        l->last->next = w;
    else
        l->first = w;
    l->last = w;
}

static void token_list_unlink(struct token_wait *w)
{
    struct token_wait_list *l = w->list;
    if (l == NULL)
        return;
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        l->first = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    else
        l->last = w->prev;
    w->prev = w->next = NULL;
    w->list = NULL;
}

static void token_list_free_all(struct token_wait_list *l)
{
    while (l->first != NULL) {
        struct token_wait *w = l->first;
        token_list_unlink(w);
        free(w);
    }
}

/* --- manager life cycle --- */

static void token_manager_destroy(struct token_manager *tm)
{
    while (tm->entries != NULL) {
        struct token_entry *e = tm->entries;
        tm->entries = e->next;
        token_list_free_all(&e->waiters);
        token_list_free_all(&e->delivering);
        token_secret_free(&e->access_token);
        token_secret_free(&e->refresh_token);
        token_secret_free(&e->pending_access);
        OPENSSL_cleanse(e->rejected, sizeof e->rejected);
        free(e->name);
        free(e);
    }
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
    return tm;
}

void token_manager_free(struct token_manager *tm)
{
    if (tm == NULL || tm->free_pending)
        return;
    for (struct token_entry *e = tm->entries; e != NULL; e = e->next) {
        token_list_free_all(&e->waiters);
        token_list_free_all(&e->delivering);
        if (e->req != NULL) {
            http_request_cancel(e->req);
            e->req = NULL;
        }
        if (e->io != NULL) {
            /* A save still completes: the rotated token reaches the disk. */
            e->io->e = NULL;
            e->io = NULL;
        }
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

/* Calls every waiter of e once. The entry must be IDLE (or at least consistent): callbacks may
 * call token_get for the same account. May free the manager; e must not be used afterwards. */
static void token_entry_deliver(struct token_entry *e, enum token_status st, const char *token)
{
    struct token_manager *tm = e->tm;
    char *copy = NULL;
    struct token_wait *w;

    /* A callback may FORCE a refresh and so free e->access_token: hand out a private copy. */
    if (st == TOKEN_OK) {
        copy = strdup(token);
        if (copy == NULL)
            st = TOKEN_TEMPFAIL;
    }
    while ((w = e->waiters.first) != NULL) {
        token_list_unlink(w);
        token_list_append(&e->delivering, w);
    }
    tm->busy++;
    while (!tm->free_pending && (w = e->delivering.first) != NULL) {
        token_list_unlink(w);
        log_debug(w->sid[0] != '\0' ? w->sid : NULL, "event=token_result account=%s status=%s",
                  e->log_name, token_status_name(st));
        w->cb(w->arg, st, st == TOKEN_OK ? copy : NULL);
        free(w);
    }
    tm->busy--;
    token_secret_free(&copy);
    if (tm->busy == 0 && tm->free_pending)
        token_manager_destroy(tm);
}

/* --- entries --- */

static struct token_entry *token_entry_get(struct token_manager *tm,
                                           const struct config_account *acct)
{
    struct token_entry *e;
    const char *name = acct->name != NULL ? acct->name : "";

    for (e = tm->entries; e != NULL; e = e->next) {
        if (strcmp(e->name, name) == 0) {
            e->acct = acct;
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
    e->acct = acct;
    if (token_store_account_ok(name))
        snprintf(e->log_name, sizeof e->log_name, "%s", name);
    else
        log_quote(e->log_name, sizeof e->log_name, name, strlen(name));
    e->next = tm->entries;
    tm->entries = e;
    return e;
}

static int token_entry_store_ok(struct token_entry *e)
{
    const char *dir = e->tm->cfg->state_dir;
    if (dir != NULL && dir[0] != '\0' && token_store_account_ok(e->name))
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

/* Remembers a failure (fail fast for a while) and logs it with what the admin should do. */
static void token_entry_fail(struct token_entry *e, enum token_status st, int http_status,
                             const struct token_response *r, long retry_after)
{
    uint64_t now = uv_now(e->tm->loop);
    uint64_t window;
    char reason[256], desc[300], action[256];

    if (st == TOKEN_TEMPFAIL) {
        window = TOKEN_TEMP_FAIL_MS;
        if (retry_after > 0) {
            uint64_t ra = (uint64_t)retry_after * 1000u;
            window = ra < TOKEN_TEMP_FAIL_MS ? TOKEN_TEMP_FAIL_MS
                     : ra > TOKEN_TEMP_FAIL_MAX_MS ? TOKEN_TEMP_FAIL_MAX_MS : ra;
        }
    } else {
        window = TOKEN_HARD_FAIL_MS;
    }
    e->neg_status = st;
    e->neg_until = now + window;

    if (st == TOKEN_NEEDS_SIGNIN)
        snprintf(action, sizeof action, "run `xoauthd auth %s`", e->log_name);
    else
        snprintf(action, sizeof action, "%s", r->action);
    log_quote(reason, sizeof reason, r->reason, strlen(r->reason));
    log_quote(desc, sizeof desc, r->error_description, strlen(r->error_description));
    char qaction[300];
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
    snprintf(r.reason, sizeof r.reason, "%s", reason);
    snprintf(r.action, sizeof r.action, "%s", action);
    token_entry_fail(e, st, 0, &r, -1);
}

static void token_entry_publish(struct token_entry *e)
{
    uint64_t now = uv_now(e->tm->loop);
    uint64_t life = (uint64_t)e->pending_expires_in * 1000u;
    uint64_t margin = (uint64_t)e->acct->refresh_margin * 1000u;

    token_secret_free(&e->access_token);
    e->access_token = e->pending_access;
    e->pending_access = NULL;
    e->expiry_ms = now + life;
    /* A margin above half the lifetime would refresh on every use: cap it there. */
    e->margin_ms = margin < life / 2 ? margin : life / 2;
    e->state = TOKEN_ENTRY_IDLE;
    token_entry_deliver(e, TOKEN_OK, e->access_token);
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
        /* The old refresh token is dead at the provider already: handing out the access token
         * loses nothing more, and the new refresh token stays in memory for the next refresh. */
        char *path = token_store_path(e->tm->cfg->state_dir, e->name);
        char qpath[512];
        log_quote(qpath, sizeof qpath, path != NULL ? path : "-", path != NULL ? strlen(path) : 1);
        log_error(NULL, "event=token_store_failed account=%s path=%s reason=\"the rotated "
                        "refresh token could not be persisted (errno in the token_store_error "
                        "line)\" action=\"fix state_dir (permissions, space); until then the "
                        "token lives in memory only and a restart needs `xoauthd auth %s`\"",
                  e->log_name, qpath, e->log_name);
        free(path);
    }
    token_entry_publish(e);
}

static void token_http_done_cb(void *arg, const struct http_response *resp)
{
    struct token_entry *e = arg;
    struct token_manager *tm = e->tm;
    struct token_response r;
    int rotated;

    e->req = NULL;
    e->state = TOKEN_ENTRY_IDLE;
    memset(&r, 0, sizeof r);
    if (resp->status == 0)
        token_response_transport(&r, resp->timed_out, resp->error);
    else
        token_response_parse(resp->status, resp->body, resp->body_len, &r);

    if (r.status != TOKEN_OK) {
        enum token_status st = r.status;
        if (st == TOKEN_NEEDS_SIGNIN && e->refresh_token != NULL) {
            token_digest(e->refresh_token, e->rejected);
            e->have_rejected = 1;
            e->rt_reload = 1;
            e->last_reload_ms = uv_now(tm->loop); /* the store was as good as just read */
        }
        token_entry_fail(e, st, resp->status, &r, resp->retry_after);
        token_response_clear(&r);
        token_entry_deliver(e, st, NULL);
        return;
    }

    rotated = r.refresh_token != NULL &&
              (e->refresh_token == NULL || strcmp(r.refresh_token, e->refresh_token) != 0);
    if (rotated) {
        token_secret_free(&e->refresh_token);
        e->refresh_token = r.refresh_token;
        r.refresh_token = NULL;
        e->rt_unsaved = 1;
    }
    e->rt_reload = 0;
    e->have_rejected = 0;
    e->neg_until = 0;
    log_info(NULL, "event=token_refreshed account=%s expires_in=%ld rotated=%s", e->log_name,
             r.expires_in, rotated ? "yes" : "no");
    token_secret_free(&e->pending_access);
    e->pending_access = r.access_token;
    r.access_token = NULL;
    e->pending_expires_in = r.expires_in;
    token_response_clear(&r);

    if (e->rt_unsaved && e->refresh_token != NULL && token_entry_store_ok(e)) {
        struct token_io *io = calloc(1, sizeof *io);
        if (io != NULL) {
            io->e = e;
            if (token_store_save(tm->loop, tm->cfg->state_dir, e->name, e->refresh_token,
                                 token_save_cb, io) == 0) {
                e->io = io;
                e->state = TOKEN_ENTRY_SAVING;
                return;
            }
            free(io);
        }
        log_error(NULL, "event=token_store_failed account=%s reason=\"could not start writing "
                        "the refresh token\" action=\"the token lives in memory only\"",
                  e->log_name);
    }
    token_entry_publish(e);
}

static int token_entry_request(struct token_entry *e, enum token_status *fail)
{
    struct token_manager *tm = e->tm;
    const struct config_account *acct = e->acct;
    const struct token_grant *grant = token_grant_for(acct->flow);
    struct token_form form;
    const char *why = NULL, *body;
    char *url = NULL;
    struct http_header hdr = {"Accept", "application/json"};
    struct http_opts opts;
    unsigned timeout_s;

    token_form_init(&form);
    if (grant->build_form(acct, e->refresh_token, &form, &why) != 0) {
        if (grant->uses_refresh_token && e->refresh_token == NULL) {
            *fail = TOKEN_NEEDS_SIGNIN;
            e->rt_reload = 1; /* pick up `xoauthd auth` without a restart */
            e->have_rejected = 0;
            token_entry_fail_local(e, *fail, "no refresh token: none in the token store and no "
                                             "refresh_token= in the config", "");
        } else {
            *fail = TOKEN_MISCONFIGURED;
            token_entry_fail_local(e, *fail, why != NULL ? why : "incomplete account",
                                   "complete the account's section in the config");
        }
        goto fail;
    }
    body = token_form_finish(&form);
    url = config_token_url(acct);
    if (body == NULL || url == NULL) {
        *fail = url == NULL && body != NULL ? TOKEN_MISCONFIGURED : TOKEN_TEMPFAIL;
        token_entry_fail_local(e, *fail,
                               url == NULL ? "no token_url for the account's provider"
                                           : "out of memory",
                               url == NULL ? "set token_url in the provider section" : "");
        goto fail;
    }
    memset(&opts, 0, sizeof opts);
    opts.url = url;
    opts.body = body;
    opts.body_len = strlen(body);
    opts.headers = &hdr;
    opts.n_headers = 1;
    opts.ca_file = acct->provider != NULL ? acct->provider->ca_file : NULL;
    timeout_s = tm->cfg->token_timeout != 0 ? tm->cfg->token_timeout : TOKEN_DEFAULT_TIMEOUT_S;
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
    free(url);
    token_form_free(&form);
    return 0;

fail:
    free(url);
    token_form_free(&form);
    e->state = TOKEN_ENTRY_IDLE;
    return -1;
}

static void token_load_cb(void *arg, int result, char *rt)
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
    if (result < 0) {
        token_secret_free(&rt);
        token_entry_fail_local(e, TOKEN_TEMPFAIL, "the token store could not be read (see the "
                                                  "token_store_error line)",
                               "fix the file or its permissions");
        token_entry_deliver(e, TOKEN_TEMPFAIL, NULL);
        return;
    }
    if (result == 1) {
        unsigned char d[32];
        token_digest(rt, d);
        if (e->have_rejected && CRYPTO_memcmp(d, e->rejected, sizeof d) == 0) {
            token_secret_free(&rt);
        } else if (e->refresh_token != NULL && strcmp(e->refresh_token, rt) == 0) {
            token_secret_free(&rt);
        } else {
            token_secret_free(&e->refresh_token);
            e->refresh_token = rt;
            e->rt_unsaved = 0;
            changed = 1;
        }
        OPENSSL_cleanse(d, sizeof d);
    } else if (!e->rt_loaded && e->acct->refresh_token != NULL &&
               e->acct->refresh_token[0] != '\0') {
        e->refresh_token = strdup(e->acct->refresh_token);
        e->rt_unsaved = 1; /* the seed goes to the store after its first success */
        changed = 1;
    }
    e->rt_loaded = 1;
    if (e->rt_reload) {
        if (changed && e->refresh_token != NULL) {
            e->rt_reload = 0;
            e->have_rejected = 0;
            e->neg_until = 0;
            log_info(NULL, "event=token_store_changed account=%s reason=\"a new refresh token "
                           "was stored\"", e->log_name);
        } else if (uv_now(e->tm->loop) < e->neg_until) {
            token_entry_deliver(e, e->neg_status, NULL);
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

    if (grant->uses_refresh_token && (!e->rt_loaded || e->rt_reload) && token_entry_store_ok(e)) {
        struct token_io *io = calloc(1, sizeof *io);
        if (io != NULL) {
            io->e = e;
            if (token_store_load_async(tm->loop, tm->cfg->state_dir, e->name, token_load_cb,
                                       io) == 0) {
                e->io = io;
                e->state = TOKEN_ENTRY_LOADING;
                e->last_reload_ms = uv_now(tm->loop);
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

struct token_wait *token_get(struct token_manager *tm, const struct config_account *acct,
                             int flags, const char *sid, token_cb cb, void *arg)
{
    struct token_entry *e;
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
        token_flow_misconfigured(e, sid, "this flow is not implemented yet",
                                 "use flow = refresh_token (after `xoauthd auth`) or static");
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

    now = uv_now(tm->loop);
    if (!(flags & TOKEN_FORCE_REFRESH) && e->access_token != NULL &&
        now + e->margin_ms < e->expiry_ms) {
        token_call(tm, cb, arg, TOKEN_OK, e->access_token);
        return NULL;
    }
    if (e->state == TOKEN_ENTRY_IDLE && now < e->neg_until) {
        /* In the NEEDS_SIGNIN window the store may hold a new token: look, now and then. */
        int look = e->neg_status == TOKEN_NEEDS_SIGNIN && e->rt_reload &&
                   now - e->last_reload_ms >= TOKEN_RELOAD_MIN_MS && token_entry_store_ok(e);
        if (!look) {
            log_debug(sid, "event=token_fail_fast account=%s status=%s retry_in=%lums",
                      e->log_name, token_status_name(e->neg_status),
                      (unsigned long)(e->neg_until - now));
            token_call(tm, cb, arg, e->neg_status, NULL);
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
        if (flags & TOKEN_FORCE_REFRESH)
            token_secret_free(&e->access_token);
        if (token_entry_begin(e, &st) != 0) {
            free(w);
            token_call(tm, cb, arg, st, NULL);
            return NULL;
        }
    } else {
        log_debug(sid, "event=token_join account=%s", e->log_name);
    }
    token_list_append(&e->waiters, w);
    return w;
}

void token_wait_cancel(struct token_wait *w)
{
    if (w == NULL)
        return;
    token_list_unlink(w);
    free(w);
}
