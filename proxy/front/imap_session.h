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

struct server;
struct listener;

/* Accepts a pending connection from the listener's stream. Returns 0 or -1. */
int imap_session_accept(struct server *srv, struct listener *l, uv_stream_t *stream);

#endif
