/* http: libcurl's multi interface driven by the libuv loop.
 *
 * curl tells us which sockets to watch (socket callback) and when to call it back (timer
 * callback); uv_poll and one uv_timer do the watching, and curl_multi_socket_action() does the
 * work. Completed transfers are collected with curl_multi_info_read() and handed to the
 * caller's callback outside any curl callback, so that callback may start, cancel or close.
 *
 * Decisions worth knowing:
 * - Proxies from the environment (http_proxy, https_proxy, ALL_PROXY) are ignored: a daemon
 *   that silently routes refresh tokens through whatever a unit file's environment says is a
 *   surprise; a proxy, when needed, should become an explicit config key.
 * - A per-request ca_file is used as curl's CAINFO; the system store stays trusted through
 *   CAPATH (the hashed certificate directory), so a private CA adds to the system roots.
 * - Redirects are not followed, and only http/https are allowed: a token endpoint that
 *   redirects is misconfigured, and following it would resend secrets elsewhere.
 * - Bodies and responses may hold secrets (client secrets, refresh and access tokens), so our
 *   copies are cleansed before free and curl never gets its own copy (CURLOPT_POSTFIELDS).
 * - curl's connections are close-on-exec, so a token_command child never inherits a live
 *   connection to a token endpoint: libcurl before 8.17 opens its sockets without
 *   SOCK_CLOEXEC, so we open them (CURLOPT_OPENSOCKETFUNCTION). The socketpairs curl opens
 *   itself (7.88: the multi handle's wakeup pair, the threaded resolver's during a lookup)
 *   are marked by token_command before it starts a child. */
#include "http.h"
#include "secmem.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"
#include "netaddr.h"

#define HTTP_DEFAULT_TIMEOUT_MS 30000u
#define HTTP_DEFAULT_MAX_RESPONSE ((size_t)1 << 20)
#define HTTP_USER_AGENT "xoauthd/0.1"

struct http_sock {
    uv_poll_t poll;
    struct http *http;
    curl_socket_t fd;
    LIST_ENTRY(http_sock) link; /* in http->socks */
};

struct http_request {
    struct http *http;
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    size_t body_len;
    char *resp;
    size_t resp_len, resp_cap, max_response;
    int too_large;
    char errbuf[CURL_ERROR_SIZE];
    size_t (*body_read)(void *arg, char *buf, size_t len);
    void *body_arg;
    http_done_cb cb;
    void *arg;
    LIST_ENTRY(http_request) link; /* in http->reqs */
};

struct http {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    LIST_HEAD(, http_request) reqs;
    LIST_HEAD(, http_sock) socks;
    unsigned open_handles; /* uv handles not yet through their close callback */
    int closing;
    int torn_down;
    int dispatching; /* > 0 while user callbacks run from http_check_done */
};

static void http_check_done(struct http *http);
static void http_teardown(struct http *http);

static void http_maybe_free(struct http *http)
{
    if (http->torn_down && http->open_handles == 0) {
        free(http);
        curl_global_cleanup();
    }
}

static void http_handle_close_cb(uv_handle_t *h)
{
    struct http *http = h->data;
    http->open_handles--;
    http_maybe_free(http);
}

static void http_sock_close_cb(uv_handle_t *h)
{
    struct http_sock *s = h->data;
    struct http *http = s->http;
    free(s);
    http->open_handles--;
    http_maybe_free(http);
}

static void http_sock_unlink_close(struct http_sock *s)
{
    LIST_REMOVE(s, link);
    /* uv_close stops the poll at once, so curl may reuse the fd number for a new socket
     * before the close callback has run. */
    uv_close((uv_handle_t *)&s->poll, http_sock_close_cb);
}

static void http_poll_cb(uv_poll_t *poll, int status, int events)
{
    struct http_sock *s = poll->data;
    struct http *http = s->http;
    int flags = 0;
    int running;

    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    curl_multi_socket_action(http->multi, s->fd, flags, &running);
    http_check_done(http);
}

static int http_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct http *http = userp;
    struct http_sock *s = socketp;
    int events = 0;
    (void)easy;

    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            if (!http->torn_down) /* during curl_multi_cleanup the hash is going away */
                curl_multi_assign(http->multi, fd, NULL);
            http_sock_unlink_close(s);
        }
        return 0;
    }
    if (s == NULL) {
        s = calloc(1, sizeof *s);
        if (s == NULL)
            return -1;
        if (uv_poll_init_socket(http->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->http = http;
        s->fd = fd;
        s->poll.data = s;
        http->open_handles++;
        LIST_INSERT_HEAD(&http->socks, s, link);
        curl_multi_assign(http->multi, fd, s);
    }
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    if (uv_poll_start(&s->poll, events, http_poll_cb) != 0)
        return -1;
    return 0;
}

static void http_timer_cb(uv_timer_t *t)
{
    struct http *http = t->data;
    int running;
    curl_multi_socket_action(http->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    http_check_done(http);
}

/* curl asks for a single-shot timer; calling curl back from inside this callback is not
 * allowed, so even timeout 0 goes through the loop. */
static int http_multi_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct http *http = userp;
    (void)multi;
    if (timeout_ms < 0)
        uv_timer_stop(&http->timer);
    else
        uv_timer_start(&http->timer, http_timer_cb, (uint64_t)timeout_ms, 0);
    return 0;
}

/* CURLOPT_OPENSOCKETFUNCTION: curl's socket, created close-on-exec in one step, so that no
 * child, whoever starts it, gets a connection to a token endpoint. */
static curl_socket_t http_open_socket_cb(void *arg, curlsocktype purpose,
                                         struct curl_sockaddr *addr)
{
    (void)arg;
    (void)purpose;
    return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
}

struct http *http_new(uv_loop_t *loop)
{
    struct http *http = calloc(1, sizeof *http);
    if (http == NULL)
        return NULL;
    /* Reference counted by curl; the matching cleanup runs when the struct is freed. Must be
     * first called from the main thread before any other thread uses curl. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        free(http);
        return NULL;
    }
    http->loop = loop;
    http->multi = curl_multi_init();
    if (http->multi == NULL)
        goto fail;
    if (uv_timer_init(loop, &http->timer) != 0)
        goto fail;
    http->timer.data = http;
    http->open_handles = 1;
    curl_multi_setopt(http->multi, CURLMOPT_SOCKETFUNCTION, http_socket_cb);
    curl_multi_setopt(http->multi, CURLMOPT_SOCKETDATA, http);
    curl_multi_setopt(http->multi, CURLMOPT_TIMERFUNCTION, http_multi_timer_cb);
    curl_multi_setopt(http->multi, CURLMOPT_TIMERDATA, http);
    return http;

fail:
    if (http->multi != NULL)
        curl_multi_cleanup(http->multi);
    free(http);
    curl_global_cleanup();
    return NULL;
}

static void http_slist_cleanse_free(struct curl_slist *list)
{
    /* Header values can be "Authorization: Bearer ..." */
    for (struct curl_slist *l = list; l != NULL; l = l->next)
        OPENSSL_cleanse(l->data, strlen(l->data));
    curl_slist_free_all(list);
}

static void http_request_free(struct http_request *req)
{
    if (req->easy != NULL)
        curl_easy_cleanup(req->easy);
    http_slist_cleanse_free(req->headers);
    secmem_free(req->body, req->body_len);
    secmem_free(req->resp, req->resp_cap);
    free(req);
}


static size_t http_write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
    struct http_request *req = userp;
    size_t n = size * nmemb;

    if (n > req->max_response - req->resp_len) {
        req->too_large = 1;
        return 0; /* curl aborts with CURLE_WRITE_ERROR */
    }
    /* Not realloc: the old buffer may already hold a token and must be cleansed (secmem.h). */
    if (secmem_grow(&req->resp, &req->resp_cap, req->resp_len, req->resp_len + n + 1, 4096) != 0)
        return 0;
    memcpy(req->resp + req->resp_len, data, n);
    req->resp_len += n;
    req->resp[req->resp_len] = '\0';
    return n;
}

long http_retry_after_seconds(curl_off_t secs)
{
    if (secs <= 0)
        return -1;
    /* A server may send any number: keep it far from what seconds * 1000 overflows. */
    return secs > HTTP_RETRY_AFTER_MAX ? HTTP_RETRY_AFTER_MAX : (long)secs;
}


static size_t http_read_cb(char *buf, size_t size, size_t nmemb, void *userp)
{
    struct http_request *req = userp;
    size_t n = req->body_read(req->body_arg, buf, size * nmemb);
    return n == HTTP_BODY_ABORT ? CURL_READFUNC_ABORT : n;
}

/* 0 when the URL is http(s) and, for http (or any request without TLS checks), names a
 * loopback host. */
static int http_check_url(const char *url, int need_loopback)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int rc = -1;

    if (u == NULL)
        return -1;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
        goto done;
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
        goto done;
    if (need_loopback && !netaddr_host_is_loopback(host))
        rc = -1;
    else if (strcasecmp(scheme, "https") == 0)
        rc = 0;
    else if (strcasecmp(scheme, "http") == 0 && netaddr_host_is_loopback(host))
        rc = 0;
done:
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

/* Copies a curl-allocated part into out (NUL-terminated) and frees it; 0, or -1 if too long. */
static int http_url_take(char *part, char *out, size_t outsz)
{
    size_t n = part != NULL ? strlen(part) : 0;
    int rc = part != NULL && n < outsz ? 0 : -1;
    if (rc == 0)
        memcpy(out, part, n + 1);
    curl_free(part);
    return rc;
}

int http_url_split(const char *url, struct http_url *out)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *query = NULL, *user = NULL;
    int rc = -1;

    memset(out, 0, sizeof *out);
    if (u == NULL || url == NULL || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        http_url_take(scheme, out->scheme, sizeof out->scheme) != 0 ||
        (strcmp(out->scheme, "http") != 0 && strcmp(out->scheme, "https") != 0) ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
        goto done;
    /* "[::1]" as curl gives it: the brackets belong to the URL, not to the address. */
    size_t hl = strlen(host);
    int bracketed = hl >= 2 && host[0] == '[' && host[hl - 1] == ']';
    if (hl - (bracketed ? 2 : 0) >= sizeof out->host)
        goto done;
    memcpy(out->host, host + bracketed, hl - (bracketed ? 2 : 0));
    out->host[hl - (bracketed ? 2 : 0)] = '\0';
    if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK)
        out->port = atoi(port); /* curl checked it: 1 to 65535 digits only */
    out->has_userinfo = curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK;
    if (curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
        goto done;
    int has_query = curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK;
    size_t n = strlen(path) + (has_query ? 1 + strlen(query) : 0) + 1;
    out->path_query = malloc(n);
    if (out->path_query == NULL)
        goto done;
    snprintf(out->path_query, n, "%s%s%s", path, has_query ? "?" : "", has_query ? query : "");
    rc = 0;
done:
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(query);
    curl_free(user);
    curl_url_cleanup(u);
    if (rc != 0)
        http_url_clear(out);
    return rc;
}

void http_url_clear(struct http_url *u)
{
    free(u->path_query);
    memset(u, 0, sizeof *u);
}

void http_url_for_log(const char *url, char *out, size_t outsz)
{
    /* Neither the query (may carry a secret) nor user:password@ goes into a log line. */
    size_t n = strcspn(url, "?#");
    const char *scheme_end = strstr(url, "://");
    if (scheme_end != NULL && (size_t)(scheme_end - url) < n) {
        const char *host = scheme_end + 3;
        size_t auth_len = strcspn(host, "/?#");
        const char *at = memchr(host, '@', auth_len);
        if (at != NULL) {
            char buf[1024];
            size_t head = (size_t)(host - url), tail = n - (size_t)(at + 1 - url);
            if (head + tail < sizeof buf) {
                memcpy(buf, url, head);
                memcpy(buf + head, at + 1, tail);
                log_quote(out, outsz, buf, head + tail);
                return;
            }
            n = head; /* too long to rebuild: the scheme alone */
        }
    }
    log_quote(out, outsz, url, n);
}

static struct curl_slist *http_slist_add(struct curl_slist *list, const char *name,
                                         const char *value, int *err)
{
    size_t len = strlen(name) + 2 + strlen(value) + 1;
    char *line;
    struct curl_slist *n;
    /* No header injection, whatever a caller passes. */
    if (strpbrk(name, "\r\n:") != NULL || strpbrk(value, "\r\n") != NULL) {
        *err = 1;
        return list;
    }
    line = malloc(len);
    if (line == NULL) {
        *err = 1;
        return list;
    }
    /* "Name:" with nothing after the colon tells curl to drop a header it would add. */
    if (value[0] == '\0')
        snprintf(line, len, "%s:", name);
    else
        snprintf(line, len, "%s: %s", name, value);
    n = curl_slist_append(list, line);
    OPENSSL_cleanse(line, len);
    free(line);
    if (n == NULL) {
        *err = 1;
        return list;
    }
    return n;
}

struct http_request *http_request_start(struct http *http, const struct http_opts *opts,
                                        http_done_cb cb, void *arg)
{
    struct http_request *req = NULL;
    char urlbuf[256];
    int err = 0;
    const char *method;

    if (http == NULL || http->closing || opts == NULL || opts->url == NULL || cb == NULL)
        return NULL;
    if (http_check_url(opts->url, opts->tls_no_verify) != 0) {
        http_url_for_log(opts->url, urlbuf, sizeof urlbuf);
        log_error(NULL, "event=http_refused url=%s reason=\"not https, and http:// is allowed "
                        "for loopback hosts only\"", urlbuf);
        return NULL;
    }
    req = calloc(1, sizeof *req);
    if (req == NULL)
        return NULL;
    req->http = http;
    req->cb = cb;
    req->arg = arg;
    req->max_response = opts->max_response != 0 ? opts->max_response : HTTP_DEFAULT_MAX_RESPONSE;
    req->easy = curl_easy_init();
    if (req->easy == NULL)
        goto fail;

    CURL *e = req->easy;
    err |= curl_easy_setopt(e, CURLOPT_URL, opts->url) != CURLE_OK;
    err |= curl_easy_setopt(e, CURLOPT_PRIVATE, req) != CURLE_OK;
    err |= curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, http_open_socket_cb) != CURLE_OK;
    err |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    err |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
    err |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
    err |= curl_easy_setopt(e, CURLOPT_PROXY, "") != CURLE_OK; /* env proxies off, see top */
    err |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, opts->tls_no_verify ? 0L : 1L) != CURLE_OK;
    err |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, opts->tls_no_verify ? 0L : 2L) != CURLE_OK;
    err |= curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2) != CURLE_OK;
    err |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
                            (long)(opts->timeout_ms != 0 ? opts->timeout_ms
                                                         : HTTP_DEFAULT_TIMEOUT_MS)) != CURLE_OK;
    err |= curl_easy_setopt(e, CURLOPT_USERAGENT, HTTP_USER_AGENT) != CURLE_OK;
    err |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, req->errbuf) != CURLE_OK;
    err |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_write_cb) != CURLE_OK;
    err |= curl_easy_setopt(e, CURLOPT_WRITEDATA, req) != CURLE_OK;
    err |= curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)req->max_response) !=
           CURLE_OK;
    if (opts->ca_file != NULL && opts->ca_file[0] != '\0') {
        char *capath = NULL;
        err |= curl_easy_setopt(e, CURLOPT_CAINFO, opts->ca_file) != CURLE_OK;
        /* Keep the system roots: curl's built-in CA directory, else OpenSSL's. */
        curl_easy_getinfo(e, CURLINFO_CAPATH, &capath);
        if (capath == NULL)
            err |= curl_easy_setopt(e, CURLOPT_CAPATH, X509_get_default_cert_dir()) != CURLE_OK;
    }

    method = opts->method;
    if (method == NULL)
        method = opts->body != NULL || opts->body_read != NULL ? "POST" : "GET";
    if (opts->body != NULL || opts->body_read != NULL) {
        if (opts->body_read != NULL) {
            req->body_read = opts->body_read;
            req->body_arg = opts->body_arg;
            err |= curl_easy_setopt(e, CURLOPT_POST, 1L) != CURLE_OK;
            err |= curl_easy_setopt(e, CURLOPT_READFUNCTION, http_read_cb) != CURLE_OK;
            err |= curl_easy_setopt(e, CURLOPT_READDATA, req) != CURLE_OK;
            err |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                                    (curl_off_t)opts->body_size) != CURLE_OK;
        } else {
            req->body_len = opts->body_len;
            req->body = malloc(req->body_len + 1);
            if (req->body == NULL)
                goto fail;
            memcpy(req->body, opts->body, req->body_len);
            req->body[req->body_len] = '\0';
            err |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body) != CURLE_OK;
            err |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len) !=
                   CURLE_OK;
        }
        req->headers = http_slist_add(req->headers, "Content-Type",
                                      opts->content_type != NULL
                                          ? opts->content_type
                                          : "application/x-www-form-urlencoded",
                                      &err);
        /* No 100-continue round trip: our bodies are bounded and the server answers anyway. */
        req->headers = http_slist_add(req->headers, "Expect", "", &err);
        if (strcmp(method, "POST") != 0)
            err |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method) != CURLE_OK;
    } else if (strcmp(method, "GET") == 0) {
        err |= curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) != CURLE_OK;
    } else {
        err |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method) != CURLE_OK;
    }
    for (size_t i = 0; i < opts->n_headers; i++)
        req->headers = http_slist_add(req->headers, opts->headers[i].name,
                                      opts->headers[i].value, &err);
    if (req->headers != NULL)
        err |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, req->headers) != CURLE_OK;
    if (err)
        goto fail;

    LIST_INSERT_HEAD(&http->reqs, req, link);
    if (curl_multi_add_handle(http->multi, e) != CURLM_OK) {
        LIST_REMOVE(req, link);
        goto fail;
    }
    return req;

fail:
    http_request_free(req);
    return NULL;
}

static void http_request_finish(struct http_request *req, CURLcode result)
{
    struct http *http = req->http;
    struct http_response resp;
    long code = 0;
    char errtext[CURL_ERROR_SIZE + 64];

    memset(&resp, 0, sizeof resp);
    LIST_REMOVE(req, link);
    curl_off_t retry_after = 0;
    curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &code);
    /* libcurl parses the final response's Retry-After, delta-seconds or an HTTP-date
     * (RFC 9110 section 10.2.3); 0 when there is none or it cannot be read. */
    curl_easy_getinfo(req->easy, CURLINFO_RETRY_AFTER, &retry_after);
    curl_multi_remove_handle(http->multi, req->easy);

    resp.retry_after = http_retry_after_seconds(retry_after);
    if (result == CURLE_OK && code > 0) {
        resp.status = (int)code;
        resp.body = req->resp != NULL ? req->resp : "";
        resp.body_len = req->resp_len;
    } else {
        resp.status = 0;
        resp.body = "";
        resp.timed_out = result == CURLE_OPERATION_TIMEDOUT;
        if (req->too_large || result == CURLE_FILESIZE_EXCEEDED)
            snprintf(errtext, sizeof errtext, "response larger than %zu bytes",
                     req->max_response);
        else if (result == CURLE_OK)
            snprintf(errtext, sizeof errtext, "no HTTP status in the response");
        else
            snprintf(errtext, sizeof errtext, "%s",
                     req->errbuf[0] != '\0' ? req->errbuf : curl_easy_strerror(result));
        resp.error = errtext;
    }
    req->cb(req->arg, &resp);
    http_request_free(req);
}

static void http_check_done(struct http *http)
{
    CURLMsg *msg;
    int left;

    http->dispatching++;
    while (!http->closing && (msg = curl_multi_info_read(http->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        char *priv = NULL;
        CURLcode result = msg->data.result;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        if (priv != NULL)
            http_request_finish((struct http_request *)(void *)priv, result);
    }
    http->dispatching--;
    if (http->closing && http->dispatching == 0 && !http->torn_down)
        http_teardown(http);
}

void http_request_cancel(struct http_request *req)
{
    if (req == NULL)
        return;
    LIST_REMOVE(req, link);
    curl_multi_remove_handle(req->http->multi, req->easy);
    http_request_free(req);
}

static void http_teardown(struct http *http)
{
    http->torn_down = 1;
    /* May call http_socket_cb with CURL_POLL_REMOVE for sockets it still watches. */
    curl_multi_cleanup(http->multi);
    http->multi = NULL;
    while (!LIST_EMPTY(&http->socks))
        http_sock_unlink_close(LIST_FIRST(&http->socks));
    uv_close((uv_handle_t *)&http->timer, http_handle_close_cb);
}

void http_close(struct http *http)
{
    if (http == NULL || http->closing)
        return;
    http->closing = 1;
    while (!LIST_EMPTY(&http->reqs))
        http_request_cancel(LIST_FIRST(&http->reqs));
    /* Inside a completion callback curl's state is still in use; http_check_done finishes. */
    if (http->dispatching == 0)
        http_teardown(http);
}

char *http_form_escape(const char *s)
{
    /* curl_easy_escape percent-encodes all but RFC 3986's unreserved characters (ALPHA DIGIT
     * "-._~"); the form serializer (WHATWG URL standard, application/x-www-form-urlencoded,
     * as RFC 6749 appendix B asks) differs in three: space is '+', '*' stays, '~' is encoded. */
    size_t len = strlen(s);
    char *esc = len <= INT_MAX ? curl_easy_escape(NULL, s, (int)len) : NULL;
    if (esc == NULL)
        return NULL;
    size_t n = strlen(esc), o = 0;
    char *out = malloc(n * 3 + 1); /* each "~" grows to 3 */
    for (size_t i = 0; out != NULL && i < n; i++) {
        if (strncmp(esc + i, "%20", 3) == 0 || strncmp(esc + i, "%2A", 3) == 0) {
            out[o++] = esc[i + 2] == '0' ? '+' : '*';
            i += 2;
        } else if (esc[i] == '~') {
            memcpy(out + o, "%7E", 3);
            o += 3;
        } else {
            out[o++] = esc[i];
        }
    }
    if (out != NULL)
        out[o] = '\0';
    OPENSSL_cleanse(esc, n); /* a refresh token or a client secret */
    curl_free(esc);
    return out;
}
