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
#include "testcert.h"
#include "tmpdir.h"
#include "config.h"
#include "http.h"
#include "log.h"
#include "token.h"
#include "token_store.h"
#include "localauth.h"


/* ---------------------------------------------------------------- mock token endpoint */

enum srv_mode { SRV_OK, SRV_500, SRV_HANG, SRV_INVALID_GRANT, SRV_429, SRV_HUGE };

#define SRV_MAX_VALID 128

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
    char last_assertion_type[96], last_assertion[4096], last_username[64], last_password[64];
    int retry_after; /* seconds for the Retry-After of a 429 */
    char last_path[128];
    char scope_log[8][128], rt_log[8][128]; /* scope= and refresh_token= of each request */
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
    char ra[48] = "";
    if (status == 429)
        snprintf(ra, sizeof ra, "Retry-After: %d\r\n", srv.retry_after);
    int n = snprintf(w->data, cap,
                     "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n%s"
                     "Content-Length: %zu\r\n\r\n%s",
                     status, ra, strlen(json), json);
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
    snprintf(srv.scope_log[(srv.requests - 1) % 8], sizeof srv.scope_log[0], "%s",
             srv.last_scope);
    snprintf(srv.rt_log[(srv.requests - 1) % 8], sizeof srv.rt_log[0], "%s", srv.last_rt);
    srv_form_get(body, "client_assertion_type", srv.last_assertion_type,
                 sizeof srv.last_assertion_type);
    srv_form_get(body, "client_assertion", srv.last_assertion, sizeof srv.last_assertion);
    srv_form_get(body, "username", srv.last_username, sizeof srv.last_username);
    srv_form_get(body, "password", srv.last_password, sizeof srv.last_password);

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
    if (strcmp(srv.last_grant, "client_credentials") == 0) {
        int jwt = strcmp(srv.last_assertion_type,
                         "urn:ietf:params:oauth:client-assertion-type:jwt-bearer") == 0 &&
                  strchr(srv.last_assertion, '.') != NULL;
        if (strcmp(srv.last_client_id, "app-1") != 0 ||
            (!jwt && strcmp(srv.last_secret, "app-secret") != 0)) {
            srv_reply(c, 401, "{\"error\":\"invalid_client\"}");
            return;
        }
        srv.seq++;
        snprintf(json, sizeof json, "{\"token_type\":\"Bearer\",\"expires_in\":3599,"
                                    "\"access_token\":\"CC~%04d\"}", srv.seq);
        srv_reply(c, 200, json);
        return;
    }
    if (strcmp(srv.last_grant, "password") == 0) {
        if (strcmp(srv.last_username, "ropc@example.com") != 0 ||
            strcmp(srv.last_password, "mailbox pw") != 0) {
            srv_reply(c, 400, "{\"error\":\"invalid_grant\",\"error_description\":"
                              "\"AADSTS50126: Error validating credentials\"}");
            return;
        }
        srv.seq++;
        /* A refresh token comes back (offline_access) and must be ignored. */
        snprintf(json, sizeof json, "{\"token_type\":\"Bearer\",\"expires_in\":3599,"
                                    "\"access_token\":\"PW~%04d\",\"refresh_token\":"
                                    "\"RT~ropc\"}", srv.seq);
        srv_reply(c, 200, json);
        return;
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

/* The managers' clock: the loop's time plus what the test stepped forward. Failure windows and
 * store re-reads are measured on it, so a test crosses a 5 s window in no time at all. */
static uint64_t clock_skip_ms;

static uint64_t test_clock(uv_loop_t *l)
{
    return uv_now(l) + clock_skip_ms;
}

static struct token_manager *manager_new(const struct config *c)
{
    struct token_manager *tm = token_manager_new(&loop, http, c);
    if (tm != NULL)
        token_manager_set_clock(tm, test_clock);
    return tm;
}

/* Moves the managers' clock ms forward and lets the loop run what became due. */
static void clock_advance(uint64_t ms)
{
    clock_skip_ms += ms;
    uv_run(&loop, UV_RUN_NOWAIT);
}

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

static const struct token_store_key file_key = {.kind = TOKEN_KEY_FILE};

static char *stored(const char *dir, const char *account)
{
    char *out = NULL;
    if (token_store_load(dir, account, &file_key, &out, NULL) != TOKEN_STORE_FOUND)
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

/* The provider rejected the token many sessions hold: one refresh for all of them. */
static void test_rejected_single_flight(struct token_manager *tm)
{
    struct result r0 = {0}, r[3], late = {0};
    char old[128];
    int calls0, req0;

    memset(r, 0, sizeof r);
    token_get(tm, &a_multi, 0, NULL, result_cb, &r0);
    CHECK(wait_for(&r0.called, 1) && r0.st == TOKEN_OK);
    snprintf(old, sizeof old, "%s", r0.tok);
    req0 = srv.requests;
    calls0 = total_calls;
    /* Three sessions rejected with the same token before the refresh is back: one request. */
    for (int i = 0; i < 3; i++) {
        token_rejected(tm, &a_multi, a_multi.scope, old, NULL);
        CHECK(token_get(tm, &a_multi, 0, NULL, result_cb, &r[i]) != NULL);
    }
    CHECK(wait_for(&total_calls, calls0 + 3));
    CHECK(srv.requests == req0 + 1);
    for (int i = 0; i < 3; i++)
        CHECK(r[i].st == TOKEN_OK && strcmp(r[i].tok, r[0].tok) == 0);
    CHECK(strcmp(r[0].tok, old) != 0);
    /* A session rejected with the old token after the refresh: the new one, at once. */
    token_rejected(tm, &a_multi, a_multi.scope, old, NULL);
    CHECK(token_get(tm, &a_multi, 0, NULL, result_cb, &late) == NULL);
    CHECK(late.st == TOKEN_OK && strcmp(late.tok, r[0].tok) == 0);
    run_for(50);
    CHECK(srv.requests == req0 + 1);
    /* Unknown accounts and scopes, no token: nothing happens. */
    struct config_account nobody;
    acct_init(&nobody, "nobody", NULL);
    token_rejected(tm, &nobody, NULL, old, NULL);
    token_rejected(tm, &a_multi, "other-scope", old, NULL);
    token_rejected(tm, &a_multi, a_multi.scope, NULL, NULL);
    CHECK(token_get(tm, &a_multi, 0, NULL, result_cb, &late) == NULL);
    CHECK(srv.requests == req0 + 1);
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

static void test_expiry(struct token_manager *tm)
{
    struct result r1 = {0}, r2 = {0}, short_r = {0};
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
    /* 1.2 s after the token came with expires_in = 2 and margin 1: within the margin, so a
     * refresh starts in the background and the still valid token is handed out at once. */
    clock_advance(1200);
    CHECK(token_get(tm, &a_short, 0, NULL, result_cb, &short_r) == NULL);
    CHECK(wait_for(&total_calls, calls0 + 1));
    CHECK(short_r.called == 1 && short_r.st == TOKEN_OK && strcmp(short_r.tok, r1.tok) == 0);
    CHECK(wait_for(&srv.requests, req0 + 2));
    run_for(50);
    /* The background refresh replaced the cached token. */
    struct result r3 = {0};
    CHECK(token_get(tm, &a_short, 0, NULL, result_cb, &r3) == NULL);
    CHECK(r3.called == 1 && r3.st == TOKEN_OK && strcmp(r3.tok, r1.tok) != 0);
    CHECK(srv.requests == req0 + 2);
}

static void test_restart(void)
{
    struct token_manager *tm2 = manager_new(&cfg);
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
    struct token_manager *tm = manager_new(&cfg);
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
    clock_advance(1100);
    CHECK(token_get(tm, &a, 0, NULL, result_cb, &r3) != NULL);
    CHECK(wait_for(&r3.called, 1));
    CHECK(r3.st == TOKEN_NEEDS_SIGNIN);
    CHECK(srv.requests == req0 + 1);

    /* `xoauthd auth revoked` stored a new token: the next get uses it at once. */
    CHECK(token_store_save_sync(state_dir, "revoked", &file_key, "SIGNIN~revoked", NULL) == 0);
    srv_valid_add("SIGNIN~revoked");
    clock_advance(1100);
    CHECK(token_get(tm, &a, 0, NULL, result_cb, &r4) != NULL);
    CHECK(wait_for(&r4.called, 1));
    CHECK(r4.st == TOKEN_OK);
    CHECK(srv.requests == req0 + 2);
    CHECK(strcmp(srv.last_rt, "SIGNIN~revoked") == 0);
    token_manager_free(tm);
}

static void test_no_refresh_token(void)
{
    struct token_manager *tm = manager_new(&cfg);
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
    struct token_manager *tm = manager_new(&cfg);
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
    struct token_manager *tm = manager_new(&cfg);
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

    /* Incomplete accounts fail at once, without a request. */
    acct_init(&c, "app", NULL);
    c.flow = CONFIG_FLOW_CLIENT_CREDENTIALS;
    c.client_secret = NULL;
    CHECK(token_get(tm, &c, 0, NULL, result_cb, &r) == NULL);
    CHECK(r.called == 4 && r.st == TOKEN_MISCONFIGURED);
    struct config_account d;
    acct_init(&d, "cmd-missing", NULL);
    d.flow = CONFIG_FLOW_COMMAND;
    CHECK(token_get(tm, &d, 0, NULL, result_cb, &r) == NULL);
    CHECK(r.called == 5 && r.st == TOKEN_MISCONFIGURED);
    CHECK(srv.requests == req0);
    token_manager_free(tm);
}

static void test_insecure_url(void)
{
    struct token_manager *tm = manager_new(&cfg);
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
    esc = http_form_escape("*%20 ~\x01");
    CHECK(esc != NULL && strcmp(esc, "*%2520+%7E%01") == 0);
    free(esc);
}

static void test_transport_errors(void)
{
    struct token_manager *tm = manager_new(&cfg);
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
    tm = manager_new(&cfg2);
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
    struct token_manager *tm = manager_new(&cfg);
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
    f1.tm = manager_new(&cfg);
    f2.tm = NULL;
    CHECK(token_get(f1.tm, &a, 0, NULL, free_in_cb, &f1) != NULL);
    CHECK(token_get(f1.tm, &a, 0, NULL, free_in_cb, &f2) != NULL);
    CHECK(wait_for(&f1.called, 1));
    run_for(50);
    CHECK(f1.called == 1);
    CHECK(f2.called == 0); /* the manager is gone: later waiters are dropped */
}


static int file_exists(const char *dir, const char *name)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static void test_client_credentials(void)
{
    struct token_manager *tm = manager_new(&cfg);
    struct config_account a, b;
    struct result r1 = {0}, r2 = {0}, r3 = {0};
    char cert[400], key[400];
    int req0 = srv.requests;

    acct_init(&a, "app", NULL);
    a.flow = CONFIG_FLOW_CLIENT_CREDENTIALS;
    a.client_id = (char *)"app-1";
    a.client_secret = (char *)"app-secret";
    a.scope = (char *)"https://outlook.office365.com/.default";
    CHECK(token_get(tm, &a, 0, NULL, result_cb, &r1) != NULL);
    CHECK(wait_for(&r1.called, 1));
    CHECK(r1.st == TOKEN_OK && strncmp(r1.tok, "CC~", 3) == 0);
    CHECK(strcmp(srv.last_grant, "client_credentials") == 0);
    CHECK(strcmp(srv.last_secret, "app-secret") == 0 && srv.last_assertion[0] == '\0');
    CHECK(strcmp(srv.last_scope, "https://outlook.office365.com/.default") == 0);
    CHECK(token_get(tm, &a, 0, NULL, result_cb, &r2) == NULL); /* cached */
    CHECK(r2.st == TOKEN_OK && strcmp(r2.tok, r1.tok) == 0);
    CHECK(srv.requests == req0 + 1);
    CHECK(!file_exists(state_dir, "app.refresh")); /* nothing to store */

    /* With a certificate: a signed assertion instead of the secret. */
    snprintf(cert, sizeof cert, "%s/app.crt", base);
    snprintf(key, sizeof key, "%s/app.key", base);
    EVP_PKEY *pk = testcert_make(cert, key, "RSA");
    CHECK(pk != NULL);
    EVP_PKEY_free(pk);
    acct_init(&b, "app-cert", NULL);
    b.flow = CONFIG_FLOW_CLIENT_CREDENTIALS;
    b.client_id = (char *)"app-1";
    b.client_secret = NULL;
    b.client_certificate = cert;
    b.client_key = key;
    CHECK(token_get(tm, &b, 0, NULL, result_cb, &r3) != NULL);
    CHECK(wait_for(&r3.called, 1));
    CHECK(r3.st == TOKEN_OK && strncmp(r3.tok, "CC~", 3) == 0);
    CHECK(srv.last_secret[0] == '\0');
    CHECK(strcmp(srv.last_assertion_type,
                 "urn:ietf:params:oauth:client-assertion-type:jwt-bearer") == 0);
    CHECK(strncmp(srv.last_assertion, "eyJ", 3) == 0);

    /* A certificate that cannot be loaded is a configuration error, without a request. */
    struct config_account c;
    struct result r4 = {0};
    acct_init(&c, "app-badcert", NULL);
    c.flow = CONFIG_FLOW_CLIENT_CREDENTIALS;
    c.client_id = (char *)"app-1";
    c.client_certificate = (char *)"/nonexistent.crt";
    c.client_key = key;
    int req1 = srv.requests;
    CHECK(token_get(tm, &c, 0, NULL, result_cb, &r4) == NULL);
    CHECK(r4.st == TOKEN_MISCONFIGURED && srv.requests == req1);
    token_manager_free(tm);
}

static void test_password_grant(void)
{
    struct token_manager *tm = manager_new(&cfg);
    struct config_account a, b;
    struct result r1 = {0}, r2 = {0}, r3 = {0};
    int req0 = srv.requests;

    acct_init(&a, "ropc", NULL);
    a.flow = CONFIG_FLOW_PASSWORD;
    a.username = (char *)"ropc@example.com";
    a.upstream_password = (char *)"mailbox pw";
    CHECK(token_get(tm, &a, 0, NULL, result_cb, &r1) != NULL);
    CHECK(wait_for(&r1.called, 1));
    CHECK(r1.st == TOKEN_OK && strncmp(r1.tok, "PW~", 3) == 0);
    CHECK(strcmp(srv.last_grant, "password") == 0);
    CHECK(strcmp(srv.last_username, "ropc@example.com") == 0);
    run_for(50);
    CHECK(!file_exists(state_dir, "ropc.refresh")); /* the refresh token it got is ignored */

    /* A rejected password: one request, then no more (not even forced) until a restart. */
    acct_init(&b, "ropc-bad", NULL);
    b.flow = CONFIG_FLOW_PASSWORD;
    b.username = (char *)"ropc@example.com";
    b.upstream_password = (char *)"wrong";
    CHECK(token_get(tm, &b, 0, NULL, result_cb, &r2) != NULL);
    CHECK(wait_for(&r2.called, 1));
    CHECK(r2.st == TOKEN_NEEDS_SIGNIN);
    CHECK(token_get(tm, &b, TOKEN_FORCE_REFRESH, NULL, result_cb, &r3) == NULL);
    CHECK(r3.st == TOKEN_NEEDS_SIGNIN);
    CHECK(srv.requests == req0 + 2);
    token_manager_free(tm);
}

static void test_command(void)
{
    struct token_manager *tm = manager_new(&cfg);
    struct config_account a, b, c, d, e, f;
    struct result r[8];
    uint64_t t0;
    int req0 = srv.requests;

    memset(r, 0, sizeof r);
    acct_init(&a, "cmd", NULL);
    a.flow = CONFIG_FLOW_COMMAND;
    a.username = (char *)"cmd@example.com";
    a.token_command = (char *)"printf 'CMD~%s\\n' \"$XOAUTHD_ACCOUNT\"; echo chatter >&2";
    CHECK(token_get(tm, &a, 0, NULL, result_cb, &r[0]) != NULL);
    CHECK(wait_for(&r[0].called, 1));
    CHECK(r[0].st == TOKEN_OK && strcmp(r[0].tok, "CMD~cmd") == 0);
    CHECK(token_get(tm, &a, 0, NULL, result_cb, &r[1]) == NULL); /* cached */
    CHECK(r[1].st == TOKEN_OK);

    /* JSON output with a lifetime. */
    acct_init(&b, "cmd-json", NULL);
    b.flow = CONFIG_FLOW_COMMAND;
    b.token_command = (char *)"echo '{\"access_token\":\"CMD~json\",\"expires_in\":600}'";
    CHECK(token_get(tm, &b, 0, NULL, result_cb, &r[2]) != NULL);
    CHECK(wait_for(&r[2].called, 1));
    CHECK(r[2].st == TOKEN_OK && strcmp(r[2].tok, "CMD~json") == 0);

    /* Failing, missing, silent and garbage commands. */
    acct_init(&c, "cmd-fail", NULL);
    c.flow = CONFIG_FLOW_COMMAND;
    c.token_command = (char *)"echo 'vault is sealed' >&2; exit 3";
    CHECK(token_get(tm, &c, 0, NULL, result_cb, &r[3]) != NULL);
    CHECK(wait_for(&r[3].called, 1));
    CHECK(r[3].st == TOKEN_TEMPFAIL);
    acct_init(&d, "cmd-missing2", NULL);
    d.flow = CONFIG_FLOW_COMMAND;
    d.token_command = (char *)"/nonexistent/token-helper";
    CHECK(token_get(tm, &d, 0, NULL, result_cb, &r[4]) != NULL);
    CHECK(wait_for(&r[4].called, 1));
    CHECK(r[4].st == TOKEN_MISCONFIGURED);
    acct_init(&e, "cmd-garbage", NULL);
    e.flow = CONFIG_FLOW_COMMAND;
    e.token_command = (char *)"echo 'two words'";
    CHECK(token_get(tm, &e, 0, NULL, result_cb, &r[5]) != NULL);
    CHECK(wait_for(&r[5].called, 1));
    CHECK(r[5].st == TOKEN_TEMPFAIL);

    /* A hanging command is killed at token_timeout (1 s here), with its children. */
    acct_init(&f, "cmd-hang", NULL);
    f.flow = CONFIG_FLOW_COMMAND;
    f.token_command = (char *)"sleep 30; echo late";
    uv_update_time(&loop);
    t0 = uv_now(&loop);
    CHECK(token_get(tm, &f, 0, NULL, result_cb, &r[6]) != NULL);
    CHECK(wait_for(&r[6].called, 1));
    uv_update_time(&loop);
    CHECK(r[6].st == TOKEN_TEMPFAIL);
    CHECK(uv_now(&loop) - t0 >= 900 && uv_now(&loop) - t0 < 5000);
    CHECK(srv.requests == req0);

    /* Freed while a command runs: no callback, and the loop still closes cleanly. */
    struct config_account g;
    acct_init(&g, "cmd-inflight", NULL);
    g.flow = CONFIG_FLOW_COMMAND;
    g.token_command = (char *)"sleep 30";
    CHECK(token_get(tm, &g, 0, NULL, result_cb, &r[7]) != NULL);
    run_for(100);
    token_manager_free(tm);
    run_for(300);
    CHECK(r[7].called == 0);
}

static void test_unlock(void)
{
    struct token_manager *tm = manager_new(&cfg);
    struct config_account a;
    struct result r1 = {0}, r2 = {0}, r3 = {0};
    char *hash = localauth_hash("local pw", 8);
    struct token_store_key k;
    int req0 = srv.requests;

    CHECK(hash != NULL);
    acct_init(&a, "locked", "SEED~locked");
    a.local_user = (char *)"locked";
    a.local_password = hash;
    /* Nobody logged in with the password yet: the store cannot be opened. */
    CHECK(token_get(tm, &a, 0, NULL, result_cb, &r1) == NULL);
    CHECK(r1.st == TOKEN_TEMPFAIL);
    CHECK(srv.requests == req0);
    /* After a verified login: the key is derived on the pool, the get waits for it. */
    token_unlock(tm, &a, "local pw", 8);
    token_unlock(tm, &a, "local pw", 8); /* a second call is free */
    CHECK(token_get(tm, &a, 0, NULL, result_cb, &r2) != NULL);
    CHECK(wait_for(&r2.called, 1));
    CHECK(r2.st == TOKEN_OK && srv.requests == req0 + 1);
    /* The rotated token is encrypted under the password: the key file does not open it. */
    CHECK(token_store_key_derive("locked", hash, "local pw", 8, &k) == 0);
    char *out = NULL;
    CHECK(token_store_load(state_dir, "locked", &k, &out, NULL) == TOKEN_STORE_FOUND);
    CHECK(out != NULL && strncmp(out, "RT~", 3) == 0);
    free(out);
    out = NULL;
    CHECK(token_store_load(state_dir, "locked", &file_key, &out, NULL) == TOKEN_STORE_UNUSABLE);
    token_manager_free(tm);

    /* A restarted manager (daemon) needs the password again, then reads the stored token. */
    tm = manager_new(&cfg);
    token_unlock(tm, &a, "local pw", 8);
    CHECK(token_get(tm, &a, 0, NULL, result_cb, &r3) != NULL);
    CHECK(wait_for(&r3.called, 1));
    CHECK(r3.st == TOKEN_OK && strcmp(srv.last_rt, "SEED~locked") != 0);
    CHECK(strncmp(srv.last_rt, "RT~", 3) == 0);
    token_manager_free(tm);
    free(hash);
}

static void test_unusable_and_plain(void)
{
    struct token_manager *tm = manager_new(&cfg);
    struct config_account a, b;
    struct result r1 = {0}, r2 = {0};
    char path[600];
    int req0 = srv.requests;

    /* A damaged file: reported, never overwritten, the seed is not used, no request. */
    acct_init(&a, "damaged", "SEED~damaged");
    snprintf(path, sizeof path, "%s/damaged.refresh", state_dir);
    FILE *f = fopen(path, "w");
    fputs(TOKEN_STORE_MAGIC "\nkdf=keyfile\nAAAA", f);
    fclose(f);
    CHECK(token_get(tm, &a, 0, NULL, result_cb, &r1) != NULL);
    CHECK(wait_for(&r1.called, 1));
    CHECK(r1.st == TOKEN_NEEDS_SIGNIN && srv.requests == req0);
    f = fopen(path, "r");
    char buf[256] = "";
    CHECK(f != NULL && fread(buf, 1, sizeof buf - 1, f) > 0);
    fclose(f);
    CHECK(strcmp(buf, TOKEN_STORE_MAGIC "\nkdf=keyfile\nAAAA") == 0);

    /* An old plain file is used, and written again encrypted. */
    acct_init(&b, "plain", NULL);
    srv_valid_add("PLAIN~token");
    snprintf(path, sizeof path, "%s/plain.refresh", state_dir);
    f = fopen(path, "w");
    fputs(TOKEN_STORE_MAGIC_PLAIN "\nPLAIN~token\n", f);
    fclose(f);
    CHECK(token_get(tm, &b, 0, NULL, result_cb, &r2) != NULL);
    CHECK(wait_for(&r2.called, 1));
    CHECK(r2.st == TOKEN_OK && strcmp(srv.last_rt, "PLAIN~token") == 0);
    struct token_store_info info;
    CHECK(token_store_peek(state_dir, "plain", &info) == 2);
    token_manager_free(tm);
}

/* Graph and EWS need tokens for different resources: one access token per (account, scope),
 * one refresh token per account. Two scopes asked for at once make two requests, one after the
 * other, the second with the refresh token the first one rotated. */
static void test_scopes(void)
{
    static const char graph[] = "https://graph.microsoft.com/Mail.Send offline_access";
    static const char ews[] = "https://outlook.office365.com/EWS.AccessAsUser.All offline_access";
    struct token_manager *tm = manager_new(&cfg);
    struct config_account a;
    struct result r[8];
    int req0 = srv.requests;

    memset(r, 0, sizeof r);
    acct_init(&a, "scopes", "SEED~scopes");
    CHECK(token_get_scope(tm, &a, graph, 0, NULL, result_cb, &r[0]) != NULL);
    CHECK(token_get_scope(tm, &a, ews, 0, NULL, result_cb, &r[1]) != NULL);
    CHECK(token_get_scope(tm, &a, graph, 0, NULL, result_cb, &r[2]) != NULL); /* joins */
    CHECK(wait_for(&r[1].called, 1) && r[0].called == 1 && r[2].called == 1);
    CHECK(r[0].st == TOKEN_OK && r[1].st == TOKEN_OK && r[2].st == TOKEN_OK);
    CHECK(srv.requests == req0 + 2);
    CHECK(strcmp(srv.scope_log[req0 % 8], graph) == 0);
    CHECK(strcmp(srv.rt_log[req0 % 8], "SEED~scopes") == 0);
    CHECK(strcmp(srv.scope_log[(req0 + 1) % 8], ews) == 0);
    char *rt1 = stored(state_dir, "scopes");
    /* the second request used the refresh token the first one rotated (the seed is dead) */
    CHECK(strncmp(srv.rt_log[(req0 + 1) % 8], "RT~", 3) == 0);
    CHECK(strcmp(r[0].tok, r[2].tok) == 0 && strcmp(r[0].tok, r[1].tok) != 0);
    /* ...and the store holds the one the second rotated */
    CHECK(rt1 != NULL && strcmp(rt1, srv.rt_log[(req0 + 1) % 8]) != 0);
    free(rt1);

    /* each scope has its own cached token */
    CHECK(token_get_scope(tm, &a, graph, 0, NULL, result_cb, &r[3]) == NULL);
    CHECK(token_get_scope(tm, &a, ews, 0, NULL, result_cb, &r[4]) == NULL);
    CHECK(strcmp(r[3].tok, r[0].tok) == 0 && strcmp(r[4].tok, r[1].tok) == 0);
    CHECK(srv.requests == req0 + 2);

    /* FORCE_REFRESH renews one scope only */
    CHECK(token_get_scope(tm, &a, ews, TOKEN_FORCE_REFRESH, NULL, result_cb, &r[5]) != NULL);
    CHECK(wait_for(&r[5].called, 1) && r[5].st == TOKEN_OK);
    CHECK(srv.requests == req0 + 3 && strcmp(srv.last_scope, ews) == 0);
    CHECK(strcmp(r[5].tok, r[1].tok) != 0);
    CHECK(token_get_scope(tm, &a, graph, 0, NULL, result_cb, &r[6]) == NULL);
    CHECK(strcmp(r[6].tok, r[0].tok) == 0);

    /* token_get is the account's scope: a third one */
    CHECK(token_get(tm, &a, 0, NULL, result_cb, &r[7]) != NULL);
    CHECK(wait_for(&r[7].called, 1) && r[7].st == TOKEN_OK);
    CHECK(srv.requests == req0 + 4 && strcmp(srv.last_scope, a.scope) == 0);
    token_manager_free(tm);
    run_for(50);
}

static void test_backoff(void)
{
    struct token_manager *tm = manager_new(&cfg);
    struct config_account a, b;
    struct result r[6];
    int req0 = srv.requests;

    memset(r, 0, sizeof r);
    /* 429 with Retry-After: 1: the next attempt waits exactly that long, not the 5 s default. */
    acct_init(&a, "ratelimited", "SEED~ratelimited");
    srv.mode = SRV_429;
    srv.retry_after = 1;
    CHECK(token_get(tm, &a, 0, NULL, result_cb, &r[0]) != NULL);
    CHECK(wait_for(&r[0].called, 1));
    CHECK(r[0].st == TOKEN_TEMPFAIL && srv.requests == req0 + 1);
    clock_advance(500);
    CHECK(token_get(tm, &a, 0, NULL, result_cb, &r[1]) == NULL); /* still in the window */
    CHECK(r[1].st == TOKEN_TEMPFAIL && srv.requests == req0 + 1);
    clock_advance(700);
    srv.mode = SRV_OK;
    CHECK(token_get(tm, &a, 0, NULL, result_cb, &r[2]) != NULL);
    CHECK(wait_for(&r[2].called, 1));
    CHECK(r[2].st == TOKEN_OK && srv.requests == req0 + 2);

    /* 500s in a row: 5 s, then 10 s between attempts. */
    acct_init(&b, "flaky", "SEED~flaky");
    srv.mode = SRV_500;
    CHECK(token_get(tm, &b, 0, NULL, result_cb, &r[3]) != NULL);
    CHECK(wait_for(&r[3].called, 1));
    CHECK(srv.requests == req0 + 3);
    clock_advance(5100);
    CHECK(token_get(tm, &b, 0, NULL, result_cb, &r[4]) != NULL);
    CHECK(wait_for(&r[4].called, 1));
    CHECK(r[4].st == TOKEN_TEMPFAIL && srv.requests == req0 + 4);
    clock_advance(5100);
    CHECK(token_get(tm, &b, 0, NULL, result_cb, &r[5]) == NULL); /* 10 s window now */
    CHECK(r[5].st == TOKEN_TEMPFAIL && srv.requests == req0 + 4);
    srv.mode = SRV_OK;
    token_manager_free(tm);
}

static void test_reload_rekey(void)
{
    struct config c1 = cfg, c2 = cfg;
    struct config_account a1[1], a2[1];
    struct result r[4];
    char *h1 = localauth_hash("old pw", 6), *h2 = localauth_hash("new pw", 6);
    struct token_store_key k1, k2;
    char *out = NULL;

    memset(r, 0, sizeof r);
    CHECK(h1 != NULL && h2 != NULL);
    acct_init(&a1[0], "rekey", "SEED~rekey");
    a1[0].local_user = (char *)"rekey";
    a1[0].local_password = h1;
    a2[0] = a1[0];
    a2[0].local_password = h2;
    c1.accounts = a1;
    c1.n_accounts = 1;
    c2.accounts = a2;
    c2.n_accounts = 1;
    struct token_manager *tm = manager_new(&c1);
    token_unlock(tm, &a1[0], "old pw", 6);
    CHECK(token_get(tm, &a1[0], 0, NULL, result_cb, &r[0]) != NULL);
    CHECK(wait_for(&r[0].called, 1));
    CHECK(r[0].st == TOKEN_OK);
    CHECK(token_store_key_derive("rekey", h1, "old pw", 6, &k1) == 0);
    CHECK(token_store_load(state_dir, "rekey", &k1, &out, NULL) == TOKEN_STORE_FOUND);
    free(out);
    out = NULL;

    /* A reload changed the local password: the old key is forgotten, the cached token stays. */
    token_manager_set_config(tm, &c2);
    CHECK(token_get(tm, &a2[0], 0, NULL, result_cb, &r[1]) == NULL);
    CHECK(r[1].st == TOKEN_OK);
    /* A refresh now needs the new key first (a rotated token must be saveable). */
    CHECK(token_get(tm, &a2[0], TOKEN_FORCE_REFRESH, NULL, result_cb, &r[2]) == NULL);
    CHECK(r[2].st == TOKEN_TEMPFAIL);
    token_unlock(tm, &a2[0], "new pw", 6);
    CHECK(token_get(tm, &a2[0], TOKEN_FORCE_REFRESH, NULL, result_cb, &r[3]) != NULL);
    CHECK(wait_for(&r[3].called, 1));
    CHECK(r[3].st == TOKEN_OK);
    /* Saved under the new password; the file under the old one was kept aside. */
    CHECK(token_store_key_derive("rekey", h2, "new pw", 6, &k2) == 0);
    CHECK(token_store_load(state_dir, "rekey", &k2, &out, NULL) == TOKEN_STORE_FOUND);
    CHECK(out != NULL && strcmp(out, srv.last_rt) != 0 && strncmp(out, "RT~", 3) == 0);
    free(out);
    int aside = 0;
    DIR *d = opendir(state_dir);
    struct dirent *de;
    while (d != NULL && (de = readdir(d)) != NULL)
        aside += strncmp(de->d_name, "rekey.refresh.corrupt-", 22) == 0;
    if (d != NULL)
        closedir(d);
    CHECK(aside == 1);
    token_manager_free(tm);
    free(h1);
    free(h2);
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
            strstr(line, "s3cr3t") != NULL || strstr(line, "CC~") != NULL ||
            strstr(line, "PW~") != NULL || strstr(line, "CMD~") != NULL ||
            strstr(line, "PLAIN~") != NULL || strstr(line, "app-secret") != NULL ||
            strstr(line, "mailbox pw") != NULL || strstr(line, "local pw") != NULL ||
            strstr(line, "old pw") != NULL || strstr(line, "new pw") != NULL ||
            strstr(line, "eyJ") != NULL)
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

    struct token_manager *tm = manager_new(&cfg);
    CHECK(tm != NULL);
    test_first_get_and_cache(tm);
    test_concurrent(tm);
    test_cancel(tm);
    test_rejected_single_flight(tm);
    test_force_refresh(tm);
    test_expiry(tm);
    token_manager_free(tm);
    test_restart();
    test_500(manager_new(&cfg));
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
    test_client_credentials();
    test_password_grant();
    test_command();
    test_unlock();
    test_unusable_and_plain();
    test_reload_rekey();
    test_backoff();
    test_scopes();

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
