/* sasl: PLAIN/LOGIN decoding and XOAUTH2/OAUTHBEARER encoding. See sasl.h. */
#include "sasl.h"

#include "base64.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

int sasl_plain_decode(const char *b64, size_t len, struct sasl_cred *out)
{
    /* authzid NUL authcid NUL passwd: the longest acceptable message is three full fields. */
    uint8_t buf[3 * SASL_MAX_FIELD + 2];
    int rc = -1;
    memset(out, 0, sizeof *out);
    long n = base64_decode(b64, len, buf, sizeof buf, 0);
    if (n < 0)
        goto fail;
    const uint8_t *nul1 = memchr(buf, 0, (size_t)n);
    if (nul1 == NULL)
        goto fail;
    size_t zlen = (size_t)(nul1 - buf);
    const uint8_t *user = nul1 + 1;
    size_t rest = (size_t)n - zlen - 1;
    const uint8_t *nul2 = memchr(user, 0, rest);
    if (nul2 == NULL)
        goto fail;
    size_t ulen = (size_t)(nul2 - user);
    const uint8_t *pass = nul2 + 1;
    size_t plen = rest - ulen - 1;
    if (memchr(pass, 0, plen) != NULL)
        goto fail;
    if (ulen == 0 || plen == 0 || zlen > SASL_MAX_FIELD || ulen > SASL_MAX_FIELD ||
        plen > SASL_MAX_FIELD)
        goto fail;
    memcpy(out->authzid, buf, zlen);
    memcpy(out->user, user, ulen);
    memcpy(out->password, pass, plen);
    rc = 0;
fail:
    OPENSSL_cleanse(buf, sizeof buf);
    if (rc != 0)
        sasl_cred_clear(out);
    return rc;
}

int sasl_login_decode(const char *b64, size_t len, char out[SASL_MAX_FIELD + 1])
{
    uint8_t buf[SASL_MAX_FIELD];
    int rc = -1;
    out[0] = '\0';
    long n = base64_decode(b64, len, buf, sizeof buf, 0);
    if (n < 0 || memchr(buf, 0, (size_t)n) != NULL)
        goto fail;
    memcpy(out, buf, (size_t)n);
    out[n] = '\0';
    rc = 0;
fail:
    OPENSSL_cleanse(buf, sizeof buf);
    return rc;
}

void sasl_cred_clear(struct sasl_cred *cred)
{
    if (cred != NULL)
        OPENSSL_cleanse(cred, sizeof *cred);
}

enum sasl_mech sasl_mech_parse(const char *name, size_t len)
{
    if (len == 5 && strncasecmp(name, "PLAIN", 5) == 0)
        return SASL_MECH_PLAIN;
    if (len == 5 && strncasecmp(name, "LOGIN", 5) == 0)
        return SASL_MECH_LOGIN;
    return SASL_MECH_UNKNOWN;
}

/* The challenges of LOGIN, base64: "Username:" and "Password:", as Postfix, Exchange and
 * Dovecot send them (the draft says the client ignores their content). */
#define SASL_LOGIN_ASK_USER "VXNlcm5hbWU6"
#define SASL_LOGIN_ASK_PASSWORD "UGFzc3dvcmQ6"

static enum sasl_step sasl_server_challenge(struct sasl_server *x, const char *challenge)
{
    x->challenge = challenge;
    return SASL_STEP_CHALLENGE;
}

/* PLAIN's one response. */
static enum sasl_step sasl_server_plain(const char *b64, size_t len, struct sasl_cred *cred)
{
    if (sasl_plain_decode(b64, len, cred) != 0)
        return SASL_STEP_INVALID;
    if (cred->authzid[0] != '\0' && strcmp(cred->authzid, cred->user) != 0) {
        sasl_cred_clear(cred);
        return SASL_STEP_AUTHZID;
    }
    return SASL_STEP_DONE;
}

/* LOGIN's responses: the user name (kept), then the password (with it, the credentials). */
static enum sasl_step sasl_server_login(struct sasl_server *x, const char *b64, size_t len,
                                        struct sasl_cred *cred)
{
    if (!x->have_user) {
        if (sasl_login_decode(b64, len, x->user) != 0 || x->user[0] == '\0')
            return SASL_STEP_INVALID;
        x->have_user = 1;
        return sasl_server_challenge(x, SASL_LOGIN_ASK_PASSWORD);
    }
    if (sasl_login_decode(b64, len, cred->password) != 0)
        return SASL_STEP_INVALID;
    memcpy(cred->user, x->user, sizeof cred->user);
    return SASL_STEP_DONE;
}

static enum sasl_step sasl_server_end(struct sasl_server *x, enum sasl_step st,
                                      struct sasl_cred *cred)
{
    if (st == SASL_STEP_CHALLENGE)
        return st;
    if (st != SASL_STEP_DONE)
        sasl_cred_clear(cred);
    sasl_server_clear(x); /* the user name now lives in cred, or nowhere */
    return st;
}

enum sasl_step sasl_server_start(struct sasl_server *x, enum sasl_mech mech, const char *ir,
                                 size_t ir_len, struct sasl_cred *cred)
{
    sasl_server_clear(x);
    memset(cred, 0, sizeof *cred);
    x->mech = mech;
    if (mech == SASL_MECH_UNKNOWN)
        return SASL_STEP_INVALID;
    if (ir == NULL)
        return sasl_server_challenge(x, mech == SASL_MECH_PLAIN ? "" : SASL_LOGIN_ASK_USER);
    if (ir_len == 1 && ir[0] == '=')
        ir_len = 0; /* empty: neither mechanism accepts it as a first response */
    return sasl_server_step(x, ir, ir_len, cred);
}

enum sasl_step sasl_server_step(struct sasl_server *x, const char *b64, size_t len,
                                struct sasl_cred *cred)
{
    enum sasl_step st;
    memset(cred, 0, sizeof *cred);
    if (len == 1 && b64[0] == '*')
        st = SASL_STEP_CANCELLED;
    else if (x->mech == SASL_MECH_PLAIN)
        st = sasl_server_plain(b64, len, cred);
    else if (x->mech == SASL_MECH_LOGIN)
        st = sasl_server_login(x, b64, len, cred);
    else
        st = SASL_STEP_INVALID;
    return sasl_server_end(x, st, cred);
}

void sasl_server_clear(struct sasl_server *x)
{
    OPENSSL_cleanse(x, sizeof *x);
    x->mech = SASL_MECH_UNKNOWN;
    x->challenge = NULL;
}

/* \x01 separates the key=value pairs of both mechanisms: a user name or token carrying one (or
 * any other control byte) could smuggle extra pairs, so such input is refused. */
static int sasl_field_ok(const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f)
            return 0;
    }
    return 1;
}

/* Base64-encodes buf[0..len) and cleanses it; NULL on failure. */
static char *sasl_encode_secret(char *buf, size_t len)
{
    char *out = base64_encode(buf, len, 0);
    OPENSSL_cleanse(buf, len);
    free(buf);
    return out;
}

char *sasl_xoauth2_response(const char *user, const char *token)
{
    if (user == NULL || token == NULL || !sasl_field_ok(user) || !sasl_field_ok(token))
        return NULL;
    static const char p1[] = "user=", p2[] = "\x01" "auth=Bearer ", p3[] = "\x01\x01";
    size_t ulen = strlen(user), tlen = strlen(token);
    size_t len = sizeof p1 - 1 + ulen + sizeof p2 - 1 + tlen + sizeof p3 - 1;
    char *buf = malloc(len + 1);
    if (buf == NULL)
        return NULL;
    size_t o = 0;
    memcpy(buf + o, p1, sizeof p1 - 1);
    o += sizeof p1 - 1;
    memcpy(buf + o, user, ulen);
    o += ulen;
    memcpy(buf + o, p2, sizeof p2 - 1);
    o += sizeof p2 - 1;
    memcpy(buf + o, token, tlen);
    o += tlen;
    memcpy(buf + o, p3, sizeof p3 - 1);
    o += sizeof p3 - 1;
    return sasl_encode_secret(buf, o);
}

char *sasl_oauthbearer_response(const char *user, const char *host, unsigned port,
                                const char *token)
{
    if (user == NULL || host == NULL || token == NULL || !sasl_field_ok(user) ||
        !sasl_field_ok(host) || !sasl_field_ok(token) || port > 65535)
        return NULL;
    /* RFC 5801 section 4: in the gs2 header's saslname, "," and "=" are written =2C and =3D;
     * otherwise a user name with a comma would end the authzid early. */
    size_t ulen = strlen(user), hlen = strlen(host), tlen = strlen(token);
    size_t escaped = ulen;
    for (size_t i = 0; i < ulen; i++)
        if (user[i] == ',' || user[i] == '=')
            escaped += 2;
    size_t len = escaped + hlen + tlen + 64;
    char *buf = malloc(len);
    if (buf == NULL)
        return NULL;
    size_t o = 0;
    memcpy(buf, "n,a=", 4);
    o = 4;
    for (size_t i = 0; i < ulen; i++) {
        if (user[i] == ',') {
            memcpy(buf + o, "=2C", 3);
            o += 3;
        } else if (user[i] == '=') {
            memcpy(buf + o, "=3D", 3);
            o += 3;
        } else {
            buf[o++] = user[i];
        }
    }
    memcpy(buf + o, ",\x01host=", 7);
    o += 7;
    memcpy(buf + o, host, hlen);
    o += hlen;
    char portbuf[32];
    int pn = snprintf(portbuf, sizeof portbuf, "\x01port=%u\x01" "auth=Bearer ", port);
    memcpy(buf + o, portbuf, (size_t)pn);
    o += (size_t)pn;
    memcpy(buf + o, token, tlen);
    o += tlen;
    memcpy(buf + o, "\x01\x01", 2);
    o += 2;
    return sasl_encode_secret(buf, o);
}

void sasl_secret_free(char *s)
{
    if (s == NULL)
        return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

const char *sasl_error_challenge_answer(int oauthbearer)
{
    /* RFC 7628 section 3.2.3: the client answers an error challenge with a single %x01; XOAUTH2
     * (Google's documentation) expects an empty response. */
    return oauthbearer ? "AQ==" : "";
}

void sasl_describe_challenge(const char *b64, size_t len, char *out, size_t outsz)
{
    static const char undecodable[] = "(undecodable)";
    if (out == NULL || outsz == 0)
        return;
    out[0] = '\0';
    size_t cap = len / 4 * 3 + 1;
    uint8_t *buf = malloc(cap);
    long n = buf != NULL ? base64_decode(b64, len, buf, cap, 0) : -1;
    if (n < 0) {
        snprintf(out, outsz, "%s", undecodable);
        free(buf);
        return;
    }
    /* Only printable ASCII reaches the log: the challenge comes from the network. */
    size_t o = 0;
    for (long i = 0; i < n && o + 1 < outsz; i++)
        if (buf[i] >= 0x20 && buf[i] < 0x7f)
            out[o++] = (char)buf[i];
    out[o] = '\0';
    free(buf);
}
