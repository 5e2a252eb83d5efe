/* token_auth_code: flow = authorization_code with PKCE (RFC 6749 section 4.1, RFC 7636, and
 * RFC 8252 for native apps), the first sign-in for Gmail and for Microsoft tenants that prefer
 * a browser. `xoauthd auth ACCOUNT` prints the authorize URL; the human signs in; the browser
 * is redirected to a loopback address where xoauthd listens for exactly that one request; the
 * code in it is exchanged for tokens. The refresh token goes to the token store, and the daemon
 * renews it from then on like flow = refresh_token.
 *
 * Guards: state is 32 random bytes and must come back unchanged (a redirect with another state
 * is answered 400 and ignored: it was not started here); the code is bound to a code_verifier
 * only this process knows (S256), so a code seen by another local program is useless to it; the
 * listener binds a loopback address only and stops after the first valid redirect.
 *
 * Redirect URI: the account's redirect_uri when set, else http://127.0.0.1:PORT/ (Google's
 * "loopback IP address" for desktop clients) or http://localhost:PORT/ for Microsoft, whose
 * app registrations list "http://localhost" and accept any port on it. PORT is a free one
 * unless redirect_uri names it. For localhost the listener also binds [::1] on the same port
 * when it can, since a browser may try IPv6 first.
 *
 * Paste mode is for a machine without a browser: the human opens the URL elsewhere, the browser
 * ends on an address that does not load (nothing listens there), and they paste that address. */
#include "token_grant.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include "base64.h"
#include "log.h"
#include "netaddr.h"

#define TOKEN_AC_DEFAULT_TIMEOUT_S 300u
#define TOKEN_AC_MAX_REQUEST 8192u

struct token_ac;

struct token_ac_conn {
    uv_tcp_t tcp;
    struct token_ac *ac;
    char buf[TOKEN_AC_MAX_REQUEST + 1];
    size_t len;
    int answered;
    LIST_ENTRY(token_ac_conn) link; /* in ac->conns until it closes */
};

struct token_ac_write {
    uv_write_t req;
    struct token_ac_conn *c;
    char data[];
};

struct token_ac {
    struct token_signin base; /* first; its timer gives up on the browser */
    uv_tcp_t listen4, listen6;
    int listening4, listening6;
    LIST_HEAD(, token_ac_conn) conns;
    int open_handles; /* timer, listeners, connections */
    char verifier[TOKEN_PKCE_LEN + 1];
    char *state;
    char *redirect_uri;
    int done;     /* cb called or cancelled */
    int exchanging;
    int freeing;
};

/* ---- PKCE (RFC 7636 section 4) ---- */

int token_pkce_verifier(char out[TOKEN_PKCE_LEN + 1])
{
    char *v = token_random_b64url(32);
    if (v == NULL || strlen(v) != TOKEN_PKCE_LEN) {
        free(v);
        return -1;
    }
    memcpy(out, v, TOKEN_PKCE_LEN + 1);
    OPENSSL_cleanse(v, TOKEN_PKCE_LEN);
    free(v);
    return 0;
}

int token_pkce_challenge(const char *verifier, char out[TOKEN_PKCE_LEN + 1])
{
    unsigned char d[32];
    unsigned int n = 0;
    char *c;
    if (verifier == NULL ||
        EVP_Digest(verifier, strlen(verifier), d, &n, EVP_sha256(), NULL) != 1 || n != 32)
        return -1;
    c = base64_encode(d, n, BASE64_URL | BASE64_NOPAD);
    if (c == NULL || strlen(c) != TOKEN_PKCE_LEN) {
        free(c);
        return -1;
    }
    memcpy(out, c, TOKEN_PKCE_LEN + 1);
    free(c);
    return 0;
}

/* ---- redirect parsing ---- */

static int token_ac_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* application/x-www-form-urlencoded component decoding into a malloc'ed string. */
static char *token_ac_decode(const char *s, size_t len)
{
    char *out = malloc(len + 1), *o = out;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '+') {
            *o++ = ' ';
        } else if (s[i] == '%' && i + 2 < len && token_ac_hex(s[i + 1]) >= 0 &&
                   token_ac_hex(s[i + 2]) >= 0) {
            *o++ = (char)(token_ac_hex(s[i + 1]) * 16 + token_ac_hex(s[i + 2]));
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    /* A NUL from %00 would cut the value short: refuse it. */
    if (strlen(out) != (size_t)(o - out)) {
        free(out);
        return NULL;
    }
    return out;
}

int token_auth_code_parse_redirect(const char *url, char **code, char **state, char **error)
{
    const char *q, *end;
    *code = *state = *error = NULL;
    if (url == NULL)
        return -1;
    while (*url == ' ' || *url == '\t')
        url++;
    q = strchr(url, '?');
    q = q != NULL ? q + 1 : url; /* a bare query string is fine too */
    end = q + strcspn(q, "# \t\r\n");
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *stop = amp != NULL ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(stop - q));
        if (eq != NULL) {
            size_t klen = (size_t)(eq - q);
            char **dst = NULL;
            if (klen == 4 && memcmp(q, "code", 4) == 0)
                dst = code;
            else if (klen == 5 && memcmp(q, "state", 5) == 0)
                dst = state;
            else if (klen == 5 && memcmp(q, "error", 5) == 0)
                dst = error;
            if (dst != NULL && *dst == NULL)
                *dst = token_ac_decode(eq + 1, (size_t)(stop - eq - 1));
        }
        q = stop + (stop < end ? 1 : 0);
    }
    if (*code == NULL && *error == NULL) {
        free(*state);
        *state = NULL;
        return -1;
    }
    return 0;
}

static void token_ac_free_secret(char **p)
{
    if (*p != NULL) {
        OPENSSL_cleanse(*p, strlen(*p));
        free(*p);
        *p = NULL;
    }
}

/* ---- life cycle ---- */

static void token_ac_maybe_free(struct token_ac *ac)
{
    if (!ac->freeing || ac->open_handles > 0)
        return;
    OPENSSL_cleanse(ac->verifier, sizeof ac->verifier);
    token_ac_free_secret(&ac->state);
    free(ac->redirect_uri);
    free(ac->base.token_url);
    free(ac);
}

static void token_ac_handle_closed_cb(uv_handle_t *h)
{
    struct token_ac *ac = h->data;
    ac->open_handles--;
    token_ac_maybe_free(ac);
}

static void token_ac_conn_closed_cb(uv_handle_t *h)
{
    struct token_ac_conn *c = h->data;
    struct token_ac *ac = c->ac;
    OPENSSL_cleanse(c->buf, sizeof c->buf);
    free(c);
    ac->open_handles--;
    token_ac_maybe_free(ac);
}

static void token_ac_conn_close(struct token_ac_conn *c)
{
    if (uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    LIST_REMOVE(c, link);
    uv_close((uv_handle_t *)&c->tcp, token_ac_conn_closed_cb);
}

static void token_ac_stop_listening(struct token_ac *ac)
{
    if (ac->listening4) {
        ac->listening4 = 0;
        uv_close((uv_handle_t *)&ac->listen4, token_ac_handle_closed_cb);
    }
    if (ac->listening6) {
        ac->listening6 = 0;
        uv_close((uv_handle_t *)&ac->listen6, token_ac_handle_closed_cb);
    }
}

static void token_ac_cancel(struct token_signin *s)
{
    struct token_ac *ac = (struct token_ac *)s;
    if (ac->freeing)
        return;
    ac->done = 1;
    ac->freeing = 1;
    ac->base.cb = NULL;
    if (ac->base.req != NULL) {
        http_request_cancel(ac->base.req);
        ac->base.req = NULL;
    }
    token_ac_stop_listening(ac);
    /* A connection being answered closes from its write callback, so the browser still gets
     * the page; the state is freed once every handle is closed. */
    struct token_ac_conn *c = LIST_FIRST(&ac->conns), *next;
    for (; c != NULL; c = next) {
        next = LIST_NEXT(c, link);
        if (!c->answered)
            token_ac_conn_close(c);
    }
    uv_close((uv_handle_t *)&ac->base.timer, token_ac_handle_closed_cb);
    token_ac_maybe_free(ac);
}

static void token_ac_end(struct token_ac *ac, enum token_status st, struct token_response *r,
                         const char *reason)
{
    token_signin_end(&ac->base, st, r, reason);
}

/* ---- the code exchange ---- */

static void token_ac_exchange_done_cb(void *arg, const struct http_response *resp)
{
    struct token_ac *ac = arg;
    struct token_response r;
    char reason[512];

    ac->base.req = NULL;
    token_response_from_http(resp, &r);
    if (r.status == TOKEN_OK) {
        token_ac_end(ac, TOKEN_OK, &r, NULL);
        token_response_clear(&r);
        return;
    }
    token_signin_reason(reason, sizeof reason, "the code exchange failed: ", &r);
    enum token_status st = r.status;
    token_response_clear(&r);
    token_ac_end(ac, st, NULL, reason);
}

static void token_ac_exchange(struct token_ac *ac, const char *code)
{
    struct token_form form;
    int rc;

    ac->exchanging = 1;
    token_form_init(&form);
    token_form_add(&form, "grant_type", "authorization_code");
    token_form_add(&form, "client_id", ac->base.acct->client_id);
    if (ac->base.acct->client_secret != NULL && ac->base.acct->client_secret[0] != '\0')
        token_form_add(&form, "client_secret", ac->base.acct->client_secret);
    token_form_add(&form, "code", code);
    token_form_add(&form, "redirect_uri", ac->redirect_uri);
    token_form_add(&form, "code_verifier", ac->verifier);
    if (ac->base.acct->scope != NULL && ac->base.acct->scope[0] != '\0')
        token_form_add(&form, "scope", ac->base.acct->scope);
    rc = token_signin_post(&ac->base, ac->base.token_url, &form, token_ac_exchange_done_cb);
    token_form_free(&form);
    if (rc != 0)
        token_ac_end(ac, TOKEN_MISCONFIGURED, NULL,
                     "the token request could not start (token_url must be https://, or "
                     "http:// to a loopback address)");
}

enum token_ac_action { TOKEN_AC_IGNORE, TOKEN_AC_EXCHANGE, TOKEN_AC_REFUSED };

/* Looks at a redirect (from the listener or pasted). Returns what to do; *page is the text for
 * the browser, *status its HTTP status; for EXCHANGE *code is the code (malloc'ed), for REFUSED
 * reason says why. Acting is left to the caller, so that the browser gets its answer first. */
static enum token_ac_action token_ac_redirect(struct token_ac *ac, const char *url, int *status,
                                             const char **page, char **code, char *reason,
                                             size_t reasonsz)
{
    char *state = NULL, *error = NULL;
    enum token_ac_action act = TOKEN_AC_IGNORE;

    *code = NULL;
    *status = 400;
    *page = "This is not a sign-in answer xoauthd is waiting for.";
    if (ac->done || ac->exchanging) {
        *status = 200;
        *page = "The sign-in was already handled; you can close this window.";
        return TOKEN_AC_IGNORE;
    }
    if (token_auth_code_parse_redirect(url, code, &state, &error) != 0)
        goto done;
    if (state == NULL || strlen(state) != strlen(ac->state) ||
        CRYPTO_memcmp(state, ac->state, strlen(ac->state)) != 0) {
        fprintf(ac->base.out, "(ignored a redirect with a wrong state: it was not started by "
                              "this sign-in)\n");
        fflush(ac->base.out);
        *page = "The state does not match the sign-in xoauthd started; ignored.";
        token_ac_free_secret(code);
        goto done;
    }
    *status = 200;
    if (error != NULL) {
        char clean[96];
        token_response_sanitize(clean, sizeof clean, error, strlen(error));
        snprintf(reason, reasonsz, "the provider refused the sign-in (%s)", clean);
        *page = "The sign-in was refused; see the terminal.";
        token_ac_free_secret(code);
        act = TOKEN_AC_REFUSED;
        goto done;
    }
    *page = "Signed in. xoauthd has the code; you can close this window.";
    act = TOKEN_AC_EXCHANGE;
done:
    token_ac_free_secret(&state);
    free(error);
    return act;
}

static void token_ac_act(struct token_ac *ac, enum token_ac_action act, char **code,
                         const char *reason)
{
    if (act == TOKEN_AC_IGNORE)
        return;
    token_ac_stop_listening(ac);
    if (act == TOKEN_AC_REFUSED)
        token_ac_end(ac, TOKEN_NEEDS_SIGNIN, NULL, reason);
    else
        token_ac_exchange(ac, *code);
    token_ac_free_secret(code);
}

/* ---- the loopback listener ---- */

static void token_ac_write_cb(uv_write_t *req, int status)
{
    struct token_ac_write *w = (struct token_ac_write *)req;
    (void)status;
    token_ac_conn_close(w->c);
    free(w);
}

static void token_ac_respond(struct token_ac_conn *c, int status, const char *page)
{
    size_t cap = strlen(page) + 512;
    struct token_ac_write *w = malloc(sizeof *w + cap);
    int n;
    c->answered = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (w == NULL) {
        token_ac_conn_close(c);
        return;
    }
    w->c = c;
    static const char head[] = "<!doctype html><title>xoauthd</title><p>", tail[] = "</p>\n";
    n = snprintf(w->data, cap,
                 "HTTP/1.1 %d %s\r\nContent-Type: text/html; charset=utf-8\r\n"
                 "Cache-Control: no-store\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n"
                 "%s%s%s",
                 status, status == 200 ? "OK" : status == 404 ? "Not Found" : "Bad Request",
                 sizeof head - 1 + strlen(page) + sizeof tail - 1, head, page, tail);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, token_ac_write_cb) != 0) {
        free(w);
        token_ac_conn_close(c);
    }
}

static void token_ac_request(struct token_ac_conn *c)
{
    struct token_ac *ac = c->ac;
    char method[8], target[TOKEN_AC_MAX_REQUEST], reason[200] = "";
    const char *page;
    char *code = NULL;
    int status;
    char *sp1, *sp2;
    enum token_ac_action act;

    c->buf[c->len] = '\0';
    sp1 = strchr(c->buf, ' ');
    sp2 = sp1 != NULL ? strchr(sp1 + 1, ' ') : NULL;
    if (sp1 == NULL || sp2 == NULL || (size_t)(sp1 - c->buf) >= sizeof method) {
        token_ac_respond(c, 400, "Bad request.");
        return;
    }
    memcpy(method, c->buf, (size_t)(sp1 - c->buf));
    method[sp1 - c->buf] = '\0';
    memcpy(target, sp1 + 1, (size_t)(sp2 - sp1 - 1));
    target[sp2 - sp1 - 1] = '\0';
    if (strcmp(method, "GET") != 0 || strchr(target, '?') == NULL) {
        /* favicon.ico and friends */
        token_ac_respond(c, 404, "Not found.");
        return;
    }
    act = token_ac_redirect(ac, target, &status, &page, &code, reason, sizeof reason);
    OPENSSL_cleanse(target, sizeof target);
    token_ac_respond(c, status, page);
    token_ac_act(ac, act, &code, reason);
}

static void token_ac_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct token_ac_conn *c = h->data;
    (void)suggested;
    *b = uv_buf_init(c->buf + c->len, (unsigned)(TOKEN_AC_MAX_REQUEST - c->len));
}

static void token_ac_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct token_ac_conn *c = s->data;
    (void)b;
    if (n < 0) {
        token_ac_conn_close(c);
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    if (strstr(c->buf, "\r\n\r\n") != NULL || strstr(c->buf, "\n\n") != NULL) {
        token_ac_request(c);
        return;
    }
    if (c->len >= TOKEN_AC_MAX_REQUEST)
        token_ac_respond(c, 400, "Request too large.");
}

static void token_ac_connection_cb(uv_stream_t *server, int status)
{
    struct token_ac *ac = server->data;
    struct token_ac_conn *c;
    if (status != 0 || ac->freeing)
        return;
    c = calloc(1, sizeof *c);
    if (c == NULL)
        return;
    c->ac = ac;
    if (uv_tcp_init(ac->base.loop, &c->tcp) != 0) {
        free(c);
        return;
    }
    c->tcp.data = c;
    ac->open_handles++;
    LIST_INSERT_HEAD(&ac->conns, c, link);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, token_ac_alloc_cb, token_ac_read_cb) != 0)
        token_ac_conn_close(c);
}

static void token_ac_timer_cb(uv_timer_t *t)
{
    struct token_ac *ac = t->data;
    if (ac->exchanging)
        return; /* the exchange has its own timeout */
    token_ac_end(ac, TOKEN_NEEDS_SIGNIN, NULL,
                 "no sign-in arrived in time: run `xoauthd auth` again");
}

/* Parses a loopback http redirect URI: host (without brackets), port (0 = none given) and
 * the path with its query. */
static int token_ac_parse_redirect_uri(const char *uri, struct http_url *u)
{
    if (http_url_split(uri, u) != 0)
        return -1;
    if (strcmp(u->scheme, "http") != 0 || u->has_userinfo) {
        http_url_clear(u);
        return -1;
    }
    return 0;
}

static int token_ac_listen(struct token_ac *ac, const char *host, int port, int *bound_port)
{
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    const char *v4 = strcmp(host, "localhost") == 0 || strchr(host, ':') != NULL
                         ? "127.0.0.1" : host;

    if (strchr(host, ':') == NULL) {
        if (uv_tcp_init(ac->base.loop, &ac->listen4) != 0)
            return -1;
        ac->listen4.data = ac;
        ac->open_handles++;
        ac->listening4 = 1;
        if (uv_ip4_addr(v4, port, &a4) != 0 ||
            uv_tcp_bind(&ac->listen4, (const struct sockaddr *)&a4, 0) != 0 ||
            uv_listen((uv_stream_t *)&ac->listen4, 8, token_ac_connection_cb) != 0 ||
            uv_tcp_getsockname(&ac->listen4, (struct sockaddr *)&ss, &len) != 0)
            return -1;
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    if (strcmp(host, "localhost") == 0 || strchr(host, ':') != NULL) {
        if (uv_tcp_init(ac->base.loop, &ac->listen6) != 0)
            return -1;
        ac->listen6.data = ac;
        ac->open_handles++;
        ac->listening6 = 1;
        int ok = uv_ip6_addr("::1", port, &a6) == 0 &&
                 uv_tcp_bind(&ac->listen6, (const struct sockaddr *)&a6, UV_TCP_IPV6ONLY) == 0 &&
                 uv_listen((uv_stream_t *)&ac->listen6, 8, token_ac_connection_cb) == 0;
        if (ok && port == 0) {
            len = sizeof ss;
            if (uv_tcp_getsockname(&ac->listen6, (struct sockaddr *)&ss, &len) == 0)
                port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        }
        if (!ok) {
            /* No IPv6 loopback here: 127.0.0.1 alone has to do (unless it was the only one). */
            ac->listening6 = 0;
            uv_close((uv_handle_t *)&ac->listen6, token_ac_handle_closed_cb);
            if (!ac->listening4)
                return -1;
        }
    }
    *bound_port = port;
    return 0;
}

static char *token_ac_build_url(struct token_ac *ac, const char *authorize, const char *challenge)
{
    const struct config_account *a = ac->base.acct;
    const char *sep = strchr(authorize, '?') != NULL ? "&" : "?";
    int google = (a->provider != NULL && strcmp(a->provider->name, "google") == 0) ||
                 strstr(authorize, "accounts.google.com") != NULL;
    const char *names[] = {"client_id", "response_type", "redirect_uri", "scope", "state",
                           "code_challenge", "code_challenge_method", "login_hint",
                           /* Google hands out a refresh token only when asked for offline
                            * access, and again only with a fresh consent. */
                           google ? "access_type" : NULL, google ? "prompt" : NULL};
    const char *values[] = {a->client_id, "code", ac->redirect_uri, a->scope, ac->state,
                            challenge, "S256", a->username, "offline", "consent"};
    struct token_form q;
    const char *qs;
    char *url = NULL;

    token_form_init(&q);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i] != NULL)
            token_form_add(&q, names[i], values[i]);
    qs = token_form_finish(&q);
    if (qs != NULL) {
        size_t n = strlen(authorize) + 1 + strlen(qs) + 1;
        url = malloc(n);
        if (url != NULL)
            snprintf(url, n, "%s%s%s", authorize, sep, qs);
    }
    token_form_free(&q);
    return url;
}

struct token_signin *token_signin_auth_code(const struct token_signin_opts *o,
                                            token_signin_cb cb, void *arg)
{
    const struct config_account *acct = o->acct;
    struct token_ac *ac;
    char challenge[TOKEN_PKCE_LEN + 1], *authorize = NULL, *url = NULL;
    struct http_url ru = {0};
    const char *host = ru.host, *path;
    int port, bound = 0;
    int ms = acct->provider != NULL && strcmp(acct->provider->name, "microsoft") == 0;

    ac = token_signin_new(sizeof *ac, o, "authorize_url",
                          acct->provider != NULL ? acct->provider->authorize_url : NULL, "",
                          token_ac_cancel, cb, arg);
    if (ac == NULL)
        return NULL;
    ac->open_handles = 1; /* the timer */

    const char *ruri = acct->redirect_uri != NULL ? acct->redirect_uri
                       : ms ? "http://localhost/" : "http://127.0.0.1/";
    if (token_ac_parse_redirect_uri(ruri, &ru) != 0 || !netaddr_host_is_loopback(host)) {
        fprintf(o->out, "xoauthd: redirect_uri must be http:// to a loopback address\n");
        goto fail;
    }
    port = ru.port;
    path = ru.path_query;
    if (token_pkce_verifier(ac->verifier) != 0 ||
        token_pkce_challenge(ac->verifier, challenge) != 0 ||
        (ac->state = token_random_b64url(32)) == NULL) {
        fprintf(o->out, "xoauthd: no randomness (OpenSSL)\n");
        goto fail;
    }
    if (!o->paste) {
        if (token_ac_listen(ac, host, port, &bound) != 0) {
            fprintf(o->out, "xoauthd: cannot listen on %s port %d for the browser's redirect "
                            "(in use?); try --paste\n", host, port);
            goto fail;
        }
    } else {
        bound = port;
    }
    {
        size_t n = strlen(host) + strlen(path) + 32;
        ac->redirect_uri = malloc(n);
        if (ac->redirect_uri == NULL)
            goto fail;
        if (strchr(host, ':') != NULL)
            snprintf(ac->redirect_uri, n, "http://[%s]%s%d%s", host, bound ? ":" : "", bound,
                     path);
        else if (bound != 0)
            snprintf(ac->redirect_uri, n, "http://%s:%d%s", host, bound, path);
        else
            snprintf(ac->redirect_uri, n, "http://%s%s", host, path);
    }
    authorize = config_account_url(acct, acct->provider->authorize_url);
    if (ac->base.token_url == NULL || authorize == NULL ||
        (url = token_ac_build_url(ac, authorize, challenge)) == NULL) {
        fprintf(o->out, "xoauthd: provider %s needs token_url and authorize_url\n",
                acct->provider->name);
        goto fail;
    }
    fprintf(o->out,
            "To sign in account %s (%s), open this address in a browser and sign in as %s:\n"
            "  Open: %s\n",
            acct->name, acct->username != NULL ? acct->username : "-",
            acct->username != NULL ? acct->username : "the mailbox's user", url);
    if (o->paste)
        fprintf(o->out,
                "The browser is then sent to %s..., which will not load on a machine without "
                "xoauthd.\nCopy that whole address from the browser's address bar and paste it "
                "here:\n", ac->redirect_uri);
    else
        fprintf(o->out, "Waiting for the browser on %s (up to %u minutes)...\n", ac->redirect_uri,
                ((o->timeout_s != 0 ? o->timeout_s : TOKEN_AC_DEFAULT_TIMEOUT_S) + 59) / 60);
    fflush(o->out);
    uv_timer_start(&ac->base.timer, token_ac_timer_cb,
                   (uint64_t)(o->timeout_s != 0 ? o->timeout_s : TOKEN_AC_DEFAULT_TIMEOUT_S) *
                       1000u,
                   0);
    free(authorize);
    free(url);
    http_url_clear(&ru);
    return &ac->base;
fail:
    free(authorize);
    free(url);
    http_url_clear(&ru);
    token_ac_cancel(&ac->base);
    return NULL;
}

void token_signin_auth_code_paste(struct token_signin *s, const char *url)
{
    struct token_ac *ac = (struct token_ac *)s;
    const char *page;
    char *code = NULL, reason[200] = "";
    int status;
    enum token_ac_action act;
    if (ac->done)
        return;
    act = url != NULL ? token_ac_redirect(ac, url, &status, &page, &code, reason, sizeof reason)
                      : TOKEN_AC_IGNORE;
    if (act == TOKEN_AC_IGNORE) {
        token_ac_end(ac, TOKEN_NEEDS_SIGNIN, NULL,
                     "the pasted address is not the redirect of this sign-in (it needs code= "
                     "and the same state=)");
        return;
    }
    token_ac_act(ac, act, &code, reason);
}

/* After the sign-in the daemon renews the token like flow = refresh_token. */
const struct token_grant token_grant_auth_code = {
    .name = "authorization_code",
    .uses_refresh_token = 1,
    .build_form = token_refresh_form,
};
