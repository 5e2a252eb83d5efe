/* base64 on OpenSSL's EVP_EncodeBlock / EVP_DecodeBlock. See base64.h. */
#include "base64.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

static const char base64_std_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char base64_url_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* EVP_EncodeBlock takes an int; 3 * (INT_MAX / 4) bytes encode to at most INT_MAX chars. */
#define BASE64_MAX_RAW ((size_t)INT_MAX / 4 * 3)

size_t base64_encoded_len(size_t len) { return (len + 2) / 3 * 4; }

size_t base64_encode_into(char *out, const void *in, size_t len)
{
    return (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

char *base64_encode(const void *in, size_t len, unsigned flags)
{
    if (len > BASE64_MAX_RAW)
        return NULL;
    char *out = malloc(base64_encoded_len(len) + 1);
    if (out == NULL)
        return NULL;
    size_t n = base64_encode_into(out, in, len);
    if (flags & BASE64_URL) {
        for (size_t i = 0; i < n; i++)
            out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    }
    if (flags & BASE64_NOPAD) {
        while (n > 0 && out[n - 1] == '=')
            out[--n] = '\0';
    }
    return out;
}

long base64_decode(const char *in, size_t inlen, uint8_t *out, size_t outsz, unsigned flags)
{
    const char *alphabet = flags & BASE64_URL ? base64_url_chars : base64_std_chars;
    size_t data = inlen; /* characters before the padding */
    if (data > 0 && in[data - 1] == '=')
        data--;
    if (data > 0 && in[data - 1] == '=')
        data--;
    size_t pad = inlen - data;
    /* A group carries 2, 3 or 4 data characters; only the last may be short, and it is padded
     * to 4 or (BASE64_NOPAD) not padded at all. */
    size_t tail = data % 4;
    if (tail == 1 || (pad != 0 && tail + pad != 4) ||
        (pad == 0 && tail != 0 && !(flags & BASE64_NOPAD)) || data > BASE64_MAX_RAW)
        return -1;
    for (size_t i = 0; i < data; i++) {
        if (in[i] == '\0' || strchr(alphabet, in[i]) == NULL)
            return -1;
    }
    size_t outlen = data / 4 * 3 + (tail == 0 ? 0 : tail - 1);
    if (outlen > outsz)
        return -1;
    /* In chunks: EVP_DecodeBlock writes 3 bytes for every 4 characters, padding included,
     * which out need not have room for, and knows the standard alphabet only. */
    size_t o = 0;
    for (size_t i = 0; i < data;) {
        char chunk[256];
        uint8_t bytes[sizeof chunk / 4 * 3];
        size_t n = data - i < sizeof chunk ? data - i : sizeof chunk;
        size_t groups = (n + 3) / 4, got = n / 4 * 3 + (n % 4 == 0 ? 0 : n % 4 - 1);
        for (size_t k = 0; k < groups * 4; k++) {
            char c = k < n ? in[i + k] : 'A';
            chunk[k] = c == '-' ? '+' : c == '_' ? '/' : c;
        }
        int ok = EVP_DecodeBlock(bytes, (unsigned char *)chunk, (int)(groups * 4)) ==
                 (int)(groups * 3);
        /* The bits a short last group does not use must be zero (section 3.5): they show
         * as non-zero bytes past the data, the missing characters having decoded as 'A'. */
        for (size_t k = got; ok && k < groups * 3; k++)
            ok = bytes[k] == 0;
        if (ok)
            memcpy(out + o, bytes, got);
        OPENSSL_cleanse(bytes, sizeof bytes);
        OPENSSL_cleanse(chunk, sizeof chunk);
        if (!ok)
            return -1;
        o += got;
        i += n;
    }
    return (long)o;
}

long base64_decode_lines(const char *in, size_t inlen, uint8_t *out)
{
    if (inlen > INT_MAX)
        return -1;
    EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
    int n1 = 0, n2 = 0;
    long r = -1;
    if (ctx == NULL)
        return -1;
    EVP_DecodeInit(ctx);
    if (EVP_DecodeUpdate(ctx, out, &n1, (const unsigned char *)in, (int)inlen) >= 0 &&
        EVP_DecodeFinal(ctx, out + n1, &n2) >= 0)
        r = (long)n1 + n2;
    EVP_ENCODE_CTX_free(ctx);
    return r;
}
