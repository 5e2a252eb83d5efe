/* sasl: the SASL codecs xoauthd needs, without I/O.
 *
 * Server side (what local clients send): PLAIN (RFC 4616) and LOGIN (user name and password,
 * each base64 on its own line), decoders and the exchange (struct sasl_server). Client side (what xoauthd sends upstream): XOAUTH2 and
 * OAUTHBEARER (RFC 7628) initial responses, and the recognition of the error challenge a
 * server sends when it rejects a token. Decoded credentials are secrets: callers cleanse them
 * with sasl_cred_clear(). */
#ifndef XOAUTHD_SASL_H
#define XOAUTHD_SASL_H

#include <stddef.h>
#include <stdint.h>

#define SASL_MAX_FIELD 512 /* longest user name, password or authzid accepted from a client */

struct sasl_cred {
    char authzid[SASL_MAX_FIELD + 1];
    char user[SASL_MAX_FIELD + 1];
    char password[SASL_MAX_FIELD + 1];
};

/* Decodes a PLAIN response given in base64: authzid NUL authcid NUL passwd.
 * Returns 0, or -1 on bad base64, missing NULs, empty user, NUL-free oversize fields. */
int sasl_plain_decode(const char *b64, size_t len, struct sasl_cred *out);

/* Decodes one base64 line of the LOGIN exchange into out (a user name or a password).
 * Returns 0 or -1 (bad base64, embedded NUL, longer than SASL_MAX_FIELD). */
int sasl_login_decode(const char *b64, size_t len, char out[SASL_MAX_FIELD + 1]);

void sasl_cred_clear(struct sasl_cred *cred);

/* ---- the server side of an exchange, for every front ----
 *
 * The two password mechanisms the fronts offer: PLAIN (RFC 4616: one response, authzid NUL
 * user NUL password) and LOGIN (draft-murchison-sasl-login-00: the server asks for the user
 * name, then for the password, each a base64 response of its own). The protocol writes the
 * challenges and the replies in its own syntax (SMTP "334 ", IMAP and POP3 "+ "). */
enum sasl_mech { SASL_MECH_UNKNOWN, SASL_MECH_PLAIN, SASL_MECH_LOGIN };

enum sasl_step {
    SASL_STEP_CHALLENGE, /* send x->challenge (base64, "" for PLAIN's), read one more response */
    SASL_STEP_DONE,      /* cred has the user and the password: check them */
    SASL_STEP_CANCELLED, /* the client answered "*": aborted (RFC 4422 section 3.5) */
    SASL_STEP_INVALID,   /* bad base64, a NUL, an empty user name, a field too long */
    SASL_STEP_AUTHZID    /* PLAIN with an authorization identity other than the user */
};

struct sasl_server {
    enum sasl_mech mech;
    int have_user;                 /* LOGIN: the user name came, the password is next */
    char user[SASL_MAX_FIELD + 1]; /* LOGIN: the user name until the password */
    const char *challenge;         /* after SASL_STEP_CHALLENGE */
};

/* A mechanism name from a client (case-insensitive, RFC 4422 section 3.1). */
enum sasl_mech sasl_mech_parse(const char *name, size_t len);
/* The mechanisms above, as EHLO's AUTH and POP3's SASL capability list them (IMAP writes
 * AUTH=PLAIN AUTH=LOGIN). */
#define SASL_SERVER_MECHS "PLAIN LOGIN"
/* Starts mech (not UNKNOWN). ir: the initial response, NULL when none came; "=" is an empty
 * one (RFC 4954 section 4, RFC 5034 section 4, RFC 4959 section 3). LOGIN's initial response
 * is the user name (what clients send with SMTP's AUTH LOGIN, and what Dovecot accepts). */
enum sasl_step sasl_server_start(struct sasl_server *x, enum sasl_mech mech, const char *ir,
                                 size_t ir_len, struct sasl_cred *cred);
/* The client's response to the last challenge. */
enum sasl_step sasl_server_step(struct sasl_server *x, const char *b64, size_t len,
                                struct sasl_cred *cred);
/* Forgets the exchange and cleanses what it kept (also after DONE). */
void sasl_server_clear(struct sasl_server *x);

/* Client responses, already base64-encoded, malloc'ed; the caller cleanses and frees them
 * with sasl_secret_free(). host/port are only used by OAUTHBEARER. */
char *sasl_xoauth2_response(const char *user, const char *token);
char *sasl_oauthbearer_response(const char *user, const char *host, unsigned port,
                                const char *token);
void sasl_secret_free(char *s);

/* The answer a client sends to a server's error challenge after a failed token:
 * XOAUTH2 an empty line (""), OAUTHBEARER "AQ==" (a single 0x01). */
const char *sasl_error_challenge_answer(int oauthbearer);

/* Decodes a base64 error challenge ("{\"status\":\"401\",...}") into out for the log; never
 * fails: undecodable input gives "(undecodable)". */
void sasl_describe_challenge(const char *b64, size_t len, char *out, size_t outsz);

#endif
