/* libFuzzer target: the server-side SASL decoders (PLAIN, LOGIN), base64, and the decoder
 * of an upstream's error challenge (which comes from the network too). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sasl.h"

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
    long n = sasl_base64_decode(in, size, out, sizeof out);
    if (n > (long)sizeof out)
        abort();
    if (n >= 0) {
        /* What decodes must round-trip through the encoder. */
        char *enc = sasl_base64_encode(out, (size_t)n);
        if (enc != NULL) {
            uint8_t again[1024];
            long m = sasl_base64_decode(enc, strlen(enc), again, sizeof again);
            if (m != n || memcmp(out, again, (size_t)n) != 0)
                abort();
            free(enc);
        }
    }
    char desc[256];
    sasl_describe_challenge(in, size, desc, sizeof desc);
    if (strlen(desc) >= sizeof desc)
        abort();
    return 0;
}
