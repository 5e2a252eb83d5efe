/* privileges: `user =` / `group =` in [xoauthd]. Started as root, `xoauthd run` binds every
 * listener, the control socket and the metrics port first, then gives up root for good:
 * supplementary groups (initgroups), group, user (real, effective and saved), and then checks
 * that setuid(0) fails, exiting otherwise. Started as that user already (systemd's User=), the
 * drop is a no-op; started as anyone else with user = set, xoauthd refuses to start, since it
 * could not switch. Root without user = runs as root, with a warning.
 *
 * state_dir is checked before that: created 0700 (and given to the run user) when missing;
 * refused when it is owned by another user or writable by group or others, since whoever can
 * write there can replace the token store and the control socket. An existing directory is
 * never chowned: a mistyped state_dir = /var/lib must not hand /var/lib to the daemon.
 *
 * `xoauthd check` runs privileges_prepare and privileges_state_dir_check: the same rules and
 * messages, as `run` started by the same user would apply them, creating nothing. */
#ifndef XOAUTHD_PRIVILEGES_H
#define XOAUTHD_PRIVILEGES_H

#include <stdio.h>
#include <sys/types.h>

#include "config.h"

struct privileges {
    int drop;        /* 1 when privileges_drop has work to do (root with user = set) */
    uid_t uid;       /* what the daemon runs as once started */
    gid_t gid;
    char user[64];   /* for messages and initgroups */
    char group[64];
};

/* Resolves cfg's user and group and decides what start-up does. Errors go to err (a user that
 * does not exist; user = set while started as a different, unprivileged user). 0 or -1. */
int privileges_prepare(const struct config *cfg, struct privileges *p, FILE *err);

/* Why a state_dir with this owner and mode cannot serve a daemon running as uid: a short
 * reason, or NULL when it can. */
const char *privileges_state_dir_problem(uid_t owner, mode_t mode, uid_t uid);

/* Checks state_dir for p (creating it when missing). Errors go to err. 0 or -1. */
int privileges_state_dir(const char *dir, const struct privileges *p, FILE *err);

/* The same checks without changing anything (xoauthd check): 0 when state_dir can serve p, 1
 * when it is missing and privileges_state_dir would create it (its parent exists and we may
 * write there), -1 with the message privileges_state_dir prints otherwise. */
int privileges_state_dir_check(const char *dir, const struct privileges *p, FILE *err);

/* Gives path (a socket made while still root) to the run user, so that the daemon can remove it
 * and its user can connect. Harmless when there is no drop. */
void privileges_give(const struct privileges *p, const char *path);

/* Drops to p's user and group for good. Errors (including root being regainable) go to err.
 * 0 or -1; the caller must not go on after -1. */
int privileges_drop(const struct privileges *p, FILE *err);

#endif
