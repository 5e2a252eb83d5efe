/* imap_session: the client-facing IMAP state machine, see imap_session.h. */
#include "imap_session.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "imap_parse.h"
#include "imap_upstream.h"
#include "line.h"
#include "log.h"
#include "sasl.h"
#include "session.h"

/* RFC 9051 section 5.4: an autologout timer "MUST be of at least 30 minutes' duration"; the
 * same holds before login here, and the relay keeps it on the client side after login (IDLE
 * clients re-issue IDLE at least every 29 minutes, RFC 2177). */
#define IMAP_IDLE_TIMEOUT_MS (30 * 60 * 1000)
#define IMAP_MAX_BAD 10
#define IMAP_TAG_MAX 256
#define IMAP_AUTH_LINE_MAX 4096 /* a PLAIN response: base64 of two fields of SASL_MAX_FIELD */

enum imap_state {
    IMAP_S_TLS,        /* implicit TLS or after STARTTLS */
    IMAP_S_COMMAND,    /* not authenticated, reading commands */
    IMAP_S_AUTH_CONT,  /* "+ ..." sent for AUTHENTICATE, the next response line expected */
    IMAP_S_VERIFY,     /* local password check (and the failure delay) */
    IMAP_S_UPSTREAM,   /* token + upstream login */
    IMAP_S_RELAY,      /* logged in: bytes flow both ways */
    IMAP_S_CLOSING
};

static const char *const imap_state_names[] = {"tls", "command", "auth-cont", "verify",
                                                "upstream", "relay", "closing"};

struct imap_session {
    struct session s; /* first: session.c frees through it */
    enum imap_state state;
    struct imap_parser parser;
    struct imap_upstream *up;
    char tag[IMAP_TAG_MAX + 1]; /* of the LOGIN / AUTHENTICATE in progress */
    unsigned bad;
};

#define imap_send(is, ...) session_send(&(is)->s, __VA_ARGS__)

static void imap_enter_state(struct imap_session *is, enum imap_state st)
{
    if (is->state == st)
        return;
    log_debug(is->s.sid, "event=imap_state from=%s to=%s", imap_state_names[is->state],
              imap_state_names[st]);
    is->state = st;
}

/* The list before login: only what xoauthd itself does here. LITERAL+ (RFC 7888) because the
 * parser takes non-synchronising literals; LOGINDISABLED (RFC 9051 section 6.2.3) where a
 * password may not be sent in clear, and then no AUTH=PLAIN / AUTH=LOGIN either (both carry the
 * password as it is). */
static void imap_capabilities(struct imap_session *is, char *out, size_t outsz)
{
    int auth_ok = session_plaintext_auth_ok(&is->s);
    int starttls = is->s.lp->cfg->tls == CONFIG_TLS_STARTTLS && is->s.conn.ssl == NULL;
    snprintf(out, outsz, "IMAP4rev1 LITERAL+ SASL-IR ID%s%s",
             starttls ? " STARTTLS" : "", auth_ok ? " AUTH=PLAIN AUTH=LOGIN" : " LOGINDISABLED");
}

static void imap_greeting(struct session *s)
{
    struct imap_session *is = (struct imap_session *)s;
    char caps[256];
    imap_capabilities(is, caps, sizeof caps);
    imap_send(is, "* OK [CAPABILITY %s] xoauthd ready.", caps);
}

static void imap_close(struct imap_session *is, int flush)
{
    imap_enter_state(is, IMAP_S_CLOSING);
    session_close(&is->s, flush);
}

/* Counts invalid commands; a client that keeps sending them is not an IMAP client. */
static void imap_bad(struct imap_session *is, const char *tag, const char *text)
{
    imap_send(is, "%s BAD %s", tag, text);
    if (++is->bad >= IMAP_MAX_BAD) {
        log_warn(is->s.sid, "event=too_many_errors protocol=imap peer=%s", is->s.conn.peer);
        imap_send(is, "* BYE Too many invalid commands.");
        imap_close(is, 1);
    }
}

/* ---- login ---------------------------------------------------------------------------------- */

static void imap_login_done_cb(void *arg, enum upstream_failure f, const char *reason);

static void imap_auth_cb(struct session *s, int ok)
{
    struct imap_session *is = (struct imap_session *)s;
    if (ok <= 0) {
        /* RFC 5530 section 3: UNAVAILABLE is a temporary failure, try again later. */
        if (ok < 0)
            imap_send(is, "%s NO [UNAVAILABLE] Too many logins in progress; try again later.",
                      is->tag);
        else
            imap_send(is, "%s NO [AUTHENTICATIONFAILED] Authentication failed.", is->tag);
        imap_enter_state(is, IMAP_S_COMMAND);
        session_process(s);
        return;
    }
    imap_enter_state(is, IMAP_S_UPSTREAM);
    is->up = imap_upstream_new(s->ctx, s->acct, s->sid, is);
    if (is->up == NULL) {
        imap_login_done_cb(is, UPSTREAM_FAIL_CONNECT, "out of memory");
        return;
    }
    imap_upstream_login(is->up, imap_login_done_cb);
}

static void imap_login_done_cb(void *arg, enum upstream_failure f, const char *reason)
{
    struct imap_session *is = arg;
    if (f != UPSTREAM_OK) {
        session_upstream_failed(&is->s, f, reason);
        imap_upstream_free(is->up);
        is->up = NULL;
        imap_send(is, "%s NO [UNAVAILABLE] The mail provider cannot be reached right now; "
                  "try again later.", is->tag);
        imap_enter_state(is, IMAP_S_COMMAND);
        session_process(&is->s);
        return;
    }
    /* RFC 9051 section 6.2.3: the server MAY send a CAPABILITY response code in the tagged OK
     * of LOGIN and AUTHENTICATE; clients then need not ask. */
    imap_send(is, "%s OK [CAPABILITY %s] %s", is->tag, imap_upstream_capability(is->up),
              imap_upstream_ok_text(is->up)[0] ? imap_upstream_ok_text(is->up) : "Logged in");
    struct conn *upc = imap_upstream_take_conn(is->up);
    imap_upstream_free(is->up);
    is->up = NULL;
    imap_parser_reset(&is->parser);
    imap_enter_state(is, IMAP_S_RELAY);
    /* Commands the client pipelined behind its login are still in its input buffer: the relay
     * forwards them first. */
    session_start_relay(&is->s, upc, IMAP_IDLE_TIMEOUT_MS);
}

static int imap_keep_tag(struct imap_session *is, const char *tag)
{
    if (strlen(tag) > IMAP_TAG_MAX) {
        imap_bad(is, "*", "Tag too long.");
        return -1;
    }
    snprintf(is->tag, sizeof is->tag, "%s", tag);
    return 0;
}

static void imap_check_login(struct imap_session *is, const char *user, const char *password)
{
    imap_enter_state(is, IMAP_S_VERIFY);
    session_check_password(&is->s, user, password, imap_auth_cb);
}

static int imap_is_astring(const struct imap_arg *a)
{
    return a->type == IMAP_ARG_ATOM || a->type == IMAP_ARG_STRING;
}

static void imap_cmd_login(struct imap_session *is, const struct imap_parser *p)
{
    if (p->nargs != 2 || !imap_is_astring(&p->args[0]) || !imap_is_astring(&p->args[1])) {
        imap_bad(is, p->tag, "LOGIN needs a user name and a password.");
        return;
    }
    if (!session_plaintext_auth_ok(&is->s)) {
        imap_send(is, "%s NO [PRIVACYREQUIRED] Log in after STARTTLS, or on the TLS port.",
                  p->tag);
        return;
    }
    if (p->args[0].len > SASL_MAX_FIELD || p->args[1].len > SASL_MAX_FIELD ||
        p->args[0].len == 0) {
        imap_send(is, "%s NO [AUTHENTICATIONFAILED] Authentication failed.", p->tag);
        return;
    }
    if (imap_keep_tag(is, p->tag) != 0)
        return;
    imap_check_login(is, p->args[0].str, p->args[1].str);
}

/* A step of the AUTHENTICATE exchange (sasl.h), in IMAP's words (RFC 9051 section 6.2.2). */
static void imap_auth_step(struct imap_session *is, enum sasl_step st, struct sasl_cred *cred,
                           enum sasl_mech mech)
{
    switch (st) {
    case SASL_STEP_CHALLENGE:
        imap_enter_state(is, IMAP_S_AUTH_CONT);
        imap_send(is, "+ %s", is->s.sasl.challenge);
        return;
    case SASL_STEP_DONE:
        imap_check_login(is, cred->user, cred->password);
        break;
    case SASL_STEP_CANCELLED:
        /* a single "*" cancels; the server answers BAD */
        imap_send(is, "%s BAD Authentication cancelled.", is->tag);
        break;
    case SASL_STEP_INVALID:
        /* an invalid BASE64 string MUST be rejected with BAD */
        imap_send(is, "%s BAD Invalid SASL %s response.", is->tag,
                  mech == SASL_MECH_PLAIN ? "PLAIN" : "LOGIN");
        break;
    case SASL_STEP_AUTHZID:
        imap_send(is, "%s NO [AUTHORIZATIONFAILED] Authorization identity not allowed.",
                  is->tag);
        break;
    }
    sasl_cred_clear(cred);
}

static void imap_auth_response(struct imap_session *is, const char *b64, size_t len)
{
    struct sasl_cred cred;
    enum sasl_mech mech = is->s.sasl.mech;
    imap_auth_step(is, sasl_server_step(&is->s.sasl, b64, len, &cred), &cred, mech);
}

static void imap_cmd_authenticate(struct imap_session *is, const struct imap_parser *p)
{
    if (p->nargs < 1 || p->nargs > 2 || p->args[0].type != IMAP_ARG_ATOM ||
        (p->nargs == 2 && p->args[1].type != IMAP_ARG_ATOM)) {
        imap_bad(is, p->tag, "AUTHENTICATE needs a mechanism name.");
        return;
    }
    enum sasl_mech mech = sasl_mech_parse(p->args[0].str, p->args[0].len);
    if (mech == SASL_MECH_UNKNOWN) {
        imap_send(is, "%s NO Unsupported authentication mechanism.", p->tag);
        return;
    }
    if (!session_plaintext_auth_ok(&is->s)) {
        imap_send(is, "%s NO [PRIVACYREQUIRED] Log in after STARTTLS, or on the TLS port.",
                  p->tag);
        return;
    }
    if (imap_keep_tag(is, p->tag) != 0)
        return;
    /* RFC 4959 (SASL-IR): the initial response is the second argument, "=" an empty one. */
    const struct imap_arg *ir = p->nargs == 2 ? &p->args[1] : NULL;
    struct sasl_cred cred;
    imap_auth_step(is, sasl_server_start(&is->s.sasl, mech, ir != NULL ? ir->str : NULL,
                                         ir != NULL ? ir->len : 0, &cred), &cred, mech);
}

/* ---- other commands ------------------------------------------------------------------------ */

static void imap_cmd_starttls(struct imap_session *is, const struct imap_parser *p)
{
    if (is->s.conn.ssl != NULL) {
        imap_bad(is, p->tag, "TLS is active already.");
        return;
    }
    if (is->s.lp->tls == NULL || is->s.lp->cfg->tls != CONFIG_TLS_STARTTLS) {
        imap_bad(is, p->tag, "STARTTLS is not offered here.");
        return;
    }
    imap_send(is, "%s OK Begin TLS negotiation now.", p->tag);
    imap_parser_reset(&is->parser);
    imap_enter_state(is, IMAP_S_TLS);
    session_starttls(&is->s);
}

static void imap_dispatch(struct imap_session *is, const struct imap_parser *p)
{
    const char *cmd = p->command;
    char caps[256];
    if (strcasecmp(cmd, "CAPABILITY") == 0) {
        imap_capabilities(is, caps, sizeof caps);
        imap_send(is, "* CAPABILITY %s", caps);
        imap_send(is, "%s OK CAPABILITY completed.", p->tag);
    } else if (strcasecmp(cmd, "NOOP") == 0) {
        imap_send(is, "%s OK NOOP completed.", p->tag);
    } else if (strcasecmp(cmd, "LOGOUT") == 0) {
        imap_send(is, "* BYE Logging out.");
        imap_send(is, "%s OK LOGOUT completed.", p->tag);
        imap_close(is, 1);
    } else if (strcasecmp(cmd, "ID") == 0) {
        /* RFC 2971: the client's ID is not forwarded; the provider sees xoauthd's own. */
        imap_send(is, "* ID (\"name\" \"xoauthd\")");
        imap_send(is, "%s OK ID completed.", p->tag);
    } else if (strcasecmp(cmd, "ENABLE") == 0) {
        imap_bad(is, p->tag, "ENABLE is valid after login only.");
    } else if (strcasecmp(cmd, "STARTTLS") == 0) {
        imap_cmd_starttls(is, p);
    } else if (strcasecmp(cmd, "LOGIN") == 0) {
        imap_cmd_login(is, p);
    } else if (strcasecmp(cmd, "AUTHENTICATE") == 0) {
        imap_cmd_authenticate(is, p);
    } else {
        imap_bad(is, p->tag, "Unknown command, or not valid before login.");
    }
}

/* ---- input ---------------------------------------------------------------------------------- */

static void imap_input(struct session *s)
{
    struct imap_session *is = (struct imap_session *)s;
    struct conn *c = &s->conn;
    while (c->in_len > 0 && (is->state == IMAP_S_COMMAND || is->state == IMAP_S_AUTH_CONT)) {
        if (is->state == IMAP_S_AUTH_CONT) {
            size_t len, used;
            enum line_result r = line_next(c->in, c->in_len, IMAP_AUTH_LINE_MAX, &len, &used);
            if (r == LINE_AGAIN)
                return;
            imap_enter_state(is, IMAP_S_COMMAND);
            if (r == LINE_TOO_LONG) {
                imap_send(is, "* BYE SASL response too long.");
                imap_close(is, 1);
                return;
            }
            char line[IMAP_AUTH_LINE_MAX];
            memcpy(line, c->in, len);
            conn_consume(c, used);
            imap_auth_response(is, line, len);
            OPENSSL_cleanse(line, len);
            continue;
        }
        enum imap_parse_status st;
        size_t used = imap_parse(&is->parser, c->in, c->in_len, &st);
        conn_consume(c, used);
        switch (st) {
        case IMAP_PARSE_AGAIN:
            break;
        case IMAP_PARSE_CONTINUE:
            imap_send(is, "+ Ready for literal data.");
            break;
        case IMAP_PARSE_DONE:
            imap_dispatch(is, &is->parser);
            break;
        case IMAP_PARSE_BAD:
            imap_bad(is, imap_parser_reply_tag(&is->parser), is->parser.error);
            break;
        case IMAP_PARSE_FATAL:
            imap_send(is, "%s BAD %s", imap_parser_reply_tag(&is->parser), is->parser.error);
            imap_send(is, "* BYE Cannot continue after that.");
            imap_close(is, 1);
            return;
        }
    }
}

static void imap_tls_ready(struct session *s)
{
    imap_enter_state((struct imap_session *)s, IMAP_S_COMMAND);
}

static void imap_closing(struct session *s)
{
    struct imap_session *is = (struct imap_session *)s;
    is->state = IMAP_S_CLOSING;
    imap_upstream_free(is->up);
    is->up = NULL;
    imap_parser_reset(&is->parser);
}

static const struct session_ops imap_session_ops = {
    .proto = "imap",
    .log_proto = " protocol=imap",
    .stats_proto = STATS_PROTO_IMAP,
    .busy_line = "* BYE Too many connections, try again later.",
    .timeout_line = "* BYE Autologout; idle for too long.",
    .shutdown_line = "* BYE Server shutting down.",
    .input = imap_input,
    .greeting = imap_greeting,
    .tls_ready = imap_tls_ready,
    .closing = imap_closing,
};

int imap_session_accept(const struct listen_point *lp, uv_os_sock_t fd,
                        const struct sockaddr_storage *peer, const struct admission *adm)
{
    struct imap_session *is = calloc(1, sizeof *is);
    if (is == NULL)
        return session_accept_failed(fd, adm);
    /* Passwords may come as literals; SASL_MAX_FIELD bounds them like every other field. */
    imap_parser_init(&is->parser, SASL_MAX_FIELD);
    is->state = lp->cfg->tls == CONFIG_TLS_IMPLICIT ? IMAP_S_TLS : IMAP_S_COMMAND;
    return session_accept(&is->s, lp, fd, peer, adm, &imap_session_ops, IMAP_IDLE_TIMEOUT_MS);
}
