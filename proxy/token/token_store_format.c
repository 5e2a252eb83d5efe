/* token_store_format: the token file format (token_store.h, "File format"):
 * parsing both versions, AES-256-GCM with the header and account as additional data, and the
 * blocking load, save and set-aside. */
#include "token_store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "atomic_file.h"
#include "base64.h"
#include "token_store_internal.h"

struct token_store_parsed {
    int format;           /* 1 plain, 2 encrypted */
    const char *line2;    /* v2: the kdf line (points into the buffer), NUL-terminated */
    int keyfile;          /* v2: kdf=keyfile */
    unsigned ln, r, p;    /* v2 scrypt */
    unsigned char salt[TOKEN_STORE_SALT_LEN];
    const char *blob;     /* v2: base64 line; v1: the token */
    size_t blob_len;
};

/* ---- the file format ---- */

static int token_store_bad(char *detail, size_t detailsz, const char *why)
{
    snprintf(detail, detailsz, "%s", why);
    return -1;
}

/* Splits buf (modified: line ends become NULs) into the fields of either format. */
static int token_store_parse(char *buf, size_t len, struct token_store_parsed *pf, char *detail,
                             size_t detailsz)
{
    size_t l1 = strcspn(buf, "\n");
    memset(pf, 0, sizeof pf[0]);
    if (memchr(buf, '\0', len) != NULL)
        return token_store_bad(detail, detailsz, "the file contains a NUL byte");
    if (buf[l1] != '\n')
        return token_store_bad(detail, detailsz, "truncated: no complete first line");
    buf[l1] = '\0';
    char *rest = buf + l1 + 1;
    if (strcmp(buf, TOKEN_STORE_MAGIC_PLAIN) == 0) {
        size_t tlen = strcspn(rest, "\n");
        if (rest[tlen] == '\n' && rest[tlen + 1] != '\0')
            return token_store_bad(detail, detailsz, "unexpected data after the token");
        rest[tlen] = '\0';
        if (!token_store_token_ok(rest, tlen))
            return token_store_bad(detail, detailsz, "no usable token in a v1 plain file");
        pf->format = 1;
        pf->blob = rest;
        pf->blob_len = tlen;
        return 0;
    }
    if (strcmp(buf, TOKEN_STORE_MAGIC) != 0)
        return token_store_bad(detail, detailsz, "unknown file format (first line)");
    pf->format = 2;
    size_t l2 = strcspn(rest, "\n");
    if (rest[l2] != '\n')
        return token_store_bad(detail, detailsz, "truncated: no complete key line");
    rest[l2] = '\0';
    pf->line2 = rest;
    char *b = rest + l2 + 1;
    size_t l3 = strcspn(b, "\n");
    if (b[l3] != '\n' || b[l3 + 1] != '\0')
        return token_store_bad(detail, detailsz,
                               b[l3] != '\n' ? "truncated: the data line is incomplete"
                                             : "unexpected data after the data line");
    b[l3] = '\0';
    pf->blob = b;
    pf->blob_len = l3;
    if (strcmp(pf->line2, "kdf=keyfile") == 0) {
        pf->keyfile = 1;
        return 0;
    }
    char salt64[48], canon[128];
    unsigned ln, r, p;
    if (sscanf(pf->line2, "kdf=scrypt ln=%u r=%u p=%u salt=%47s", &ln, &r, &p, salt64) != 4)
        return token_store_bad(detail, detailsz, "unknown key line");
    /* Only the canonical spelling: what is authenticated is exactly what was written. */
    snprintf(canon, sizeof canon, "kdf=scrypt ln=%u r=%u p=%u salt=%s", ln, r, p, salt64);
    unsigned char salt[48];
    if (strcmp(canon, pf->line2) != 0 || ln < 10 || ln > 22 || r < 1 || r > 32 || p < 1 ||
        p > 16 || (uint64_t)128 * r * ((uint64_t)1 << ln) > TOKEN_STORE_SCRYPT_MAX_MEM ||
        base64_decode(salt64, strlen(salt64), salt, sizeof salt, 0) != TOKEN_STORE_SALT_LEN)
        return token_store_bad(detail, detailsz, "bad key line (scrypt cost or salt)");
    memcpy(pf->salt, salt, TOKEN_STORE_SALT_LEN);
    pf->ln = ln;
    pf->r = r;
    pf->p = p;
    return 0;
}

static void token_store_aad(char *out, size_t outsz, const char *line2, const char *account)
{
    snprintf(out, outsz, "%s\n%s\n%s", TOKEN_STORE_MAGIC, line2, account);
}

/* AES-256-GCM. Returns the plaintext length, or -1 when the tag does not verify. */
static long token_store_gcm(int enc, const unsigned char *key, const unsigned char *nonce,
                            const char *aad, const unsigned char *in, size_t len,
                            unsigned char *out, unsigned char *tag)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n = 0, m = 0;
    long rc = -1;
    if (ctx == NULL)
        return -1;
    if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, TOKEN_STORE_NONCE_LEN, NULL) != 1 ||
        EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, enc) != 1 ||
        EVP_CipherUpdate(ctx, NULL, &n, (const unsigned char *)aad, (int)strlen(aad)) != 1)
        goto done;
    if (!enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TOKEN_STORE_TAG_LEN, tag) != 1)
        goto done;
    if (EVP_CipherUpdate(ctx, out, &n, in, (int)len) != 1)
        goto done;
    if (EVP_CipherFinal_ex(ctx, out + n, &m) != 1)
        goto done;
    if (enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TOKEN_STORE_TAG_LEN, tag) != 1)
        goto done;
    rc = (long)n + m;
done:
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

/* The key that opens a parsed v2 file, into out. 0, or -1 with detail (UNUSABLE) or r (I/O). */
static int token_store_key_for(const char *dir, const struct token_store_parsed *pf,
                               const struct token_store_key *key, unsigned char *out,
                               int *io_error, char *detail, size_t detailsz,
                               struct atomic_file_result *r)
{
    *io_error = 0;
    if (pf->keyfile) {
        if (key != NULL && key->kind == TOKEN_KEY_PASSWORD)
            return token_store_bad(detail, detailsz,
                                   "encrypted with store.key, but the account now has a local "
                                   "password: sign in again");
        int rc = token_store_keyfile_read(dir, out, detail, detailsz, r);
        if (rc == 0)
            return token_store_bad(detail, detailsz,
                                   "encrypted with store.key, which is missing: restore it or "
                                   "sign in again");
        if (rc < 0 && detail[0] == '\0')
            *io_error = 1;
        return rc > 0 ? 0 : -1;
    }
    if (key == NULL || key->kind != TOKEN_KEY_PASSWORD)
        return token_store_bad(detail, detailsz,
                               key == NULL ? "encrypted with the local password, which is not "
                                             "known yet (no local login since the start)"
                                           : "encrypted with a local password, but the account "
                                             "now has none (or is used from allow_networks): "
                                             "sign in again");
    if (CRYPTO_memcmp(pf->salt, key->salt, TOKEN_STORE_SALT_LEN) != 0 || pf->ln != key->ln ||
        pf->r != key->r || pf->p != key->p)
        return token_store_bad(detail, detailsz,
                               "encrypted under a different local password (it was changed): "
                               "sign in again");
    memcpy(out, key->key, TOKEN_STORE_KEY_LEN);
    return 0;
}

/* Decrypts a parsed v2 file into a malloc'ed token. Returns FOUND, UNUSABLE or IOERR. */
static int token_store_open(const char *dir, const char *account,
                            const struct token_store_parsed *pf,
                            const struct token_store_key *key, char **out,
                            struct token_store_info *info, struct atomic_file_result *r)
{
    unsigned char k[TOKEN_STORE_KEY_LEN];
    unsigned char *blob = NULL, *plain = NULL;
    size_t cap = pf->blob_len / 4 * 3 + 4;
    char aad[512];
    int io_error = 0, rc = TOKEN_STORE_UNUSABLE;
    long n, m;

    if (token_store_key_for(dir, pf, key, k, &io_error, info->detail, sizeof info->detail,
                            r) != 0) {
        OPENSSL_cleanse(k, sizeof k);
        return io_error ? TOKEN_STORE_IOERR : TOKEN_STORE_UNUSABLE;
    }
    blob = malloc(cap);
    plain = malloc(cap + 1);
    if (blob == NULL || plain == NULL) {
        token_store_fail(r, "malloc", ENOMEM);
        rc = TOKEN_STORE_IOERR;
        goto done;
    }
    n = base64_decode(pf->blob, pf->blob_len, blob, cap, 0);
    if (n < TOKEN_STORE_NONCE_LEN + TOKEN_STORE_TAG_LEN + 1) {
        token_store_bad(info->detail, sizeof info->detail, "damaged: bad data line");
        goto done;
    }
    token_store_aad(aad, sizeof aad, pf->line2, account);
    m = token_store_gcm(0, k, blob, aad, blob + TOKEN_STORE_NONCE_LEN,
                        (size_t)n - TOKEN_STORE_NONCE_LEN - TOKEN_STORE_TAG_LEN, plain,
                        blob + n - TOKEN_STORE_TAG_LEN);
    if (m < 0) {
        token_store_bad(info->detail, sizeof info->detail,
                        pf->keyfile ? "does not decrypt: damaged, or store.key was replaced"
                                    : "does not decrypt: damaged, or written for another "
                                      "account");
        goto done;
    }
    plain[m] = '\0';
    if (!token_store_token_ok((char *)plain, (size_t)m)) {
        token_store_bad(info->detail, sizeof info->detail, "decrypts to no usable token");
        goto done;
    }
    *out = (char *)plain;
    plain = NULL;
    rc = TOKEN_STORE_FOUND;
done:
    OPENSSL_cleanse(k, sizeof k);
    token_store_cleanse_free(blob, cap);
    token_store_cleanse_free(plain, cap + 1);
    return rc;
}

int token_store_do_load(const char *dir, const char *account,
                        const struct token_store_key *key, char **out,
                        struct token_store_info *info, struct atomic_file_result *r)
{
    char *path = NULL, *buf = NULL;
    size_t len = 0, cap = 0;
    struct token_store_parsed pf;
    int rc;

    *out = NULL;
    token_store_info_init(info);
    if (!token_store_account_ok(account)) {
        token_store_fail(r, "account name", EINVAL);
        return TOKEN_STORE_IOERR;
    }
    path = token_store_path(dir, account);
    if (path == NULL) {
        token_store_fail(r, "malloc", ENOMEM);
        return TOKEN_STORE_IOERR;
    }
    rc = atomic_file_read(path, TOKEN_STORE_MAX_FILE, &buf, &len, &cap, r);
    free(path);
    if (rc <= 0) {
        info->format = rc == 0 ? 0 : -1;
        return rc == 0 ? TOKEN_STORE_NONE : TOKEN_STORE_IOERR;
    }
    if (token_store_parse(buf, len, &pf, info->detail, sizeof info->detail) != 0) {
        info->format = -1;
        rc = TOKEN_STORE_UNUSABLE;
        goto done;
    }
    info->format = pf.format;
    if (pf.format == 1) {
        *out = strdup(pf.blob);
        rc = *out != NULL ? TOKEN_STORE_FOUND : TOKEN_STORE_IOERR;
        if (*out == NULL)
            token_store_fail(r, "malloc", ENOMEM);
        goto done;
    }
    info->key_kind = pf.keyfile ? TOKEN_KEY_FILE : TOKEN_KEY_PASSWORD;
    rc = token_store_open(dir, account, &pf, key, out, info, r);
done:
    token_store_cleanse_free(buf, cap);
    return rc;
}

/* "20261123T124125Z" */
static void token_store_timestamp(char *out, size_t outsz)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, outsz, "%Y%m%dT%H%M%SZ", &tm);
}

int token_store_do_set_aside(const char *dir, const char *account,
                             struct token_store_info *info, struct atomic_file_result *r)
{
    char *path = token_store_path(dir, account);
    char ts[32], *dst = NULL;
    size_t dlen;
    int rc = -1;
    if (path == NULL)
        return token_store_fail(r, "malloc", ENOMEM);
    token_store_timestamp(ts, sizeof ts);
    dlen = strlen(path) + sizeof ".corrupt-" + sizeof ts + 8;
    dst = malloc(dlen);
    if (dst == NULL) {
        token_store_fail(r, "malloc", ENOMEM);
        goto done;
    }
    for (int i = 0; i < 100; i++) {
        struct stat st;
        if (i == 0)
            snprintf(dst, dlen, "%s.corrupt-%s", path, ts);
        else
            snprintf(dst, dlen, "%s.corrupt-%s-%d", path, ts, i);
        if (lstat(dst, &st) != 0 && errno == ENOENT)
            break;
    }
    if (rename(path, dst) != 0) {
        token_store_fail(r, "move aside", errno);
        goto done;
    }
    const char *base = strrchr(dst, '/');
    snprintf(info->set_aside, sizeof info->set_aside, "%s", base != NULL ? base + 1 : dst);
    rc = 0;
done:
    free(dst);
    free(path);
    return rc;
}

int token_store_do_save(const char *dir, const char *account,
                        const struct token_store_key *key, const char *token,
                        struct token_store_info *info, struct atomic_file_result *r)
{
    unsigned char k[TOKEN_STORE_KEY_LEN], nonce[TOKEN_STORE_NONCE_LEN];
    unsigned char *blob = NULL;
    char *b64 = NULL, *text = NULL, *old = NULL, *salt64 = NULL;
    char line2[128], aad[512];
    size_t tlen = token != NULL ? strlen(token) : 0;
    size_t blen = TOKEN_STORE_NONCE_LEN + tlen + TOKEN_STORE_TAG_LEN, textcap = 0;
    struct token_store_info found;
    int rc = -1, lr;

    token_store_info_init(info);
    if (!token_store_account_ok(account))
        return token_store_fail(r, "account name", EINVAL);
    if (!token_store_token_ok(token, tlen))
        return token_store_fail(r, "token format", EINVAL);
    if (key == NULL)
        return token_store_fail(r, "no key", EINVAL);
    if (atomic_file_ensure_dir(dir, r) != 0)
        return -1;

    /* Whatever is there must be readable with this key (or be v1 plain), else it is kept. */
    lr = token_store_do_load(dir, account, key, &old, &found, r);
    if (old != NULL)
        token_store_cleanse_free(old, strlen(old));
    if (lr == TOKEN_STORE_IOERR)
        return -1;
    r->step = NULL;
    r->err = 0;
    if (lr == TOKEN_STORE_UNUSABLE) {
        snprintf(info->detail, sizeof info->detail, "%s", found.detail);
        if (token_store_do_set_aside(dir, account, info, r) != 0)
            return -1;
    }

    if (key->kind == TOKEN_KEY_FILE) {
        if (token_store_keyfile_get(dir, k, info->detail, sizeof info->detail, r) != 0)
            goto done;
        snprintf(line2, sizeof line2, "kdf=keyfile");
    } else {
        salt64 = base64_encode(key->salt, TOKEN_STORE_SALT_LEN, 0);
        if (salt64 == NULL) {
            token_store_fail(r, "malloc", ENOMEM);
            goto done;
        }
        snprintf(line2, sizeof line2, "kdf=scrypt ln=%u r=%u p=%u salt=%s", key->ln, key->r,
                 key->p, salt64);
        memcpy(k, key->key, sizeof k);
    }
    blob = malloc(blen);
    if (blob == NULL || RAND_bytes(nonce, sizeof nonce) != 1) {
        token_store_fail(r, blob == NULL ? "malloc" : "random nonce", blob == NULL ? ENOMEM : EIO);
        goto done;
    }
    memcpy(blob, nonce, sizeof nonce);
    token_store_aad(aad, sizeof aad, line2, account);
    if (token_store_gcm(1, k, nonce, aad, (const unsigned char *)token, tlen,
                        blob + TOKEN_STORE_NONCE_LEN,
                        blob + TOKEN_STORE_NONCE_LEN + tlen) != (long)tlen) {
        token_store_fail(r, "encrypt", EIO);
        goto done;
    }
    b64 = base64_encode(blob, blen, 0);
    if (b64 == NULL) {
        token_store_fail(r, "malloc", ENOMEM);
        goto done;
    }
    textcap = sizeof TOKEN_STORE_MAGIC + strlen(line2) + strlen(b64) + 4;
    text = malloc(textcap);
    if (text == NULL) {
        token_store_fail(r, "malloc", ENOMEM);
        goto done;
    }
    snprintf(text, textcap, "%s\n%s\n%s\n", TOKEN_STORE_MAGIC, line2, b64);
    {
        char name[TOKEN_STORE_MAX_ACCOUNT + 16];
        snprintf(name, sizeof name, "%s.refresh", account);
        if (atomic_file_write(dir, name, text, strlen(text), 1, 0, r) != 0)
            goto done;
    }
    info->format = 2;
    info->key_kind = (int)key->kind;
    rc = 0;
done:
    OPENSSL_cleanse(k, sizeof k);
    token_store_cleanse_free(blob, blen);
    if (b64 != NULL)
        token_store_cleanse_free(b64, strlen(b64));
    token_store_cleanse_free(text, textcap);
    free(salt64);
    return rc;
}

int token_store_peek(const char *state_dir, const char *account, struct token_store_info *info)
{
    struct atomic_file_result r = {0};
    char *path = token_store_path(state_dir, account);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    struct token_store_parsed pf;
    int rc;

    token_store_info_init(info);
    if (path == NULL) {
        info->format = -1;
        snprintf(info->detail, sizeof info->detail, "the account name is not a usable file name");
        return -1;
    }
    rc = atomic_file_read(path, TOKEN_STORE_MAX_FILE, &buf, &len, &cap, &r);
    free(path);
    if (rc <= 0) {
        info->format = rc == 0 ? 0 : -1;
        if (rc < 0)
            snprintf(info->detail, sizeof info->detail, "cannot read: %s",
                     strerror(r.err != 0 ? r.err : EIO));
        return info->format;
    }
    if (token_store_parse(buf, len, &pf, info->detail, sizeof info->detail) != 0) {
        info->format = -1;
    } else {
        info->format = pf.format;
        if (pf.format == 2)
            info->key_kind = pf.keyfile ? TOKEN_KEY_FILE : TOKEN_KEY_PASSWORD;
    }
    token_store_cleanse_free(buf, cap);
    return info->format;
}
