/* The pieces of the grants that are pure functions: base64url (RFC 4648 vectors), PKCE (RFC
 * 7636 appendix B), the JWT client assertion (checked claim by claim and its RS256 signature
 * verified with OpenSSL against the certificate's public key), client certificate loading, and
 * the parsing of authorization-code redirects. */
#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base64.h"
#include "check.h"
#include "testcert.h"
#include "tmpdir.h"
#include "log.h"
#include "token_cert_cache.h"
#include "token_grant.h"

static char base[256];

static void test_b64url(void)
{
    const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *out[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
        char *s = base64_encode((const unsigned char *)in[i], strlen(in[i]), BASE64_URL | BASE64_NOPAD);
        CHECK(s != NULL && strcmp(s, out[i]) == 0);
        free(s);
    }
    const unsigned char odd[] = {0xfb, 0xff, 0xbf};
    char *s = base64_encode(odd, sizeof odd, BASE64_URL | BASE64_NOPAD);
    CHECK(s != NULL && strcmp(s, "-_-_") == 0);
    free(s);
    s = token_random_b64url(32);
    char *t = token_random_b64url(32);
    CHECK(s != NULL && t != NULL && strlen(s) == 43 && strcmp(s, t) != 0);
    free(s);
    free(t);
}

static void test_pkce(void)
{
    char c[TOKEN_PKCE_LEN + 1], v1[TOKEN_PKCE_LEN + 1], v2[TOKEN_PKCE_LEN + 1];
    /* RFC 7636 appendix B. */
    CHECK(token_pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", c) == 0);
    CHECK(strcmp(c, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM") == 0);
    CHECK(token_pkce_verifier(v1) == 0 && token_pkce_verifier(v2) == 0);
    CHECK(strlen(v1) == 43 && strcmp(v1, v2) != 0);
    /* Section 4.1: unreserved characters only. */
    CHECK(strspn(v1, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~") ==
          strlen(v1));
}

/* base64url decode for the test (no padding). */
static unsigned char *unb64url(const char *s, size_t len, size_t *outlen)
{
    unsigned char *out = malloc(len + 4);
    long m = out != NULL ? base64_decode(s, len, out, len + 4, BASE64_URL | BASE64_NOPAD) : -1;
    *outlen = m < 0 ? 0 : (size_t)m;
    return out;
}

static char *thumb(X509 *x, const EVP_MD *md)
{
    unsigned char d[64];
    unsigned int n = 0;
    X509_digest(x, md, d, &n);
    return base64_encode(d, n, BASE64_URL | BASE64_NOPAD);
}

static int json_str_is(const cJSON *o, const char *name, const char *want)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) && strcmp(v->valuestring, want) == 0;
}

static int json_num_is(const cJSON *o, const char *name, double want)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNumber(v) && v->valuedouble == want;
}

static void test_assertion(void)
{
    char cert[400], key[400], eccert[400], eckey[400], err[300];
    snprintf(cert, sizeof cert, "%s/app.crt", base);
    snprintf(key, sizeof key, "%s/app.key", base);
    snprintf(eccert, sizeof eccert, "%s/ec.crt", base);
    snprintf(eckey, sizeof eckey, "%s/ec.key", base);
    EVP_PKEY *pk = testcert_make(cert, key, "RSA");
    EVP_PKEY *ek = testcert_make(eccert, eckey, "EC");
    CHECK(pk != NULL && ek != NULL);

    /* Loading: the right pair; refused: EC, mismatched, missing. */
    struct token_client_cert *c = token_client_cert_load(cert, key, err, sizeof err);
    CHECK(c != NULL);
    CHECK(token_client_cert_load(eccert, eckey, err, sizeof err) == NULL);
    CHECK(strstr(err, "not an RSA key") != NULL);
    CHECK(token_client_cert_load(eccert, key, err, sizeof err) == NULL);
    CHECK(strstr(err, "does not belong") != NULL);
    CHECK(token_client_cert_load("/nonexistent/x.crt", key, err, sizeof err) == NULL);
    CHECK(strstr(err, "/nonexistent/x.crt") != NULL);
    CHECK(token_client_cert_load(cert, cert, err, sizeof err) == NULL); /* a cert is no key */
    if (c == NULL)
        return;

    const char *aud = "https://login.example/te\"nant/oauth2/v2.0/token";
    char *jwt = token_client_assertion(c, "app-1", aud, 1700000000);
    char *jwt2 = token_client_assertion(c, "app-1", aud, 1700000000);
    CHECK(jwt != NULL && jwt2 != NULL);
    if (jwt == NULL || jwt2 == NULL)
        goto out;
    char *d1 = strchr(jwt, '.');
    char *d2 = d1 != NULL ? strchr(d1 + 1, '.') : NULL;
    CHECK(d1 != NULL && d2 != NULL && strchr(d2 + 1, '.') == NULL);
    if (d2 == NULL)
        goto out;
    size_t hl, cl, sl;
    unsigned char *h = unb64url(jwt, (size_t)(d1 - jwt), &hl);
    unsigned char *cl_ = unb64url(d1 + 1, (size_t)(d2 - d1 - 1), &cl);
    unsigned char *sig = unb64url(d2 + 1, strlen(d2 + 1), &sl);
    cJSON *hj = cJSON_ParseWithLength((char *)h, hl);
    cJSON *cj = cJSON_ParseWithLength((char *)cl_, cl);
    CHECK(hj != NULL && cj != NULL);

    /* Header: RS256 and the certificate's thumbprints. */
    FILE *f = fopen(cert, "r");
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    char *t1 = thumb(x, EVP_sha1()), *t256 = thumb(x, EVP_sha256());
    CHECK(json_str_is(hj, "alg", "RS256") && json_str_is(hj, "typ", "JWT"));
    CHECK(json_str_is(hj, "x5t", t1) && json_str_is(hj, "x5t#S256", t256));

    /* Claims. */
    CHECK(json_str_is(cj, "aud", aud));
    CHECK(json_str_is(cj, "iss", "app-1") && json_str_is(cj, "sub", "app-1"));
    CHECK(json_num_is(cj, "iat", 1700000000) && json_num_is(cj, "nbf", 1700000000));
    CHECK(json_num_is(cj, "exp", 1700000300));
    const cJSON *jti = cJSON_GetObjectItemCaseSensitive(cj, "jti");
    CHECK(cJSON_IsString(jti) && strlen(jti->valuestring) >= 20);
    CHECK(strcmp(jwt, jwt2) != 0); /* a fresh jti each time */

    /* The signature verifies with the certificate's public key over "header.claims"... */
    EVP_PKEY *pub = X509_get0_pubkey(x);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    CHECK(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub) == 1);
    CHECK(EVP_DigestVerify(md, sig, sl, (unsigned char *)jwt, (size_t)(d2 - jwt)) == 1);
    EVP_MD_CTX_free(md);
    /* ... and not over anything else. */
    md = EVP_MD_CTX_new();
    jwt[3] ^= 1;
    CHECK(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub) == 1);
    CHECK(EVP_DigestVerify(md, sig, sl, (unsigned char *)jwt, (size_t)(d2 - jwt)) != 1);
    EVP_MD_CTX_free(md);

    X509_free(x);
    free(t1);
    free(t256);
    cJSON_Delete(hj);
    cJSON_Delete(cj);
    free(h);
    free(cl_);
    free(sig);
out:
    free(jwt);
    free(jwt2);
    token_client_cert_free(c);
    EVP_PKEY_free(pk);
    EVP_PKEY_free(ek);
}

static void test_redirect_parse(void)
{
    char *code, *state, *error;
    CHECK(token_auth_code_parse_redirect("http://127.0.0.1:5555/?code=abc%2Bd+e&state=x_y-z"
                                         "#frag", &code, &state, &error) == 0);
    CHECK(code != NULL && strcmp(code, "abc+d e") == 0);
    CHECK(state != NULL && strcmp(state, "x_y-z") == 0 && error == NULL);
    free(code);
    free(state);
    CHECK(token_auth_code_parse_redirect("  /?state=s&error=access_denied&error_description=no",
                                         &code, &state, &error) == 0);
    CHECK(code == NULL && strcmp(state, "s") == 0 && strcmp(error, "access_denied") == 0);
    free(state);
    free(error);
    /* A bare query string, as some browsers copy it. */
    CHECK(token_auth_code_parse_redirect("code=1&state=2\n", &code, &state, &error) == 0);
    CHECK(strcmp(code, "1") == 0 && strcmp(state, "2") == 0);
    free(code);
    free(state);
    /* Nothing to use; a NUL smuggled in with %00 is refused. */
    CHECK(token_auth_code_parse_redirect("http://127.0.0.1/?state=1", &code, &state,
                                         &error) == -1);
    CHECK(code == NULL && state == NULL && error == NULL);
    CHECK(token_auth_code_parse_redirect("http://h/?code=a%00b&state=s", &code, &state,
                                         &error) == -1);
    CHECK(token_auth_code_parse_redirect("", &code, &state, &error) == -1);
    CHECK(token_auth_code_parse_redirect(NULL, &code, &state, &error) == -1);
    /* A truncated escape is kept literally. */
    CHECK(token_auth_code_parse_redirect("?code=a%2&state=s", &code, &state, &error) == 0);
    CHECK(strcmp(code, "a%2") == 0);
    free(code);
    free(state);
}

static void test_loopback_url(void)
{
    CHECK(token_url_is_loopback_http("http://127.0.0.1:8/x"));
    CHECK(token_url_is_loopback_http("http://localhost/"));
    CHECK(token_url_is_loopback_http("http://[::1]:9/"));
    CHECK(!token_url_is_loopback_http("https://127.0.0.1/"));
    CHECK(!token_url_is_loopback_http("http://example.com/"));
    CHECK(!token_url_is_loopback_http("http://user@127.0.0.1/"));
}

int main(void)
{
    const char *tmpdir = getenv("TMPDIR");
    log_set_level(LOG_ERROR);
    snprintf(base, sizeof base, "%s/xoauthd-jwt-XXXXXX",
             tmpdir != NULL && tmpdir[0] != '\0' ? tmpdir : "/tmp");
    if (mkdtemp(base) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_b64url();
    test_pkce();
    test_assertion();
    test_redirect_parse();
    test_loopback_url();
    remove_tree(base);
    return CHECK_DONE();
}
