/* http: HTTP(S) requests through one libcurl multi handle driven by the libuv loop.
 *
 * curl's sockets are watched with uv_poll and its timeout with a uv_timer (the pattern of curl's
 * docs/examples/multi-uv.c), so a token request or an EWS call never blocks the loop. Every
 * request has a timeout; TLS is verified (CA file per request for private CAs); plain http://
 * is refused unless the host is a loopback address. Response bodies are capped. */
#ifndef XOAUTHD_HTTP_H
#define XOAUTHD_HTTP_H

#include <curl/curl.h>
#include <limits.h>
#include <stddef.h>
#include <uv.h>

struct http;
struct http_request;

struct http_header {
    const char *name;
    const char *value;
};

struct http_opts {
    const char *method;        /* "POST" (default when body != NULL) or "GET" */
    const char *url;
    const struct http_header *headers;
    size_t n_headers;
    const char *body;          /* copied by http_request_start */
    size_t body_len;
    const char *content_type;  /* default "application/x-www-form-urlencoded" for a body */
    const char *ca_file;       /* extra trust anchors, NULL = system store */
    unsigned timeout_ms;       /* whole request; 0 = 30000 */
    size_t max_response;       /* 0 = 1 MiB */
    /* A body produced while it is sent (a message of many MB, base64 on the fly) instead of
     * body: body_read fills buf with up to len bytes and returns how many, 0 at the end, or
     * HTTP_BODY_ABORT; body_size is the exact total. Called on the loop from inside curl: it
     * must not block for long nor call into http. */
    size_t (*body_read)(void *arg, char *buf, size_t len);
    void *body_arg;
    size_t body_size;
    /* 1: skip certificate and host-name checks; refused unless the host is a loopback address
     * (a provider's tls_verify = no, which config validation allows for tests only). */
    int tls_no_verify;
};

#define HTTP_BODY_ABORT ((size_t)-1)

struct http_response {
    int status;              /* HTTP status, or 0 when no response came (see error) */
    const char *error;       /* transport error text (curl's), NULL when status != 0 */
    int timed_out;           /* 1 when the request hit timeout_ms */
    const char *body;        /* NUL-terminated, valid only during the callback */
    size_t body_len;
    long retry_after;        /* seconds from a Retry-After header, -1 when absent */
};

typedef void (*http_done_cb)(void *arg, const struct http_response *resp);

struct http *http_new(uv_loop_t *loop);
/* Starts a request; returns NULL (and never calls cb) when it cannot start: bad URL, http://
 * to a non-loopback host, allocation failure. cb is always called later, on the loop. */
struct http_request *http_request_start(struct http *http, const struct http_opts *opts,
                                        http_done_cb cb, void *arg);
/* Aborts a request; cb is not called. */
void http_request_cancel(struct http_request *req);
/* Cancels every request and closes the uv handles; the loop must run for them to close.
 * The struct is freed when the last handle closed. */
void http_close(struct http *http);

/* Retry-After as libcurl read it (CURLINFO_RETRY_AFTER, seconds from now; 0 when absent,
 * unreadable, "0" or a past date) as http_response.retry_after: -1 for no usable value (the
 * caller's own back-off applies), else the seconds, capped at HTTP_RETRY_AFTER_MAX so that a
 * caller may multiply them by 1000 in a long. Exposed for the tests and the fuzzer. */
#define HTTP_RETRY_AFTER_MAX (LONG_MAX / 2)
long http_retry_after_seconds(curl_off_t secs);

/* An absolute http:// or https:// URL split by libcurl's parser (curl_url; RFC 3986
 * section 3), for the checks and rebuilds that need its parts. */
struct http_url {
    char scheme[8];   /* "http" or "https", lower case */
    char host[256];   /* without the brackets of an IPv6 literal (RFC 3986 section 3.2.2) */
    int port;         /* 0 when the URL names none */
    int has_userinfo; /* user[:password]@ before the host */
    char *path_query; /* the path ("/" at least) and "?query" if any; malloc'ed */
};
/* 0, or -1 for anything else than such a URL (or out of memory). http_url_clear frees. */
int http_url_split(const char *url, struct http_url *out);
void http_url_clear(struct http_url *u);

/* url quoted for a log line (log_quote), without user:password@, query and fragment. */
void http_url_for_log(const char *url, char *out, size_t outsz);

/* application/x-www-form-urlencoded component encoding; malloc'ed. */
char *http_form_escape(const char *s);

#endif
