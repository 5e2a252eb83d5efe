/* reload: SIGHUP re-reads the configuration file while the daemon keeps serving.
 *
 * The new file is loaded and checked completely (config_load + token_config_check); any error
 * refuses the whole reload, logs every FILE:LINE message and keeps the running configuration.
 * Then new listeners are bound before anything changes (a port that cannot be bound refuses the
 * reload too), TLS certificates of kept listeners are re-read (certificate renewal is the most
 * common reason to reload), and only then the switch happens at once: listeners that are gone
 * close (their sessions finish), kept listeners (same address) take their new settings, new
 * logins see the new accounts and providers.
 *
 * Sessions in flight keep pointers into the configuration they started with (their account,
 * its provider), so a superseded configuration stays in srv->old_gens with the TLS client
 * contexts made for its providers for as long as something holds it (config.h: each session
 * holds the configuration in use when it was accepted, which holds the ones after it; each
 * token entry holds its account's). When the last holder ends it is freed and its secrets
 * (client secrets, refresh-token seeds, password hashes) cleansed: a daemon reloaded every day
 * neither grows nor keeps yesterday's secrets. The token manager keeps its cache across
 * reloads (entries are found by account name, and follow the configuration in use). */
#ifndef XOAUTHD_RELOAD_H
#define XOAUTHD_RELOAD_H

struct server;

/* Re-reads srv->cfg->path. 0 when the new configuration is in use, -1 when it was refused
 * (the reasons are logged). */
int reload_run(struct server *srv);

#endif
