/* The listeners' TLS policy: the default cipher list (forward-secret AEAD first, ECDHE CBC last,
 * no static RSA), the server's order enforced, and what counts as a weak tls_ciphers list. */
#include <string.h>

#include <openssl/ssl.h>

#include "check.h"
#include "tls.h"

static void test_default_list(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    CHECK(ctx != NULL);
    CHECK(tls_server_ctx_set_policy(ctx, 0, NULL, stderr) == 0);
    CHECK((SSL_CTX_get_options(ctx) & SSL_OP_CIPHER_SERVER_PREFERENCE) != 0);
    CHECK(tls_weak_cipher(ctx) == NULL);
    const STACK_OF(SSL_CIPHER) *list = SSL_CTX_get_ciphers(ctx);
    int n = sk_SSL_CIPHER_num(list), seen_cbc = 0, tls12 = 0, first12 = -1;
    for (int i = 0; i < n; i++) {
        const SSL_CIPHER *c = sk_SSL_CIPHER_value(list, i);
        int kx = SSL_CIPHER_get_kx_nid(c);
        if (kx == NID_kx_any)
            continue; /* TLS 1.3: all AEAD, forward secret */
        tls12++;
        if (first12 < 0)
            first12 = i;
        CHECK(kx == NID_kx_ecdhe); /* no static RSA, no DHE */
        if (!SSL_CIPHER_is_aead(c))
            seen_cbc = 1;
        else
            CHECK(!seen_cbc); /* every AEAD suite before every CBC one */
    }
    CHECK(tls12 >= 8 && seen_cbc);
    CHECK(first12 >= 0 && SSL_CIPHER_is_aead(sk_SSL_CIPHER_value(list, first12)));
    /* the suites old TLS 1.2 printers need are there, at the end */
    const char *want[] = {"ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA",
                          "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-CHACHA20-POLY1305"};
    for (size_t w = 0; w < sizeof want / sizeof want[0]; w++) {
        int found = 0;
        for (int i = 0; i < n; i++)
            found |= strcmp(SSL_CIPHER_get_name(sk_SSL_CIPHER_value(list, i)), want[w]) == 0;
        CHECK(found);
    }
    SSL_CTX_free(ctx);
}

static void test_admin_lists(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    CHECK(tls_server_ctx_set_policy(ctx, 10, "DEFAULT:@SECLEVEL=0", stderr) == 0);
    const char *w = tls_weak_cipher(ctx);
    CHECK(w != NULL && strstr(w, "ECDHE") == NULL); /* e.g. AES128-SHA: static RSA */
    CHECK((SSL_CTX_get_options(ctx) & SSL_OP_CIPHER_SERVER_PREFERENCE) != 0);
    SSL_CTX_free(ctx);
    ctx = SSL_CTX_new(TLS_server_method());
    CHECK(tls_server_ctx_set_policy(ctx, 0, "ECDHE-RSA-AES128-GCM-SHA256", stderr) == 0);
    CHECK(tls_weak_cipher(ctx) == NULL);
    SSL_CTX_free(ctx);
    ctx = SSL_CTX_new(TLS_server_method());
    FILE *err = fopen("/dev/null", "w");
    CHECK(tls_server_ctx_set_policy(ctx, 0, "NO-SUCH-SUITE", err) == -1);
    fclose(err);
    SSL_CTX_free(ctx);
}

int main(void)
{
    test_default_list();
    test_admin_lists();
    return CHECK_DONE();
}
