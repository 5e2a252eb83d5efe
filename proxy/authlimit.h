/* authlimit: failed local logins counted per client address and per user name, with a
 * temporary lockout (issue 6, authentication defences).
 *
 * A sliding window: AUTHLIMIT_MAX_FAILURES failures of one key (an address, or a user name)
 * within AUTHLIMIT_WINDOW_MS lock that key for AUTHLIMIT_LOCK_MS. A locked login is refused the
 * same way as a wrong password, after the same delay, so a client cannot tell "locked" from
 * "wrong" from "unknown user" (and learns nothing about which names exist). The table is fixed
 * in size: a flood of made-up user names evicts the oldest unlocked entries, never grows
 * memory. Locking per user lets a guesser lock a real user out for a while; the per-address
 * lock stops a single guesser first, and fail2ban (contrib/fail2ban) blocks it for longer.
 *
 * The state is process-wide (one daemon, one loop thread); times come from the caller
 * (uv_now) so that the unit test can drive the clock. */
#ifndef XOAUTHD_AUTHLIMIT_H
#define XOAUTHD_AUTHLIMIT_H

#include <stdint.h>

#define AUTHLIMIT_MAX_FAILURES 10
#define AUTHLIMIT_WINDOW_MS (10 * 60 * 1000ULL)
#define AUTHLIMIT_LOCK_MS (15 * 60 * 1000ULL)

/* 1 when peer or user is locked out now (the login must fail without a password check
 * mattering), else 0. user may be NULL. */
int authlimit_locked(const char *peer, const char *user, uint64_t now_ms);
/* Records one failed login; logs event=auth_lockout when this failure locks a key. */
void authlimit_failed(const char *peer, const char *user, uint64_t now_ms);
/* Forgets everything (tests, reload). */
void authlimit_reset(void);
/* Overrides the limits (tests); max_failures 0 restores the defaults. */
void authlimit_configure(unsigned max_failures, uint64_t window_ms, uint64_t lock_ms);

#endif
