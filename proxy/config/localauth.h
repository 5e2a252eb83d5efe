/* localauth: the local passwords devices type, stored only as salted slow hashes.
 *
 * Hash strings carry their parameters, so old hashes keep verifying when defaults change:
 *   $scrypt$ln=15,r=8,p=1$<salt b64>$<hash b64>
 *   $pbkdf2-sha256$i=600000$<salt b64>$<hash b64>
 * A smarthost logs in once per message, so after one successful slow verification a keyed
 * fast digest (HMAC-SHA256 under a random per-process key) of hash string + password is kept
 * in memory; later logins with the same password cost microseconds. A failed attempt always pays
 * the full price, so the cache gives an attacker no oracle. Comparisons are constant-time. */
#ifndef XOAUTHD_LOCALAUTH_H
#define XOAUTHD_LOCALAUTH_H

#include <stddef.h>
#include <uv.h>

/* Returns a malloc'ed hash string for password, or NULL (allocation or OpenSSL failure). */
char *localauth_hash(const char *password, size_t len);

/* 1 when the string is a hash localauth_verify understands (used by config validation). */
int localauth_hash_is_valid(const char *hash);

/* Returns 1 when password matches hash, 0 when not, -1 when hash is malformed.
 * Slow on a miss and on the first hit; fast on later hits (the in-memory cache). */
int localauth_verify(const char *hash, const char *password, size_t len);

/* The same check without blocking the event loop: the slow hash runs on libuv's thread pool.
 * A cache hit calls cb before returning and returns NULL; otherwise returns a request whose cb
 * runs later on the loop thread with 1, 0 or -1 as above. The password is copied and cleansed.
 * When the request cannot be started (allocation failure) cb(arg, -1) runs before returning and
 * the result is NULL too: NULL always means "cb has already been called".
 * localauth_cancel() guarantees cb is never called (the work itself finishes and frees itself),
 * for a client that disconnected meanwhile.
 * Bounded: at most the hashing limit runs on the pool at once and a few more wait in a FIFO
 * here; beyond those cb(arg, LOCALAUTH_BUSY) runs before returning (NULL), without hashing.
 * urgent = 1 (a client address that logged in with that name before, authlimit.h): its own
 * FIFO, as bounded, served before the other, so that guesses cannot crowd it out. */
struct localauth_req;
#define LOCALAUTH_BUSY (-2) /* too many checks in flight: try again later (cb's result) */
typedef void (*localauth_cb)(void *arg, int result);
struct localauth_req *localauth_verify_async(uv_loop_t *loop, const char *hash,
                                             const char *password, size_t len,
                                             localauth_cb cb, void *arg);
/* The same with urgent (see above); localauth_verify_async is urgent = 0. */
struct localauth_req *localauth_verify_async_queue(uv_loop_t *loop, const char *hash,
                                                   const char *password, size_t len, int urgent,
                                                   localauth_cb cb, void *arg);
void localauth_cancel(struct localauth_req *req);

/* Sets the hashing limit (checks on the thread pool at once, at least 1) and how many more may
 * wait (tests; localauth_threadpool_setup sets both). */
void localauth_set_limits(unsigned running, unsigned queued);
/* Call before the first use of libuv's thread pool (it reads UV_THREADPOOL_SIZE once): sets
 * UV_THREADPOOL_SIZE to one hashing thread per CPU (at most 16) plus libuv's default 4 for
 * DNS and file I/O, so that a burst of logins never starves those; an administrator's own
 * UV_THREADPOOL_SIZE is kept and the hashing limit fitted into it (4 of it left to the
 * others). Sets the limits of localauth_verify_async to that many running and 8 times as many
 * waiting. Returns the hashing limit. */
unsigned localauth_threadpool_setup(void);

/* A well-formed hash with today's default cost that no password matches. Verify an unknown
 * user's password against it so that the answer takes as long as for a known user (a cheaper
 * dummy would tell an attacker which user names exist). */
const char *localauth_dummy_hash(void);

/* Drops the fast-path cache (tests, reload). */
void localauth_cache_clear(void);

/* How many full (slow) KDF runs this process made: lets tests see the fast path work without
 * measuring time. */
unsigned long localauth_slow_count(void);

/* `xoauthd hash-password`: reads one line from the tty without echo (asks twice) or from stdin,
 * prints the hash as the last line of stdout. Returns the process exit code. */
int localauth_cmd_hash_password(void);

#endif
