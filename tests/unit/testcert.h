/* testcert: a throwaway self-signed certificate and key for client-assertion tests, made with
 * OpenSSL's API (no openssl binary needed). */
#ifndef XOAUTHD_TEST_TESTCERT_H
#define XOAUTHD_TEST_TESTCERT_H

#include <stdio.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

/* Writes cert_path and key_path (PEM). type is "RSA" or "EC". Returns the key (caller frees)
 * or NULL. */
static EVP_PKEY *testcert_make(const char *cert_path, const char *key_path, const char *type)
{
    EVP_PKEY *key = strcmp(type, "EC") == 0 ? EVP_EC_gen("P-256") : EVP_RSA_gen(2048);
    X509 *x = X509_new();
    FILE *f;
    int ok = 0;
    if (key == NULL || x == NULL)
        goto done;
    ASN1_INTEGER_set(X509_get_serialNumber(x), 42);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"xoauthd test app",
                               -1, -1, 0);
    X509_set_issuer_name(x, n);
    if (X509_sign(x, key, EVP_sha256()) == 0)
        goto done;
    f = fopen(cert_path, "w");
    if (f == NULL)
        goto done;
    ok = PEM_write_X509(f, x) == 1;
    fclose(f);
    f = fopen(key_path, "w");
    if (f == NULL) {
        ok = 0;
        goto done;
    }
    ok = ok && PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1;
    fclose(f);
done:
    X509_free(x);
    if (!ok) {
        EVP_PKEY_free(key);
        return NULL;
    }
    return key;
}

#endif
