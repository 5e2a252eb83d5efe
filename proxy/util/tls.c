#include "tls.h"

#include <openssl/err.h>
#include <string.h>

const char *tls_last_error(char *buf, size_t bufsz, const char *fallback)
{
    unsigned long e = ERR_get_error();
    if (e == 0)
        snprintf(buf, bufsz, "%s", fallback);
    else
        ERR_error_string_n(e, buf, bufsz);
    ERR_clear_error();
    return buf;
}

SSL_CTX *tls_server_ctx_new(const char *cert_file, const char *key_file, FILE *err)
{
    char why[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        fprintf(err, "cannot create TLS context: %s\n", tls_last_error(why, sizeof why, "?"));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* Idle sessions would otherwise keep ~34 KB of TLS buffers each. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* A client's password arrives in a record OpenSSL decrypts in place; with
     * SSL_MODE_RELEASE_BUFFERS that buffer is freed between records, so it must be
     * cleansed, not freed as it is (OpenSSL 3.0: SSL_OP_CLEANSE_PLAINTEXT). */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CLEANSE_PLAINTEXT);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        fprintf(err, "cannot load tls_cert %s: %s\n", cert_file,
                tls_last_error(why, sizeof why, "?"));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        fprintf(err, "cannot load tls_key %s: %s\n", key_file,
                tls_last_error(why, sizeof why, "?"));
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        fprintf(err, "tls_key %s does not match tls_cert %s\n", key_file, cert_file);
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

SSL_CTX *tls_client_ctx_new(const char *ca_file, int verify, FILE *err)
{
    char why[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        fprintf(err, "cannot create TLS context: %s\n", tls_last_error(why, sizeof why, "?"));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(ctx, SSL_OP_CLEANSE_PLAINTEXT); /* tokens, as above for passwords */
    if (SSL_CTX_set_default_verify_paths(ctx) != 1)
        ERR_clear_error(); /* no system store is not fatal when ca_file is given */
    if (ca_file != NULL && ca_file[0] != '\0' &&
        SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
        fprintf(err, "cannot load ca_file %s: %s\n", ca_file,
                tls_last_error(why, sizeof why, "?"));
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    return ctx;
}

/* The listeners' TLS 1.2 (and older) suites, in the server's order of preference, after
 * Mozilla's "intermediate" profile (https://wiki.mozilla.org/Security/Server_Side_TLS): forward
 * secret AEAD suites first; then the ECDHE CBC suites, last, because many printers and scanners
 * that speak TLS 1.2 (and every TLS 1.0/1.1 client) know nothing else. No static-RSA key
 * exchange (no forward secrecy) and no DHE: every client that has DHE-RSA-AES-GCM also has an
 * ECDHE suite, and finite-field DHE lets a client make the server do expensive work for free
 * (the "D(HE)at" attack, CVE-2002-20001). TLS 1.3 suites are OpenSSL's, all AEAD. */
const char *const tls_default_ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256:"
    "ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES256-SHA384:"
    "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:"
    "ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA";

const char *tls_weak_cipher(const SSL_CTX *ctx)
{
    const STACK_OF(SSL_CIPHER) *list = SSL_CTX_get_ciphers(ctx);
    for (int i = 0; i < sk_SSL_CIPHER_num(list); i++) {
        const SSL_CIPHER *c = sk_SSL_CIPHER_value(list, i);
        int kx = SSL_CIPHER_get_kx_nid(c);
        int forward_secret = kx == NID_kx_ecdhe || kx == NID_kx_dhe || kx == NID_kx_any;
        if (!forward_secret || SSL_CIPHER_get_bits(c, NULL) < 128 ||
            SSL_CIPHER_get_auth_nid(c) == NID_auth_null)
            return SSL_CIPHER_get_name(c);
    }
    return NULL;
}

int tls_server_ctx_set_policy(SSL_CTX *ctx, int min_version, const char *ciphers, FILE *err)
{
    char why[256];
    int v = TLS1_2_VERSION;
    switch (min_version) {
    case 10:
        v = TLS1_VERSION;
        break;
    case 11:
        v = TLS1_1_VERSION;
        break;
    case 13:
        v = TLS1_3_VERSION;
        break;
    default:
        break;
    }
    if (SSL_CTX_set_min_proto_version(ctx, v) != 1) {
        fprintf(err, "cannot set tls_min_version: %s\n", tls_last_error(why, sizeof why, "?"));
        return -1;
    }
    /* OpenSSL 3 refuses TLS 1.0/1.1 (SHA-1 signatures) above security level 0; an admin who
     * asked for them for an old printer gets them, with a warning in the log. */
    if (v < TLS1_2_VERSION)
        SSL_CTX_set_security_level(ctx, 0);
    /* The server picks: a client that lists CBC (or static RSA) first still gets the best
     * suite both sides have. */
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_set_cipher_list(ctx, ciphers != NULL ? ciphers : tls_default_ciphers) != 1) {
        fprintf(err, "bad tls_ciphers \"%s\": %s\n", ciphers != NULL ? ciphers : "(default)",
                tls_last_error(why, sizeof why, "no cipher matches"));
        return -1;
    }
    return 0;
}
