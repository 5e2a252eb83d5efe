/* authlimit: failed local logins counted per client address and per user name, with a
 * temporary lockout, and the memory of which client addresses logged in with which name.
 *
 * A sliding window: max_failures failures of one key (an address, or a user name) within
 * window_ms lock that key for lock_ms (auth_lockout = FAILURES/WINDOW/DURATION, default
 * 10/10m/15m). A locked login is refused the same way as a wrong password, after the same
 * delay counted from the start of the request, so a client cannot tell "locked" from "wrong"
 * from "unknown user" (and learns nothing about which names exist); only the log says
 * reason="locked".
 *
 * Who is locked:
 *   - the address lock applies to every login from that address (it stops one guesser);
 *   - the name lock applies only to addresses that have not logged in successfully with that
 *     name in the last AUTHLIMIT_KNOWN_DAYS days (the "known" pairs below): a guesser
 *     elsewhere cannot lock the smarthost or a scanner out of its own account;
 *   - attempts refused because of a lock are not counted, so a client that keeps retrying (a
 *     Postfix queue, fetchmail) does not keep its own lock alive; when a lock is set the
 *     failures that set it are forgotten, so after it ends the key starts afresh;
 *   - auth_lockout_exempt networks are neither counted nor locked (the caller checks them).
 *
 * The failure table is fixed in size; see authlimit_slot() in authlimit.c for why a flood of
 * made-up names cannot evict the counter of the name under attack.
 *
 * Known pairs are kept in memory and in STATE_DIR/known_clients (authlimit_known_open), a
 * small text file rewritten atomically (temporary file + rename) only when a pair is new or
 * its date is a day old. The file is input like any other: lines that do not parse, pairs
 * older than the retention and dates in the future are skipped; losing the file only makes
 * every client "new" again.
 *
 * The state is process-wide (one daemon, one loop thread). Monotonic times come from the
 * caller (uv_now) and wall-clock seconds from an injectable clock, so that the unit test can
 * drive both. */
#ifndef XOAUTHD_AUTHLIMIT_H
#define XOAUTHD_AUTHLIMIT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "lockout_defaults.h"

#define AUTHLIMIT_KNOWN_DAYS 30
#define AUTHLIMIT_KNOWN_MAX 1024 /* remembered (address, name) pairs; the oldest goes first */

/* ms until the lock that refuses a login of user from peer ends, 0 when it is not locked.
 * user may be NULL (only the address is checked). */
uint64_t authlimit_lock_left(const char *peer, const char *user, uint64_t now_ms);
/* 1 when authlimit_lock_left() would be non-zero. */
int authlimit_locked(const char *peer, const char *user, uint64_t now_ms);
/* Checks in flight: a password check that has begun and not ended counts as a provisional
 * failure of its address and its name, so that a burst of concurrent checks cannot run past
 * the limit before the first of them fails. Call authlimit_check_begin() when a check is
 * started and authlimit_check_end() exactly once when it ends, however it ends (then
 * authlimit_failed() when it failed). */
void authlimit_check_begin(const char *peer, const char *user, uint64_t now_ms);
void authlimit_check_end(const char *peer, const char *user);
/* Like authlimit_lock_left(), and also non-zero (the lock duration) when the failures in the
 * window plus the checks in flight reach the limit for the address, or for the name from an
 * address that is not a known pair: a new check must not start. */
uint64_t authlimit_start_left(const char *peer, const char *user, uint64_t now_ms);
/* Records one failed login; logs event=auth_lockout when this failure locks a key. A failure
 * of a key that is already locked is not recorded. */
void authlimit_failed(const char *peer, const char *user, uint64_t now_ms);
/* Records a successful login: the pair becomes known (and is saved when new). */
void authlimit_succeeded(const char *peer, const char *user);
/* Forgets every failure and lock (reload, tests); the known pairs stay. */
void authlimit_reset(void);
/* Forgets the failures and locks of an address or a user name (`xoauthd unlock`). Returns
 * how many entries were removed. */
unsigned authlimit_unlock(const char *name);
/* Sets the limits; max_failures 0 restores the defaults, more than AUTHLIMIT_HISTORY is cut. */
void authlimit_configure(unsigned max_failures, uint64_t window_ms, uint64_t lock_ms);

/* ---- known pairs ---- */

/* Loads dir/known_clients (a missing file is an empty memory) and saves there from now on.
 * Returns 0, or -1 when the path cannot be built (the memory then lives in RAM only). */
int authlimit_known_open(const char *dir);
/* Replaces the in-memory pairs with those parsed from buf (the file's format; see
 * authlimit.c). Returns how many were taken. Never fails on bad input. */
size_t authlimit_known_parse(const char *buf, size_t len);
/* 1 when peer logged in with user within AUTHLIMIT_KNOWN_DAYS days. */
int authlimit_known(const char *peer, const char *user);
/* Forgets every pair in memory (tests); the file is left alone. */
void authlimit_known_reset(void);
/* The wall clock (seconds) used for the pairs; NULL restores time(). Tests. */
void authlimit_set_clock(time_t (*now)(void));

#endif
