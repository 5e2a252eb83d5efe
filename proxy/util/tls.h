/* tls: OpenSSL contexts for both directions.
 *
 * Server contexts (one per listener) carry the local certificate that devices see; old printers
 * may need old protocol versions, which is a listener setting. Client contexts (one per provider)
 * always verify the upstream certificate and host name: a proxy that skips verification hands
 * every mailbox token to whoever sits on the path. */
#ifndef XOAUTHD_TLS_H
#define XOAUTHD_TLS_H

#include <stdio.h>
#include <openssl/ssl.h>

/* Loads cert/key (PEM). Errors go to err as "what: OpenSSL reason". NULL on failure. */
SSL_CTX *tls_server_ctx_new(const char *cert_file, const char *key_file, FILE *err);
/* TLS 1.2+, system trust store, plus ca_file when not NULL. verify = 0 only for loopback test
 * upstreams (config validation enforces that). */
SSL_CTX *tls_client_ctx_new(const char *ca_file, int verify, FILE *err);

/* The listeners' default cipher list for TLS <= 1.2: forward-secret AEAD first, ECDHE CBC last. */
extern const char *const tls_default_ciphers;

/* A listener's protocol floor (10..13 = TLS 1.0..1.3, 0 = 1.2) and cipher list (NULL =
 * tls_default_ciphers), in the server's order of preference. Below 1.2 the security level drops
 * to 0, which OpenSSL 3 needs for TLS 1.0/1.1. */
int tls_server_ctx_set_policy(SSL_CTX *ctx, int min_version, const char *ciphers, FILE *err);
/* The name of the first enabled suite that the default would not offer for its strength: no
 * forward secrecy (static RSA, PSK), under 128 bits, or anonymous; NULL when there is none. */
const char *tls_weak_cipher(const SSL_CTX *ctx);

/* Fills buf with the reason of the last OpenSSL error (or fallback) and clears the queue. */
const char *tls_last_error(char *buf, size_t bufsz, const char *fallback);

#endif
