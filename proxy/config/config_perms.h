/* config_perms: the configuration file and the private key files it names hold secrets, so
 * none of them may be readable by every user on the machine.
 *
 * A configuration that holds a secret (the keys marked secret in config_keys.c: client_secret,
 * upstream_password, refresh_token, access_token, local_password hash; the loader records the
 * first such line) and is readable by
 * others (mode & 0004) is refused by `xoauthd run`, by a reload and by `xoauthd check`, with a
 * message naming the file, its mode, the line (never the value) and the fix. Private key files
 * (tls_key of listeners, client_key of certificate-based client credentials) are refused when
 * readable by others whatever they hold. A file without secrets may be world-readable: one
 * whose secrets are all in NAME_file files (config_secret_file.h, which refuses those files
 * when readable by others). */
#ifndef XOAUTHD_CONFIG_PERMS_H
#define XOAUTHD_CONFIG_PERMS_H

#include <stdio.h>
#include <sys/types.h>

#include "config.h"

/* The rule itself: 1 when a file with this mode must not hold a secret (others may read it). */
int config_perms_exposed(mode_t mode);

/* Checks cfg->path and every key file cfg names. Each problem goes to err as one line.
 * 0 when all is well, -1 when the configuration must be refused. */
int config_perms_check(const struct config *cfg, FILE *err);

#endif
