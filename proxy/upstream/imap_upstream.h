/* imap_upstream: xoauthd's IMAP client towards the provider, up to a logged-in connection.
 *
 * One asynchronous sequence: access token, resolve, connect, (implicit TLS), greeting,
 * CAPABILITY (unless the greeting carried it), (STARTTLS, handshake, CAPABILITY again, because
 * RFC 9051 section 6.2.1 says what was learned before TLS must be forgotten), then AUTHENTICATE
 * XOAUTH2 or OAUTHBEARER: with the response on the command line when the server advertises
 * SASL-IR (RFC 4959), else after its "+" continuation. When the server rejects the token —
 * Gmail with a "+ <base64 JSON>" error challenge that must be answered before its tagged NO,
 * Microsoft with a plain "NO AUTHENTICATE failed." — the token is refreshed once and
 * AUTHENTICATE tried again.
 *
 * On success the session gets the capability list for the client, rewritten so that it is
 * true through the proxy (imap_capability_filter), and the text of the server's tagged OK; then
 * it takes the connection for the relay. When the server's OK carries no [CAPABILITY] code
 * and no untagged CAPABILITY came, this client asks with CAPABILITY before it reports
 * success, so the client's tagged OK can always carry the code. */
#ifndef XOAUTHD_IMAP_UPSTREAM_H
#define XOAUTHD_IMAP_UPSTREAM_H

#include "config.h"
#include "conn.h"
#include "upstream.h"

struct proxy_context;
struct imap_upstream;

struct imap_upstream *imap_upstream_new(struct proxy_context *ctx,
                                        const struct config_account *acct, const char *sid,
                                        void *arg);
void imap_upstream_login(struct imap_upstream *up, upstream_login_cb cb);
/* After UPSTREAM_OK: the client's capability list (space separated, rewritten) and the text
 * of the server's tagged OK (without tag, "OK" and response code). */
const char *imap_upstream_capability(const struct imap_upstream *up);
const char *imap_upstream_ok_text(const struct imap_upstream *up);
/* After UPSTREAM_OK: the logged-in connection, for the relay (owned by the caller now). */
struct conn *imap_upstream_take_conn(struct imap_upstream *up);
/* Ends it; no callback runs afterwards. A connection not taken is closed. */
void imap_upstream_free(struct imap_upstream *up);

#endif
