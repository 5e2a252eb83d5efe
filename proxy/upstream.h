/* upstream: what every protocol's upstream side shares — resolving "host:port" without blocking
 * the loop (uv_getaddrinfo runs on the thread pool) and naming the failure classes that the
 * protocol fronts turn into their own temporary-failure replies. The SMTP dialogue itself is in
 * smtp_upstream.c. */
#ifndef XOAUTHD_UPSTREAM_H
#define XOAUTHD_UPSTREAM_H

#include <netdb.h>
#include <stdint.h>
#include <uv.h>

struct upstream_resolve;
/* ai is the list of addresses (freed after the callback returns) or NULL with reason set. */
typedef void (*upstream_resolve_cb)(void *arg, const struct addrinfo *ai, const char *reason);

struct upstream_resolve *upstream_resolve_start(uv_loop_t *loop, const char *host, uint16_t port,
                                                upstream_resolve_cb cb, void *arg);
/* cb is not called afterwards. */
void upstream_resolve_cancel(struct upstream_resolve *r);

/* Why an upstream login did not happen; decides the reply and the log line. */
enum upstream_failure {
    UPSTREAM_OK,
    UPSTREAM_FAIL_TOKEN,       /* no access token (endpoint down, needs sign-in, config) */
    UPSTREAM_FAIL_CONNECT,     /* resolve, connect, timeout, connection lost */
    UPSTREAM_FAIL_TLS,         /* handshake or certificate verification */
    UPSTREAM_FAIL_PROTOCOL,    /* unexpected reply, missing STARTTLS or mechanism */
    UPSTREAM_FAIL_AUTH         /* the token was rejected, also after a forced refresh */
};
const char *upstream_failure_name(enum upstream_failure f);

#endif
