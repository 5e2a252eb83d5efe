/* token_store_jobs: the asynchronous calls, each one job on libuv's thread pool whose result is
 * logged and delivered on the loop thread. */
#include "token_store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "log.h"

#include "atomic_file.h"
#include "token_store_internal.h"

/* ---- thread pool jobs ---- */

enum token_store_op { TOKEN_STORE_OP_LOAD, TOKEN_STORE_OP_SAVE, TOKEN_STORE_OP_DERIVE,
                      TOKEN_STORE_OP_STATUS };

struct token_store_work {
    uv_work_t req;
    enum token_store_op op;
    char *dir;
    char *account;
    char *token;    /* save: the token to write; load: the token read; derive: the password */
    size_t token_len;
    char *hash;     /* derive */
    struct token_store_key key;
    int have_key;
    struct token_store_status status;
    int rc;
    struct atomic_file_result r;
    struct token_store_info info;
    token_store_cb save_cb;
    token_store_load_cb load_cb;
    token_store_key_cb key_cb;
    void *arg;
};

static void token_store_work_free(struct token_store_work *w)
{
    if (w->token != NULL)
        token_store_cleanse_free(w->token, w->token_len);
    OPENSSL_cleanse(&w->key, sizeof w->key);
    free(w->hash);
    free(w->dir);
    free(w->account);
    free(w);
}

static void token_store_work_cb(uv_work_t *req)
{
    struct token_store_work *w = req->data;
    char *t = NULL;
    switch (w->op) {
    case TOKEN_STORE_OP_SAVE:
        w->rc = token_store_do_save(w->dir, w->account, w->have_key ? &w->key : NULL, w->token,
                                    &w->info, &w->r);
        break;
    case TOKEN_STORE_OP_LOAD:
        w->rc = token_store_do_load(w->dir, w->account, w->have_key ? &w->key : NULL, &t,
                                    &w->info, &w->r);
        w->token = t;
        w->token_len = t != NULL ? strlen(t) + 1 : 0;
        break;
    case TOKEN_STORE_OP_DERIVE:
        w->rc = token_store_key_derive(w->account, w->hash, w->token, w->token_len - 1, &w->key);
        break;
    case TOKEN_STORE_OP_STATUS:
        w->rc = token_store_do_status_save(w->dir, w->account, &w->status, &w->r);
        break;
    }
}

static void token_store_after_work_cb(uv_work_t *req, int status)
{
    struct token_store_work *w = req->data;
    if (status != 0) { /* UV_ECANCELED: never ran */
        w->rc = -1;
        w->r.step = "thread pool";
        w->r.err = -status;
    }
    switch (w->op) {
    case TOKEN_STORE_OP_SAVE:
        token_store_log("save", w->dir, w->account, w->rc, &w->r, &w->info);
        w->save_cb(w->arg, w->rc < 0 ? -1 : 0);
        break;
    case TOKEN_STORE_OP_LOAD: {
        token_store_log("load", w->dir, w->account, w->rc, &w->r, &w->info);
        char *t = w->rc == TOKEN_STORE_FOUND ? w->token : NULL;
        if (t != NULL)
            w->token = NULL; /* handed over */
        w->load_cb(w->arg, w->rc, t, &w->info);
        break;
    }
    case TOKEN_STORE_OP_DERIVE:
        w->key_cb(w->arg, w->rc == 0 ? 0 : -1, w->rc == 0 ? &w->key : NULL);
        break;
    case TOKEN_STORE_OP_STATUS:
        if (w->rc != 0)
            log_debug(NULL, "event=token_status_not_saved account=%s step=\"%s\" errno=%d",
                      w->account, w->r.step != NULL ? w->r.step : "-", w->r.err);
        if (w->save_cb != NULL)
            w->save_cb(w->arg, w->rc < 0 ? -1 : 0);
        break;
    }
    token_store_work_free(w);
}

static struct token_store_work *token_store_work_new(enum token_store_op op,
                                                     const char *state_dir, const char *account,
                                                     const struct token_store_key *key)
{
    struct token_store_work *w;
    if ((op != TOKEN_STORE_OP_DERIVE && state_dir == NULL) || !token_store_account_ok(account))
        return NULL;
    w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    w->req.data = w;
    w->op = op;
    w->dir = state_dir != NULL ? strdup(state_dir) : NULL;
    w->account = strdup(account);
    if (key != NULL) {
        w->key = *key;
        w->have_key = 1;
    }
    if ((state_dir != NULL && w->dir == NULL) || w->account == NULL) {
        token_store_work_free(w);
        return NULL;
    }
    return w;
}

static int token_store_queue(uv_loop_t *loop, struct token_store_work *w)
{
    if (uv_queue_work(loop, &w->req, token_store_work_cb, token_store_after_work_cb) != 0) {
        token_store_work_free(w);
        return -1;
    }
    return 0;
}

int token_store_save(uv_loop_t *loop, const char *state_dir, const char *account,
                     const struct token_store_key *key, const char *refresh_token,
                     token_store_cb cb, void *arg)
{
    struct token_store_work *w;
    if (refresh_token == NULL || cb == NULL || key == NULL)
        return -1;
    w = token_store_work_new(TOKEN_STORE_OP_SAVE, state_dir, account, key);
    if (w == NULL)
        return -1;
    w->save_cb = cb;
    w->arg = arg;
    w->token = strdup(refresh_token);
    w->token_len = strlen(refresh_token) + 1;
    if (w->token == NULL) {
        token_store_work_free(w);
        return -1;
    }
    return token_store_queue(loop, w);
}

int token_store_load_async(uv_loop_t *loop, const char *state_dir, const char *account,
                           const struct token_store_key *key, token_store_load_cb cb, void *arg)
{
    struct token_store_work *w;
    if (cb == NULL)
        return -1;
    w = token_store_work_new(TOKEN_STORE_OP_LOAD, state_dir, account, key);
    if (w == NULL)
        return -1;
    w->load_cb = cb;
    w->arg = arg;
    return token_store_queue(loop, w);
}

int token_store_key_derive_async(uv_loop_t *loop, const char *account, const char *hash,
                                 const char *password, size_t len, token_store_key_cb cb,
                                 void *arg)
{
    struct token_store_work *w;
    if (cb == NULL || hash == NULL || password == NULL)
        return -1;
    w = token_store_work_new(TOKEN_STORE_OP_DERIVE, NULL, account, NULL);
    if (w == NULL)
        return -1;
    w->key_cb = cb;
    w->arg = arg;
    w->hash = strdup(hash);
    w->token = malloc(len + 1);
    w->token_len = len + 1;
    if (w->hash == NULL || w->token == NULL) {
        token_store_work_free(w);
        return -1;
    }
    memcpy(w->token, password, len);
    w->token[len] = '\0';
    return token_store_queue(loop, w);
}


int token_store_status_save(uv_loop_t *loop, const char *state_dir, const char *account,
                            const struct token_store_status *st, token_store_cb cb, void *arg)
{
    struct token_store_work *w = token_store_work_new(TOKEN_STORE_OP_STATUS, state_dir, account,
                                                      NULL);
    if (w == NULL)
        return -1;
    w->status = *st;
    w->save_cb = cb;
    w->arg = arg;
    return token_store_queue(loop, w);
}
