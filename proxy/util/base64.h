/* base64: the one encoder and decoder of RFC 4648, on OpenSSL's EVP_EncodeBlock and
 * EVP_DecodeBlock. OpenSSL's decoder is lenient (it skips leading and trailing blanks and line
 * ends and hands back padding bytes as zeros), so base64_decode checks the text first: every
 * input has exactly one accepted spelling, which matters where a decoded secret is compared
 * or a changed character must change the bytes (a token store file, a password hash). */
#ifndef XOAUTHD_BASE64_H
#define XOAUTHD_BASE64_H

#include <stddef.h>
#include <stdint.h>

enum {
    /* The URL and file name safe alphabet, "-_" for "+/" (RFC 4648 section 5). */
    BASE64_URL = 1,
    /* Encoding: no '=' padding (JWT, RFC 7515 section 2; PKCE, RFC 7636 appendix A; PHC
     * strings). Decoding: padding may be left out, or given in full. */
    BASE64_NOPAD = 2,
};

/* Characters that len bytes encode to with padding: 4 for every 3 started. */
size_t base64_encoded_len(size_t len);

/* Encodes len bytes into out (room for base64_encoded_len(len) + 1), NUL-terminated, in the
 * standard alphabet with padding; returns the length written. For streaming in chunks whose
 * length is a multiple of 3. */
size_t base64_encode_into(char *out, const void *in, size_t len);

/* Encodes into a malloc'ed NUL-terminated string (flags: BASE64_URL, BASE64_NOPAD), NULL when
 * out of memory or too long. */
char *base64_encode(const void *in, size_t len, unsigned flags);

/* Decodes exactly inlen characters into out. Strict (RFC 4648 section 3): no blanks or line
 * ends, no character outside the alphabet, '=' only as the final padding and only as much as
 * the last group needs, the unused bits of the last character zero (section 3.5). Returns the
 * number of bytes, or -1 when the text is not canonical base64 or the bytes exceed outsz. */
long base64_decode(const char *in, size_t inlen, uint8_t *out, size_t outsz, unsigned flags);

/* Decodes base64 text that a MIME or XML writer broke into lines (RFC 2045 section 6.8, an
 * EWS MimeContent): line ends and blanks are skipped. out needs inlen / 4 * 3 + 3 bytes.
 * Returns the number of bytes, or -1 on anything else that is not base64. */
long base64_decode_lines(const char *in, size_t inlen, uint8_t *out);

#endif
