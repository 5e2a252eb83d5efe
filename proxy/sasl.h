/* sasl: the SASL codecs xoauthd needs, without I/O.
 *
 * Server side (what local clients send): PLAIN (RFC 4616) and LOGIN (user name and password,
 * each base64 on its own line). Client side (what xoauthd sends upstream): XOAUTH2 and
 * OAUTHBEARER (RFC 7628) initial responses, and the recognition of the error challenge a
 * server sends when it rejects a token. Decoded credentials are secrets: callers cleanse them
 * with sasl_cred_clear(). */
#ifndef XOAUTHD_SASL_H
#define XOAUTHD_SASL_H

#include <stddef.h>
#include <stdint.h>

#define SASL_MAX_FIELD 512 /* longest user name, password or authzid accepted from a client */

/* Standard base64 (RFC 4648) with padding. encode returns a malloc'ed NUL-terminated string or
 * NULL on allocation failure. decode rejects bad characters, bad padding and output longer than
 * outsz; returns the decoded length or -1. */
char *sasl_base64_encode(const uint8_t *in, size_t len);
long sasl_base64_decode(const char *in, size_t inlen, uint8_t *out, size_t outsz);

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
