#include "smtp_session.h"

#include <openssl/crypto.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "conn.h"
#include "line.h"
#include "log.h"
#include "sasl.h"
#include "sender_rules.h"
#include "session.h"
#include "session_log.h"
#include "smtp_parse.h"
#include "smtp_upstream.h"
#include "submit.h"

#define SMTP_COMMAND_LINE_MAX 512   /* RFC 5321 4.5.3.1.4, CRLF included */
#define SMTP_AUTH_LINE_MAX 12288    /* RFC 4954 4: SASL responses may be this long */
#define SMTP_CLIENT_TIMEOUT_MS (5 * 60 * 1000) /* RFC 5321 4.5.3.2.7 */
#define SMTP_MAX_BAD_COMMANDS 10
#define SMTP_DATA_CHUNK (64 * 1024)
#define SMTP_PIPELINE_MAX 32        /* relayed commands whose replies may be due at once */

enum smtp_state {
    SMTP_S_COMMAND,        /* waiting for a command line */
    SMTP_S_TLS,            /* handshake (implicit TLS or after STARTTLS) */
    SMTP_S_AUTH,           /* "334 ..." sent, the next SASL response expected */
    SMTP_S_AUTH_VERIFY,    /* local password check (and, after a failure, its delay) */
    SMTP_S_UPSTREAM_LOGIN, /* token + upstream login running */
    SMTP_S_UPSTREAM_REPLY, /* a command was relayed, its reply is awaited */
    SMTP_S_DATA,           /* message bytes flow upstream */
    SMTP_S_DATA_DISCARD,   /* message bytes are swallowed; an error reply follows the end */
    SMTP_S_DATA_REPLY,     /* the end of data was relayed, the upstream's verdict is awaited */
    SMTP_S_CLOSING
};

static const char *const smtp_state_names[] = {
    "command", "tls", "auth", "auth-verify",
    "upstream-login", "upstream-reply", "data", "data-discard", "data-reply",
    "closing"};

struct smtp_session {
    /* First: session.c frees through it. base.acct is set once the client logged in or was
     * found allowlisted; base.sasl is the AUTH exchange in progress. */
    struct session base;
    enum smtp_state state;

    int ehlo_seen;
    int skipping_long_line;
    unsigned bad_commands;
    int shutdown_requested;
    int authenticated; /* AUTH succeeded (an allowlisted client has an account without it) */

    /* upstream and transaction */
    struct smtp_upstream *up;
    enum smtp_verb relayed_verb;       /* whose reply came last (for the log) */
    /* RFC 2920: relayed commands whose replies are still due, oldest first. */
    enum smtp_verb relay_queue[SMTP_PIPELINE_MAX];
    unsigned relay_head, relay_count;
    char pending_line[SMTP_COMMAND_LINE_MAX + 1]; /* waits for a new upstream login */
    size_t pending_len;
    enum smtp_verb pending_verb;
    int in_transaction;
    unsigned rcpt_ok;
    struct smtp_data_scan scan;
    struct submit *sub; /* submit = ews | graph first: the transaction is ours (submit.h) */
    struct sender_filter hdr_filter; /* header_from rewriting on the DATA stream */
    char discard_reply[160];
    char mail_from[256];
};

#define smtp_reply(s, ...) session_send(&(s)->base, __VA_ARGS__)

/* A MAIL, RCPT, DATA or message refused here: the reply, and a note for the summary line. */
static void smtp_refuse(struct smtp_session *s, const char *reply)
{
    smtp_reply(s, "%s", reply);
    session_log_refusal(&s->base.slog, reply, strlen(reply));
}

static void smtp_enter_state(struct smtp_session *s, enum smtp_state st);
static void smtp_relay_command(struct smtp_session *s, enum smtp_verb verb, const char *line,
                               size_t len);
static void smtp_upstream_event(void *arg, enum smtp_upstream_event ev);
static size_t smtp_data_pass_cb(struct conn *c, const char *buf, size_t len);

/* One buffer for the relayed DATA bytes of every session: each chunk is written (copied) before
 * the next one is scanned, and a bare LF can double a byte. */
static char smtp_data_out[2 * SMTP_DATA_CHUNK + 16];

static void smtp_enter_state(struct smtp_session *s, enum smtp_state st)
{
    if (s->state == st)
        return;
    log_debug(s->base.sid, "event=smtp_state from=%s to=%s", smtp_state_names[s->state],
              smtp_state_names[st]);
    s->state = st;
    switch (st) {
    case SMTP_S_COMMAND:
    case SMTP_S_AUTH:
    case SMTP_S_DATA:
    case SMTP_S_DATA_DISCARD:
    case SMTP_S_TLS:
        conn_set_timeout(&s->base.conn, SMTP_CLIENT_TIMEOUT_MS);
        break;
    default:
        /* Waiting for ourselves or the upstream: the client may rightly be silent. */
        conn_set_timeout(&s->base.conn, 0);
        break;
    }
}

/* Replies can arrive synchronously (cached token, cached password): session_process turns
 * re-entry into another turn of its loop. */
static void smtp_process(struct smtp_session *s) { session_process(&s->base); }

static int smtp_starttls_offered(struct smtp_session *s)
{
    return s->base.lp->cfg->tls == CONFIG_TLS_STARTTLS && s->base.conn.ssl == NULL;
}

static void smtp_reset_transaction(struct smtp_session *s)
{
    sender_filter_reset(&s->hdr_filter);
    s->in_transaction = 0;
    s->rcpt_ok = 0;
    s->mail_from[0] = '\0';
    if (s->sub != NULL)
        submit_reset(s->sub);
}

static void smtp_drop_upstream(struct smtp_session *s, int polite)
{
    if (s->up != NULL) {
        smtp_upstream_free(s->up, polite);
        s->up = NULL;
    }
}

/* ---- closing ------------------------------------------------------------------------------ */

/* session_close's hook: what the SMTP session owns besides the client. */
static void smtp_closing(struct session *base)
{
    struct smtp_session *s = (struct smtp_session *)base;
    smtp_enter_state(s, SMTP_S_CLOSING);
    /* Mid-DATA the upstream must never see the final dot: close it without QUIT. */
    smtp_drop_upstream(s, 1);
    /* Nothing was sent before the end of DATA; the stored message goes with the session. */
    submit_free(s->sub);
    s->sub = NULL;
    sender_filter_reset(&s->hdr_filter);
}

/* Closes once the queued replies (a goodbye line) are written. */
static void smtp_close(struct smtp_session *s) { session_close(&s->base, 1); }

static void smtp_shutdown(struct session *base)
{
    struct smtp_session *s = (struct smtp_session *)base;
    s->shutdown_requested = 1;
    /* A transaction in flight finishes first; its end checks shutdown_requested. */
    if (s->relay_count > 0) {
        /* Replies are due; smtp_command_done checks shutdown_requested after the last. */
    } else if (s->state == SMTP_S_COMMAND && !s->in_transaction) {
        smtp_reply(s, "421 4.3.2 %s Service shutting down", s->base.ctx->hostname);
        smtp_close(s);
    } else if (s->state != SMTP_S_DATA && s->state != SMTP_S_DATA_REPLY &&
               s->state != SMTP_S_UPSTREAM_REPLY) {
        smtp_reply(s, "421 4.3.2 %s Service shutting down", s->base.ctx->hostname);
        smtp_close(s);
    }
}

static void smtp_aborting(struct session *base)
{
    struct smtp_session *s = (struct smtp_session *)base;
    if (s->state == SMTP_S_DATA || s->state == SMTP_S_DATA_REPLY)
        log_warn(s->base.sid, "event=aborted note=\"shutdown grace period over during DATA; the "
                 "client was not told 250 and will retry\"");
}

/* After a command completed: either the next buffered command, or the end of the session. */
static void smtp_command_done(struct smtp_session *s)
{
    smtp_enter_state(s, SMTP_S_COMMAND);
    if (s->shutdown_requested && !s->in_transaction) {
        smtp_reply(s, "421 4.3.2 %s Service shutting down", s->base.ctx->hostname);
        smtp_close(s);
        return;
    }
    smtp_process(s);
}

/* ---- EHLO --------------------------------------------------------------------------------- */

static void smtp_cmd_ehlo(struct smtp_session *s, int extended)
{
    smtp_reset_transaction(s);
    s->ehlo_seen = 1;
    if (!extended) {
        smtp_reply(s, "250 %s", s->base.ctx->hostname);
        return;
    }
    char buf[1024];
    size_t n = 0;
    n += (size_t)snprintf(buf + n, sizeof buf - n, "250-%s\r\n", s->base.ctx->hostname);
    n += (size_t)snprintf(buf + n, sizeof buf - n, "250-PIPELINING\r\n");
    n += (size_t)snprintf(buf + n, sizeof buf - n, "250-SIZE %zu\r\n",
                          s->base.ctx->cfg->max_message_size);
    n += (size_t)snprintf(buf + n, sizeof buf - n, "250-8BITMIME\r\n");
    if (smtp_starttls_offered(s))
        n += (size_t)snprintf(buf + n, sizeof buf - n, "250-STARTTLS\r\n");
    if (session_plaintext_auth_ok(&s->base) && !s->authenticated) {
        /* The "AUTH=" form is for clients from before RFC 2554 was final (old Outlook,
         * some printers). */
        n += (size_t)snprintf(buf + n, sizeof buf - n, "250-AUTH " SASL_SERVER_MECHS "\r\n");
        n += (size_t)snprintf(buf + n, sizeof buf - n, "250-AUTH=" SASL_SERVER_MECHS "\r\n");
    }
    n += (size_t)snprintf(buf + n, sizeof buf - n, "250 ENHANCEDSTATUSCODES\r\n");
    conn_write(&s->base.conn, buf, n);
}

/* ---- STARTTLS ----------------------------------------------------------------------------- */

static void smtp_cmd_starttls(struct smtp_session *s)
{
    if (s->base.conn.ssl != NULL) {
        smtp_reply(s, "503 5.5.1 TLS already active");
        return;
    }
    if (s->base.lp->tls == NULL || s->base.lp->cfg->tls != CONFIG_TLS_STARTTLS) {
        smtp_reply(s, "502 5.5.1 STARTTLS not available");
        return;
    }
    smtp_reply(s, "220 2.0.0 Ready to start TLS");
    /* RFC 3207 5: everything learned before TLS is forgotten (session_starttls drops the
     * commands pipelined behind STARTTLS: they came in clear and could have been injected). */
    s->ehlo_seen = 0;
    smtp_reset_transaction(s);
    smtp_enter_state(s, SMTP_S_TLS);
    session_starttls(&s->base);
}

/* ---- AUTH --------------------------------------------------------------------------------- */

static void smtp_login_done_cb(void *arg, enum upstream_failure f, const char *reason);
static void smtp_local_drain_cb(void *arg);

/* The local transaction of an ews/graph account, made on first use. 0 / -1. */
static int smtp_local_submit(struct smtp_session *s)
{
    if (s->sub == NULL)
        s->sub = submit_new(s->base.ctx, s->base.acct, s->base.sid, smtp_local_drain_cb, s);
    return s->sub != NULL ? 0 : -1;
}

/* A new upstream for s->base.acct and its login; smtp_login_done_cb follows. */
static void smtp_upstream_start(struct smtp_session *s)
{
    s->up = smtp_upstream_new(s->base.ctx, s->base.acct, s->base.sid, smtp_upstream_event, s);
    if (s->up == NULL) {
        smtp_login_done_cb(s, UPSTREAM_FAIL_CONNECT, "out of memory");
        return;
    }
    smtp_upstream_set_client(s->up, &s->base.conn);
    smtp_upstream_login(s->up, smtp_login_done_cb);
}

/* session_check_password's verdict. ok = 1: s->base.acct logged in; the upstream login
 * follows and the 235 waits for it. ok = 0: logged, and the failure delay is over; ok = -1:
 * too busy to check (a temporary failure). */
static void smtp_auth_cb(struct session *base, int ok)
{
    struct smtp_session *s = (struct smtp_session *)base;
    if (ok <= 0) {
        /* RFC 4954 section 6: 454 4.7.0 is a temporary authentication failure. */
        smtp_reply(s, ok < 0 ? "454 4.7.0 Temporary authentication failure, try again later"
                             : "535 5.7.8 Authentication credentials invalid");
        smtp_command_done(s);
        return;
    }
    if (s->sub != NULL && submit_account(s->sub) != s->base.acct) {
        submit_free(s->sub); /* an allowlisted transaction's store, for another account */
        s->sub = NULL;
    }
    smtp_enter_state(s, SMTP_S_UPSTREAM_LOGIN);
    if (submit_is_local(s->base.acct)) {
        /* No SMTP upstream: a token now, so that a broken token endpoint is a 454 here. */
        if (smtp_local_submit(s) != 0) {
            smtp_login_done_cb(s, UPSTREAM_FAIL_CONNECT, "out of memory");
            return;
        }
        submit_check_login(s->sub, smtp_login_done_cb);
        return;
    }
    smtp_upstream_start(s);
}

static void smtp_check_password(struct smtp_session *s, const char *user, const char *password)
{
    smtp_enter_state(s, SMTP_S_AUTH_VERIFY);
    session_check_password(&s->base, user, password, smtp_auth_cb);
}

static void smtp_login_done_cb(void *arg, enum upstream_failure f, const char *reason)
{
    struct smtp_session *s = arg;
    int at_auth = !s->authenticated && s->pending_len == 0;
    if (f != UPSTREAM_OK) {
        session_log_upstream_failure(&s->base, f, reason);
        smtp_drop_upstream(s, 0);
        if (at_auth) {
            s->base.acct = NULL;
            smtp_reply(s, "454 4.7.0 Temporary authentication failure, try again later");
        } else {
            s->pending_len = 0;
            smtp_reset_transaction(s);
            if (f == UPSTREAM_FAIL_TOKEN || f == UPSTREAM_FAIL_AUTH)
                smtp_reply(s, "451 4.7.0 Cannot log in to the mail provider, try again later");
            else
                smtp_reply(s, "451 4.4.1 Cannot reach the mail provider, try again later");
        }
        smtp_command_done(s);
        return;
    }
    if (at_auth) {
        s->authenticated = 1;
        smtp_reply(s, "235 2.7.0 Authentication successful");
        smtp_command_done(s);
        return;
    }
    /* A new upstream login for a command that was waiting for it. */
    size_t len = s->pending_len;
    s->pending_len = 0;
    smtp_relay_command(s, s->pending_verb, s->pending_line, len);
}

/* A step of the AUTH exchange (sasl.h), in SMTP's words (RFC 4954 section 4). */
static void smtp_auth_step(struct smtp_session *s, enum sasl_step st, struct sasl_cred *cred,
                           enum sasl_mech mech)
{
    switch (st) {
    case SASL_STEP_CHALLENGE:
        smtp_enter_state(s, SMTP_S_AUTH);
        smtp_reply(s, "334 %s", s->base.sasl.challenge);
        return;
    case SASL_STEP_DONE:
        smtp_check_password(s, cred->user, cred->password);
        sasl_cred_clear(cred);
        return;
    case SASL_STEP_CANCELLED:
        smtp_reply(s, "501 5.0.0 Authentication cancelled");
        break;
    case SASL_STEP_INVALID:
        smtp_reply(s, "501 5.5.2 Cannot decode AUTH %s response",
                   mech == SASL_MECH_PLAIN ? "PLAIN" : "LOGIN");
        break;
    case SASL_STEP_AUTHZID:
        smtp_reply(s, "535 5.7.8 Authorization identity not allowed");
        break;
    }
    smtp_command_done(s);
}

static void smtp_auth_response(struct smtp_session *s, const char *b64, size_t len)
{
    struct sasl_cred cred;
    enum sasl_mech mech = s->base.sasl.mech;
    smtp_auth_step(s, sasl_server_step(&s->base.sasl, b64, len, &cred), &cred, mech);
}

static void smtp_cmd_auth(struct smtp_session *s, const struct smtp_command *cmd)
{
    if (s->authenticated) {
        smtp_reply(s, "503 5.5.1 Already authenticated");
        return;
    }
    if (!s->ehlo_seen) {
        smtp_reply(s, "503 5.5.1 Send EHLO first");
        return;
    }
    if (s->in_transaction) {
        smtp_reply(s, "503 5.5.1 AUTH not allowed during a mail transaction");
        return;
    }
    if (!session_plaintext_auth_ok(&s->base)) {
        smtp_reply(s, "538 5.7.11 Encryption required for requested authentication mechanism");
        return;
    }
    const char *arg = cmd->arg;
    size_t mlen = 0;
    while (mlen < cmd->arg_len && arg[mlen] != ' ')
        mlen++;
    const char *ir = NULL;
    size_t ir_len = 0;
    if (mlen < cmd->arg_len) {
        ir = arg + mlen + 1;
        ir_len = cmd->arg_len - mlen - 1;
    }
    enum sasl_mech mech = sasl_mech_parse(arg, mlen);
    if (mech == SASL_MECH_UNKNOWN) {
        smtp_reply(s, "504 5.5.4 Unrecognized authentication type");
        return;
    }
    struct sasl_cred cred;
    smtp_auth_step(s, sasl_server_start(&s->base.sasl, mech, ir, ir_len, &cred), &cred, mech);
}

/* ---- relayed commands --------------------------------------------------------------------- */

static void smtp_relay_reply_cb(void *arg, int code, const char *reply, size_t len);

/* How many relayed commands with this verb still wait for their reply. */
static unsigned smtp_relay_due(const struct smtp_session *s, enum smtp_verb verb)
{
    unsigned n = 0;
    for (unsigned i = 0; i < s->relay_count; i++)
        n += s->relay_queue[(s->relay_head + i) % SMTP_PIPELINE_MAX] == verb;
    return n;
}

/* May this command line go upstream while replies are still due? RFC 2920 3.1: replies come
 * in the order of the commands, so only RCPT and DATA that the upstream judges itself do; a
 * command answered here waits until the replies before it were relayed. */
static int smtp_pipeline_next(struct smtp_session *s, const char *line, size_t len)
{
    struct smtp_command cmd;
    if (s->relay_count >= SMTP_PIPELINE_MAX || s->up == NULL ||
        !smtp_upstream_can_pipeline(s->up) || s->skipping_long_line)
        return 0;
    if (smtp_parse_command(line, len, &cmd) != SMTP_PARSE_OK)
        return 0;
    int mail = s->in_transaction || smtp_relay_due(s, SMTP_CMD_MAIL) > 0;
    if (cmd.verb == SMTP_CMD_RCPT)
        return mail;
    if (cmd.verb == SMTP_CMD_DATA)
        return mail && (s->rcpt_ok > 0 || smtp_relay_due(s, SMTP_CMD_RCPT) > 0);
    return 0;
}

static void smtp_relay_command(struct smtp_session *s, enum smtp_verb verb, const char *line,
                               size_t len)
{
    if (s->relay_count == 0 && (s->up == NULL || !smtp_upstream_ready(s->up))) {
        /* The upstream closed while idle (providers drop quiet connections): log in again
         * and send the command afterwards. */
        smtp_drop_upstream(s, 0);
        if (len > SMTP_COMMAND_LINE_MAX)
            len = SMTP_COMMAND_LINE_MAX;
        if (line != s->pending_line)
            memmove(s->pending_line, line, len);
        s->pending_len = len;
        s->pending_verb = verb;
        smtp_enter_state(s, SMTP_S_UPSTREAM_LOGIN);
        smtp_upstream_start(s);
        return;
    }
    /* RFC 2920: with PIPELINING, MAIL and RCPT go at once and the next command is read;
     * DATA (and anything else) ends the group: nothing is read until its reply came, so no
     * message byte reaches the upstream before its 354. */
    int group = smtp_upstream_can_pipeline(s->up) &&
                (verb == SMTP_CMD_MAIL || verb == SMTP_CMD_RCPT);
    s->relay_queue[(s->relay_head + s->relay_count) % SMTP_PIPELINE_MAX] = verb;
    s->relay_count++;
    if (!group)
        smtp_enter_state(s, SMTP_S_UPSTREAM_REPLY);
    smtp_upstream_command(s->up, line, len, smtp_relay_reply_cb);
}

static void smtp_upstream_lost_reply(struct smtp_session *s, const char *why)
{
    log_warn(s->base.sid, "event=upstream_lost account=%s command=%s reason=\"%s\"",
             s->base.acct->name, smtp_verb_name(s->relayed_verb), why);
    smtp_drop_upstream(s, 0);
    smtp_reset_transaction(s);
    smtp_reply(s, "451 4.4.2 Connection to the mail provider lost, try again later");
}

/* The upstream is gone with replies still due: the client gets one for each command. */
static void smtp_relay_lost_rest(struct smtp_session *s)
{
    for (; s->relay_count > 0; s->relay_count--)
        smtp_reply(s, "451 4.4.2 Connection to the mail provider lost, try again later");
    s->relay_head = 0;
}

static void smtp_relay_reply_cb(void *arg, int code, const char *reply, size_t len)
{
    struct smtp_session *s = arg;
    if (s->relay_count > 0) {
        s->relayed_verb = s->relay_queue[s->relay_head];
        s->relay_head = (s->relay_head + 1) % SMTP_PIPELINE_MAX;
        s->relay_count--;
    }
    if (code == 0) {
        char why[200];
        snprintf(why, sizeof why, "%.*s", (int)(len < 190 ? len : 190), reply);
        smtp_upstream_lost_reply(s, why);
        smtp_relay_lost_rest(s);
        smtp_command_done(s);
        return;
    }
    if (code == 421) {
        /* The provider closes; this client's session goes on and logs in again later. */
        smtp_upstream_lost_reply(s, "421 from the provider");
        smtp_relay_lost_rest(s);
        smtp_command_done(s);
        return;
    }
    switch (s->relayed_verb) {
    case SMTP_CMD_MAIL:
        if (code / 100 == 2)
            s->in_transaction = 1;
        break;
    case SMTP_CMD_RCPT:
        if (code / 100 == 2)
            s->rcpt_ok++;
        break;
    case SMTP_CMD_RSET:
        smtp_reset_transaction(s);
        break;
    case SMTP_CMD_DATA:
        if (code == 354) {
            conn_write(&s->base.conn, reply, len);
            s->base.conn.pass_cb = smtp_data_pass_cb;
            smtp_data_scan_init(&s->scan);
            sender_filter_init(&s->hdr_filter, s->base.acct);
            s->discard_reply[0] = '\0';
            smtp_enter_state(s, SMTP_S_DATA);
            smtp_process(s);
            return;
        }
        break;
    default:
        break;
    }
    if (code >= 500 && s->relayed_verb == SMTP_CMD_MAIL) {
        char r[200];
        log_info(s->base.sid, "event=mail_refused account=%s reply=%s", s->base.acct->name,
                 log_quote(r, sizeof r, reply, len > 2 ? len - 2 : len));
    }
    if (code >= 400 && (s->relayed_verb == SMTP_CMD_MAIL || s->relayed_verb == SMTP_CMD_RCPT ||
                        s->relayed_verb == SMTP_CMD_DATA))
        session_log_refusal(&s->base.slog, reply, len);
    conn_write(&s->base.conn, reply, len);
    if (s->relay_count == 0)
        smtp_command_done(s);
}

/* ---- local transaction (submit = ews | graph) -------------------------------------------- */

static void smtp_local_mail(struct smtp_session *s, const struct smtp_command *cmd)
{
    if (smtp_local_submit(s) != 0) {
        smtp_reply(s, "451 4.3.1 Out of memory, try again later");
        return;
    }
    /* The reverse path matters only to an SMTP fallback; EWS and Graph send as the mailbox. */
    if (s->base.acct->envelope_from == CONFIG_ENVFROM_ACCOUNT)
        submit_mail(s->sub, s->base.acct->username, strlen(s->base.acct->username));
    else
        submit_mail(s->sub, cmd->path, cmd->path_len);
    s->in_transaction = 1;
    smtp_reply(s, "250 2.1.0 Ok");
}

static void smtp_local_rcpt(struct smtp_session *s, const char *line, size_t len)
{
    struct smtp_command cmd;
    if (smtp_parse_command(line, len, &cmd) != SMTP_PARSE_OK) {
        smtp_reply(s, "501 5.5.4 Syntax error in parameters or arguments");
        return;
    }
    /* Syntax only: the provider's verdict on the address comes at the end of DATA. */
    const char *refused = submit_rcpt(s->sub, cmd.path, cmd.path_len);
    if (refused != NULL) {
        smtp_refuse(s, refused);
        return;
    }
    s->rcpt_ok++;
    smtp_reply(s, "250 2.1.5 Ok");
}

static void smtp_local_data(struct smtp_session *s)
{
    if (submit_data_begin(s->sub) != 0) {
        smtp_refuse(s, "451 4.3.0 Cannot store the message, try again later");
        return;
    }
    smtp_reply(s, "354 End data with <CR><LF>.<CR><LF>");
    s->base.conn.pass_cb = smtp_data_pass_cb;
    smtp_data_scan_init(&s->scan);
    smtp_data_scan_unstuffed(&s->scan);
    sender_filter_init(&s->hdr_filter, s->base.acct);
    s->discard_reply[0] = '\0';
    smtp_enter_state(s, SMTP_S_DATA);
    smtp_process(s);
}

static void smtp_local_reply_cb(void *arg, const char *reply)
{
    struct smtp_session *s = arg;
    session_log_message(&s->base.slog, s->scan.size, atoi(reply), reply, strlen(reply));
    smtp_reset_transaction(s);
    smtp_reply(s, "%s", reply);
    smtp_command_done(s);
}

static void smtp_local_drain_cb(void *arg)
{
    struct smtp_session *s = arg;
    if (s->state == SMTP_S_DATA) {
        conn_read_start(&s->base.conn);
        smtp_process(s);
    }
}

static void smtp_cmd_mail(struct smtp_session *s, const struct smtp_command *cmd,
                          const char *line, size_t len)
{
    if (s->in_transaction) {
        smtp_reply(s, "503 5.5.1 Nested MAIL command");
        return;
    }
    if (!s->ehlo_seen) {
        smtp_reply(s, "503 5.5.1 Send HELO/EHLO first");
        return;
    }
    /* Without a login, a listener's allow_networks may say who this client is. */
    if (!s->authenticated && session_allowlisted_login(&s->base) != 0) {
        smtp_reply(s, "530 5.7.0 Authentication required");
        return;
    }
    /* SIZE=n (RFC 1870): refuse early what would be refused after the upload. */
    const char *p = cmd->params;
    const char *end = cmd->params + cmd->params_len;
    while (p < end) {
        if (end - p > 5 && strncasecmp(p, "SIZE=", 5) == 0) {
            unsigned long long n = strtoull(p + 5, NULL, 10);
            if (n > s->base.ctx->cfg->max_message_size) {
                smtp_refuse(s, "552 5.3.4 Message size exceeds fixed maximum message size");
                return;
            }
        }
        const char *sp = memchr(p, ' ', (size_t)(end - p));
        p = sp ? sp + 1 : end;
    }
    /* Sender rules (sender_rules.h): refused before a byte of the message is sent. */
    if (!sender_rules_allowed(s->base.acct, cmd->path, cmd->path_len)) {
        char q[300];
        log_info(s->base.sid, "event=sender_refused account=%s from=%s", s->base.acct->name,
                 log_quote(q, sizeof q, cmd->path, cmd->path_len));
        smtp_refuse(s, "550 5.7.1 Sender address not allowed for this account");
        return;
    }
    char mail_rw[SMTP_COMMAND_LINE_MAX + 1];
    long rw = sender_rules_mail_line(s->base.acct, cmd->path, cmd->path_len, cmd->params,
                                     cmd->params_len, mail_rw, sizeof mail_rw);
    if (rw > 0) {
        log_info(s->base.sid, "event=envelope_from_rewritten account=%s from=<%.*s> to=<%s>",
                 s->base.acct->name, (int)(cmd->path_len < 200 ? cmd->path_len : 200), cmd->path,
                 s->base.acct->username);
        line = mail_rw;
        len = (size_t)rw;
    }
    if (rw == 0 && !cmd->bracketed) {
        rw = smtp_path_line(cmd, mail_rw, sizeof mail_rw); /* the upstream gets the brackets */
        if (rw > 0) {
            line = mail_rw;
            len = (size_t)rw;
        }
    }
    snprintf(s->mail_from, sizeof s->mail_from, "%.*s", (int)cmd->path_len, cmd->path);
    if (submit_is_local(s->base.acct)) {
        smtp_local_mail(s, cmd);
        return;
    }
    smtp_relay_command(s, SMTP_CMD_MAIL, line, len);
}

static void smtp_cmd_rcpt(struct smtp_session *s, const struct smtp_command *cmd,
                          const char *line, size_t len)
{
    if (!s->in_transaction && smtp_relay_due(s, SMTP_CMD_MAIL) == 0) {
        smtp_reply(s, "503 5.5.1 Need MAIL command");
        return;
    }
    if (s->sub != NULL && submit_is_local(s->base.acct)) {
        smtp_local_rcpt(s, line, len);
        return;
    }
    char rcpt[SMTP_COMMAND_LINE_MAX + 1];
    long n = cmd->bracketed ? -1 : smtp_path_line(cmd, rcpt, sizeof rcpt);
    if (n > 0) {
        line = rcpt; /* the upstream gets the brackets */
        len = (size_t)n;
    }
    smtp_relay_command(s, SMTP_CMD_RCPT, line, len);
}

static void smtp_cmd_data(struct smtp_session *s, const char *line, size_t len)
{
    if (!s->in_transaction && smtp_relay_due(s, SMTP_CMD_MAIL) == 0) {
        smtp_reply(s, "503 5.5.1 Need MAIL command");
        return;
    }
    if (s->rcpt_ok == 0 && smtp_relay_due(s, SMTP_CMD_RCPT) == 0) {
        smtp_refuse(s, "554 5.5.1 No valid recipients");
        return;
    }
    if (s->sub != NULL && submit_is_local(s->base.acct)) {
        smtp_local_data(s);
        return;
    }
    smtp_relay_command(s, SMTP_CMD_DATA, line, len);
}

static void smtp_cmd_rset(struct smtp_session *s, const char *line, size_t len)
{
    if (s->up != NULL && smtp_upstream_ready(s->up) && s->in_transaction) {
        smtp_relay_command(s, SMTP_CMD_RSET, line, len);
        return;
    }
    smtp_reset_transaction(s);
    smtp_reply(s, "250 2.0.0 Reset");
}

static void smtp_cmd_quit(struct smtp_session *s)
{
    smtp_reply(s, "221 2.0.0 Bye");
    smtp_close(s);
}

static void smtp_bad_command(struct smtp_session *s, const char *reply)
{
    smtp_reply(s, "%s", reply);
    if (++s->bad_commands >= SMTP_MAX_BAD_COMMANDS) {
        smtp_reply(s, "421 4.7.0 %s Too many errors, closing connection", s->base.ctx->hostname);
        log_warn(s->base.sid, "event=too_many_errors peer=%s", s->base.conn.peer);
        smtp_close(s);
    }
}

static void smtp_dispatch_command(struct smtp_session *s, const char *line, size_t len)
{
    struct smtp_command cmd;
    enum smtp_parse_result r = smtp_parse_command(line, len, &cmd);
    if (r == SMTP_PARSE_UNKNOWN) {
        smtp_bad_command(s, "500 5.5.1 Command unrecognized");
        return;
    }
    if (r == SMTP_PARSE_SYNTAX) {
        smtp_bad_command(s, "501 5.5.4 Syntax error in parameters or arguments");
        return;
    }
    switch (cmd.verb) {
    case SMTP_CMD_HELO:
        smtp_cmd_ehlo(s, 0);
        break;
    case SMTP_CMD_EHLO:
        smtp_cmd_ehlo(s, 1);
        break;
    case SMTP_CMD_STARTTLS:
        smtp_cmd_starttls(s);
        break;
    case SMTP_CMD_AUTH:
        smtp_cmd_auth(s, &cmd);
        break;
    case SMTP_CMD_MAIL:
        smtp_cmd_mail(s, &cmd, line, len);
        break;
    case SMTP_CMD_RCPT:
        smtp_cmd_rcpt(s, &cmd, line, len);
        break;
    case SMTP_CMD_DATA:
        smtp_cmd_data(s, line, len);
        break;
    case SMTP_CMD_RSET:
        smtp_cmd_rset(s, line, len);
        break;
    case SMTP_CMD_NOOP:
        smtp_reply(s, "250 2.0.0 OK");
        break;
    case SMTP_CMD_QUIT:
        smtp_cmd_quit(s);
        break;
    case SMTP_CMD_VRFY:
        smtp_reply(s, "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery");
        break;
    case SMTP_CMD_EXPN:
        smtp_reply(s, "502 5.5.1 EXPN not available");
        break;
    case SMTP_CMD_HELP:
        smtp_reply(s, "214 2.0.0 See RFC 5321");
        break;
    case SMTP_CMD_BDAT:
        smtp_bad_command(s, "502 5.5.1 CHUNKING not supported, use DATA");
        break;
    case SMTP_CMD_UNKNOWN:
        smtp_bad_command(s, "500 5.5.1 Command unrecognized");
        break;
    }
}

/* ---- DATA --------------------------------------------------------------------------------- */

static void smtp_data_reply_cb(void *arg, int code, const char *reply, size_t len)
{
    struct smtp_session *s = arg;
    char r[200];
    if (code == 0) {
        /* The provider may or may not have the message: 451 makes the sender retry, which at
         * worst duplicates it; 250 could lose it. */
        log_error(s->base.sid, "event=message_unconfirmed account=%s from=<%s> reason=\"%.*s\" "
                  "note=\"client told 451; it will retry\"", s->base.acct->name, s->mail_from,
                  (int)(len < 150 ? len : 150), reply);
        session_log_result(&s->base.slog, "upstream_lost");
        stats_upstream_error("lost");
        smtp_drop_upstream(s, 0);
        smtp_reset_transaction(s);
        smtp_reply(s, "451 4.4.2 Connection to the mail provider lost before it confirmed the "
                      "message; try again later");
        smtp_command_done(s);
        return;
    }
    /* log_quote runs before log_msg can look at the level: once per message. */
    if (log_get_level() >= LOG_INFO)
        log_info(s->base.sid, "event=message account=%s from=<%s> rcpts=%u size=%zu reply=%s",
                 s->base.acct->name, s->mail_from, s->rcpt_ok, s->scan.size,
                 log_quote(r, sizeof r, reply, len > 2 ? len - 2 : len));
    session_log_message(&s->base.slog, s->scan.size, code, reply, len);
    smtp_reset_transaction(s);
    if (code == 421) {
        smtp_drop_upstream(s, 0);
        smtp_reply(s, "451 4.4.2 The mail provider closed the connection; try again later");
    } else {
        conn_write(&s->base.conn, reply, len);
    }
    smtp_command_done(s);
}

static void smtp_data_abort(struct smtp_session *s, const char *reply, const char *why)
{
    log_warn(s->base.sid, "event=message_aborted account=%s from=<%s> reason=\"%s\"",
             s->base.acct ? s->base.acct->name : "-", s->mail_from, why);
    /* Closing without the final dot makes the upstream discard what it got so far. */
    smtp_drop_upstream(s, 0);
    if (s->sub != NULL)
        submit_reset(s->sub); /* nothing was sent; the stored part goes */
    snprintf(s->discard_reply, sizeof s->discard_reply, "%s", reply);
    smtp_enter_state(s, SMTP_S_DATA_DISCARD);
}

/* Message bytes on their way upstream, through the From: header filter (sender_rules.h).
 * buf = NULL: the end of the message (flushes a header block still held). */
static int smtp_data_relay(struct smtp_session *s, const char *buf, size_t len)
{
    const char *out;
    size_t out_len;
    int was = s->hdr_filter.rewritten;
    int r = buf != NULL ? sender_filter_feed(&s->hdr_filter, buf, len, &out, &out_len)
                        : sender_filter_finish(&s->hdr_filter, &out, &out_len);
    if (r != 0 && s->hdr_filter.gave_up) { /* never relayed unchanged (sender_rules.h) */
        smtp_data_abort(s, "552 5.3.4 Message header too big for the From: rewrite",
                        "header too big for header_from");
        return 0;
    }
    if (r != 0)
        return -1;
    if (s->hdr_filter.rewritten && !was) {
        char q[300];
        log_info(s->base.sid, "event=header_from_rewritten account=%s from=%s to=<%s>",
                 s->base.acct->name,
                 log_quote(q, sizeof q, s->hdr_filter.original_from,
                           strlen(s->hdr_filter.original_from)),
                 s->base.acct->username);
    }
    if (out_len == 0)
        return 0;
    return s->sub != NULL ? submit_data_write(s->sub, out, out_len)
                          : smtp_upstream_write(s->up, out, out_len);
}

/* Scans and relays message bytes from buf; returns how many it used: all, or up to the end
 * of the message, or fewer when the upstream is congested. The caller consumes them. */
static size_t smtp_data_feed(struct smtp_session *s, const char *buf, size_t len)
{
    size_t off = 0;
    while (off < len && (s->state == SMTP_S_DATA || s->state == SMTP_S_DATA_DISCARD)) {
        if (s->state == SMTP_S_DATA && (s->sub != NULL ? submit_data_congested(s->sub)
                                                       : smtp_upstream_congested(s->up))) {
            /* Resumed by SMTP_UPSTREAM_DRAINED (or the spool file's drain callback): the
             * client waits, memory stays bounded. */
            conn_read_stop(&s->base.conn);
            break;
        }
        size_t chunk = len - off < SMTP_DATA_CHUNK ? len - off : SMTP_DATA_CHUNK;
        size_t out_len = 0;
        const char *out = smtp_data_out;
        long end;
        if (!s->scan.unstuff) {
            /* Relayed as it came unless a bare LF needs its CR: scan without copying and send
             * buf itself; only then scan again into the output buffer (callgrind: the copy
             * was a third of the work per relayed byte). */
            struct smtp_data_scan before = s->scan;
            end = smtp_data_scan(&s->scan, buf + off, chunk, NULL, &out_len);
            if (out_len == (end >= 0 ? (size_t)end : chunk)) {
                out = buf + off;
            } else {
                s->scan = before;
                end = smtp_data_scan(&s->scan, buf + off, chunk, smtp_data_out, &out_len);
            }
        } else {
            end = smtp_data_scan(&s->scan, buf + off, chunk, smtp_data_out, &out_len);
        }
        size_t used = end >= 0 ? (size_t)end : chunk;
        if (s->state == SMTP_S_DATA) {
            if (s->scan.size > s->base.ctx->cfg->max_message_size) {
                smtp_data_abort(s, "552 5.3.4 Message size exceeds fixed maximum message size",
                                "message too big");
            } else if (s->scan.lone_dot) {
                /* smtp_parse.c: what SMTP smuggling sends; refused rather than delivered
                 * with the commands it hides inside, as Postfix's
                 * smtpd_forbid_bare_newline = reject does. */
                smtp_data_abort(s, "550 5.5.2 Message refused: a line with a lone \".\" "
                                "not between CRLFs (RFC 5321 4.1.1.4)",
                                "lone dot without CRLF (SMTP smuggling?)");
            } else if (smtp_data_relay(s, out, out_len) != 0) {
                smtp_data_abort(s, "451 4.4.2 Connection to the mail provider lost, try again "
                                "later", "upstream write failed");
            }
        }
        off += used;
        if (end < 0)
            continue;
        if (s->state == SMTP_S_DATA && smtp_data_relay(s, NULL, 0) != 0)
            smtp_data_abort(s, "451 4.3.0 Cannot rewrite the message headers, try again later",
                            "header rewrite failed");
        if (s->state == SMTP_S_DATA) {
            smtp_enter_state(s, SMTP_S_DATA_REPLY);
            if (s->sub != NULL)
                submit_data_end(s->sub, smtp_local_reply_cb); /* the provider's verdict */
            else
                smtp_upstream_expect_reply(s->up, smtp_data_reply_cb);
        } else {
            smtp_reset_transaction(s);
            smtp_refuse(s, s->discard_reply);
            smtp_enter_state(s, SMTP_S_COMMAND);
        }
        break;
    }
    return off;
}

static void smtp_process_data(struct smtp_session *s)
{
    size_t used = smtp_data_feed(s, s->base.conn.in, s->base.conn.in_len);
    conn_consume(&s->base.conn, used);
}

/* conn's pass_cb: while nothing else is buffered, message bytes are scanned straight from the
 * shared read buffer instead of being copied into the connection's input buffer first (one
 * copy of every message byte less). Anything else takes the usual way through c->in. */
static size_t smtp_data_pass_cb(struct conn *c, const char *buf, size_t len)
{
    struct smtp_session *s = c->data;
    if ((s->state != SMTP_S_DATA && s->state != SMTP_S_DATA_DISCARD) || s->base.processing ||
        s->base.closing || s->base.conn.above_high)
        return 0;
    /* As inside smtp_process: a reply that comes synchronously (a local submit, an upstream
     * lost) asks for another turn instead of re-entering. */
    s->base.processing = 1;
    size_t used = smtp_data_feed(s, buf, len);
    s->base.processing = 0;
    if (used == len && s->base.process_again)
        smtp_process(s); /* otherwise the rest arrives as CONN_EV_READ and is processed then */
    return used;
}

static void smtp_upstream_event(void *arg, enum smtp_upstream_event ev)
{
    struct smtp_session *s = arg;
    switch (ev) {
    case SMTP_UPSTREAM_DRAINED:
        if (s->state == SMTP_S_DATA) {
            conn_read_start(&s->base.conn);
            smtp_process(s);
        }
        break;
    case SMTP_UPSTREAM_LOST:
        if (s->state == SMTP_S_DATA) {
            smtp_data_abort(s, "451 4.4.2 Connection to the mail provider lost, try again later",
                            "upstream closed during DATA");
            conn_read_start(&s->base.conn);
            smtp_process(s);
        } else {
            /* Idle: log in again at the next MAIL. */
            log_info(s->base.sid, "event=upstream_idle_close account=%s", s->base.acct->name);
            smtp_drop_upstream(s, 0);
        }
        break;
    }
}

/* ---- input -------------------------------------------------------------------------------- */

static int smtp_state_reads_lines(enum smtp_state st)
{
    return st == SMTP_S_COMMAND || st == SMTP_S_AUTH;
}

static void smtp_handle_line(struct smtp_session *s, const char *line, size_t len)
{
    switch (s->state) {
    case SMTP_S_COMMAND:
        smtp_dispatch_command(s, line, len);
        break;
    case SMTP_S_AUTH:
        smtp_auth_response(s, line, len);
        break;
    default:
        break;
    }
}

static void smtp_process_once(struct smtp_session *s)
{
    if (s->state == SMTP_S_DATA || s->state == SMTP_S_DATA_DISCARD) {
        smtp_process_data(s);
        if (s->state == SMTP_S_DATA || s->state == SMTP_S_DATA_DISCARD)
            return;
    }
    /* A client that does not read its replies: leave its commands in the bounded input
     * buffer (reading stops) until CONN_EV_DRAINED, instead of queueing replies without end. */
    while (smtp_state_reads_lines(s->state) && s->base.conn.in_len > 0 &&
           !s->base.conn.above_high) {
        size_t len, used;
        if (s->relay_count > 0 && s->skipping_long_line) {
            smtp_enter_state(s, SMTP_S_UPSTREAM_REPLY); /* its 500 waits for the replies due */
            return;
        }
        if (s->skipping_long_line) {
            int found = line_skip(s->base.conn.in, s->base.conn.in_len, &used);
            conn_consume(&s->base.conn, used);
            if (!found)
                return;
            s->skipping_long_line = 0;
            if (s->state != SMTP_S_COMMAND)
                smtp_enter_state(s, SMTP_S_COMMAND);
            smtp_bad_command(s, "500 5.5.2 Line too long");
            continue;
        }
        size_t max = s->state == SMTP_S_COMMAND ? SMTP_COMMAND_LINE_MAX : SMTP_AUTH_LINE_MAX;
        enum line_result r = line_next(s->base.conn.in, s->base.conn.in_len, max, &len, &used);
        if (r == LINE_AGAIN) {
            /* An AUTH response may exceed the input buffer's default size. */
            if (s->base.conn.in_len >= s->base.conn.in_max && s->base.conn.in_max < max)
                s->base.conn.in_max = max;
            return;
        }
        if (r == LINE_TOO_LONG) {
            s->skipping_long_line = 1;
            continue;
        }
        if (s->relay_count > 0 && !smtp_pipeline_next(s, s->base.conn.in, len)) {
            /* Back to it when the last reply due was relayed (smtp_command_done). */
            smtp_enter_state(s, SMTP_S_UPSTREAM_REPLY);
            return;
        }
        /* Copy: the handler may consume or discard input (STARTTLS). */
        char line[SMTP_AUTH_LINE_MAX];
        memcpy(line, s->base.conn.in, len);
        conn_consume(&s->base.conn, used);
        smtp_handle_line(s, line, len);
        OPENSSL_cleanse(line, len);
        if (s->state == SMTP_S_DATA)
            return; /* smtp_process was called by the 354 handler */
    }
}

static void smtp_input(struct session *base)
{
    struct smtp_session *s = (struct smtp_session *)base;
    /* The commands of a pipelined group (MAIL, RCPT..., DATA) read in one go leave for the
     * upstream in one write. Its conn outlives this call even if the upstream is dropped
     * meanwhile (closing it drops the cork). */
    struct conn *uc = s->up != NULL ? smtp_upstream_conn(s->up) : NULL;
    int corked = uc != NULL && conn_cork(uc);
    smtp_process_once(s);
    if (corked)
        conn_uncork(uc);
}

static void smtp_greeting(struct session *base)
{
    smtp_reply((struct smtp_session *)base, "220 %s ESMTP xoauthd", base->ctx->hostname);
}

static void smtp_tls_ready(struct session *base)
{
    smtp_enter_state((struct smtp_session *)base, SMTP_S_COMMAND);
}

static void smtp_busy(struct session *base)
{
    smtp_reply((struct smtp_session *)base, "421 4.7.0 %s Too many connections, try again later",
               base->ctx->hostname);
}

/* Client events SMTP logs or answers its own way; session.c does the rest. */
static int smtp_client_event(struct session *base, enum conn_event ev)
{
    struct smtp_session *s = (struct smtp_session *)base;
    switch (ev) {
    case CONN_EV_EOF:
    case CONN_EV_ERROR:
        if (s->state == SMTP_S_DATA || s->state == SMTP_S_DATA_DISCARD)
            log_warn(s->base.sid, "event=client_gone_during_data account=%s from=<%s> "
                     "note=\"upstream closed without the final dot; nothing was sent\"",
                     s->base.acct ? s->base.acct->name : "-", s->mail_from);
        else if (s->state == SMTP_S_DATA_REPLY)
            log_warn(s->base.sid, "event=client_gone_before_reply account=%s from=<%s>",
                     s->base.acct ? s->base.acct->name : "-", s->mail_from);
        return 0;
    case CONN_EV_TIMEOUT:
        log_info(s->base.sid, "event=client_timeout state=%s", smtp_state_names[s->state]);
        session_log_result(&s->base.slog, "timeout");
        smtp_reply(s, "421 4.4.2 %s Timeout, closing connection", s->base.ctx->hostname);
        smtp_close(s);
        return 1;
    default:
        return 0;
    }
}

/* No busy_line, timeout_line or shutdown_line: SMTP's name the host (the hooks write them). */
static const struct session_ops smtp_session_ops = {
    .proto = "smtp",
    .log_proto = "",
    .stats_proto = STATS_PROTO_SMTP,
    .input = smtp_input,
    .greeting = smtp_greeting,
    .tls_ready = smtp_tls_ready,
    .closing = smtp_closing,
    .busy = smtp_busy,
    .client_event = smtp_client_event,
    .shutdown = smtp_shutdown,
    .aborting = smtp_aborting,
};

int smtp_session_accept(const struct listen_point *lp, uv_os_sock_t fd,
                        const struct sockaddr_storage *peer, const struct admission *adm)
{
    struct smtp_session *s = calloc(1, sizeof *s);
    if (s == NULL)
        return session_accept_failed(fd, adm);
    s->state = lp->cfg->tls == CONFIG_TLS_IMPLICIT ? SMTP_S_TLS : SMTP_S_COMMAND;
    return session_accept(&s->base, lp, fd, peer, adm, &smtp_session_ops,
                          SMTP_CLIENT_TIMEOUT_MS);
}
