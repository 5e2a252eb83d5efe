/* lockout_defaults: the limits of the login lockout (front/authlimit.h) when auth_lockout is
 * not set, and the largest failure count it can keep. They live in the configuration layer
 * because the configuration applies and bounds them, and the lockout is above it. */
#ifndef XOAUTHD_LOCKOUT_DEFAULTS_H
#define XOAUTHD_LOCKOUT_DEFAULTS_H

#define AUTHLIMIT_MAX_FAILURES 10
#define AUTHLIMIT_WINDOW_MS (10 * 60 * 1000ULL)
#define AUTHLIMIT_LOCK_MS (15 * 60 * 1000ULL)
#define AUTHLIMIT_HISTORY 32 /* failure times kept per key; the largest FAILURES allowed */

#endif
