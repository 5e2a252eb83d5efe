/* token_client_credentials: flow = client_credentials (RFC 6749 section 4.4), the app-only
 * flow: the application authenticates as itself and gets a token for the mailboxes an admin
 * granted it (Microsoft: application permission plus Exchange service principal and mailbox
 * permissions). The upstream login then names the mailbox (username); there is no refresh
 * token and nothing is stored.
 *
 * Client authentication is either client_secret (client_secret_post) or a certificate: a JWT
 * client assertion (RFC 7523 section 2.2, Microsoft's "certificate credentials") signed RS256
 * with client_key, whose header names the certificate by its SHA-1 (x5t, what Microsoft's
 * older endpoints look at) and SHA-256 (x5t#S256) thumbprints. The assertion is built fresh
 * for each request with a random jti and a 5-minute lifetime, so a captured one is useless
 * soon and cannot be replayed at an endpoint that remembers jti values. */
#include "token_grant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "base64.h"
#include "token_cert_cache.h"

#define TOKEN_ASSERTION_LIFETIME 300
#define TOKEN_ASSERTION_JTI_BYTES 18

/* Microsoft's scope for app-only IMAP, POP and SMTP (docs/protocol-notes.md, "Scopes"). */
#define TOKEN_MS_APP_SCOPE "https://outlook.office365.com/.default"

struct token_client_cert {
    EVP_PKEY *key;
    char *x5t;      /* base64url SHA-1 of the DER certificate */
    char *x5t_s256; /* base64url SHA-256 */
};

void token_client_cert_free(struct token_client_cert *c)
{
    if (c == NULL)
        return;
    EVP_PKEY_free(c->key);
    free(c->x5t);
    free(c->x5t_s256);
    free(c);
}

/* An encrypted key would need a passphrase on every start: refuse it instead of prompting. */
static int token_cc_no_passphrase_cb(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

static char *token_cc_thumbprint(X509 *x, const EVP_MD *md)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (X509_digest(x, md, d, &n) != 1)
        return NULL;
    return base64_encode(d, n, BASE64_URL | BASE64_NOPAD);
}

struct token_client_cert *token_client_cert_load(const char *cert_path, const char *key_path,
                                                 char *err, size_t errsz)
{
    struct token_client_cert *c = NULL;
    BIO *b = NULL;
    X509 *x = NULL;
    EVP_PKEY *key = NULL;

    err[0] = '\0';
    if (cert_path == NULL || key_path == NULL) {
        snprintf(err, errsz, "client_certificate and client_key are both needed");
        return NULL;
    }
    b = BIO_new_file(cert_path, "r");
    if (b == NULL || (x = PEM_read_bio_X509(b, NULL, token_cc_no_passphrase_cb, NULL)) == NULL) {
        snprintf(err, errsz, "client_certificate %s: %s", cert_path,
                 b == NULL ? "cannot open the file" : "no PEM certificate in the file");
        goto fail;
    }
    BIO_free(b);
    b = BIO_new_file(key_path, "r");
    if (b == NULL ||
        (key = PEM_read_bio_PrivateKey(b, NULL, token_cc_no_passphrase_cb, NULL)) == NULL) {
        snprintf(err, errsz, "client_key %s: %s", key_path,
                 b == NULL ? "cannot open the file"
                           : "no unencrypted PEM private key in the file");
        goto fail;
    }
    if (EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA) {
        snprintf(err, errsz, "client_key %s: not an RSA key (client assertions are signed "
                             "RS256)", key_path);
        goto fail;
    }
    if (X509_check_private_key(x, key) != 1) {
        snprintf(err, errsz, "client_key %s does not belong to client_certificate %s", key_path,
                 cert_path);
        goto fail;
    }
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        snprintf(err, errsz, "out of memory");
        goto fail;
    }
    c->x5t = token_cc_thumbprint(x, EVP_sha1());
    c->x5t_s256 = token_cc_thumbprint(x, EVP_sha256());
    if (c->x5t == NULL || c->x5t_s256 == NULL) {
        snprintf(err, errsz, "client_certificate %s: cannot compute its thumbprint", cert_path);
        goto fail;
    }
    c->key = key;
    key = NULL;
    BIO_free(b);
    X509_free(x);
    ERR_clear_error();
    return c;
fail:
    token_client_cert_free(c);
    EVP_PKEY_free(key);
    X509_free(x);
    BIO_free(b);
    ERR_clear_error();
    return NULL;
}

/* o as compact JSON, base64url: one part of a JWS (RFC 7515 section 7.1). cJSON escapes the
 * strings (a client_id or token URL with a quote stays a string). NULL when out of memory. */
static char *token_cc_b64url_json(const cJSON *o)
{
    char *text = cJSON_PrintUnformatted(o);
    char *out = text != NULL ? base64_encode(text, strlen(text), BASE64_URL | BASE64_NOPAD) : NULL;
    cJSON_free(text);
    return out;
}

/* The JOSE header: RS256 with the certificate's SHA-1 and SHA-256 thumbprints, as Microsoft's
 * identity platform asks of a certificate credential (RFC 7515 sections 4.1.7 and 4.1.8). */
static char *token_cc_header(const struct token_client_cert *c)
{
    cJSON *h = cJSON_CreateObject();
    char *out = NULL;
    if (h != NULL && cJSON_AddStringToObject(h, "alg", "RS256") != NULL &&
        cJSON_AddStringToObject(h, "typ", "JWT") != NULL &&
        cJSON_AddStringToObject(h, "x5t", c->x5t) != NULL &&
        cJSON_AddStringToObject(h, "x5t#S256", c->x5t_s256) != NULL)
        out = token_cc_b64url_json(h);
    cJSON_Delete(h);
    return out;
}

/* The claims of a client assertion (RFC 7523 section 3): the app is issuer and subject, the
 * token endpoint the audience, valid for TOKEN_ASSERTION_LIFETIME from now. */
static char *token_cc_claims(const char *client_id, const char *audience, const char *jti,
                             time_t now)
{
    cJSON *o = cJSON_CreateObject();
    char *out = NULL;
    if (o != NULL && cJSON_AddStringToObject(o, "aud", audience) != NULL &&
        cJSON_AddStringToObject(o, "iss", client_id) != NULL &&
        cJSON_AddStringToObject(o, "sub", client_id) != NULL &&
        cJSON_AddStringToObject(o, "jti", jti) != NULL &&
        cJSON_AddNumberToObject(o, "nbf", (double)now) != NULL &&
        cJSON_AddNumberToObject(o, "iat", (double)now) != NULL &&
        cJSON_AddNumberToObject(o, "exp", (double)now + TOKEN_ASSERTION_LIFETIME) != NULL)
        out = token_cc_b64url_json(o);
    cJSON_Delete(o);
    return out;
}

char *token_client_assertion(const struct token_client_cert *c, const char *client_id,
                             const char *audience, time_t now)
{
    char *h64 = NULL, *c64 = NULL, *jti = NULL, *input = NULL, *sig64 = NULL, *out = NULL;
    unsigned char *sig = NULL;
    size_t siglen = 0, inlen;
    EVP_MD_CTX *md = NULL;

    if (c == NULL || client_id == NULL || audience == NULL)
        return NULL;
    jti = token_random_b64url(TOKEN_ASSERTION_JTI_BYTES);
    if (jti == NULL)
        goto done;
    h64 = token_cc_header(c);
    c64 = token_cc_claims(client_id, audience, jti, now);
    if (h64 == NULL || c64 == NULL)
        goto done;
    inlen = strlen(h64) + 1 + strlen(c64);
    input = malloc(inlen + 1);
    if (input == NULL)
        goto done;
    snprintf(input, inlen + 1, "%s.%s", h64, c64);
    md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, c->key) != 1 ||
        EVP_DigestSign(md, NULL, &siglen, (const unsigned char *)input, inlen) != 1)
        goto done;
    sig = malloc(siglen);
    if (sig == NULL ||
        EVP_DigestSign(md, sig, &siglen, (const unsigned char *)input, inlen) != 1)
        goto done;
    sig64 = base64_encode(sig, siglen, BASE64_URL | BASE64_NOPAD);
    if (sig64 == NULL)
        goto done;
    out = malloc(inlen + 1 + strlen(sig64) + 1);
    if (out != NULL)
        sprintf(out, "%s.%s", input, sig64);
done:
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    free(sig);
    free(sig64);
    free(input);
    free(h64);
    free(c64);
    free(jti);
    return out;
}

static int token_cc_form(const struct token_grant_ctx *ctx, struct token_form *form,
                         const char **why)
{
    const struct config_account *acct = ctx->acct;
    const char *scope = ctx->scope;
    if (acct->client_id == NULL || acct->client_id[0] == '\0') {
        *why = "flow = client_credentials needs client_id";
        return -1;
    }
    if (ctx->cert == NULL && (acct->client_secret == NULL || acct->client_secret[0] == '\0')) {
        *why = "flow = client_credentials needs client_secret or client_certificate + "
               "client_key";
        return -1;
    }
    if (scope == NULL && acct->provider != NULL && acct->provider->name != NULL &&
        strcmp(acct->provider->name, "microsoft") == 0)
        scope = TOKEN_MS_APP_SCOPE;
    token_form_add(form, "grant_type", "client_credentials");
    token_form_add(form, "client_id", acct->client_id);
    if (ctx->cert != NULL) {
        char *jwt = token_client_assertion(ctx->cert, acct->client_id, ctx->token_url, ctx->now);
        if (jwt == NULL) {
            *why = "the client assertion could not be signed (OpenSSL)";
            return -1;
        }
        token_form_add(form, "client_assertion_type",
                       "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
        token_form_add(form, "client_assertion", jwt);
        OPENSSL_cleanse(jwt, strlen(jwt));
        free(jwt);
    } else {
        token_form_add(form, "client_secret", acct->client_secret);
    }
    if (scope != NULL && scope[0] != '\0')
        token_form_add(form, "scope", scope);
    return 0;
}

const struct token_grant token_grant_client_credentials = {
    .name = "client_credentials",
    .build_form = token_cc_form,
};
