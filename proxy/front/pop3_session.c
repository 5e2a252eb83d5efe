/* pop3_session: the client-facing POP3 state machine, see pop3_session.h. */
#include "pop3_session.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "log.h"
#include "pop3_parse.h"
#include "pop3_upstream.h"
#include "sasl.h"
#include "session.h"

/* RFC 1939 section 3: an autologout timer "MUST be of at least 10 minutes' duration". */
#define POP3_IDLE_TIMEOUT_MS (10 * 60 * 1000)
#define POP3_MAX_BAD 10

enum pop3_state {
    POP3_S_TLS,       /* implicit TLS or after STLS */
    POP3_S_COMMAND,   /* AUTHORIZATION state, reading commands */
    POP3_S_AUTH_CONT, /* "+ ..." sent for AUTH, the next response line expected */
    POP3_S_VERIFY,    /* local password check (and the failure delay) */
    POP3_S_UPSTREAM,  /* token + upstream login */
    POP3_S_RELAY,     /* logged in: bytes flow both ways */
    POP3_S_CLOSING
};

static const char *const pop3_state_names[] = {"tls", "command", "auth-cont", "verify",
                                                "upstream", "relay", "closing"};

struct pop3_session {
    struct session s; /* first: session.c frees through it */
    enum pop3_state state;
    struct pop3_parser parser;
    struct pop3_upstream *up;
    char user[SASL_MAX_FIELD + 1]; /* from USER, for PASS */
    unsigned bad;
};

#define pop3_send(ps, ...) session_send(&(ps)->s, __VA_ARGS__)

static void pop3_enter_state(struct pop3_session *ps, enum pop3_state st)
{
    if (ps->state == st)
        return;
    log_debug(ps->s.sid, "event=pop3_state from=%s to=%s", pop3_state_names[ps->state],
              pop3_state_names[st]);
    ps->state = st;
}

static void pop3_close(struct pop3_session *ps, int flush)
{
    pop3_enter_state(ps, POP3_S_CLOSING);
    session_close(&ps->s, flush);
}

static void pop3_err(struct pop3_session *ps, const char *text)
{
    pop3_send(ps, "-ERR %s", text);
    if (++ps->bad >= POP3_MAX_BAD) {
        log_warn(ps->s.sid, "event=too_many_errors protocol=pop3 peer=%s", ps->s.conn.peer);
        pop3_send(ps, "-ERR Too many errors, closing.");
        pop3_close(ps, 1);
    }
}

/* ---- login ---------------------------------------------------------------------------------- */

static void pop3_login_done_cb(void *arg, enum upstream_failure f, const char *reason);

static void pop3_auth_cb(struct session *s, int ok)
{
    struct pop3_session *ps = (struct pop3_session *)s;
    if (ok <= 0) {
        /* RFC 3206 section 5: SYS/TEMP is a temporary failure, try again later. */
        if (ok < 0)
            pop3_send(ps, "-ERR [SYS/TEMP] Too many logins in progress; try again later.");
        else
            pop3_send(ps, "-ERR [AUTH] Authentication failed.");
        pop3_enter_state(ps, POP3_S_COMMAND);
        session_process(s);
        return;
    }
    pop3_enter_state(ps, POP3_S_UPSTREAM);
    ps->up = pop3_upstream_new(s->ctx, s->acct, s->sid, ps);
    if (ps->up == NULL) {
        pop3_login_done_cb(ps, UPSTREAM_FAIL_CONNECT, "out of memory");
        return;
    }
    pop3_upstream_login(ps->up, pop3_login_done_cb);
}

static void pop3_login_done_cb(void *arg, enum upstream_failure f, const char *reason)
{
    struct pop3_session *ps = arg;
    if (f != UPSTREAM_OK) {
        session_upstream_failed(&ps->s, f, reason);
        pop3_upstream_free(ps->up);
        ps->up = NULL;
        pop3_send(ps, "-ERR [SYS/TEMP] The mail provider cannot be reached right now; try "
                  "again later.");
        pop3_enter_state(ps, POP3_S_COMMAND);
        session_process(&ps->s);
        return;
    }
    const char *text = pop3_upstream_ok_text(ps->up);
    pop3_send(ps, "+OK %s", text[0] ? text : "Logged in.");
    struct conn *upc = pop3_upstream_take_conn(ps->up);
    pop3_upstream_free(ps->up);
    ps->up = NULL;
    pop3_parser_reset(&ps->parser);
    pop3_enter_state(ps, POP3_S_RELAY);
    /* Commands pipelined behind the login are still in the input buffer: the relay forwards
     * them first. */
    session_start_relay(&ps->s, upc, POP3_IDLE_TIMEOUT_MS);
}

static void pop3_check_login(struct pop3_session *ps, const char *user, const char *password)
{
    pop3_enter_state(ps, POP3_S_VERIFY);
    session_check_password(&ps->s, user, password, pop3_auth_cb);
}

/* A step of the AUTH exchange (sasl.h), in POP3's words (RFC 5034 section 4). */
static void pop3_auth_step(struct pop3_session *ps, enum sasl_step st, struct sasl_cred *cred,
                           enum sasl_mech mech)
{
    switch (st) {
    case SASL_STEP_CHALLENGE:
        pop3_enter_state(ps, POP3_S_AUTH_CONT);
        ps->parser.raw = 1;
        pop3_send(ps, "+ %s", ps->s.sasl.challenge);
        return;
    case SASL_STEP_DONE:
        pop3_check_login(ps, cred->user, cred->password);
        break;
    case SASL_STEP_CANCELLED:
        pop3_send(ps, "-ERR Authentication cancelled.");
        break;
    case SASL_STEP_INVALID:
        pop3_err(ps, mech == SASL_MECH_PLAIN ? "Invalid SASL PLAIN response."
                                             : "Invalid SASL LOGIN response.");
        break;
    case SASL_STEP_AUTHZID:
        pop3_send(ps, "-ERR [AUTH] Authorization identity not allowed.");
        break;
    }
    sasl_cred_clear(cred);
}

static void pop3_auth_response(struct pop3_session *ps, const char *b64, size_t len)
{
    struct sasl_cred cred;
    enum sasl_mech mech = ps->s.sasl.mech;
    pop3_auth_step(ps, sasl_server_step(&ps->s.sasl, b64, len, &cred), &cred, mech);
}

static int pop3_may_login(struct pop3_session *ps)
{
    if (session_plaintext_auth_ok(&ps->s))
        return 1;
    pop3_send(ps, "-ERR [AUTH] Log in after STLS, or on the TLS port.");
    return 0;
}

static void pop3_cmd_auth(struct pop3_session *ps, const char *arg, size_t len)
{
    if (len == 0) {
        /* Old clients (RFC 1734 era) list mechanisms with a bare AUTH, one per line. */
        if (session_plaintext_auth_ok(&ps->s))
            pop3_send(ps, "+OK\r\nPLAIN\r\nLOGIN\r\n.");
        else
            pop3_send(ps, "+OK\r\n.");
        return;
    }
    const char *sp = memchr(arg, ' ', len);
    size_t mlen = sp != NULL ? (size_t)(sp - arg) : len;
    enum sasl_mech mech = sasl_mech_parse(arg, mlen);
    if (mech == SASL_MECH_UNKNOWN) {
        pop3_send(ps, "-ERR Unsupported authentication mechanism.");
        return;
    }
    if (!pop3_may_login(ps))
        return;
    struct sasl_cred cred;
    const char *ir = sp != NULL ? sp + 1 : NULL;
    pop3_auth_step(ps, sasl_server_start(&ps->s.sasl, mech, ir, ir != NULL ? len - mlen - 1 : 0,
                                         &cred), &cred, mech);
}

/* ---- commands ------------------------------------------------------------------------------- */

static void pop3_cmd_capa(struct pop3_session *ps)
{
    char buf[256];
    int auth_ok = session_plaintext_auth_ok(&ps->s);
    int stls = ps->s.lp->cfg->tls == CONFIG_TLS_STARTTLS && ps->s.conn.ssl == NULL;
    /* RFC 2449 section 5: CAPA may differ before and after login; this is the list for the
     * AUTHORIZATION state (after login the provider answers CAPA itself, through the relay).
     * USER and SASL PLAIN LOGIN only where a password may be sent; no STLS once TLS is up. */
    snprintf(buf, sizeof buf, "+OK Capability list follows\r\n%s%s"
             "RESP-CODES\r\nAUTH-RESP-CODE\r\nIMPLEMENTATION xoauthd\r\n.",
             auth_ok ? "USER\r\nSASL " SASL_SERVER_MECHS "\r\n" : "", stls ? "STLS\r\n" : "");
    pop3_send(ps, "%s", buf);
}

static void pop3_cmd_stls(struct pop3_session *ps)
{
    if (ps->s.conn.ssl != NULL) {
        pop3_err(ps, "TLS is active already.");
        return;
    }
    if (ps->s.lp->tls == NULL || ps->s.lp->cfg->tls != CONFIG_TLS_STARTTLS) {
        pop3_err(ps, "STLS is not offered here.");
        return;
    }
    pop3_send(ps, "+OK Begin TLS negotiation now.");
    /* What was learned in clear is forgotten with the input behind STLS, USER included. */
    pop3_parser_reset(&ps->parser);
    OPENSSL_cleanse(ps->user, sizeof ps->user);
    pop3_enter_state(ps, POP3_S_TLS);
    session_starttls(&ps->s);
}

static void pop3_dispatch(struct pop3_session *ps, const struct pop3_parser *p)
{
    const char *kw = p->keyword;
    if (strcmp(kw, "CAPA") == 0) {
        pop3_cmd_capa(ps);
    } else if (strcmp(kw, "QUIT") == 0) {
        pop3_send(ps, "+OK Bye.");
        pop3_close(ps, 1);
    } else if (strcmp(kw, "STLS") == 0) {
        pop3_cmd_stls(ps);
    } else if (strcmp(kw, "USER") == 0) {
        if (!pop3_may_login(ps))
            return;
        if (p->arg_len == 0 || p->arg_len > SASL_MAX_FIELD) {
            pop3_err(ps, "USER needs a user name.");
            return;
        }
        snprintf(ps->user, sizeof ps->user, "%s", p->arg);
        pop3_send(ps, "+OK");
    } else if (strcmp(kw, "PASS") == 0) {
        if (ps->user[0] == '\0') {
            pop3_err(ps, "USER first.");
            return;
        }
        if (!pop3_may_login(ps))
            return;
        char user[SASL_MAX_FIELD + 1];
        snprintf(user, sizeof user, "%s", ps->user);
        OPENSSL_cleanse(ps->user, sizeof ps->user);
        if (p->arg_len > SASL_MAX_FIELD) {
            pop3_send(ps, "-ERR [AUTH] Authentication failed.");
            return;
        }
        pop3_check_login(ps, user, p->arg);
    } else if (strcmp(kw, "AUTH") == 0) {
        pop3_cmd_auth(ps, p->arg, p->arg_len);
    } else if (strcmp(kw, "APOP") == 0) {
        pop3_send(ps, "-ERR APOP is not supported; use USER/PASS or AUTH PLAIN.");
    } else {
        pop3_err(ps, "Unknown command, or not valid before login.");
    }
}

/* ---- input ---------------------------------------------------------------------------------- */

static void pop3_input(struct session *s)
{
    struct pop3_session *ps = (struct pop3_session *)s;
    struct conn *c = &s->conn;
    while (c->in_len > 0 && (ps->state == POP3_S_COMMAND || ps->state == POP3_S_AUTH_CONT)) {
        enum pop3_parse_status st;
        size_t used = pop3_parse(&ps->parser, c->in, c->in_len, &st);
        conn_consume(c, used);
        if (st == POP3_PARSE_AGAIN)
            continue;
        if (ps->state == POP3_S_AUTH_CONT) {
            ps->parser.raw = 0;
            pop3_enter_state(ps, POP3_S_COMMAND);
            if (st == POP3_PARSE_DONE) {
                pop3_auth_response(ps, ps->parser.arg, ps->parser.arg_len);
            } else {
                sasl_server_clear(&ps->s.sasl);
                pop3_err(ps, "Invalid SASL response.");
            }
            continue;
        }
        if (st == POP3_PARSE_DONE)
            pop3_dispatch(ps, &ps->parser);
        else if (st == POP3_PARSE_TOO_LONG)
            pop3_err(ps, "Line too long.");
        else
            pop3_err(ps, "Not a command.");
    }
}

static void pop3_greeting(struct session *s) { session_send(s, "+OK xoauthd ready."); }

static void pop3_tls_ready(struct session *s)
{
    pop3_enter_state((struct pop3_session *)s, POP3_S_COMMAND);
}

static void pop3_closing(struct session *s)
{
    struct pop3_session *ps = (struct pop3_session *)s;
    ps->state = POP3_S_CLOSING;
    pop3_upstream_free(ps->up);
    ps->up = NULL;
    pop3_parser_reset(&ps->parser);
    OPENSSL_cleanse(ps->user, sizeof ps->user);
}

static const struct session_ops pop3_session_ops = {
    .proto = "pop3",
    .log_proto = " protocol=pop3",
    .stats_proto = STATS_PROTO_POP3,
    .busy_line = "-ERR [SYS/TEMP] Too many connections, try again later.",
    .timeout_line = "-ERR Autologout; idle for too long.",
    .shutdown_line = "-ERR [SYS/TEMP] Server shutting down.",
    .input = pop3_input,
    .greeting = pop3_greeting,
    .tls_ready = pop3_tls_ready,
    .closing = pop3_closing,
};

int pop3_session_accept(const struct listen_point *lp, uv_os_sock_t fd,
                        const struct sockaddr_storage *peer, const struct admission *adm)
{
    struct pop3_session *ps = calloc(1, sizeof *ps);
    if (ps == NULL)
        return session_accept_failed(fd, adm);
    pop3_parser_init(&ps->parser);
    ps->state = lp->cfg->tls == CONFIG_TLS_IMPLICIT ? POP3_S_TLS : POP3_S_COMMAND;
    return session_accept(&ps->s, lp, fd, peer, adm, &pop3_session_ops, POP3_IDLE_TIMEOUT_MS);
}
