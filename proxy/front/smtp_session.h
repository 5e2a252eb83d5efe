/* smtp_session: the SMTP server side that devices, clients and MTAs talk to.
 *
 * One explicit state machine per connection. Before login it answers locally (greeting, EHLO,
 * STARTTLS, AUTH PLAIN/LOGIN against the local password hash). A successful local login starts
 * the upstream login (token, TLS, XOAUTH2), and the client's 235 waits for it, so that a broken
 * token or provider shows up as 454 at AUTH time. Afterwards MAIL, RCPT, DATA and RSET go
 * upstream one at a time and the client gets the upstream's replies, the 250 after DATA included:
 * the client hears "accepted" only when the provider accepted. */
#ifndef XOAUTHD_SMTP_SESSION_H
#define XOAUTHD_SMTP_SESSION_H

#include <uv.h>

#include "accept_table.h"

struct config_listen;

/* The session_accept_fn of this protocol (accept_table.h). */
int smtp_session_accept(const struct listen_point *lp, uv_os_sock_t fd,
                        const struct sockaddr_storage *peer, const struct admission *adm);

#endif
