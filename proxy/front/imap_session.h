/* imap_session: the IMAP server side that old mail clients talk to.
 *
 * Before login xoauthd answers by itself (RFC 9051 not-authenticated state): the greeting with
 * a CAPABILITY response code, CAPABILITY, NOOP, LOGOUT, ID, STARTTLS, LOGIN and AUTHENTICATE
 * PLAIN (with SASL-IR or a continuation), against the local password hash. A successful local
 * login starts the upstream login (token, TLS, AUTHENTICATE XOAUTH2/OAUTHBEARER) and the
 * client's tagged OK waits for it, carrying the client's tag exactly and a capability list
 * that is true through the proxy. From then on the session is a relay: bytes flow both ways
 * unparsed, so IDLE, literals of any size and every extension the provider has pass through.
 *
 * Failures: a wrong password gets NO [AUTHENTICATIONFAILED] after a 1 s delay; anything on the
 * provider's side (token endpoint, connection, TLS, a rejected token) gets NO [UNAVAILABLE]
 * (RFC 5530) and a log line naming the account and the reason, so that a client retries
 * instead of asking its user for a new password. */
#ifndef XOAUTHD_IMAP_SESSION_H
#define XOAUTHD_IMAP_SESSION_H

#include <uv.h>

#include "accept_table.h"

/* The session_accept_fn of this protocol (accept_table.h). */
int imap_session_accept(const struct listen_point *lp, uv_os_sock_t fd,
                        const struct sockaddr_storage *peer, const struct admission *adm);

#endif
