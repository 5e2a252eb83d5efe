/* session_log: the one summary line per finished session, Postfix-style, for grep:
 *
 *   sid=8f1a-42 event=session client=10.0.0.7 user=scanner account=scanner
 *   protocol=smtp upstream=smtp.office365.com:587 result=ok messages=1 size=48211
 *   bytes_in=48890 bytes_out=1033 reply="250 2.0.0 OK <...> [Hostname=...]" duration=1.274s
 *
 * Each session embeds a struct session_log, fills it as it goes (login, upstream, messages,
 * failures) and calls session_log_end() when its last handle closed. The struct is also what
 * `xoauthd status` shows for live sessions (proxy_context.h's session_link points at it), and it
 * feeds the counters (stats.h). No secret is ever stored here: names, addresses, codes and the
 * upstream's last reply (quoted; replies carry queue ids, not credentials). */
#ifndef XOAUTHD_SESSION_LOG_H
#define XOAUTHD_SESSION_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "stats.h"

struct session_link;
struct config_account;

struct session_log {
    enum stats_proto proto;
    uint64_t start_ms;       /* uv_now */
    char sid[32];
    char client[64];
    char user[64];           /* the local user who logged in, "-" for allowlisted/none */
    char account[64];
    char upstream[128];      /* host:port, or "ews"/"graph" with the host */
    char result[32];         /* "" until something failed; see session_log_end */
    char reply[200];         /* last upstream reply to a message (queue id), quoted */
    char refusal[200];       /* the last refusal (session_log_refusal), quoted */
    unsigned messages;
    unsigned refusals;       /* SMTP: MAIL, RCPT, DATA or message refused */
    uint64_t size;           /* message bytes accepted by the upstream */
    uint64_t bytes_in, bytes_out; /* relay bytes (IMAP/POP3), message bytes (SMTP) */
    int logged_in;
    int ended;
};

/* Starts the record: now_ms = uv_now(loop). Counts the session as active. link->slog is set
 * so that status can list it (link may be NULL). */
void session_log_begin(struct session_log *sl, struct session_link *link, enum stats_proto p,
                       const char *sid, const char *client, uint64_t now_ms);
/* A successful local login (user NULL or "" for an allowlisted client) as acct; also sets the
 * upstream from the account's provider and submission path. Clears an earlier failure. */
void session_log_login(struct session_log *sl, const char *user,
                       const struct config_account *acct);
/* Overrides the upstream shown (the address actually connected to). */
void session_log_upstream(struct session_log *sl, const char *upstream);
/* The upstream answered the end of a message: code >= 200 < 300 counts it as relayed;
 * otherwise the code is counted as an upstream error. reply: its text (CRLF may follow). */
void session_log_message(struct session_log *sl, uint64_t size, int code, const char *reply,
                         size_t len);
/* SMTP: the client was told no to a MAIL, RCPT, DATA or a message (reply: the line it got,
 * CRLF may follow; a 4xx counts as well as a 5xx: either way the mail did not leave). Makes the
 * result "refused" when no message was accepted in the session, "partial" when some were. */
void session_log_refusal(struct session_log *sl, const char *reply, size_t len);
/* Something failed: "auth_failed", "upstream_failed", "timeout", "refused" ... The last one
 * wins, except that a later login clears it. */
void session_log_result(struct session_log *sl, const char *result);
/* Prints the line (level info) and uncounts the session. Runs once; later calls do nothing.
 * result when nothing failed: "ok" after a login (or "refused" / "partial", see
 * session_log_refusal), else "no_login". reply is then the last refusal, if any. */
void session_log_end(struct session_log *sl, uint64_t now_ms);

/* Formats the fields shared by the log line and status into out (no sid, no duration).
 * Returns out. */
char *session_log_format(const struct session_log *sl, char *out, size_t outsz);

#endif
