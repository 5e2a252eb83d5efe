/* metrics: the Prometheus /metrics page, served by xoauthd itself on the loopback address
 * given by `metrics = 127.0.0.1:PORT` in [xoauthd] (config.c refuses other addresses: the page
 * has no authentication).
 *
 * The smallest HTTP/1.1 server that does the job: read the request head (at most
 * METRICS_MAX_REQUEST bytes, 10 s), answer GET (or HEAD) /metrics with the text exposition
 * format 0.0.4 and "Connection: close", anything else with 404/405/400, then close. At most
 * METRICS_MAX_CLIENTS connections at once; more are closed at once. Counters come from
 * stats.h, token state from token.h; label values are account names, protocols and reply
 * codes, never a secret. Opened with the listeners, closed at shutdown. */
#ifndef XOAUTHD_METRICS_H
#define XOAUTHD_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define METRICS_MAX_REQUEST 8192
#define METRICS_MAX_CLIENTS 32
#define METRICS_TIMEOUT_MS 10000

struct server;
struct metrics;

enum metrics_request {
    METRICS_REQ_AGAIN,     /* the head is not complete yet */
    METRICS_REQ_GET,       /* GET /metrics */
    METRICS_REQ_HEAD,      /* HEAD /metrics */
    METRICS_REQ_NOT_FOUND, /* another path */
    METRICS_REQ_METHOD,    /* another method */
    METRICS_REQ_BAD        /* not HTTP, or too long */
};

/* Classifies the bytes received so far (no I/O, for the unit tests). */
enum metrics_request metrics_parse_request(const char *buf, size_t len);

/* Binds host:port. NULL on failure (logged). */
struct metrics *metrics_new(struct server *srv, const char *host, uint16_t port);
void metrics_close(struct metrics *m);

/* Writes the exposition text for srv. */
void metrics_write(struct server *srv, FILE *out);
/* Writes s as a label value (quotes excluded): '\\', '"' and newline escaped. */
void metrics_label(FILE *out, const char *s);

#endif
