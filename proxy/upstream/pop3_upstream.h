/* pop3_upstream: xoauthd's POP3 client towards the provider, up to a logged-in connection.
 *
 * One asynchronous sequence: access token, resolve, connect, (implicit TLS), greeting, CAPA,
 * (STLS, handshake, CAPA again: RFC 2595 section 4 says capabilities learned before TLS are
 * void), then "AUTH XOAUTH2" (or OAUTHBEARER) alone, the response after the server's "+"
 * (RFC 5034; a 1-2 KB response would not fit the 255-octet command line of RFC 2449), and
 * "+OK". When the server rejects the token — Gmail with a "+ <base64 JSON>" error challenge that
 * must be answered first, Microsoft with "-ERR Authentication failure" — the token is refreshed
 * once and AUTH tried again. A server without CAPA is tried anyway (STLS and AUTH). On success
 * the session gets the server's "+OK" text and takes the connection for the relay. */
#ifndef XOAUTHD_POP3_UPSTREAM_H
#define XOAUTHD_POP3_UPSTREAM_H

#include "config.h"
#include "conn.h"
#include "upstream.h"

struct proxy_context;
struct pop3_upstream;

struct pop3_upstream *pop3_upstream_new(struct proxy_context *ctx,
                                        const struct config_account *acct, const char *sid,
                                        void *arg);
void pop3_upstream_login(struct pop3_upstream *up, upstream_login_cb cb);
/* After UPSTREAM_OK: the text after the server's final "+OK " (may be empty). */
const char *pop3_upstream_ok_text(const struct pop3_upstream *up);
/* After UPSTREAM_OK: the logged-in connection, for the relay (owned by the caller now). */
struct conn *pop3_upstream_take_conn(struct pop3_upstream *up);
/* Ends it; no callback runs afterwards. A connection not taken is closed. */
void pop3_upstream_free(struct pop3_upstream *up);

#endif
