/* Unit tests for base64.c: the RFC 4648 section 10 vectors, the strict decoder's refusals
 * (what EVP_DecodeBlock alone would accept), the URL alphabet, unpadded forms and the line
 * decoder. Expected encodings were computed independently with Python's base64 module. */
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "check.h"

static int enc_is(const char *in, size_t len, const char *want)
{
    char *got = base64_encode(in, len, 0);
    int ok = got != NULL && strcmp(got, want) == 0;
    free(got);
    return ok;
}

static int dec_is(const char *in, const char *want, size_t wantlen)
{
    uint8_t buf[256];
    long n = base64_decode(in, strlen(in), buf, sizeof buf, 0);
    return n == (long)wantlen && memcmp(buf, want, wantlen) == 0;
}

static int dec_fails(const char *in)
{
    uint8_t buf[256];
    return base64_decode(in, strlen(in), buf, sizeof buf, 0) == -1;
}

static void test_base64(void)
{
    /* RFC 4648 section 10. */
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const coded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=",
                                        "Zm9vYmFy"};
    for (size_t i = 0; i < 7; i++) {
        CHECK(enc_is(plain[i], strlen(plain[i]), coded[i]));
        CHECK(dec_is(coded[i], plain[i], strlen(plain[i])));
    }
    /* Every byte value survives a round trip, at every length modulo 3. */
    uint8_t all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    for (size_t len = 250; len <= 256; len++) {
        char *e = base64_encode(all, len, 0);
        uint8_t back[256];
        CHECK(e != NULL);
        if (e == NULL)
            continue;
        long n = base64_decode(e, strlen(e), back, sizeof back, 0);
        CHECK(n == (long)len && memcmp(back, all, len) == 0);
        free(e);
    }
    CHECK(dec_is("+/+/", "\xfb\xff\xbf", 3));

    CHECK(dec_fails("Zg"));       /* no padding */
    CHECK(dec_fails("Zg="));      /* short padding */
    CHECK(dec_fails("Zg==="));    /* too much */
    CHECK(dec_fails("Z==="));     /* three pad characters */
    CHECK(dec_fails("===="));
    CHECK(dec_fails("Zg==Zm8="));  /* padding in the middle */
    CHECK(dec_fails("Zm=v"));
    CHECK(dec_fails("Zh=="));     /* non-zero pad bits */
    CHECK(dec_fails("Zm9="));     /* non-zero pad bits */
    CHECK(dec_fails("Zm9v "));    /* whitespace */
    CHECK(dec_fails("Zm9\nv"));
    CHECK(dec_fails("Zm9v\r\n"));
    CHECK(dec_fails("Zm-v"));     /* base64url alphabet */
    CHECK(dec_fails("Zm_v"));
    CHECK(dec_fails("Zm9v\x80\x80\x80\x80"));
    uint8_t two[2];
    CHECK(base64_decode("Zm9v", 4, two, sizeof two, 0) == -1); /* output too long */
    CHECK(base64_decode("Zm8=", 4, two, sizeof two, 0) == 2);
    /* Embedded NUL in the input is just a bad character. */
    CHECK(base64_decode("Zm\0v", 4, two, sizeof two, 0) == -1);
}

static int flags_enc_is(const char *in, unsigned flags, const char *want)
{
    char *got = base64_encode(in, strlen(in), flags);
    int ok = got != NULL && strcmp(got, want) == 0;
    free(got);
    return ok;
}

static long flags_dec(const char *in, unsigned flags, uint8_t *buf, size_t bufsz)
{
    return base64_decode(in, strlen(in), buf, bufsz, flags);
}

static void test_base64url_unpadded(void)
{
    /* RFC 4648 section 10 without padding (RFC 7515 appendix C), and the section 5 alphabet. */
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const coded[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    uint8_t buf[64];
    for (size_t i = 0; i < 7; i++) {
        CHECK(flags_enc_is(plain[i], BASE64_URL | BASE64_NOPAD, coded[i]));
        CHECK(flags_enc_is(plain[i], BASE64_NOPAD, coded[i]));
        long n = flags_dec(coded[i], BASE64_NOPAD, buf, sizeof buf);
        CHECK(n == (long)strlen(plain[i]) && memcmp(buf, plain[i], (size_t)n) == 0);
    }
    CHECK(flags_enc_is("\xfb\xff\xbf", BASE64_URL, "-_-_"));
    CHECK(flags_enc_is("\xfb\xff\xbf", 0, "+/+/"));
    CHECK(flags_enc_is("\xfb\xff", BASE64_URL, "-_8="));
    CHECK(flags_dec("-_-_", BASE64_URL, buf, sizeof buf) == 3 && memcmp(buf, "\xfb\xff\xbf", 3) == 0);
    CHECK(flags_dec("+/+/", BASE64_URL, buf, sizeof buf) == -1); /* the other alphabet */
    /* NOPAD still takes full padding, but no partial one, and no lone character. */
    CHECK(flags_dec("Zg==", BASE64_NOPAD, buf, sizeof buf) == 1);
    CHECK(flags_dec("Zg=", BASE64_NOPAD, buf, sizeof buf) == -1);
    CHECK(flags_dec("Zm9vY", BASE64_NOPAD, buf, sizeof buf) == -1);
    CHECK(flags_dec("Zh", BASE64_NOPAD, buf, sizeof buf) == -1); /* non-zero unused bits */
    CHECK(flags_dec("Zg", 0, buf, sizeof buf) == -1);
    /* Long input goes through the decoder in chunks: every split point is right. */
    uint8_t all[700], back[700];
    for (size_t i = 0; i < sizeof all; i++)
        all[i] = (uint8_t)(i * 7 + 3);
    for (size_t len = 180; len <= sizeof all; len += 97) {
        char *e = base64_encode(all, len, BASE64_URL | BASE64_NOPAD);
        CHECK(e != NULL);
        if (e == NULL)
            continue;
        long n = base64_decode(e, strlen(e), back, len, BASE64_URL | BASE64_NOPAD);
        CHECK(n == (long)len && memcmp(back, all, len) == 0);
        CHECK(base64_decode(e, strlen(e), back, len - 1, BASE64_URL | BASE64_NOPAD) == -1);
        free(e);
    }
}

static void test_base64_lines(void)
{
    uint8_t buf[64];
    const char *t = "Zm9v\r\nYmFy\nZm9v YmE=\n";
    long n = base64_decode_lines(t, strlen(t), buf);
    CHECK(n == 11 && memcmp(buf, "foobarfooba", 11) == 0);
    CHECK(base64_decode_lines("Zm9v!", 5, buf) == -1);
    char enc[16];
    CHECK(base64_encode_into(enc, "foob", 4) == 8 && strcmp(enc, "Zm9vYg==") == 0);
    CHECK(base64_encoded_len(0) == 0 && base64_encoded_len(4) == 8 && base64_encoded_len(6) == 8);
}

int main(void)
{
    test_base64();
    test_base64url_unpadded();
    test_base64_lines();
    return CHECK_DONE();
}
