/* The token manager end to end inside one uv loop: real curl multi, a real (tiny) HTTP/1.1
 * token endpoint written here on libuv TCP at 127.0.0.1 port 0, and the real token store in a
 * temp directory. The endpoint behaves like Microsoft's: refresh tokens rotate and the old one
 * dies, so any use of a stale refresh token shows up as invalid_grant. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "check.h"
#include "tmpdir.h"
#include "config.h"
#include "http.h"
#include "log.h"
#include "token.h"
#include "token_store.h"


/* ---------------------------------------------------------------- mock token endpoint */

enum srv_mode { SRV_OK, SRV_500, SRV_HANG, SRV_INVALID_GRANT, SRV_429, SRV_HUGE };

#define SRV_MAX_VALID 16

struct srv_conn;

struct srv {
    uv_tcp_t tcp;
    int port;
    enum srv_mode mode;
    int rotate;
    long expires_in;
    int requests;
    int seq;
    char valid[SRV_MAX_VALID][128]; /* refresh tokens the endpoint accepts */
    char last_grant[64], last_client_id[64], last_secret[64], last_rt[128], last_scope[128];
    char last_path[128];
    struct srv_conn *conns;
};

struct srv_conn {
    uv_tcp_t tcp;
    struct srv *srv;
    char buf[16384];
    size_t len;
    struct srv_conn *prev, *next;
};

struct srv_write {
    uv_write_t req;
    char data[];
};

static struct srv srv;
static uv_loop_t loop;

static void srv_valid_add(const char *rt)
{
    for (int i = 0; i < SRV_MAX_VALID; i++) {
        if (srv.valid[i][0] == '\0') {
            snprintf(srv.valid[i], sizeof srv.valid[i], "%s", rt);
            return;
        }
    }
}

static int srv_valid_take(const char *rt)
{
    for (int i = 0; i < SRV_MAX_VALID; i++) {
        if (srv.valid[i][0] != '\0' && strcmp(srv.valid[i], rt) == 0) {
            if (srv.rotate)
                srv.valid[i][0] = '\0'; /* used once: dead */
            return 1;
        }
    }
    return 0;
}

static void srv_conn_close_cb(uv_handle_t *h)
{
    free(h->data);
}

static void srv_conn_close(struct srv_conn *c)
{
    if (uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        srv.conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    uv_close((uv_handle_t *)&c->tcp, srv_conn_close_cb);
}

static void srv_write_cb(uv_write_t *req, int status)
{
    (void)status;
    free(req);
}

static void srv_reply(struct srv_conn *c, int status, const char *json)
{
    size_t cap = strlen(json) + 256;
    struct srv_write *w = malloc(sizeof *w + cap);
    int n = snprintf(w->data, cap,
                     "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n%s"
                     "Content-Length: %zu\r\n\r\n%s",
                     status, status == 429 ? "Retry-After: 7\r\n" : "", strlen(json), json);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, srv_write_cb) != 0)
        free(w);
}

static void srv_url_decode(char *s)
{
    char *o = s;
    for (; *s != '\0'; s++) {
        if (*s == '+') {
            *o++ = ' ';
        } else if (*s == '%' && s[1] != '\0' && s[2] != '\0') {
            char hex[3] = {s[1], s[2], 0};
            *o++ = (char)strtol(hex, NULL, 16);
            s += 2;
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
}

/* Copies the decoded value of name from an urlencoded body; "" when absent. */
static void srv_form_get(const char *body, const char *name, char *out, size_t outsz)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", body);
    out[0] = '\0';
    for (char *save = NULL, *kv = strtok_r(tmp, "&", &save); kv != NULL;
         kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        if (eq == NULL)
            continue;
        *eq = '\0';
        srv_url_decode(kv);
        if (strcmp(kv, name) == 0) {
            srv_url_decode(eq + 1);
            snprintf(out, outsz, "%s", eq + 1);
            return;
        }
    }
}

static void srv_handle(struct srv_conn *c, const char *path, const char *body)
{
    char json[1024];

    srv.requests++;
    snprintf(srv.last_path, sizeof srv.last_path, "%s", path);
    srv_form_get(body, "grant_type", srv.last_grant, sizeof srv.last_grant);
    srv_form_get(body, "client_id", srv.last_client_id, sizeof srv.last_client_id);
    srv_form_get(body, "client_secret", srv.last_secret, sizeof srv.last_secret);
    srv_form_get(body, "refresh_token", srv.last_rt, sizeof srv.last_rt);
    srv_form_get(body, "scope", srv.last_scope, sizeof srv.last_scope);

    switch (srv.mode) {
    case SRV_HANG:
        return;
    case SRV_500:
        srv_reply(c, 500, "{\"error\":\"server_error\"}");
        return;
    case SRV_429:
        srv_reply(c, 429, "{\"error\":\"temporarily_unavailable\"}");
        return;
    case SRV_HUGE: {
        /* Far above the manager's response cap. */
        size_t n = 300 * 1024;
        char *big = malloc(n + 64);
        strcpy(big, "{\"access_token\":\"");
        memset(big + strlen(big), 'A', n);
        strcpy(big + 17 + n, "\"}");
        srv_reply(c, 200, big);
        free(big);
        return;
    }
    case SRV_INVALID_GRANT:
        srv_reply(c, 400, "{\"error\":\"invalid_grant\",\"error_description\":\"AADSTS700082: "
                          "The refresh token has expired due to inactivity.\\r\\nTrace ID: 1\","
                          "\"error_codes\":[700082]}");
        return;
    case SRV_OK:
        break;
    }
    if (strcmp(srv.last_grant, "refresh_token") != 0) {
        srv_reply(c, 400, "{\"error\":\"unsupported_grant_type\"}");
        return;
    }
    if (strcmp(srv.last_client_id, "cid-1") != 0) {
        srv_reply(c, 401, "{\"error\":\"invalid_client\"}");
        return;
    }
    if (!srv_valid_take(srv.last_rt)) {
        srv_reply(c, 400, "{\"error\":\"invalid_grant\",\"error_description\":\"AADSTS70043: "
                          "The refresh token has expired or is invalid.\"}");
        return;
    }
    srv.seq++;
    if (srv.rotate) {
        char rt[64];
        snprintf(rt, sizeof rt, "RT~%04d", srv.seq);
        srv_valid_add(rt);
        snprintf(json, sizeof json,
                 "{\"token_type\":\"Bearer\",\"expires_in\":%ld,\"access_token\":\"AT~%04d\","
                 "\"refresh_token\":\"%s\"}",
                 srv.expires_in, srv.seq, rt);
    } else {
        snprintf(json, sizeof json,
                 "{\"token_type\":\"Bearer\",\"expires_in\":\"%ld\",\"access_token\":\"AT~%04d\"}",
                 srv.expires_in, srv.seq);
    }
    srv_reply(c, 200, json);
}

/* Handles every complete request in the buffer (keep-alive: curl reuses connections). */
static void srv_process(struct srv_conn *c)
{
    for (;;) {
        char *end = NULL;
        for (size_t i = 0; i + 3 < c->len; i++) {
            if (memcmp(c->buf + i, "\r\n\r\n", 4) == 0) {
                end = c->buf + i;
                break;
            }
        }
        if (end == NULL)
            return;
        size_t hlen = (size_t)(end - c->buf) + 4;
        size_t clen = 0;
        char head[8192];
        memcpy(head, c->buf, hlen);
        head[hlen] = '\0';
        for (char *save = NULL, *l = strtok_r(head, "\r\n", &save); l != NULL;
             l = strtok_r(NULL, "\r\n", &save)) {
            if (strncasecmp(l, "Content-Length:", 15) == 0)
                clen = (size_t)strtoul(l + 15, NULL, 10);
        }
        if (c->len < hlen + clen)
            return;
        char path[128] = "";
        memcpy(head, c->buf, hlen);
        head[hlen] = '\0';
        sscanf(head, "POST %127s HTTP/1.1", path);
        char *body = malloc(clen + 1);
        memcpy(body, c->buf + hlen, clen);
        body[clen] = '\0';
        memmove(c->buf, c->buf + hlen + clen, c->len - hlen - clen);
        c->len -= hlen + clen;
        srv_handle(c, path, body);
        free(body);
    }
}

static void srv_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct srv_conn *c = h->data;
    (void)suggested;
    *buf = uv_buf_init(c->buf + c->len, (unsigned)(sizeof c->buf - c->len - 1));
}

static void srv_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct srv_conn *c = s->data;
    (void)buf;
    if (nread < 0) {
        srv_conn_close(c);
        return;
    }
    c->len += (size_t)nread;
    srv_process(c);
}

static void srv_connection_cb(uv_stream_t *server, int status)
{
    struct srv_conn *c;
    if (status != 0)
        return;
    c = calloc(1, sizeof *c);
    uv_tcp_init(&loop, &c->tcp);
    c->tcp.data = c;
    c->srv = &srv;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, srv_conn_close_cb);
        return;
    }
    c->next = srv.conns;
    if (srv.conns != NULL)
        srv.conns->prev = c;
    srv.conns = c;
    uv_read_start((uv_stream_t *)&c->tcp, srv_alloc_cb, srv_read_cb);
}

static int srv_start(void)
{
    struct sockaddr_in addr;
    struct sockaddr_storage bound;
    int len = sizeof bound;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    if (uv_tcp_init(&loop, &srv.tcp) != 0 ||
        uv_tcp_bind(&srv.tcp, (const struct sockaddr *)&addr, 0) != 0 ||
        uv_listen((uv_stream_t *)&srv.tcp, 64, srv_connection_cb) != 0 ||
        uv_tcp_getsockname(&srv.tcp, (struct sockaddr *)&bound, &len) != 0)
        return -1;
    srv.port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    srv.expires_in = 3600;
    srv.rotate = 1;
    return 0;
}

static void srv_close(void)
{
    while (srv.conns != NULL)
        srv_conn_close(srv.conns);
    uv_close((uv_handle_t *)&srv.tcp, NULL);
}

/* ---------------------------------------------------------------- loop helpers */

static uv_timer_t guard;
static int guard_fired;

static void guard_cb(uv_timer_t *t)
{
    (void)t;
    guard_fired = 1;
}

/* Runs the loop until *counter reaches target (or 10 s pass). */
static int wait_for(const int *counter, int target)
{
    guard_fired = 0;
    uv_timer_start(&guard, guard_cb, 10000, 0);
    while (*counter < target && !guard_fired)
        uv_run(&loop, UV_RUN_ONCE);
    uv_timer_stop(&guard);
    return *counter >= target;
}

/* Lets the loop run for ms milliseconds. */
static void run_for(uint64_t ms)
{
    guard_fired = 0;
    uv_timer_start(&guard, guard_cb, ms, 0);
    while (!guard_fired)
        uv_run(&loop, UV_RUN_ONCE);
}

struct result {
    int called;
    enum token_status st;
    char tok[128];
};

static int total_calls;

static void result_cb(void *arg, enum token_status st, const char *tok)
{
    struct result *r = arg;
    r->called++;
    total_calls++;
    r->st = st;
    snprintf(r->tok, sizeof r->tok, "%s", tok != NULL ? tok : "");
}

/* ---------------------------------------------------------------- fixtures */

static char base[256], state_dir[300], bad_state[300];
static char url[128];
static struct config cfg;
static struct config_provider prov;
static struct http *http;

static void acct_init(struct config_account *a, const char *name, const char *seed)
{
    memset(a, 0, sizeof *a);
    a->name = (char *)name;
    a->provider = &prov;
    a->provider_name = prov.name;
    a->flow = CONFIG_FLOW_REFRESH_TOKEN;
    a->client_id = (char *)"cid-1";
    a->client_secret = (char *)"s3cr3t;&=+ x";
    a->tenant = (char *)"contoso";
    a->scope = (char *)"https://outlook.office.com/SMTP.Send offline_access";
    a->refresh_token = (char *)seed;
    a->refresh_margin = 300;
    if (seed != NULL)
        srv_valid_add(seed);
}

static char *stored(const char *dir, const char *account)
{
    char *out = NULL;
    if (token_store_load(dir, account, &out) != 1)
        return NULL;
    return out;
}

/* ---------------------------------------------------------------- cases */

static struct config_account a_scanner, a_multi, a_short;

static void test_first_get_and_cache(struct token_manager *tm)
{
    struct result r1 = {0}, r2 = {0};
    int req0 = srv.requests;

    struct token_wait *w = token_get(tm, &a_scanner, 0, "s1", result_cb, &r1);
    CHECK(w != NULL);
    CHECK(r1.called == 0);
    CHECK(wait_for(&r1.called, 1));
    CHECK(r1.st == TOKEN_OK && strcmp(r1.tok, "AT~0001") == 0);
    CHECK(srv.requests == req0 + 1);
    CHECK(strcmp(srv.last_path, "/contoso/oauth2/v2.0/token") == 0);
    CHECK(strcmp(srv.last_grant, "refresh_token") == 0);
    CHECK(strcmp(srv.last_client_id, "cid-1") == 0);
    CHECK(strcmp(srv.last_secret, "s3cr3t;&=+ x") == 0);
    CHECK(strcmp(srv.last_rt, "SEED~scanner") == 0);
    CHECK(strcmp(srv.last_scope, a_scanner.scope) == 0);

    /* The rotated refresh token is on disk, 0600, before the access token was handed out. */
    char *rt = stored(state_dir, "scanner");
    CHECK(rt != NULL && strcmp(rt, "RT~0001") == 0);
    free(rt);
    char *path = token_store_path(state_dir, "scanner");
    struct stat st;
    CHECK(path != NULL && stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK(stat(state_dir, &st) == 0 && (st.st_mode & 0777) == 0700);
    free(path);

    /* Second get: from the cache, synchronously, no request. */
    w = token_get(tm, &a_scanner, 0, "s2", result_cb, &r2);
    CHECK(w == NULL);
    CHECK(r2.called == 1 && r2.st == TOKEN_OK && strcmp(r2.tok, "AT~0001") == 0);
    CHECK(srv.requests == req0 + 1);
}

static void test_concurrent(struct token_manager *tm)
{
    struct result r[5];
    int req0 = srv.requests;
    int calls0 = total_calls;

    memset(r, 0, sizeof r);
    for (int i = 0; i < 5; i++)
        CHECK(token_get(tm, &a_multi, 0, NULL, result_cb, &r[i]) != NULL);
    CHECK(wait_for(&total_calls, calls0 + 5));
    CHECK(srv.requests == req0 + 1);
    for (int i = 0; i < 5; i++) {
        CHECK(r[i].called == 1 && r[i].st == TOKEN_OK);
        CHECK(strcmp(r[i].tok, r[0].tok) == 0);
    }
}

static void test_cancel(struct token_manager *tm)
{
    struct result r[3];
    int req0 = srv.requests;
    int calls0 = total_calls;
    struct token_wait *w[3];

    memset(r, 0, sizeof r);
    /* FORCE on the first starts a request; the others join it. */
    w[0] = token_get(tm, &a_multi, TOKEN_FORCE_REFRESH, NULL, result_cb, &r[0]);
    w[1] = token_get(tm, &a_multi, 0, NULL, result_cb, &r[1]);
    w[2] = token_get(tm, &a_multi, TOKEN_FORCE_REFRESH, NULL, result_cb, &r[2]);
    CHECK(w[0] != NULL && w[1] != NULL && w[2] != NULL);
    token_wait_cancel(w[1]);
    CHECK(wait_for(&total_calls, calls0 + 2));
    run_for(50);
    CHECK(r[0].called == 1 && r[0].st == TOKEN_OK);
    CHECK(r[1].called == 0);
    CHECK(r[2].called == 1 && r[2].st == TOKEN_OK);
    CHECK(srv.requests == req0 + 1);

    /* Every waiter cancelled: the request completes anyway and its result is cached. */
    struct result r4 = {0}, r5 = {0};
    struct token_wait *w4 = token_get(tm, &a_multi, TOKEN_FORCE_REFRESH, NULL, result_cb, &r4);
    CHECK(w4 != NULL);
    token_wait_cancel(w4);
    CHECK(wait_for(&srv.requests, req0 + 2));
    run_for(100);
    CHECK(r4.called == 0);
    CHECK(token_get(tm, &a_multi, 0, NULL, result_cb, &r5) == NULL);
    CHECK(r5.called == 1 && r5.st == TOKEN_OK);
    char expect[16];
    snprintf(expect, sizeof expect, "AT~%04d", srv.seq);
    CHECK(strcmp(r5.tok, expect) == 0);
    CHECK(srv.requests == req0 + 2);
}

static void test_force_refresh(struct token_manager *tm)
{
    struct result r = {0};
    int req0 = srv.requests;
    char *before = stored(state_dir, "scanner");

    CHECK(token_get(tm, &a_scanner, TOKEN_FORCE_REFRESH, NULL, result_cb, &r) != NULL);
    CHECK(wait_for(&r.called, 1));
    CHECK(r.st == TOKEN_OK);
    CHECK(strcmp(r.tok, "AT~0001") != 0);
    CHECK(srv.requests == req0 + 1);
    /* It sent the rotated token, not the seed. */
    CHECK(before != NULL && strcmp(srv.last_rt, before) == 0);
    char *after = stored(state_dir, "scanner");
    CHECK(after != NULL && before != NULL && strcmp(after, before) != 0);
    free(before);
    free(after);
}

static void short_timer_cb(uv_timer_t *t)
{
    struct token_manager *tm = t->data;
    static struct result r;
    /* 1.2 s after the token came with expires_in = 2 and margin 1: must refresh. */
    CHECK(token_get(tm, &a_short, 0, NULL, result_cb, &r) != NULL);
}

static void test_expiry(struct token_manager *tm)
{
    struct result r1 = {0}, r2 = {0};
    static uv_timer_t timer; /* must outlive its close callback */
    int req0 = srv.requests;
    int calls0;

    srv.expires_in = 2;
    CHECK(token_get(tm, &a_short, 0, NULL, result_cb, &r1) != NULL);
    CHECK(wait_for(&r1.called, 1));
    CHECK(r1.st == TOKEN_OK);
    srv.expires_in = 3600;
    CHECK(token_get(tm, &a_short, 0, NULL, result_cb, &r2) == NULL); /* still fresh */
    CHECK(r2.called == 1 && r2.st == TOKEN_OK && strcmp(r2.tok, r1.tok) == 0);
    CHECK(srv.requests == req0 + 1);

    calls0 = total_calls;
    uv_timer_init(&loop, &timer);
    timer.data = tm;
    uv_timer_start(&timer, short_timer_cb, 1200, 0);
    CHECK(wait_for(&total_calls, calls0 + 1));
    CHECK(srv.requests == req0 + 2);
    uv_close((uv_handle_t *)&timer, NULL);
}

static void test_restart(void)
{
    struct token_manager *tm2 = token_manager_new(&loop, http, &cfg);
    struct result r = {0};
    char *rt = stored(state_dir, "scanner");

    CHECK(tm2 != NULL);
    CHECK(token_get(tm2, &a_scanner, 0, NULL, result_cb, &r) != NULL);
    CHECK(wait_for(&r.called, 1));
    CHECK(r.st == TOKEN_OK);
    /* The store's token, not the seed (which died at the first rotation anyway). */
    CHECK(rt != NULL && strcmp(srv.last_rt, rt) == 0);
    CHECK(strcmp(srv.last_rt, "SEED~scanner") != 0);
    free(rt);
    token_manager_free(tm2);
}

static void test_500(struct token_manager *tm)
{
    struct config_account a;
    struct result r1 = {0}, r2 = {0};
    int req0 = srv.requests;

    acct_init(&a, "err500", "SEED~err500");
    srv.mode = SRV_500;
    CHECK(token_get(tm, &a, 0, NULL, result_cb, &r1) != NULL);
    CHECK(wait_for(&r1.called, 1));
    CHECK(r1.st == TOKEN_TEMPFAIL && r1.tok[0] == '\0');
    CHECK(srv.requests == req0 + 1);
    /* Negative cache: the next caller fails at once without a request. */
    CHECK(token_get(tm, &a, 0, NULL, result_cb, &r2) == NULL);
    CHECK(r2.called == 1 && r2.st == TOKEN_TEMPFAIL);
    run_for(50);
    CHECK(srv.requests == req0 + 1);
    /* ... also for a FORCE. */
    CHECK(token_get(tm, &a, TOKEN_FORCE_REFRESH, NULL, result_cb, &r2) == NULL);
    CHECK(r2.called == 2 && r2.st == TOKEN_TEMPFAIL);
    srv.mode = SRV_429;
    struct config_account b;
    acct_init(&b, "err429", "SEED~err429");
    CHECK(token_get(tm, &b, 0, NULL, result_cb, &r1) != NULL);
    CHECK(wait_for(&r1.called, 2));
    CHECK(r1.st == TOKEN_TEMPFAIL);
    srv.mode = SRV_OK;
    token_manager_free(tm); /* entries keep pointers to the stack accounts: drop them */
}

static void test_invalid_grant(void)
{
    struct token_manager *tm = token_manager_new(&loop, http, &cfg);
    struct config_account a;
    struct result r1 = {0}, r2 = {0}, r3 = {0}, r4 = {0};
    int req0 = srv.requests;

    acct_init(&a, "revoked", "SEED~revoked");
    srv.mode = SRV_INVALID_GRANT;
    CHECK(token_get(tm, &a, 0, NULL, result_cb, &r1) != NULL);
    CHECK(wait_for(&r1.called, 1));
    CHECK(r1.st == TOKEN_NEEDS_SIGNIN);
    CHECK(srv.requests == req0 + 1);
    srv.mode = SRV_OK;

    /* Within the window: fail fast, no request. */
    CHECK(token_get(tm, &a, 0, NULL, result_cb, &r2) == NULL);
    CHECK(r2.called == 1 && r2.st == TOKEN_NEEDS_SIGNIN);
    CHECK(token_get(tm, &a, TOKEN_FORCE_REFRESH, NULL, result_cb, &r2) == NULL);
    CHECK(r2.called == 2 && r2.st == TOKEN_NEEDS_SIGNIN);

    /* A second later it looks at the store again: unchanged, so still no request. */
    run_for(1100);
    CHECK(token_get(tm, &a, 0, NULL, result_cb, &r3) != NULL);
    CHECK(wait_for(&r3.called, 1));
    CHECK(r3.st == TOKEN_NEEDS_SIGNIN);
    CHECK(srv.requests == req0 + 1);

    /* `xoauthd auth revoked` stored a new token: the next get uses it at once. */
    CHECK(token_store_save_sync(state_dir, "revoked", "SIGNIN~revoked") == 0);
    srv_valid_add("SIGNIN~revoked");
    run_for(1100);
    CHECK(token_get(tm, &a, 0, NULL, result_cb, &r4) != NULL);
    CHECK(wait_for(&r4.called, 1));
    CHECK(r4.st == TOKEN_OK);
    CHECK(srv.requests == req0 + 2);
    CHECK(strcmp(srv.last_rt, "SIGNIN~revoked") == 0);
    token_manager_free(tm);
}

static void test_no_refresh_token(void)
{
    struct token_manager *tm = token_manager_new(&loop, http, &cfg);
    struct config_account a;
    struct result r = {0}, r2 = {0};
    int req0 = srv.requests;

    acct_init(&a, "nobody", NULL);
    CHECK(token_get(tm, &a, 0, NULL, result_cb, &r) != NULL); /* reads the store first */
    CHECK(wait_for(&r.called, 1));
    CHECK(r.st == TOKEN_NEEDS_SIGNIN);
    CHECK(token_get(tm, &a, 0, NULL, result_cb, &r2) == NULL);
    CHECK(r2.st == TOKEN_NEEDS_SIGNIN);
    CHECK(srv.requests == req0);
    token_manager_free(tm);
}

static void test_timeout(void)
{
    struct token_manager *tm = token_manager_new(&loop, http, &cfg);
    struct config_account a;
    struct result r = {0};
    uint64_t t0;

    acct_init(&a, "slow", "SEED~slow");
    srv.mode = SRV_HANG;
    uv_update_time(&loop);
    t0 = uv_now(&loop);
    CHECK(token_get(tm, &a, 0, NULL, result_cb, &r) != NULL);
    CHECK(wait_for(&r.called, 1));
    CHECK(r.st == TOKEN_TEMPFAIL);
    uv_update_time(&loop);
    CHECK(uv_now(&loop) - t0 >= 900);
    CHECK(uv_now(&loop) - t0 < 5000);
    srv.mode = SRV_OK;
    token_manager_free(tm);
}

static void test_static_and_unsupported(void)
{
    struct token_manager *tm = token_manager_new(&loop, http, &cfg);
    struct config_account a, b, c;
    struct result r = {0};
    int req0 = srv.requests;

    acct_init(&a, "static", NULL);
    a.flow = CONFIG_FLOW_STATIC;
    a.access_token = (char *)"STATIC~tok";
    CHECK(token_get(tm, &a, 0, NULL, result_cb, &r) == NULL);
    CHECK(r.called == 1 && r.st == TOKEN_OK && strcmp(r.tok, "STATIC~tok") == 0);
    CHECK(token_get(tm, &a, TOKEN_FORCE_REFRESH, NULL, result_cb, &r) == NULL);
    CHECK(r.called == 2 && r.st == TOKEN_OK);

    acct_init(&b, "static-empty", NULL);
    b.flow = CONFIG_FLOW_STATIC;
    CHECK(token_get(tm, &b, 0, NULL, result_cb, &r) == NULL);
    CHECK(r.called == 3 && r.st == TOKEN_MISCONFIGURED);

    acct_init(&c, "app", NULL);
    c.flow = CONFIG_FLOW_CLIENT_CREDENTIALS;
    CHECK(token_get(tm, &c, 0, NULL, result_cb, &r) == NULL);
    CHECK(r.called == 4 && r.st == TOKEN_MISCONFIGURED);
    c.flow = CONFIG_FLOW_DEVICE_CODE;
    CHECK(token_get(tm, &c, 0, NULL, result_cb, &r) == NULL);
    CHECK(r.called == 5 && r.st == TOKEN_MISCONFIGURED);
    CHECK(srv.requests == req0);
    token_manager_free(tm);
}

static void test_insecure_url(void)
{
    struct token_manager *tm = token_manager_new(&loop, http, &cfg);
    struct config_provider p = prov;
    struct config_account a;
    struct result r = {0};

    p.token_url = (char *)"http://login.example.com/token";
    acct_init(&a, "insecure", "SEED~insecure");
    a.provider = &p;
    /* No store file: it reads the store, then refuses to send secrets over plain http. */
    CHECK(token_get(tm, &a, 0, NULL, result_cb, &r) != NULL);
    CHECK(wait_for(&r.called, 1));
    CHECK(r.st == TOKEN_MISCONFIGURED);
    token_manager_free(tm);
}

static void http_noop_cb(void *arg, const struct http_response *resp)
{
    (void)arg;
    (void)resp;
}

/* Which URLs may carry secrets: https anywhere, http only to loopback. */
static void test_http_policy(void)
{
    const char *ok[] = {"https://login.example.com/token", "http://127.0.0.1:9/x",
                        "http://127.8.9.10/x", "http://[::1]:9/x", "http://localhost:9/x",
                        "http://LOCALHOST/x"};
    const char *refused[] = {"http://login.example.com/token", "http://localhost.example.com/",
                             "http://127.0.0.1.nip.io/", "http://10.0.0.1/", "ftp://127.0.0.1/",
                             "file:///etc/passwd", "not a url", "http://[::2]/",
                             "http://128.0.0.1/"};
    struct http_opts o;
    memset(&o, 0, sizeof o);
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        o.url = ok[i];
        struct http_request *req = http_request_start(http, &o, http_noop_cb, NULL);
        CHECK(req != NULL);
        http_request_cancel(req); /* before the loop runs: no network at all */
    }
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        o.url = refused[i];
        CHECK(http_request_start(http, &o, http_noop_cb, NULL) == NULL);
    }
    /* Header injection is refused. */
    struct http_header h = {"X-Test", "a\r\nInjected: yes"};
    o.url = ok[1];
    o.headers = &h;
    o.n_headers = 1;
    CHECK(http_request_start(http, &o, http_noop_cb, NULL) == NULL);
    char logurl[128];
    http_url_for_log("https://user:pw@login.example/t/token?secret=1#x", logurl, sizeof logurl);
    CHECK(strcmp(logurl, "\"https://login.example/t/token\"") == 0);
    http_url_for_log("http://127.0.0.1:8/a@b/c", logurl, sizeof logurl);
    CHECK(strcmp(logurl, "\"http://127.0.0.1:8/a@b/c\"") == 0);
    char *esc = http_form_escape("a b&c=d/~\xc3\xa9");
    CHECK(esc != NULL && strcmp(esc, "a+b%26c%3Dd%2F%7E%C3%A9") == 0);
    free(esc);
}

static void test_transport_errors(void)
{
    struct token_manager *tm = token_manager_new(&loop, http, &cfg);
    struct config_provider p = prov;
    struct config_account a, b;
    struct result r1 = {0}, r2 = {0};
    char dead_url[128];
    uv_tcp_t probe;
    struct sockaddr_in addr;
    struct sockaddr_storage bound;
    int len = sizeof bound, dead_port = 0;

    /* A port that was free a moment ago: connection refused. */
    uv_ip4_addr("127.0.0.1", 0, &addr);
    uv_tcp_init(&loop, &probe);
    if (uv_tcp_bind(&probe, (const struct sockaddr *)&addr, 0) == 0 &&
        uv_tcp_getsockname(&probe, (struct sockaddr *)&bound, &len) == 0)
        dead_port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    uv_close((uv_handle_t *)&probe, NULL);
    run_for(10);
    snprintf(dead_url, sizeof dead_url, "http://127.0.0.1:%d/token", dead_port);
    p.token_url = dead_url;
    acct_init(&a, "refused", "SEED~refused");
    a.provider = &p;
    CHECK(token_get(tm, &a, 0, NULL, result_cb, &r1) != NULL);
    CHECK(wait_for(&r1.called, 1));
    CHECK(r1.st == TOKEN_TEMPFAIL);

    /* An answer above the size cap is a transport error, not a token. */
    int req0 = srv.requests;
    srv.mode = SRV_HUGE;
    acct_init(&b, "huge", "SEED~huge");
    CHECK(token_get(tm, &b, 0, NULL, result_cb, &r2) != NULL);
    CHECK(wait_for(&r2.called, 1));
    CHECK(r2.st == TOKEN_TEMPFAIL);
    CHECK(srv.requests == req0 + 1);
    srv.mode = SRV_OK;
    token_manager_free(tm);
}

static void test_save_failure(void)
{
    struct config cfg2 = cfg;
    struct token_manager *tm;
    struct config_account a;
    struct result r1 = {0}, r2 = {0};
    int req0 = srv.requests;

    cfg2.state_dir = bad_state; /* a plain file: every save fails */
    tm = token_manager_new(&loop, http, &cfg2);
    acct_init(&a, "nosave", "SEED~nosave");
    CHECK(token_get(tm, &a, 0, NULL, result_cb, &r1) != NULL);
    CHECK(wait_for(&r1.called, 1));
    CHECK(r1.st == TOKEN_OK); /* handed out anyway */
    char rotated[64];
    snprintf(rotated, sizeof rotated, "RT~%04d", srv.seq);
    /* The next refresh uses the rotated token kept in memory. */
    CHECK(token_get(tm, &a, TOKEN_FORCE_REFRESH, NULL, result_cb, &r2) != NULL);
    CHECK(wait_for(&r2.called, 1));
    CHECK(r2.st == TOKEN_OK);
    CHECK(strcmp(srv.last_rt, rotated) == 0);
    CHECK(srv.requests == req0 + 2);
    token_manager_free(tm);
}

static void test_free_in_flight(void)
{
    struct token_manager *tm = token_manager_new(&loop, http, &cfg);
    struct config_account a;
    struct result r = {0};
    int req0 = srv.requests;

    acct_init(&a, "inflight", "SEED~inflight");
    srv.mode = SRV_HANG;
    CHECK(token_get(tm, &a, 0, NULL, result_cb, &r) != NULL);
    CHECK(wait_for(&srv.requests, req0 + 1)); /* the request is at the endpoint */
    token_manager_free(tm);
    run_for(100);
    CHECK(r.called == 0);
    srv.mode = SRV_OK;
}

struct free_ctx {
    struct token_manager *tm;
    int called;
};

static void free_in_cb(void *arg, enum token_status st, const char *tok)
{
    struct free_ctx *f = arg;
    (void)st;
    (void)tok;
    f->called++;
    if (f->tm != NULL) {
        token_manager_free(f->tm);
        f->tm = NULL;
    }
}

static void test_free_in_callback(void)
{
    struct config_account a;
    struct free_ctx f1 = {0}, f2 = {0};

    acct_init(&a, "freecb", "SEED~freecb");
    f1.tm = token_manager_new(&loop, http, &cfg);
    f2.tm = NULL;
    CHECK(token_get(f1.tm, &a, 0, NULL, free_in_cb, &f1) != NULL);
    CHECK(token_get(f1.tm, &a, 0, NULL, free_in_cb, &f2) != NULL);
    CHECK(wait_for(&f1.called, 1));
    run_for(50);
    CHECK(f1.called == 1);
    CHECK(f2.called == 0); /* the manager is gone: later waiters are dropped */
}

/* ---------------------------------------------------------------- main */


/* Every log line this test produced, to prove no secret reached the log. */
static int check_log_clean(const char *logpath, int saved_stderr)
{
    FILE *f = fopen(logpath, "r");
    char line[4096];
    int clean = 1;
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof line, f) != NULL) {
        if (write(saved_stderr, line, strlen(line)) < 0) {
            /* the copy is for humans only */
        }
        if (strstr(line, "AT~") != NULL || strstr(line, "RT~") != NULL ||
            strstr(line, "SEED~") != NULL || strstr(line, "SIGNIN~") != NULL ||
            strstr(line, "s3cr3t") != NULL)
            clean = 0;
    }
    fclose(f);
    return clean;
}

int main(void)
{
    const char *tmpdir = getenv("TMPDIR");
    char logpath[400];
    int saved_stderr, logfd;

    snprintf(base, sizeof base, "%s/xoauthd-tokmgr-XXXXXX",
             tmpdir != NULL && tmpdir[0] != '\0' ? tmpdir : "/tmp");
    if (mkdtemp(base) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(state_dir, sizeof state_dir, "%s/state", base);
    snprintf(bad_state, sizeof bad_state, "%s/not-a-dir", base);
    FILE *bf = fopen(bad_state, "w");
    if (bf != NULL)
        fclose(bf);
    snprintf(logpath, sizeof logpath, "%s/log", base);
    fflush(stderr);
    saved_stderr = dup(2);
    logfd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (saved_stderr < 0 || logfd < 0 || dup2(logfd, 2) < 0)
        return 1;
    close(logfd);
    log_set_level(getenv("XOAUTHD_TEST_DEBUG") != NULL ? LOG_DEBUG : LOG_INFO);

    if (uv_loop_init(&loop) != 0 || srv_start() != 0)
        return 1;
    uv_timer_init(&loop, &guard);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/{tenant}/oauth2/v2.0/token", srv.port);
    prov.name = (char *)"mock";
    prov.token_url = url;
    prov.tls_verify = 1;
    cfg.state_dir = state_dir;
    cfg.token_timeout = 1;
    http = http_new(&loop);
    if (http == NULL)
        return 1;

    acct_init(&a_scanner, "scanner", "SEED~scanner");
    acct_init(&a_multi, "multi", "SEED~multi");
    acct_init(&a_short, "short", "SEED~short");
    a_short.refresh_margin = 1;

    struct token_manager *tm = token_manager_new(&loop, http, &cfg);
    CHECK(tm != NULL);
    test_first_get_and_cache(tm);
    test_concurrent(tm);
    test_cancel(tm);
    test_force_refresh(tm);
    test_expiry(tm);
    token_manager_free(tm);
    test_restart();
    test_500(token_manager_new(&loop, http, &cfg));
    test_invalid_grant();
    test_no_refresh_token();
    test_timeout();
    test_static_and_unsupported();
    test_insecure_url();
    test_http_policy();
    test_transport_errors();
    test_save_failure();
    test_free_in_flight();
    test_free_in_callback();

    http_close(http);
    srv_close();
    uv_close((uv_handle_t *)&guard, NULL);
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(uv_loop_close(&loop) == 0);

    fflush(stderr);
    CHECK(check_log_clean(logpath, saved_stderr));
    dup2(saved_stderr, 2);
    close(saved_stderr);
    remove_tree(base);
    return CHECK_DONE();
}
