/* pop3_session: the POP3 server side that old mail clients and fetchmail-style scripts use.
 *
 * Before login xoauthd answers by itself (RFC 1939 AUTHORIZATION state): the greeting, CAPA
 * (RFC 2449) with a SASL line that lists PLAIN only, STLS (RFC 2595), USER/PASS and AUTH PLAIN
 * (RFC 5034, with an initial response or after "+ "), QUIT. A successful local login starts the
 * upstream login (token, TLS, AUTH XOAUTH2/OAUTHBEARER); the client's +OK waits for it. Then the
 * session is a relay: the TRANSACTION state is the provider's, byte for byte.
 *
 * Failures use RFC 3206 response codes: a wrong password gets "-ERR [AUTH]" after a 1 s delay;
 * anything on the provider's side gets "-ERR [SYS/TEMP]" and a log line naming the account and
 * the reason. */
#ifndef XOAUTHD_POP3_SESSION_H
#define XOAUTHD_POP3_SESSION_H

#include <uv.h>

#include "accept_table.h"

/* The session_accept_fn of this protocol (accept_table.h). */
int pop3_session_accept(const struct listen_point *lp, uv_os_sock_t fd,
                        const struct sockaddr_storage *peer, const struct admission *adm);

#endif
