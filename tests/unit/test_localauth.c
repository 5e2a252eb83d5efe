/* Unit tests for localauth.c: hash format, verification, the fast-path cache, async verify. */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <uv.h>

#include "base64.h"
#include "check.h"
#include "localauth.h"

static void test_hash_roundtrip(void)
{
    const char *pw = "correct horse";
    char *h1 = localauth_hash(pw, strlen(pw));
    char *h2 = localauth_hash(pw, strlen(pw));
    CHECK(h1 != NULL && h2 != NULL);
    if (h1 == NULL || h2 == NULL)
        goto out;
    CHECK(strncmp(h1, "$scrypt$ln=15,r=8,p=1$", 22) == 0);
    CHECK(strcmp(h1, h2) != 0); /* random salt */
    CHECK(localauth_hash_is_valid(h1));
    CHECK(localauth_verify(h1, pw, strlen(pw)) == 1);
    CHECK(localauth_verify(h1, "wrong", 5) == 0);
    CHECK(localauth_verify(h2, pw, strlen(pw)) == 1);
    CHECK(localauth_verify(h1, pw, strlen(pw) - 1) == 0); /* prefix of the password */

    /* Malformed hashes: -1, and not valid for the config. */
    static const char *const bad[] = {
        "",
        "plaintext",
        "$scrypt$",
        "$scrypt$ln=15,r=8,p=1$",
        "$scrypt$ln=15,r=8,p=1$c2FsdHNhbHRzYWx0$",
        "$scrypt$ln=15,r=8$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2g",
        "$scrypt$ln=40,r=8,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2g",
        "$scrypt$ln=15,r=8,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2g$x",
        "$scrypt$ln=15,r=8,p=1$!!!$aGFzaGhhc2hoYXNoaGFzaGhhc2g",
        "$pbkdf2-sha256$i=10$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2g",
        "$pbkdf2-sha1$i=600000$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2g",
        "$md5$abc",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(!localauth_hash_is_valid(bad[i]));
        CHECK(localauth_verify(bad[i], pw, strlen(pw)) == -1);
    }
    CHECK(!localauth_hash_is_valid(NULL));
    /* The dummy costs a full verification and matches nothing. */
    CHECK(localauth_hash_is_valid(localauth_dummy_hash()));
    CHECK(strncmp(localauth_dummy_hash(), h1, 22) == 0); /* same KDF and parameters */
    unsigned long before = localauth_slow_count();
    CHECK(localauth_verify(localauth_dummy_hash(), pw, strlen(pw)) == 0);
    CHECK(localauth_slow_count() == before + 1);
out:
    free(h1);
    free(h2);
}

/* Builds a $pbkdf2-sha256$ string the way another tool would, with OpenSSL directly. */
static char *make_pbkdf2(const char *pw, int iter)
{
    unsigned char salt[16], key[32];
    char *out = NULL;
    for (int i = 0; i < 16; i++)
        salt[i] = (unsigned char)(i * 7 + 1);
    if (PKCS5_PBKDF2_HMAC(pw, (int)strlen(pw), salt, sizeof salt, iter, EVP_sha256(), sizeof key,
                          key) != 1)
        return NULL;
    char *s = base64_encode(salt, sizeof salt, 0);
    char *k = base64_encode(key, sizeof key, 0);
    if (s != NULL && k != NULL) {
        /* PHC style: no padding. */
        s[strcspn(s, "=")] = '\0';
        k[strcspn(k, "=")] = '\0';
        size_t sz = strlen(s) + strlen(k) + 64;
        out = malloc(sz);
        if (out != NULL)
            snprintf(out, sz, "$pbkdf2-sha256$i=%d$%s$%s", iter, s, k);
    }
    free(s);
    free(k);
    return out;
}

static void test_pbkdf2(void)
{
    char *h = make_pbkdf2("s3cret", 600000);
    CHECK(h != NULL);
    if (h == NULL)
        return;
    CHECK(localauth_hash_is_valid(h));
    CHECK(localauth_verify(h, "s3cret", 6) == 1);
    CHECK(localauth_verify(h, "s3cre", 5) == 0);
    free(h);
}

static void test_cache(void)
{
    const char *pw = "smarthost pw";
    localauth_cache_clear();
    char *h = localauth_hash(pw, strlen(pw));
    CHECK(h != NULL);
    if (h == NULL)
        return;
    unsigned long n0 = localauth_slow_count();
    CHECK(localauth_verify(h, pw, strlen(pw)) == 1);
    unsigned long n1 = localauth_slow_count();
    CHECK(n1 == n0 + 1);
    CHECK(localauth_verify(h, pw, strlen(pw)) == 1); /* from the cache */
    CHECK(localauth_slow_count() == n1);
    CHECK(localauth_verify(h, "smarthost pX", 12) == 0); /* a miss pays full price */
    CHECK(localauth_slow_count() == n1 + 1);
    CHECK(localauth_verify(h, pw, strlen(pw)) == 1); /* still cached after a failure */
    CHECK(localauth_slow_count() == n1 + 1);
    localauth_cache_clear();
    CHECK(localauth_verify(h, pw, strlen(pw)) == 1);
    CHECK(localauth_slow_count() == n1 + 2);
    free(h);
}

struct async_result {
    int calls;
    int result;
};

static void async_cb(void *arg, int result)
{
    struct async_result *r = arg;
    r->calls++;
    r->result = result;
}

static void test_async(void)
{
    const char *pw = "async pw";
    uv_loop_t loop;
    CHECK(uv_loop_init(&loop) == 0);
    localauth_cache_clear();
    char *h = localauth_hash(pw, strlen(pw));
    CHECK(h != NULL);
    if (h == NULL)
        return;

    struct async_result ok = {0, -9}, wrong = {0, -9}, bad = {0, -9}, cancelled = {0, -9};
    unsigned long n0 = localauth_slow_count();
    struct localauth_req *r1 = localauth_verify_async(&loop, h, pw, strlen(pw), async_cb, &ok);
    struct localauth_req *r2 = localauth_verify_async(&loop, h, "nope", 4, async_cb, &wrong);
    struct localauth_req *r3 = localauth_verify_async(&loop, "junk", pw, strlen(pw), async_cb, &bad);
    struct localauth_req *r4 =
        localauth_verify_async(&loop, h, pw, strlen(pw), async_cb, &cancelled);
    CHECK(r1 != NULL && r2 != NULL && r3 != NULL && r4 != NULL);
    CHECK(ok.calls == 0); /* not before the loop runs */
    localauth_cancel(r4);
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(ok.calls == 1 && ok.result == 1);
    CHECK(wrong.calls == 1 && wrong.result == 0);
    CHECK(bad.calls == 1 && bad.result == -1);
    CHECK(cancelled.calls == 0);
    CHECK(localauth_slow_count() >= n0 + 2);

    /* The success above filled the cache on the loop thread: now a synchronous hit. */
    struct async_result hit = {0, -9};
    unsigned long n1 = localauth_slow_count();
    CHECK(localauth_verify_async(&loop, h, pw, strlen(pw), async_cb, &hit) == NULL);
    CHECK(hit.calls == 1 && hit.result == 1);
    CHECK(localauth_slow_count() == n1);
    CHECK(localauth_verify(h, pw, strlen(pw)) == 1);
    CHECK(localauth_slow_count() == n1);

    /* A wrong password after a cached right one still fails, asynchronously and slowly. */
    struct async_result wrong2 = {0, -9};
    CHECK(localauth_verify_async(&loop, h, "nope", 4, async_cb, &wrong2) != NULL);
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(wrong2.calls == 1 && wrong2.result == 0);
    CHECK(localauth_slow_count() == n1 + 1);

    CHECK(uv_loop_close(&loop) == 0);
    free(h);
}

/* At most `running` checks on the pool and `queued` more waiting; beyond: LOCALAUTH_BUSY at
 * once, without a hash. A cancelled waiting check never runs and never calls back. */
static void test_async_bounded(void)
{
    const char *pw = "bounded pw";
    uv_loop_t loop;
    CHECK(uv_loop_init(&loop) == 0);
    localauth_cache_clear();
    localauth_set_limits(1, 2);
    const char *h = localauth_dummy_hash();
    struct async_result r[5];
    struct localauth_req *req[5];
    unsigned long n0 = localauth_slow_count();
    for (int i = 0; i < 5; i++) {
        r[i].calls = 0;
        r[i].result = -9;
        req[i] = localauth_verify_async(&loop, h, pw, strlen(pw), async_cb, &r[i]);
    }
    CHECK(req[0] != NULL && req[1] != NULL && req[2] != NULL);
    CHECK(req[3] == NULL && r[3].calls == 1 && r[3].result == LOCALAUTH_BUSY);
    CHECK(req[4] == NULL && r[4].calls == 1 && r[4].result == LOCALAUTH_BUSY);
    localauth_cancel(req[1]); /* waiting: dropped here */
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(r[0].calls == 1 && r[0].result == 0);
    CHECK(r[1].calls == 0);
    CHECK(r[2].calls == 1 && r[2].result == 0);
    CHECK(localauth_slow_count() == n0 + 2);
    /* The slots came free again. */
    struct async_result again = {0, -9};
    CHECK(localauth_verify_async(&loop, h, pw, strlen(pw), async_cb, &again) != NULL);
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(again.calls == 1 && again.result == 0);
    /* Urgent checks have their own bounded queue, served first: with both queues full the
     * urgent one still gets in, and finishes before the earlier normal one. */
    struct async_result n[3], u[2];
    for (int i = 0; i < 3; i++) {
        n[i].calls = 0;
        CHECK(localauth_verify_async(&loop, h, pw, strlen(pw), async_cb, &n[i]) != NULL);
    }
    struct async_result extra = {0, -9};
    CHECK(localauth_verify_async(&loop, h, pw, strlen(pw), async_cb, &extra) == NULL &&
          extra.result == LOCALAUTH_BUSY);
    for (int i = 0; i < 2; i++) {
        u[i].calls = 0;
        CHECK(localauth_verify_async_queue(&loop, h, pw, strlen(pw), 1, async_cb, &u[i]) != NULL);
    }
    CHECK(localauth_verify_async_queue(&loop, h, pw, strlen(pw), 1, async_cb, &extra) == NULL);
    CHECK(uv_run(&loop, UV_RUN_ONCE) >= 0);
    while (n[0].calls == 0) /* the one already running */
        uv_run(&loop, UV_RUN_ONCE);
    while (u[0].calls + u[1].calls < 2 && n[1].calls == 0)
        uv_run(&loop, UV_RUN_ONCE);
    CHECK(u[0].calls == 1 && u[1].calls == 1 && n[1].calls == 0);
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(n[1].calls == 1 && n[2].calls == 1);
    CHECK(uv_loop_close(&loop) == 0);
    /* The pool size: hashing threads plus libuv's 4 for DNS and files. */
    unsetenv("UV_THREADPOOL_SIZE");
    unsigned hash = localauth_threadpool_setup();
    char want[16];
    snprintf(want, sizeof want, "%u", hash + 4);
    CHECK(hash >= 1 && getenv("UV_THREADPOOL_SIZE") != NULL &&
          strcmp(getenv("UV_THREADPOOL_SIZE"), want) == 0);
    setenv("UV_THREADPOOL_SIZE", "3", 1); /* an administrator's own: kept */
    CHECK(localauth_threadpool_setup() == 1 && strcmp(getenv("UV_THREADPOOL_SIZE"), "3") == 0);
    setenv("UV_THREADPOOL_SIZE", "6", 1);
    CHECK(localauth_threadpool_setup() == (hash < 2 ? hash : 2));
    localauth_set_limits(4, 32);
}

int main(void)
{
    test_hash_roundtrip();
    test_pbkdf2();
    test_cache();
    test_async();
    test_async_bounded();
    localauth_cache_clear();
    return CHECK_DONE();
}
