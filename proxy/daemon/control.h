/* control: the running daemon's local control socket, and `xoauthd status`, its client.
 *
 * A unix socket at control_socket (default STATE_DIR/control.sock), mode 0600, so only the
 * daemon's user (and root) can use it. A client sends one request line, "status" or
 * "unlock NAME" (at most 511 bytes), and the daemon answers and closes; a client that sends
 * nothing gets the status text after 200 ms. Nothing else is parsed. The text shows
 * listeners, live sessions (session_log.h), each account's token state (token.h) and the
 * counters (stats.h); never a secret. The socket is opened with the listeners and closed at
 * shutdown, and the path is removed then. A reload keeps the socket it started with. */
#ifndef XOAUTHD_CONTROL_H
#define XOAUTHD_CONTROL_H

#include <stdio.h>

struct server;
struct config;
struct control;

/* Binds the socket (a stale socket file at path is replaced). NULL on failure, logged. */
struct control *control_new(struct server *srv, const char *path);
/* Stops it; clients in progress are closed; memory goes in the close callbacks. */
void control_close(struct control *ctl);

/* The control socket path for cfg (control_socket, or STATE_DIR/control.sock); malloc'ed. */
char *control_socket_path(const struct config *cfg);
/* Writes the status text for srv to out. */
void control_status_write(struct server *srv, FILE *out);

/* `xoauthd status [-c FILE]`: prints what the running daemon says. Exit code 0, 1 (not
 * running / no access) or 2 (usage). */
int control_cmd_status(int argc, char **argv);
/* `xoauthd unlock [-c FILE] NAME|ADDRESS`: the running daemon forgets the failures and the
 * lock of that user name or client address, and says how many entries it removed. Exit code
 * as for status. */
int control_cmd_unlock(int argc, char **argv);

#endif
