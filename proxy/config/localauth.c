/* localauth: slow salted hashes of local passwords plus an in-memory fast path. See localauth.h.
 *
 * Threads: the KDF runs either on the calling thread (localauth_verify) or on libuv's thread
 * pool (localauth_verify_async). The fast-path cache is only read and written on the loop thread;
 * a worker computes its digest but hands it back through after_work for insertion. */
#include "localauth.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "base64.h"
#include "sasl.h"
#include "tty_line.h"

#define LOCALAUTH_SCRYPT_LN 15
#define LOCALAUTH_SCRYPT_R 8
#define LOCALAUTH_SCRYPT_P 1
#define LOCALAUTH_SALT_LEN 16
#define LOCALAUTH_KEY_LEN 32
#define LOCALAUTH_MAX_SALT 64
#define LOCALAUTH_MIN_SALT 8
#define LOCALAUTH_MAX_KEY 64
#define LOCALAUTH_MIN_KEY 16
/* Upper bounds on parameters accepted from a hash string: a typo in the config must not make
 * every login allocate gigabytes or spin for minutes. */
#define LOCALAUTH_SCRYPT_MAX_MEM ((uint64_t)1 << 30)
#define LOCALAUTH_PBKDF2_MIN_ITER 1000u
#define LOCALAUTH_PBKDF2_MAX_ITER 10000000u
#define LOCALAUTH_CACHE_SIZE 1024
#define LOCALAUTH_DIGEST_LEN 32
#define LOCALAUTH_DEFAULT_RUNNING 2
#define LOCALAUTH_DEFAULT_QUEUED 32
#define LOCALAUTH_MAX_HASH_THREADS 16
/* Threads kept for what else uses libuv's pool (getaddrinfo of upstream hosts, the token
 * store's file writes): libuv's own default, which those had to themselves before. */
#define LOCALAUTH_OTHER_THREADS 4

enum localauth_kdf { LOCALAUTH_KDF_SCRYPT, LOCALAUTH_KDF_PBKDF2 };

struct localauth_params {
    enum localauth_kdf kdf;
    unsigned ln, r, p;   /* scrypt */
    unsigned iter;       /* pbkdf2 */
    uint8_t salt[LOCALAUTH_MAX_SALT];
    size_t salt_len;
    uint8_t key[LOCALAUTH_MAX_KEY];
    size_t key_len;
};

struct localauth_cache_entry {
    char *hash;      /* NULL = free slot */
    uint8_t digest[LOCALAUTH_DIGEST_LEN];
};

struct localauth_req {
    uv_work_t work;
    uv_loop_t *loop;
    TAILQ_ENTRY(localauth_req) queued; /* waiting for a hashing slot (in queue) */
    struct localauth_queue *queue;     /* the queue it waits in; NULL = on the pool */
    char *hash;
    char *password;
    size_t len;
    localauth_cb cb;
    void *arg;
    int cancelled;
    int result;
    int have_digest;
    uint8_t digest[LOCALAUTH_DIGEST_LEN];
};

static struct localauth_cache_entry localauth_cache[LOCALAUTH_CACHE_SIZE];
static size_t localauth_cache_next; /* FIFO eviction: the oldest insertion goes first */
static uint8_t localauth_cache_key[32];
static int localauth_cache_key_state; /* 0 = not yet, 1 = ready, -1 = RAND failed: no cache */
static atomic_ulong localauth_slow_runs;

/* Verifications in flight: at most localauth_max_running on the thread pool at once, and at
 * most localauth_max_queued more waiting in each of two FIFOs: the urgent one (clients that
 * logged in from there before) is served first, so a flood of guesses cannot push them out.
 * Loop thread only. */
struct localauth_queue {
    TAILQ_HEAD(, localauth_req) reqs;
    unsigned n;
};

static unsigned localauth_max_running = LOCALAUTH_DEFAULT_RUNNING;
static unsigned localauth_max_queued = LOCALAUTH_DEFAULT_QUEUED;
static unsigned localauth_running;
static struct localauth_queue localauth_urgent = {TAILQ_HEAD_INITIALIZER(localauth_urgent.reqs), 0};
static struct localauth_queue localauth_normal = {TAILQ_HEAD_INITIALIZER(localauth_normal.reqs), 0};

/* ---- hash string parsing ---- */

/* PHC strings use unpadded base64; padded input is accepted too. */
static long localauth_b64_decode(const char *s, size_t len, uint8_t *out, size_t outsz)
{
    return len == 0 ? -1 : base64_decode(s, len, out, outsz, BASE64_NOPAD);
}

/* Parses "name=NUMBER" at *p (advancing it) into *out; max bounds the value. */
static int localauth_parse_num(const char **p, const char *name, unsigned max, unsigned *out)
{
    size_t nl = strlen(name);
    if (strncmp(*p, name, nl) != 0 || (*p)[nl] != '=')
        return -1;
    const char *s = *p + nl + 1;
    if (*s < '1' || *s > '9')
        return -1;
    unsigned long v = 0;
    while (*s >= '0' && *s <= '9') {
        v = v * 10 + (unsigned long)(*s - '0');
        if (v > max)
            return -1;
        s++;
    }
    *out = (unsigned)v;
    *p = s;
    return 0;
}

static int localauth_parse(const char *hash, struct localauth_params *pp)
{
    memset(pp, 0, sizeof *pp);
    if (hash == NULL)
        return -1;
    const char *p;
    if (strncmp(hash, "$scrypt$", 8) == 0) {
        pp->kdf = LOCALAUTH_KDF_SCRYPT;
        p = hash + 8;
        if (localauth_parse_num(&p, "ln", 30, &pp->ln) < 0 || *p++ != ',' ||
            localauth_parse_num(&p, "r", 64, &pp->r) < 0 || *p++ != ',' ||
            localauth_parse_num(&p, "p", 16, &pp->p) < 0 || *p++ != '$')
            return -1;
        /* scrypt needs 128 * r * N bytes (times p when run in parallel; OpenSSL runs serially). */
        if ((uint64_t)128 * pp->r * ((uint64_t)1 << pp->ln) > LOCALAUTH_SCRYPT_MAX_MEM)
            return -1;
    } else if (strncmp(hash, "$pbkdf2-sha256$", 15) == 0) {
        pp->kdf = LOCALAUTH_KDF_PBKDF2;
        p = hash + 15;
        if (localauth_parse_num(&p, "i", LOCALAUTH_PBKDF2_MAX_ITER, &pp->iter) < 0 ||
            pp->iter < LOCALAUTH_PBKDF2_MIN_ITER || *p++ != '$')
            return -1;
    } else {
        return -1;
    }
    const char *dollar = strchr(p, '$');
    if (dollar == NULL)
        return -1;
    long n = localauth_b64_decode(p, (size_t)(dollar - p), pp->salt, sizeof pp->salt);
    if (n < LOCALAUTH_MIN_SALT)
        return -1;
    pp->salt_len = (size_t)n;
    p = dollar + 1;
    size_t klen = strlen(p);
    if (strchr(p, '$') != NULL)
        return -1;
    n = localauth_b64_decode(p, klen, pp->key, sizeof pp->key);
    if (n < LOCALAUTH_MIN_KEY)
        return -1;
    pp->key_len = (size_t)n;
    return 0;
}

int localauth_hash_is_valid(const char *hash)
{
    struct localauth_params pp;
    int ok = localauth_parse(hash, &pp) == 0;
    OPENSSL_cleanse(&pp, sizeof pp);
    return ok;
}

/* ---- the slow part ---- */

static int localauth_kdf(const struct localauth_params *pp, const char *password, size_t len,
                         uint8_t *out, size_t outlen)
{
    EVP_KDF *kdf = NULL;
    EVP_KDF_CTX *kctx = NULL;
    OSSL_PARAM params[8];
    size_t n = 0;
    int rc = -1;
    atomic_fetch_add(&localauth_slow_runs, 1);
    /* OSSL_PARAM wants non-const pointers; OpenSSL only reads them. An empty password still
     * needs a valid pointer. */
    char empty = '\0';
    char *pw = len > 0 ? (char *)password : &empty;
    if (pp->kdf == LOCALAUTH_KDF_SCRYPT) {
        uint64_t nval = (uint64_t)1 << pp->ln;
        uint32_t r = pp->r, p = pp->p;
        /* OpenSSL refuses to derive when the working set exceeds maxmem, whose default (32 MiB)
         * is just below what N=2^15, r=8 needs; allow V and B for these parameters plus slack. */
        uint64_t maxmem = (uint64_t)128 * r * (nval + 2) + (uint64_t)128 * r * p + (1u << 20);
        kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL);
        params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, pw, len);
        params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
                                                        (void *)pp->salt, pp->salt_len);
        params[n++] = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &nval);
        params[n++] = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r);
        params[n++] = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p);
        params[n++] = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem);
        params[n] = OSSL_PARAM_construct_end();
        if (kdf == NULL || (kctx = EVP_KDF_CTX_new(kdf)) == NULL ||
            EVP_KDF_derive(kctx, out, outlen, params) != 1)
            goto fail;
    } else {
        int iter = (int)pp->iter;
        kdf = EVP_KDF_fetch(NULL, "PBKDF2", NULL);
        params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, pw, len);
        params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
                                                        (void *)pp->salt, pp->salt_len);
        params[n++] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_ITER, &iter);
        params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0);
        params[n] = OSSL_PARAM_construct_end();
        if (kdf == NULL || (kctx = EVP_KDF_CTX_new(kdf)) == NULL ||
            EVP_KDF_derive(kctx, out, outlen, params) != 1)
            goto fail;
    }
    rc = 0;
fail:
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    return rc;
}

/* Full verification: 1 match, 0 mismatch, -1 malformed hash or KDF failure. */
static int localauth_slow_verify(const char *hash, const char *password, size_t len)
{
    struct localauth_params pp;
    uint8_t got[LOCALAUTH_MAX_KEY];
    int rc = -1;
    if (localauth_parse(hash, &pp) < 0)
        goto fail;
    if (localauth_kdf(&pp, password, len, got, pp.key_len) < 0)
        goto fail;
    rc = CRYPTO_memcmp(got, pp.key, pp.key_len) == 0 ? 1 : 0;
fail:
    OPENSSL_cleanse(got, sizeof got);
    OPENSSL_cleanse(&pp, sizeof pp);
    return rc;
}

char *localauth_hash(const char *password, size_t len)
{
    struct localauth_params pp;
    char *salt_b64 = NULL, *key_b64 = NULL, *out = NULL;
    memset(&pp, 0, sizeof pp);
    pp.kdf = LOCALAUTH_KDF_SCRYPT;
    pp.ln = LOCALAUTH_SCRYPT_LN;
    pp.r = LOCALAUTH_SCRYPT_R;
    pp.p = LOCALAUTH_SCRYPT_P;
    pp.salt_len = LOCALAUTH_SALT_LEN;
    pp.key_len = LOCALAUTH_KEY_LEN;
    if (RAND_bytes(pp.salt, (int)pp.salt_len) != 1)
        goto fail;
    if (localauth_kdf(&pp, password, len, pp.key, pp.key_len) < 0)
        goto fail;
    salt_b64 = base64_encode(pp.salt, pp.salt_len, BASE64_NOPAD);
    key_b64 = base64_encode(pp.key, pp.key_len, BASE64_NOPAD);
    if (salt_b64 == NULL || key_b64 == NULL)
        goto fail;
    size_t sz = strlen(salt_b64) + strlen(key_b64) + 64;
    out = malloc(sz);
    if (out == NULL)
        goto fail;
    snprintf(out, sz, "$scrypt$ln=%u,r=%u,p=%u$%s$%s", pp.ln, pp.r, pp.p, salt_b64, key_b64);
fail:
    free(salt_b64);
    if (key_b64 != NULL) {
        OPENSSL_cleanse(key_b64, strlen(key_b64));
        free(key_b64);
    }
    OPENSSL_cleanse(&pp, sizeof pp);
    return out;
}

const char *localauth_dummy_hash(void)
{
    /* All-zero salt and key: scrypt output of exactly zero bytes is not a practical risk. */
    return "$scrypt$ln=15,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
}

/* ---- fast path ---- */

static int localauth_cache_ready(void)
{
    if (localauth_cache_key_state == 0)
        localauth_cache_key_state =
            RAND_bytes(localauth_cache_key, sizeof localauth_cache_key) == 1 ? 1 : -1;
    return localauth_cache_key_state == 1;
}

/* An HMAC-SHA256 context keyed with the process key; NULL on failure. */
static EVP_MAC_CTX *localauth_mac_new(void)
{
    OSSL_PARAM params[2];
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    if (ctx != NULL &&
        EVP_MAC_init(ctx, localauth_cache_key, sizeof localauth_cache_key, params) != 1) {
        EVP_MAC_CTX_free(ctx);
        ctx = NULL;
    }
    return ctx;
}

/* HMAC(hash || 0x00 || password) with a keyed, freshly initialised ctx. The NUL keeps (hash,
 * password) pairs from colliding by shifting bytes between the two. */
static int localauth_mac_digest(EVP_MAC_CTX *ctx, const char *hash, const char *password,
                                size_t len, uint8_t out[LOCALAUTH_DIGEST_LEN])
{
    static const unsigned char sep = 0;
    size_t outl = 0;
    if (EVP_MAC_update(ctx, (const unsigned char *)hash, strlen(hash)) != 1 ||
        EVP_MAC_update(ctx, &sep, 1) != 1 ||
        EVP_MAC_update(ctx, (const unsigned char *)password, len) != 1 ||
        EVP_MAC_final(ctx, out, &outl, LOCALAUTH_DIGEST_LEN) != 1 || outl != LOCALAUTH_DIGEST_LEN)
        return -1;
    return 0;
}

/* HMAC-SHA256(process key, hash || 0x00 || password). Safe on any thread once the key
 * exists. */
static int localauth_digest(const char *hash, const char *password, size_t len,
                            uint8_t out[LOCALAUTH_DIGEST_LEN])
{
    EVP_MAC_CTX *ctx = localauth_mac_new();
    int rc = ctx != NULL ? localauth_mac_digest(ctx, hash, password, len, out) : -1;
    EVP_MAC_CTX_free(ctx);
    return rc;
}

/* The same digest for the loop thread's lookups (the cached-login path) from one HMAC context
 * keyed once and re-initialised per use: fetching HMAC and keying it for every login cost
 * more than the digest itself (callgrind). Loop thread only; the thread pool keeps
 * localauth_digest. */
static EVP_MAC_CTX *localauth_loop_mac;

static int localauth_digest_loop(const char *hash, const char *password, size_t len,
                                 uint8_t out[LOCALAUTH_DIGEST_LEN])
{
    if (localauth_loop_mac == NULL) {
        localauth_loop_mac = localauth_mac_new();
        if (localauth_loop_mac == NULL)
            return -1;
    } else if (EVP_MAC_init(localauth_loop_mac, NULL, 0, NULL) != 1) {
        /* No key given: HMAC starts over with the key it has. */
        return -1;
    }
    return localauth_mac_digest(localauth_loop_mac, hash, password, len, out);
}

static struct localauth_cache_entry *localauth_cache_find(const char *hash)
{
    for (size_t i = 0; i < LOCALAUTH_CACHE_SIZE; i++)
        if (localauth_cache[i].hash != NULL && strcmp(localauth_cache[i].hash, hash) == 0)
            return &localauth_cache[i];
    return NULL;
}

/* 1 when password is the one last verified against hash. Loop thread only. */
static int localauth_cache_hit(const char *hash, const char *password, size_t len)
{
    uint8_t d[LOCALAUTH_DIGEST_LEN];
    int hit = 0;
    if (!localauth_cache_ready())
        return 0;
    struct localauth_cache_entry *e = localauth_cache_find(hash);
    if (e == NULL)
        return 0;
    if (localauth_digest_loop(hash, password, len, d) == 0)
        hit = CRYPTO_memcmp(d, e->digest, sizeof d) == 0;
    OPENSSL_cleanse(d, sizeof d);
    return hit;
}

/* Loop thread only. A failed insert just means the next login is slow again. */
static void localauth_cache_insert(const char *hash, const uint8_t digest[LOCALAUTH_DIGEST_LEN])
{
    struct localauth_cache_entry *e = localauth_cache_find(hash);
    if (e == NULL) {
        char *copy = strdup(hash);
        if (copy == NULL)
            return;
        e = &localauth_cache[localauth_cache_next];
        localauth_cache_next = (localauth_cache_next + 1) % LOCALAUTH_CACHE_SIZE;
        free(e->hash);
        e->hash = copy;
    }
    memcpy(e->digest, digest, LOCALAUTH_DIGEST_LEN);
}

void localauth_cache_clear(void)
{
    for (size_t i = 0; i < LOCALAUTH_CACHE_SIZE; i++) {
        free(localauth_cache[i].hash);
        localauth_cache[i].hash = NULL;
        OPENSSL_cleanse(localauth_cache[i].digest, LOCALAUTH_DIGEST_LEN);
    }
    localauth_cache_next = 0;
}

unsigned long localauth_slow_count(void) { return atomic_load(&localauth_slow_runs); }

int localauth_verify(const char *hash, const char *password, size_t len)
{
    uint8_t d[LOCALAUTH_DIGEST_LEN];
    if (hash == NULL || password == NULL)
        return -1;
    if (localauth_cache_hit(hash, password, len))
        return 1;
    int rc = localauth_slow_verify(hash, password, len);
    if (rc == 1 && localauth_cache_ready() && localauth_digest(hash, password, len, d) == 0)
        localauth_cache_insert(hash, d);
    OPENSSL_cleanse(d, sizeof d);
    return rc;
}

/* ---- asynchronous verification ---- */

static void localauth_req_free(struct localauth_req *req)
{
    if (req->password != NULL) {
        OPENSSL_cleanse(req->password, req->len + 1);
        free(req->password);
    }
    free(req->hash);
    OPENSSL_cleanse(req->digest, sizeof req->digest);
    free(req);
}

static void localauth_work_cb(uv_work_t *work)
{
    struct localauth_req *req = work->data;
    req->result = localauth_slow_verify(req->hash, req->password, req->len);
    /* The digest is computed here (the key is read-only by now) but inserted on the loop. */
    if (req->result == 1 && localauth_cache_key_state == 1 &&
        localauth_digest(req->hash, req->password, req->len, req->digest) == 0)
        req->have_digest = 1;
    OPENSSL_cleanse(req->password, req->len + 1);
}

static void localauth_queue_pump(void);

static void localauth_after_work_cb(uv_work_t *work, int status)
{
    struct localauth_req *req = work->data;
    localauth_running--;
    localauth_queue_pump(); /* before cb: a callback that starts a check finds the slot */
    if (status == 0 && req->have_digest)
        localauth_cache_insert(req->hash, req->digest);
    if (!req->cancelled)
        req->cb(req->arg, status == 0 ? req->result : -1);
    localauth_req_free(req);
}

/* Hands req to the thread pool: 0. On failure its cb gets -1 (unless cancelled), it is freed
 * and -1 returned. */
static int localauth_submit(struct localauth_req *req)
{
    req->work.data = req;
    if (uv_queue_work(req->loop, &req->work, localauth_work_cb, localauth_after_work_cb) == 0) {
        localauth_running++;
        return 0;
    }
    if (!req->cancelled)
        req->cb(req->arg, -1);
    localauth_req_free(req);
    return -1;
}

static struct localauth_req *localauth_pop(struct localauth_queue *q)
{
    struct localauth_req *req = TAILQ_FIRST(&q->reqs);
    if (req == NULL)
        return NULL;
    TAILQ_REMOVE(&q->reqs, req, queued);
    q->n--;
    req->queue = NULL;
    return req;
}

/* Starts waiting checks while hashing slots are free, the urgent ones first. */
static void localauth_queue_pump(void)
{
    while (localauth_running < localauth_max_running) {
        struct localauth_req *req = localauth_pop(&localauth_urgent);
        if (req == NULL)
            req = localauth_pop(&localauth_normal);
        if (req == NULL)
            break;
        (void)localauth_submit(req);
    }
}

static void localauth_enqueue(struct localauth_queue *q, struct localauth_req *req)
{
    req->queue = q;
    TAILQ_INSERT_TAIL(&q->reqs, req, queued);
    q->n++;
}

static void localauth_dequeue(struct localauth_req *req)
{
    TAILQ_REMOVE(&req->queue->reqs, req, queued);
    req->queue->n--;
    req->queue = NULL;
}

void localauth_set_limits(unsigned running, unsigned queued)
{
    localauth_max_running = running > 0 ? running : 1;
    localauth_max_queued = queued;
}

unsigned localauth_threadpool_setup(void)
{
    unsigned hash = uv_available_parallelism();
    if (hash > LOCALAUTH_MAX_HASH_THREADS)
        hash = LOCALAUTH_MAX_HASH_THREADS;
    const char *env = getenv("UV_THREADPOOL_SIZE");
    unsigned long pool = env != NULL ? strtoul(env, NULL, 10) : 0;
    if (pool == 0) {
        pool = hash + LOCALAUTH_OTHER_THREADS;
        char buf[16];
        snprintf(buf, sizeof buf, "%lu", pool);
        setenv("UV_THREADPOOL_SIZE", buf, 1);
    } else if (pool <= LOCALAUTH_OTHER_THREADS) {
        hash = 1; /* an administrator's small pool: one hash, the rest for the others */
    } else if (pool - LOCALAUTH_OTHER_THREADS < hash) {
        hash = (unsigned)(pool - LOCALAUTH_OTHER_THREADS);
    }
    /* The queue holds what the hashing threads finish in under a second at 0.1 s per scrypt:
     * a login behind a burst still gets its answer well within any client's patience; beyond
     * it a temporary failure costs nothing and does not grow memory (32 MiB per scrypt run). */
    localauth_set_limits(hash, hash * 8);
    return hash;
}

struct localauth_req *localauth_verify_async(uv_loop_t *loop, const char *hash,
                                             const char *password, size_t len,
                                             localauth_cb cb, void *arg)
{
    return localauth_verify_async_queue(loop, hash, password, len, 0, cb, arg);
}

struct localauth_req *localauth_verify_async_queue(uv_loop_t *loop, const char *hash,
                                                   const char *password, size_t len, int urgent,
                                                   localauth_cb cb, void *arg)
{
    struct localauth_req *req = NULL;
    struct localauth_queue *q = urgent ? &localauth_urgent : &localauth_normal;
    if (hash == NULL || password == NULL)
        goto fail;
    if (localauth_cache_hit(hash, password, len)) {
        cb(arg, 1);
        return NULL;
    }
    if (localauth_running >= localauth_max_running && q->n >= localauth_max_queued) {
        cb(arg, LOCALAUTH_BUSY);
        return NULL;
    }
    /* Create the cache key here, on the loop thread, so workers only ever read it. */
    localauth_cache_ready();
    req = calloc(1, sizeof *req);
    if (req == NULL)
        goto fail;
    req->hash = strdup(hash);
    req->password = malloc(len + 1);
    if (req->hash == NULL || req->password == NULL)
        goto fail;
    memcpy(req->password, password, len);
    req->password[len] = '\0';
    req->len = len;
    req->cb = cb;
    req->arg = arg;
    req->loop = loop;
    if (localauth_running < localauth_max_running) {
        /* On failure cb(-1) has run and req is gone: NULL says so. */
        return localauth_submit(req) == 0 ? req : NULL;
    }
    localauth_enqueue(q, req);
    return req;
fail:
    if (req != NULL)
        localauth_req_free(req);
    cb(arg, -1);
    return NULL;
}

void localauth_cancel(struct localauth_req *req)
{
    if (req == NULL)
        return;
    if (req->queue != NULL) {
        /* Never reached the pool: nothing else refers to it. */
        localauth_dequeue(req);
        localauth_req_free(req);
        return;
    }
    req->cancelled = 1;
    /* Succeeds only while the work still waits for a thread; either way after_work frees. */
    uv_cancel((uv_req_t *)&req->work);
}

/* ---- `xoauthd hash-password` ---- */

/* One password line (not echoed on a terminal); a NUL in it is refused with a word. */
static long localauth_read_password(const char *prompt, char **out)
{
    long n = tty_line_read(prompt, 1, 0, out);
    if (n == TTY_LINE_NUL)
        fprintf(stderr, "xoauthd: the password contains a NUL byte\n");
    return n;
}

static void localauth_free_secret(char *s)
{
    if (s != NULL) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

int localauth_cmd_hash_password(void)
{
    char *pw = NULL, *again = NULL, *hash = NULL;
    long n;
    int rc = 1;
    if (isatty(STDIN_FILENO)) {
        n = localauth_read_password("Password: ", &pw);
        if (n < 0)
            goto fail;
        long m = localauth_read_password("Again: ", &again);
        if (m < 0)
            goto fail;
        if (m != n || strcmp(pw, again) != 0) {
            fprintf(stderr, "xoauthd: the passwords do not match\n");
            goto fail;
        }
    } else {
        n = localauth_read_password(NULL, &pw);
        if (n < 0) {
            fprintf(stderr, "xoauthd: no password on standard input\n");
            goto fail;
        }
    }
    if (n == 0) {
        fprintf(stderr, "xoauthd: the password is empty\n");
        goto fail;
    }
    if (n > SASL_MAX_FIELD) {
        fprintf(stderr, "xoauthd: the password is longer than %d bytes; no client could send it\n",
                SASL_MAX_FIELD);
        goto fail;
    }
    hash = localauth_hash(pw, (size_t)n);
    if (hash == NULL) {
        fprintf(stderr, "xoauthd: hashing failed (OpenSSL)\n");
        goto fail;
    }
    printf("%s\n", hash);
    if (fflush(stdout) != 0)
        goto fail;
    rc = 0;
fail:
    localauth_free_secret(pw);
    localauth_free_secret(again);
    free(hash);
    return rc;
}
