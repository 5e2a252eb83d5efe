#include "listener.h"
#include "conn.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imap_session.h"
#include "log.h"
#include "pop3_session.h"
#include "proxy_accept.h"
#include "server.h"
#include "smtp_session.h"
#include "tls.h"

static void listener_free_if_done(struct listener *l)
{
    if (l->closing == 2 && l->active == 0) {
        free(l->peers);
        free(l);
    }
}

static void listener_closed_cb(uv_handle_t *h)
{
    struct listener *l = h->data;
    if (l->tls != NULL)
        SSL_CTX_free(l->tls);
    l->tls = NULL;
    l->closing = 2;
    listener_free_if_done(l);
}

static void listener_connection_cb(uv_stream_t *stream, int status)
{
    struct listener *l = stream->data;
    if (status != 0) {
        /* EMFILE/ENFILE: libuv keeps a reserved descriptor for this case, closes it, accepts
         * and drops the waiting connections (the client sees a close, not a hang) and takes
         * the descriptor back, so the loop does not spin on a readable listening socket.
         * What is left to us is not to flood the log: one line a second with a count. */
        uint64_t now = uv_now(l->srv->loop);
        if (l->emfile_logged_ms != 0 && now - l->emfile_logged_ms < 1000) {
            l->emfile_suppressed++;
            return;
        }
        log_warn(NULL, "event=accept_failed listener=%s reason=\"%s\" repeated=%u", l->cfg->name,
                 uv_strerror(status), l->emfile_suppressed);
        l->emfile_logged_ms = now;
        l->emfile_suppressed = 0;
        return;
    }
    if (l->closing)
        return;
    if (l->cfg->proxy_protocol) {
        proxy_accept_start(l, stream);
        return;
    }
    listener_start_session(l, stream);
}

void listener_start_session(struct listener *l, uv_stream_t *stream)
{
    int r = -1;
    switch (l->cfg->protocol) {
    case CONFIG_PROTO_SMTP:
        r = smtp_session_accept(l->srv, l, stream);
        break;
    case CONFIG_PROTO_IMAP:
        r = imap_session_accept(l->srv, l, stream);
        break;
    case CONFIG_PROTO_POP3:
        r = pop3_session_accept(l->srv, l, stream);
        break;
    }
    if (r != 0)
        log_warn(NULL, "event=accept_failed listener=%s reason=\"cannot set up session\"",
                 l->cfg->name);
}

static int listener_parse_addr(const struct config_listen *cfg, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (strchr(cfg->host, ':') != NULL)
        return uv_ip6_addr(cfg->host, cfg->port, (struct sockaddr_in6 *)ss);
    return uv_ip4_addr(cfg->host, cfg->port, (struct sockaddr_in *)ss);
}

struct listener *listener_new(struct server *srv, const struct config_listen *cfg)
{
    struct listener *l = calloc(1, sizeof *l);
    if (l == NULL)
        return NULL;
    l->srv = srv;
    l->cfg = cfg;
    if (cfg->tls != CONFIG_TLS_NONE) {
        l->tls = tls_server_ctx_new(cfg->tls_cert, cfg->tls_key, stderr);
        if (l->tls != NULL &&
            tls_server_ctx_set_policy(l->tls, cfg->tls_min_version, cfg->tls_ciphers,
                                      stderr) != 0) {
            SSL_CTX_free(l->tls);
            l->tls = NULL;
        }
        if (l->tls != NULL && cfg->tls_min_version != 0 && cfg->tls_min_version < 12)
            log_warn(NULL, "event=weak_tls listener=%s tls_min_version=1.%d note=\"TLS below "
                     "1.2 is enabled for old clients; prefer 1.2 where the devices allow it\"",
                     cfg->name, cfg->tls_min_version - 10);
        if (l->tls == NULL) {
            fprintf(stderr, "%s:%d: [listen %s]: TLS set-up failed\n", srv->cfg->path,
                    cfg->line, cfg->name);
            free(l);
            return NULL;
        }
    }
    struct sockaddr_storage ss;
    if (listener_parse_addr(cfg, &ss) != 0) {
        fprintf(stderr, "%s:%d: [listen %s]: bad address %s\n", srv->cfg->path, cfg->line,
                cfg->name, cfg->host);
        goto fail_ctx;
    }
    uv_tcp_init(srv->loop, &l->tcp);
    l->tcp.data = l;
    int r = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&ss, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&l->tcp, 511, listener_connection_cb);
    if (r != 0) {
        fprintf(stderr, "%s:%d: [listen %s]: cannot listen on %s port %u: %s\n", srv->cfg->path,
                cfg->line, cfg->name, cfg->host, (unsigned)cfg->port, uv_strerror(r));
        l->closing = 1;
        uv_close((uv_handle_t *)&l->tcp, listener_closed_cb);
        return NULL;
    }
    log_info(NULL, "event=listening listener=%s protocol=%s address=%s port=%u tls=%s",
             cfg->name, config_protocol_name(cfg->protocol), cfg->host, (unsigned)cfg->port,
             cfg->tls == CONFIG_TLS_NONE ? "none"
             : cfg->tls == CONFIG_TLS_STARTTLS ? "starttls" : "implicit");
    return l;
fail_ctx:
    if (l->tls != NULL)
        SSL_CTX_free(l->tls);
    free(l);
    return NULL;
}

int listener_conn_accept(struct listener *l, struct conn *c, uv_stream_t *stream)
{
    if (!l->handoff)
        return conn_accept(c, stream);
    l->handoff = 0;
    if (conn_accept_fd(c, l->handoff_fd, l->handoff_has_peer ? &l->handoff_peer : NULL) != 0) {
        close(l->handoff_fd);
        return -1;
    }
    return 0;
}

int listener_peer_admit(struct listener *l, struct conn *c)
{
    unsigned max = l->cfg->max_connections_per_ip;
    if (max == 0 || c->peer_counted)
        return 0;
    struct listener_peer *p = NULL;
    for (size_t i = 0; i < l->n_peers; i++) {
        if (strcmp(l->peers[i].addr, c->peer) == 0) {
            p = &l->peers[i];
            break;
        }
    }
    if (p == NULL) {
        if (l->n_peers == l->cap_peers) {
            size_t cap = l->cap_peers != 0 ? 2 * l->cap_peers : 16;
            struct listener_peer *np = realloc(l->peers, cap * sizeof *np);
            if (np == NULL)
                return -1; /* refusing one client is better than an unbounded count */
            l->peers = np;
            l->cap_peers = cap;
        }
        p = &l->peers[l->n_peers++];
        snprintf(p->addr, sizeof p->addr, "%s", c->peer);
        p->n = 0;
    }
    if (p->n >= max)
        return -1;
    p->n++;
    c->peer_counted = 1;
    return 0;
}

void listener_peer_release(struct listener *l, struct conn *c)
{
    if (!c->peer_counted)
        return;
    c->peer_counted = 0;
    for (size_t i = 0; i < l->n_peers; i++) {
        if (strcmp(l->peers[i].addr, c->peer) != 0)
            continue;
        if (--l->peers[i].n == 0)
            l->peers[i] = l->peers[--l->n_peers]; /* order does not matter */
        return;
    }
}

void listener_close(struct listener *l)
{
    if (l->closing)
        return;
    proxy_accept_close_all(l);
    l->closing = 1;
    uv_close((uv_handle_t *)&l->tcp, listener_closed_cb);
}

void listener_session_closed(struct listener *l)
{
    l->active--;
    listener_free_if_done(l);
}

static int listener_net_match(const struct sockaddr_storage *net, int prefix,
                              const struct sockaddr_storage *addr)
{
    const unsigned char *a, *n;
    size_t bits;
    struct sockaddr_in mapped;
    if (addr->ss_family == AF_INET6 && net->ss_family == AF_INET) {
        /* An IPv4 client on a dual-stack socket appears as ::ffff:a.b.c.d. */
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)addr;
        if (!IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr))
            return 0;
        memset(&mapped, 0, sizeof mapped);
        mapped.sin_family = AF_INET;
        memcpy(&mapped.sin_addr, &a6->sin6_addr.s6_addr[12], 4);
        addr = (const struct sockaddr_storage *)(const void *)&mapped;
    }
    if (addr->ss_family != net->ss_family)
        return 0;
    if (net->ss_family == AF_INET) {
        a = (const unsigned char *)&((const struct sockaddr_in *)addr)->sin_addr;
        n = (const unsigned char *)&((const struct sockaddr_in *)net)->sin_addr;
        bits = 32;
    } else {
        a = ((const struct sockaddr_in6 *)addr)->sin6_addr.s6_addr;
        n = ((const struct sockaddr_in6 *)net)->sin6_addr.s6_addr;
        bits = 128;
    }
    if (prefix < 0 || (size_t)prefix > bits)
        return 0;
    size_t full = (size_t)prefix / 8, rest = (size_t)prefix % 8;
    if (memcmp(a, n, full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[full] & mask) == (n[full] & mask);
}

int listener_addr_in_networks(const struct config_allow_network *nets, size_t n,
                              const struct sockaddr_storage *addr)
{
    for (size_t i = 0; i < n; i++)
        if (listener_net_match(&nets[i].net, nets[i].prefix, addr))
            return 1;
    return 0;
}

const struct config_account *listener_allowed_account(const struct listener *l,
                                                      const struct sockaddr_storage *addr)
{
    for (size_t i = 0; i < l->cfg->n_allow_networks; i++) {
        const struct config_allow_network *an = &l->cfg->allow_networks[i];
        if (listener_net_match(&an->net, an->prefix, addr))
            return an->account;
    }
    return NULL;
}
