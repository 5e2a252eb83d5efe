/* server_lifecycle: starting and stopping the daemon around struct server (server.h): the
 * listeners, the control socket and the metrics port, the signals (TERM and INT stop, HUP
 * reloads), and the orderly shutdown whose order server.h explains. Apart from server.c so
 * that the modules it starts may use struct server without an include cycle. */
#ifndef XOAUTHD_SERVER_LIFECYCLE_H
#define XOAUTHD_SERVER_LIFECYCLE_H

#include "server.h"

struct privileges;

/* Sets up everything for cfg: binds the listeners, the control socket and the metrics port,
 * then drops privileges as priv says (privileges.h; NULL = keep them), then starts the rest.
 * Errors go to stderr. 0 or -1. */
int server_init(struct server *srv, uv_loop_t *loop, struct config *cfg,
                const struct privileges *priv);
/* Starts an orderly shutdown (also what SIGTERM/SIGINT do). */
void server_shutdown(struct server *srv);

#endif
