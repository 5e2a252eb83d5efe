/* mkostemp (O_CLOEXEC: a save runs on the thread pool while the loop thread may be starting a
 * token_command child, which must not inherit the file). */
#define _GNU_SOURCE
/* token_store: see token_store.h.
 *
 * The blocking cores (token_store_do_*) never log: they run on libuv's worker threads too, and
 * report what failed (step + errno, or a sentence for format problems) so that the loop thread
 * logs it. Every buffer that held a token or a key is cleansed before it is freed. */
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

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "base64.h"
#include "log.h"

/* Far above any real refresh token (Microsoft's are about 1.5 KiB); bounds every read. */
#define TOKEN_STORE_MAX_FILE 65536
#define TOKEN_STORE_MAX_TOKEN (TOKEN_STORE_MAX_FILE / 2)
#define TOKEN_STORE_NONCE_LEN 12
#define TOKEN_STORE_TAG_LEN 16
/* scrypt cost for new keys: the same as local password hashes (about 0.1 s, 32 MiB). */
#define TOKEN_STORE_SCRYPT_LN 15
#define TOKEN_STORE_SCRYPT_R 8
#define TOKEN_STORE_SCRYPT_P 1
/* Bounds on a cost read from a file: a damaged header must not allocate gigabytes. */
#define TOKEN_STORE_SCRYPT_MAX_MEM ((uint64_t)1 << 30)
#define TOKEN_STORE_KEYFILE_MAGIC "xoauthd-store-key v1"
#define TOKEN_STORE_STATUS_MAGIC "xoauthd-status v1"
#define TOKEN_STORE_SALT_LABEL "xoauthd token store salt v2"

struct token_store_result {
    const char *step; /* what failed, for the log: "mkdir", "write", ... */
    int err;          /* errno of the failure, 0 for a format problem */
    int loose_dir;    /* state_dir is readable by group or others */
    int loose_file;   /* the token file is readable by group or others */
};

int token_store_account_ok(const char *account)
{
    size_t len;
    if (account == NULL || account[0] == '\0' || account[0] == '.')
        return 0;
    len = strlen(account);
    if (len > TOKEN_STORE_MAX_ACCOUNT)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = account[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* Same rule as token_response_token_ok: the token must fit on one line. */
static int token_store_token_ok(const char *t, size_t len)
{
    if (t == NULL || len == 0 || len > TOKEN_STORE_MAX_TOKEN)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c <= 0x20 || c >= 0x7f)
            return 0;
    }
    return 1;
}

static char *token_store_file(const char *state_dir, const char *account, const char *suffix)
{
    size_t len;
    char *p;
    if (state_dir == NULL || !token_store_account_ok(account))
        return NULL;
    len = strlen(state_dir) + 1 + strlen(account) + strlen(suffix) + 1;
    p = malloc(len);
    if (p != NULL)
        snprintf(p, len, "%s/%s%s", state_dir, account, suffix);
    return p;
}

char *token_store_path(const char *state_dir, const char *account)
{
    return token_store_file(state_dir, account, ".refresh");
}

static void token_store_cleanse_free(void *p, size_t len)
{
    if (p != NULL) {
        OPENSSL_cleanse(p, len);
        free(p);
    }
}

static int token_store_fail(struct token_store_result *r, const char *step, int err)
{
    r->step = step;
    r->err = err;
    return -1;
}

static void token_store_info_init(struct token_store_info *info)
{
    memset(info, 0, sizeof *info);
    info->key_kind = -1;
}

/* ---- small file helpers ---- */

static int token_store_ensure_dir(const char *dir, struct token_store_result *r)
{
    struct stat st;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return token_store_fail(r, "mkdir", errno);
    if (stat(dir, &st) != 0)
        return token_store_fail(r, "stat dir", errno);
    if (!S_ISDIR(st.st_mode))
        return token_store_fail(r, "stat dir", ENOTDIR);
    r->loose_dir = (st.st_mode & 077) != 0;
    return 0;
}

static int token_store_write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads a whole small file into a malloc'ed, NUL-terminated buffer. Returns 1, 0 when there is
 * no file, -1 on error (r filled). *cap is the buffer size, for cleansing. */
static int token_store_read_file(const char *path, char **out, size_t *len, size_t *cap,
                                 struct token_store_result *r)
{
    struct stat st;
    size_t got = 0;
    char *buf;
    int fd;

    *out = NULL;
    *len = 0;
    *cap = TOKEN_STORE_MAX_FILE + 1;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        /* ENOTDIR: a path component is not a directory, so there is no file either; the save
         * that follows fails loudly. */
        if (errno == ENOENT || errno == ENOTDIR)
            return 0;
        return token_store_fail(r, "open", errno);
    }
    if (fstat(fd, &st) == 0)
        r->loose_file = (st.st_mode & 077) != 0;
    buf = malloc(*cap);
    if (buf == NULL) {
        close(fd);
        return token_store_fail(r, "malloc", ENOMEM);
    }
    for (;;) {
        ssize_t n = read(fd, buf + got, *cap - got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            token_store_fail(r, "read", errno);
            goto fail;
        }
        if (n == 0)
            break;
        got += (size_t)n;
        if (got > TOKEN_STORE_MAX_FILE) {
            token_store_fail(r, "file too large", EFBIG);
            goto fail;
        }
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return 1;
fail:
    close(fd);
    token_store_cleanse_free(buf, *cap);
    return -1;
}

/* Writes data to dir/name atomically: temp file (0600) + fsync + rename + fsync of dir. With
 * exclusive, the final name must not exist yet (link instead of rename): for store.key, which
 * two processes may create at once. Returns 0, 1 (exclusive and the file already existed), or
 * -1. */
static int token_store_write_atomic(const char *dir, const char *name, const char *data,
                                    size_t len, int durable, int exclusive,
                                    struct token_store_result *r)
{
    char *path = NULL, *tmp = NULL;
    size_t plen = strlen(dir) + strlen(name) + 2;
    size_t tlen = strlen(dir) + strlen(name) + sizeof "/..XXXXXX";
    int fd = -1, dfd = -1, rc = -1;

    if (token_store_ensure_dir(dir, r) != 0)
        return -1;
    path = malloc(plen);
    tmp = malloc(tlen);
    if (path == NULL || tmp == NULL) {
        token_store_fail(r, "malloc", ENOMEM);
        goto done;
    }
    snprintf(path, plen, "%s/%s", dir, name);
    /* The leading dot keeps temp files out of the account namespace (names never start with
     * '.'); mkostemp creates the file 0600 whatever the umask. */
    snprintf(tmp, tlen, "%s/.%s.XXXXXX", dir, name);
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        token_store_fail(r, "create temp file", errno);
        tmp[0] = '\0';
        goto done;
    }
    if (fchmod(fd, 0600) != 0) {
        token_store_fail(r, "chmod", errno);
        goto done;
    }
    if (token_store_write_all(fd, data, len) != 0) {
        token_store_fail(r, "write", errno);
        goto done;
    }
    if (durable && fsync(fd) != 0) {
        token_store_fail(r, "fsync", errno);
        goto done;
    }
    if (close(fd) != 0) {
        fd = -1;
        token_store_fail(r, "close", errno);
        goto done;
    }
    fd = -1;
    if (exclusive) {
        if (link(tmp, path) != 0) {
            if (errno == EEXIST) {
                rc = 1;
                goto done;
            }
            token_store_fail(r, "link", errno);
            goto done;
        }
        unlink(tmp);
    } else if (rename(tmp, path) != 0) {
        token_store_fail(r, "rename", errno);
        goto done;
    }
    tmp[0] = '\0';
    if (durable) {
        /* Without this the rename itself may be lost in a crash, bringing a dead token back. */
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || fsync(dfd) != 0) {
            token_store_fail(r, "fsync dir", errno);
            goto done;
        }
    }
    rc = 0;
done:
    if (fd >= 0)
        close(fd);
    if (dfd >= 0)
        close(dfd);
    if (tmp != NULL && tmp[0] != '\0')
        unlink(tmp);
    free(tmp);
    free(path);
    return rc;
}

/* ---- the key file ---- */

/* Reads state_dir/store.key. Returns 1 (key filled), 0 when missing, -1 on error; a damaged
 * key file is an error with detail set, never replaced. */
static int token_store_keyfile_read(const char *dir, unsigned char key[TOKEN_STORE_KEY_LEN],
                                    char *detail, size_t detailsz, struct token_store_result *r)
{
    char *path = token_store_file(dir, "store", ".key");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc;
    if (path == NULL)
        return token_store_fail(r, "malloc", ENOMEM);
    rc = token_store_read_file(path, &buf, &len, &cap, r);
    free(path);
    if (rc <= 0)
        return rc;
    size_t mlen = sizeof TOKEN_STORE_KEYFILE_MAGIC - 1;
    unsigned char raw[64];
    long n = -1;
    if (len > mlen && memcmp(buf, TOKEN_STORE_KEYFILE_MAGIC, mlen) == 0 && buf[mlen] == '\n') {
        char *b = buf + mlen + 1;
        size_t blen = strcspn(b, "\n");
        if (b[blen] == '\0' || (b[blen] == '\n' && b[blen + 1] == '\0'))
            n = base64_decode(b, blen, raw, sizeof raw, 0);
    }
    token_store_cleanse_free(buf, cap);
    if (n != TOKEN_STORE_KEY_LEN) {
        OPENSSL_cleanse(raw, sizeof raw);
        snprintf(detail, detailsz, "%s is damaged (it is never replaced automatically: "
                                   "restore it from a backup)", TOKEN_STORE_KEYFILE);
        return token_store_fail(r, "read store.key", 0);
    }
    memcpy(key, raw, TOKEN_STORE_KEY_LEN);
    OPENSSL_cleanse(raw, sizeof raw);
    return 1;
}

/* Reads store.key, creating it when it does not exist yet. 0 or -1. */
static int token_store_keyfile_get(const char *dir, unsigned char key[TOKEN_STORE_KEY_LEN],
                                   char *detail, size_t detailsz, struct token_store_result *r)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        int rc = token_store_keyfile_read(dir, key, detail, detailsz, r);
        if (rc != 0)
            return rc > 0 ? 0 : -1;
        unsigned char fresh[TOKEN_STORE_KEY_LEN];
        char text[128];
        char *b64;
        if (RAND_bytes(fresh, sizeof fresh) != 1)
            return token_store_fail(r, "random key", EIO);
        b64 = base64_encode(fresh, sizeof fresh, 0);
        OPENSSL_cleanse(fresh, sizeof fresh);
        if (b64 == NULL)
            return token_store_fail(r, "malloc", ENOMEM);
        snprintf(text, sizeof text, "%s\n%s\n", TOKEN_STORE_KEYFILE_MAGIC, b64);
        token_store_cleanse_free(b64, strlen(b64));
        /* link(): when another process created it meanwhile, theirs wins and is read back. */
        rc = token_store_write_atomic(dir, TOKEN_STORE_KEYFILE, text, strlen(text), 1, 1, r);
        OPENSSL_cleanse(text, sizeof text);
        if (rc < 0)
            return -1;
    }
    return token_store_fail(r, "create store.key", EEXIST);
}

/* ---- key derivation ---- */

static void token_store_salt(const char *account, const char *hash,
                             unsigned char salt[TOKEN_STORE_SALT_LEN])
{
    unsigned char d[32];
    unsigned int dlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    memset(d, 0, sizeof d);
    if (ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1) {
        EVP_DigestUpdate(ctx, TOKEN_STORE_SALT_LABEL, sizeof TOKEN_STORE_SALT_LABEL);
        EVP_DigestUpdate(ctx, account, strlen(account) + 1);
        EVP_DigestUpdate(ctx, hash, strlen(hash));
        EVP_DigestFinal_ex(ctx, d, &dlen);
    }
    EVP_MD_CTX_free(ctx);
    memcpy(salt, d, TOKEN_STORE_SALT_LEN);
}

static int token_store_scrypt(const char *password, size_t len, const unsigned char *salt,
                              unsigned ln, unsigned r, unsigned p,
                              unsigned char out[TOKEN_STORE_KEY_LEN])
{
    EVP_KDF *kdf = NULL;
    EVP_KDF_CTX *kctx = NULL;
    OSSL_PARAM params[7];
    uint64_t nval = (uint64_t)1 << ln;
    uint32_t rv = r, pv = p;
    /* OpenSSL's default maxmem (32 MiB) is just below what N=2^15, r=8 needs. */
    uint64_t maxmem = (uint64_t)128 * r * (nval + 2) + (uint64_t)128 * r * p + (1u << 20);
    char empty = '\0';
    int rc = -1;

    kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL);
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD,
                                                  len > 0 ? (char *)password : &empty, len);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt,
                                                  TOKEN_STORE_SALT_LEN);
    params[2] = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &nval);
    params[3] = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &rv);
    params[4] = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &pv);
    params[5] = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem);
    params[6] = OSSL_PARAM_construct_end();
    if (kdf != NULL && (kctx = EVP_KDF_CTX_new(kdf)) != NULL &&
        EVP_KDF_derive(kctx, out, TOKEN_STORE_KEY_LEN, params) == 1)
        rc = 0;
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    return rc;
}

int token_store_key_derive(const char *account, const char *hash, const char *password,
                           size_t len, struct token_store_key *key)
{
    memset(key, 0, sizeof *key);
    if (account == NULL || hash == NULL || password == NULL)
        return -1;
    key->kind = TOKEN_KEY_PASSWORD;
    key->ln = TOKEN_STORE_SCRYPT_LN;
    key->r = TOKEN_STORE_SCRYPT_R;
    key->p = TOKEN_STORE_SCRYPT_P;
    token_store_salt(account, hash, key->salt);
    if (token_store_scrypt(password, len, key->salt, key->ln, key->r, key->p, key->key) != 0) {
        OPENSSL_cleanse(key, sizeof *key);
        return -1;
    }
    return 0;
}

/* ---- the file format ---- */

struct token_store_parsed {
    int format;           /* 1 plain, 2 encrypted */
    const char *line2;    /* v2: the kdf line (points into the buffer), NUL-terminated */
    int keyfile;          /* v2: kdf=keyfile */
    unsigned ln, r, p;    /* v2 scrypt */
    unsigned char salt[TOKEN_STORE_SALT_LEN];
    const char *blob;     /* v2: base64 line; v1: the token */
    size_t blob_len;
};

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
                               struct token_store_result *r)
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
                            struct token_store_info *info, struct token_store_result *r)
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

static int token_store_do_load(const char *dir, const char *account,
                               const struct token_store_key *key, char **out,
                               struct token_store_info *info, struct token_store_result *r)
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
    rc = token_store_read_file(path, &buf, &len, &cap, r);
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

static int token_store_do_set_aside(const char *dir, const char *account,
                                    struct token_store_info *info, struct token_store_result *r)
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

static int token_store_do_save(const char *dir, const char *account,
                               const struct token_store_key *key, const char *token,
                               struct token_store_info *info, struct token_store_result *r)
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
    if (token_store_ensure_dir(dir, r) != 0)
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
        if (token_store_write_atomic(dir, name, text, strlen(text), 1, 0, r) != 0)
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

/* ---- logging on the loop thread ---- */

static void token_store_log(const char *what, const char *dir, const char *account, int rc,
                            const struct token_store_result *r,
                            const struct token_store_info *info)
{
    char *path = token_store_path(dir, account);
    char acct[TOKEN_STORE_MAX_ACCOUNT + 8];
    char qpath[512];

    if (account == NULL)
        account = "";
    /* Valid names go out bare like everywhere else; refused ones are quoted to be seen. */
    if (token_store_account_ok(account))
        snprintf(acct, sizeof acct, "%s", account);
    else
        log_quote(acct, sizeof acct, account, strlen(account));
    if (path != NULL)
        log_quote(qpath, sizeof qpath, path, strlen(path));
    else
        snprintf(qpath, sizeof qpath, "-");
    if (info != NULL && info->set_aside[0] != '\0')
        log_error(NULL, "event=token_store_set_aside account=%s path=%s moved_to=%s "
                        "reason=\"%s\" action=\"the old file is kept for inspection; delete it "
                        "when it is no longer needed\"",
                  acct, qpath, info->set_aside, info->detail);
    if (rc == TOKEN_STORE_UNUSABLE && info != NULL)
        log_error(NULL, "event=token_store_unusable op=%s account=%s path=%s reason=\"%s\" "
                        "action=\"the file is left as it is; run `xoauthd auth %s` to sign in "
                        "again (the old file is then kept as .corrupt-TIMESTAMP)\"",
                  what, acct, qpath, info->detail, acct);
    else if (rc == -1 && r->step != NULL) {
        if (r->err != 0)
            log_error(NULL, "event=token_store_error op=%s account=%s path=%s step=\"%s\" "
                            "errno=%d error=\"%s\"",
                      what, acct, qpath, r->step, r->err, strerror(r->err));
        else
            log_error(NULL, "event=token_store_error op=%s account=%s path=%s step=\"%s\" "
                            "reason=\"%s\"",
                      what, acct, qpath, r->step,
                      info != NULL && info->detail[0] != '\0' ? info->detail : "-");
    }
    if (r->loose_dir) {
        char qdir[512];
        log_quote(qdir, sizeof qdir, dir, strlen(dir));
        log_warn(NULL, "event=token_store_permissions dir=%s reason=\"state_dir is accessible "
                       "by group or others\" action=\"chmod 700 it\"", qdir);
    }
    if (r->loose_file)
        log_warn(NULL, "event=token_store_permissions path=%s reason=\"token file is readable "
                       "by group or others\" action=\"chmod 600 it\"", qpath);
    free(path);
}

int token_store_load(const char *state_dir, const char *account,
                     const struct token_store_key *key, char **out,
                     struct token_store_info *info)
{
    struct token_store_result r = {0};
    struct token_store_info local;
    if (info == NULL)
        info = &local;
    int rc = token_store_do_load(state_dir, account, key, out, info, &r);
    token_store_log("load", state_dir, account, rc, &r, info);
    return rc;
}

int token_store_save_sync(const char *state_dir, const char *account,
                          const struct token_store_key *key, const char *refresh_token,
                          struct token_store_info *info)
{
    struct token_store_result r = {0};
    struct token_store_info local;
    if (info == NULL)
        info = &local;
    int rc = token_store_do_save(state_dir, account, key, refresh_token, info, &r);
    token_store_log("save", state_dir, account, rc, &r, info);
    return rc;
}

int token_store_set_aside(const char *state_dir, const char *account,
                          struct token_store_info *info)
{
    struct token_store_result r = {0};
    struct token_store_info local;
    if (info == NULL)
        info = &local;
    token_store_info_init(info);
    if (!token_store_account_ok(account) || state_dir == NULL)
        return -1;
    int rc = token_store_do_set_aside(state_dir, account, info, &r);
    snprintf(info->detail, sizeof info->detail, "set aside on request");
    token_store_log("set_aside", state_dir, account, rc, &r, info);
    return rc;
}

int token_store_peek(const char *state_dir, const char *account, struct token_store_info *info)
{
    struct token_store_result r = {0};
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
    rc = token_store_read_file(path, &buf, &len, &cap, &r);
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

/* ---- thread pool jobs ---- */

enum token_store_op { TOKEN_STORE_OP_LOAD, TOKEN_STORE_OP_SAVE, TOKEN_STORE_OP_DERIVE,
                      TOKEN_STORE_OP_STATUS };

struct token_store_work {
    uv_work_t req;
    enum token_store_op op;
    char *dir;
    char *account;
    char *token;    /* save: the token to write; load: the token read; derive: the password */
    size_t token_len;
    char *hash;     /* derive */
    struct token_store_key key;
    int have_key;
    struct token_store_status status;
    int rc;
    struct token_store_result r;
    struct token_store_info info;
    token_store_cb save_cb;
    token_store_load_cb load_cb;
    token_store_key_cb key_cb;
    void *arg;
};

static void token_store_work_free(struct token_store_work *w)
{
    if (w->token != NULL)
        token_store_cleanse_free(w->token, w->token_len);
    OPENSSL_cleanse(&w->key, sizeof w->key);
    free(w->hash);
    free(w->dir);
    free(w->account);
    free(w);
}

static int token_store_do_status_save(const char *dir, const char *account,
                                      const struct token_store_status *st,
                                      struct token_store_result *r);

static void token_store_work_cb(uv_work_t *req)
{
    struct token_store_work *w = req->data;
    char *t = NULL;
    switch (w->op) {
    case TOKEN_STORE_OP_SAVE:
        w->rc = token_store_do_save(w->dir, w->account, w->have_key ? &w->key : NULL, w->token,
                                    &w->info, &w->r);
        break;
    case TOKEN_STORE_OP_LOAD:
        w->rc = token_store_do_load(w->dir, w->account, w->have_key ? &w->key : NULL, &t,
                                    &w->info, &w->r);
        w->token = t;
        w->token_len = t != NULL ? strlen(t) + 1 : 0;
        break;
    case TOKEN_STORE_OP_DERIVE:
        w->rc = token_store_key_derive(w->account, w->hash, w->token, w->token_len - 1, &w->key);
        break;
    case TOKEN_STORE_OP_STATUS:
        w->rc = token_store_do_status_save(w->dir, w->account, &w->status, &w->r);
        break;
    }
}

static void token_store_after_work_cb(uv_work_t *req, int status)
{
    struct token_store_work *w = req->data;
    if (status != 0) { /* UV_ECANCELED: never ran */
        w->rc = -1;
        w->r.step = "thread pool";
        w->r.err = -status;
    }
    switch (w->op) {
    case TOKEN_STORE_OP_SAVE:
        token_store_log("save", w->dir, w->account, w->rc, &w->r, &w->info);
        w->save_cb(w->arg, w->rc < 0 ? -1 : 0);
        break;
    case TOKEN_STORE_OP_LOAD: {
        token_store_log("load", w->dir, w->account, w->rc, &w->r, &w->info);
        char *t = w->rc == TOKEN_STORE_FOUND ? w->token : NULL;
        if (t != NULL)
            w->token = NULL; /* handed over */
        w->load_cb(w->arg, w->rc, t, &w->info);
        break;
    }
    case TOKEN_STORE_OP_DERIVE:
        w->key_cb(w->arg, w->rc == 0 ? 0 : -1, w->rc == 0 ? &w->key : NULL);
        break;
    case TOKEN_STORE_OP_STATUS:
        if (w->rc != 0)
            log_debug(NULL, "event=token_status_not_saved account=%s step=\"%s\" errno=%d",
                      w->account, w->r.step != NULL ? w->r.step : "-", w->r.err);
        if (w->save_cb != NULL)
            w->save_cb(w->arg, w->rc < 0 ? -1 : 0);
        break;
    }
    token_store_work_free(w);
}

static struct token_store_work *token_store_work_new(enum token_store_op op,
                                                     const char *state_dir, const char *account,
                                                     const struct token_store_key *key)
{
    struct token_store_work *w;
    if ((op != TOKEN_STORE_OP_DERIVE && state_dir == NULL) || !token_store_account_ok(account))
        return NULL;
    w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    w->req.data = w;
    w->op = op;
    w->dir = state_dir != NULL ? strdup(state_dir) : NULL;
    w->account = strdup(account);
    if (key != NULL) {
        w->key = *key;
        w->have_key = 1;
    }
    if ((state_dir != NULL && w->dir == NULL) || w->account == NULL) {
        token_store_work_free(w);
        return NULL;
    }
    return w;
}

static int token_store_queue(uv_loop_t *loop, struct token_store_work *w)
{
    if (uv_queue_work(loop, &w->req, token_store_work_cb, token_store_after_work_cb) != 0) {
        token_store_work_free(w);
        return -1;
    }
    return 0;
}

int token_store_save(uv_loop_t *loop, const char *state_dir, const char *account,
                     const struct token_store_key *key, const char *refresh_token,
                     token_store_cb cb, void *arg)
{
    struct token_store_work *w;
    if (refresh_token == NULL || cb == NULL || key == NULL)
        return -1;
    w = token_store_work_new(TOKEN_STORE_OP_SAVE, state_dir, account, key);
    if (w == NULL)
        return -1;
    w->save_cb = cb;
    w->arg = arg;
    w->token = strdup(refresh_token);
    w->token_len = strlen(refresh_token) + 1;
    if (w->token == NULL) {
        token_store_work_free(w);
        return -1;
    }
    return token_store_queue(loop, w);
}

int token_store_load_async(uv_loop_t *loop, const char *state_dir, const char *account,
                           const struct token_store_key *key, token_store_load_cb cb, void *arg)
{
    struct token_store_work *w;
    if (cb == NULL)
        return -1;
    w = token_store_work_new(TOKEN_STORE_OP_LOAD, state_dir, account, key);
    if (w == NULL)
        return -1;
    w->load_cb = cb;
    w->arg = arg;
    return token_store_queue(loop, w);
}

int token_store_key_derive_async(uv_loop_t *loop, const char *account, const char *hash,
                                 const char *password, size_t len, token_store_key_cb cb,
                                 void *arg)
{
    struct token_store_work *w;
    if (cb == NULL || hash == NULL || password == NULL)
        return -1;
    w = token_store_work_new(TOKEN_STORE_OP_DERIVE, NULL, account, NULL);
    if (w == NULL)
        return -1;
    w->key_cb = cb;
    w->arg = arg;
    w->hash = strdup(hash);
    w->token = malloc(len + 1);
    w->token_len = len + 1;
    if (w->hash == NULL || w->token == NULL) {
        token_store_work_free(w);
        return -1;
    }
    memcpy(w->token, password, len);
    w->token[len] = '\0';
    return token_store_queue(loop, w);
}

/* ---- status files ---- */

static void token_store_status_clean(char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            *s = ' ';
}

static int token_store_do_status_save(const char *dir, const char *account,
                                      const struct token_store_status *st,
                                      struct token_store_result *r)
{
    char text[512], state[sizeof st->state], err[sizeof st->last_error];
    char name[TOKEN_STORE_MAX_ACCOUNT + 16];
    if (!token_store_account_ok(account))
        return token_store_fail(r, "account name", EINVAL);
    snprintf(state, sizeof state, "%s", st->state);
    snprintf(err, sizeof err, "%s", st->last_error);
    token_store_status_clean(state);
    token_store_status_clean(err);
    snprintf(text, sizeof text,
             "%s\nstate=%s\nvalid_until=%lld\nlast_refresh=%lld\nlast_attempt=%lld\n"
             "last_error=%s\n",
             TOKEN_STORE_STATUS_MAGIC, state, st->valid_until, st->last_refresh,
             st->last_attempt, err);
    snprintf(name, sizeof name, "%s.status", account);
    /* Advisory: no fsync, a lost update only makes `xoauthd tokens` a little stale. */
    return token_store_write_atomic(dir, name, text, strlen(text), 0, 0, r) == 0 ? 0 : -1;
}

int token_store_status_save(uv_loop_t *loop, const char *state_dir, const char *account,
                            const struct token_store_status *st, token_store_cb cb, void *arg)
{
    struct token_store_work *w = token_store_work_new(TOKEN_STORE_OP_STATUS, state_dir, account,
                                                      NULL);
    if (w == NULL)
        return -1;
    w->status = *st;
    w->save_cb = cb;
    w->arg = arg;
    return token_store_queue(loop, w);
}

int token_store_status_save_sync(const char *state_dir, const char *account,
                                 const struct token_store_status *st)
{
    struct token_store_result r = {0};
    if (state_dir == NULL)
        return -1;
    return token_store_do_status_save(state_dir, account, st, &r);
}

int token_store_status_load(const char *state_dir, const char *account,
                            struct token_store_status *st)
{
    struct token_store_result r = {0};
    char *path = token_store_file(state_dir, account, ".status");
    char *buf = NULL, *save = NULL;
    size_t len = 0, cap = 0;
    int rc;

    memset(st, 0, sizeof *st);
    if (path == NULL)
        return -1;
    rc = token_store_read_file(path, &buf, &len, &cap, &r);
    free(path);
    if (rc <= 0)
        return rc;
    rc = -1;
    char *line = strtok_r(buf, "\n", &save);
    if (line == NULL || strcmp(line, TOKEN_STORE_STATUS_MAGIC) != 0)
        goto done;
    while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
        char *eq = strchr(line, '=');
        if (eq == NULL)
            continue;
        *eq++ = '\0';
        if (strcmp(line, "state") == 0)
            snprintf(st->state, sizeof st->state, "%s", eq);
        else if (strcmp(line, "valid_until") == 0)
            st->valid_until = strtoll(eq, NULL, 10);
        else if (strcmp(line, "last_refresh") == 0)
            st->last_refresh = strtoll(eq, NULL, 10);
        else if (strcmp(line, "last_attempt") == 0)
            st->last_attempt = strtoll(eq, NULL, 10);
        else if (strcmp(line, "last_error") == 0)
            snprintf(st->last_error, sizeof st->last_error, "%s", eq);
    }
    token_store_status_clean(st->state);
    token_store_status_clean(st->last_error);
    rc = 1;
done:
    free(buf);
    return rc;
}
