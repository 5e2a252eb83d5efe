/* libFuzzer target: the server-side SASL decoders and exchanges (PLAIN, LOGIN), base64, the decoder of an
 * upstream's error challenge (which comes from the network too), and the client-side XOAUTH2 /
 * OAUTHBEARER encoders fed with hostile user names and tokens (decoded again and checked: a
 * control byte must never smuggle an extra \x01 pair). xoauthd never decodes XOAUTH2 itself:
 * clients log in with PLAIN or LOGIN only. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "sasl.h"

/* user NUL token NUL host, from the input; the encoders take C strings. */
static void fuzz_client_responses(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return;
    char *buf = malloc(size + 3);
    if (buf == NULL)
        return;
    memcpy(buf, data, size);
    buf[size] = buf[size + 1] = buf[size + 2] = '\0';
    const char *user = buf;
    const char *token = user + strlen(user) + 1;
    const char *host = token + strlen(token) + 1;
    if (host > buf + size)
        host = buf + size;
    unsigned port = size > 0 ? (unsigned)data[size - 1] * 1000u : 993u;
    char *x = sasl_xoauth2_response(user, token);
    if (x != NULL) {
        size_t cap = strlen(x) / 4 * 3 + 1;
        uint8_t *dec = malloc(cap);
        if (dec == NULL)
            abort();
        long n = base64_decode(x, strlen(x), dec, cap, 0);
        size_t ul = strlen(user), tl = strlen(token);
        /* "user=" U "\x01auth=Bearer " T "\x01\x01", and no \x01 inside U or T */
        if (n != (long)(5 + ul + 13 + tl + 2) || memcmp(dec, "user=", 5) != 0 ||
            memcmp(dec + 5, user, ul) != 0 || memcmp(dec + 5 + ul, "\x01" "auth=Bearer ", 13) != 0 ||
            memcmp(dec + 18 + ul, token, tl) != 0 || memchr(user, 1, ul) != NULL ||
            memchr(token, 1, tl) != NULL)
            abort();
        free(dec);
        sasl_secret_free(x);
    }
    char *o = sasl_oauthbearer_response(user, host, port, token);
    if (o != NULL) {
        size_t cap = strlen(o) / 4 * 3 + 1;
        uint8_t *dec = malloc(cap);
        if (dec == NULL)
            abort();
        long n = base64_decode(o, strlen(o), dec, cap, 0);
        if (n < 6 || memcmp(dec, "n,a=", 4) != 0 || dec[n - 1] != 1 || dec[n - 2] != 1)
            abort();
        /* five \x01: after the gs2 header, the host and the port, and the final two */
        int ones = 0;
        for (long i = 0; i < n; i++)
            ones += dec[i] == 1;
        if (ones != 5)
            abort();
        free(dec);
        sasl_secret_free(o);
    }
    free(buf);
}

/* A server-side exchange driven by the input: first octet picks the mechanism and whether
 * the first line is an initial response; the lines that follow are the responses. */
static void fuzz_server_exchange(const uint8_t *data, size_t size)
{
    if (size == 0)
        return;
    struct sasl_server x;
    struct sasl_cred cred;
    memset(&x, 0, sizeof x);
    enum sasl_mech mech = (enum sasl_mech)(data[0] % 3);
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t l = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
    enum sasl_step st = (data[0] & 0x80) ? sasl_server_start(&x, mech, p, l, &cred)
                                         : sasl_server_start(&x, mech, NULL, 0, &cred);
    if (data[0] & 0x80)
        p += l + (nl != NULL);
    for (int steps = 0; st == SASL_STEP_CHALLENGE; steps++) {
        /* PLAIN takes one response, LOGIN two */
        if (steps > 2 || x.challenge == NULL || p > end)
            abort();
        nl = memchr(p, '\n', (size_t)(end - p));
        l = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
        st = sasl_server_step(&x, p, l, &cred);
        p += l + (nl != NULL);
    }
    if (st == SASL_STEP_DONE &&
        (cred.user[0] == '\0' || strlen(cred.user) > SASL_MAX_FIELD ||
         strlen(cred.password) > SASL_MAX_FIELD))
        abort();
    if (st != SASL_STEP_DONE && (cred.user[0] != '\0' || cred.password[0] != '\0'))
        abort(); /* nothing secret is left behind a failure */
    sasl_cred_clear(&cred);
    sasl_server_clear(&x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    struct sasl_cred cred;
    if (sasl_plain_decode(in, size, &cred) == 0) {
        if (strlen(cred.user) > SASL_MAX_FIELD || strlen(cred.password) > SASL_MAX_FIELD ||
            cred.user[0] == '\0')
            abort();
    }
    sasl_cred_clear(&cred);
    char field[SASL_MAX_FIELD + 1];
    if (sasl_login_decode(in, size, field) == 0 && strlen(field) > SASL_MAX_FIELD)
        abort();
    uint8_t out[1024];
    long n = base64_decode(in, size, out, sizeof out, 0);
    if (n > (long)sizeof out)
        abort();
    if (n >= 0) {
        /* What decodes must round-trip through the encoder. */
        char *enc = base64_encode(out, (size_t)n, 0);
        if (enc != NULL) {
            uint8_t again[1024];
            long m = base64_decode(enc, strlen(enc), again, sizeof again, 0);
            if (m != n || memcmp(out, again, (size_t)n) != 0)
                abort();
            free(enc);
        }
    }
    char desc[256];
    sasl_describe_challenge(in, size, desc, sizeof desc);
    if (strlen(desc) >= sizeof desc)
        abort();
    fuzz_client_responses(data, size);
    fuzz_server_exchange(data, size);
    return 0;
}
