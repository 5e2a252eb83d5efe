/* token_store_key: the keys of the token store (token_store.h, "Keys"): state_dir/store.key,
 * created on first use and never replaced, and the scrypt key derived from a local password. */
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

#include "atomic_file.h"
#include "base64.h"
#include "token_store_internal.h"

/* ---- the key file ---- */

/* Reads state_dir/store.key. Returns 1 (key filled), 0 when missing, -1 on error; a damaged
 * key file is an error with detail set, never replaced. */
int token_store_keyfile_read(const char *dir, unsigned char *key,
                             char *detail, size_t detailsz, struct atomic_file_result *r)
{
    char *path = token_store_file(dir, "store", ".key");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc;
    if (path == NULL)
        return token_store_fail(r, "malloc", ENOMEM);
    rc = atomic_file_read(path, TOKEN_STORE_MAX_FILE, &buf, &len, &cap, r);
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
int token_store_keyfile_get(const char *dir, unsigned char *key,
                            char *detail, size_t detailsz, struct atomic_file_result *r)
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
        rc = atomic_file_write(dir, TOKEN_STORE_KEYFILE, text, strlen(text), 1, 1, r);
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
