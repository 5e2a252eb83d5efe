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
 * its provider), so a superseded configuration is never freed while the daemon runs: it stays
 * in srv->old_gens with the TLS client contexts made for its providers, and goes at exit. The
 * token manager keeps its cache across reloads (entries are found by account name). */
#ifndef XOAUTHD_RELOAD_H
#define XOAUTHD_RELOAD_H

struct server;

/* Re-reads srv->cfg->path. 0 when the new configuration is in use, -1 when it was refused
 * (the reasons are logged). */
int reload_run(struct server *srv);

#endif
