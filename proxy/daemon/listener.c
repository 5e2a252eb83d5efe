/* accept4 (SOCK_CLOEXEC: token_command children must not inherit client sockets). */
#define _GNU_SOURCE
#include "listener.h"
#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "imap_session.h"
#include "log.h"
#include "netaddr.h"
#include "pop3_session.h"
#include "proxy_accept.h"
#include "server.h"
#include "smtp_session.h"
#include "tls.h"

/* Why the listening socket is not a uv_tcp_t with uv_listen():
 * libuv's accept loop (uv__server_io) handles EMFILE/ENFILE before the connection callback
 * hears of it: it closes a descriptor it keeps in reserve, accepts every waiting connection and
 * closes each at once, then takes the reserve back. That keeps the loop from spinning on a
 * listening socket that stays readable, but it drops every waiting client, who would have
 * been served a moment later. Not calling uv_accept() does not help either: it pauses libuv's
 * polling only after a successful accept, and the EMFILE path never gets there.
 * So the socket is ours and watched with uv_poll: on EMFILE/ENFILE (and ENOBUFS/ENOMEM) the
 * poll is stopped and a timer restarts it after a back-off (100 ms doubling to 2 s, back to
 * 100 ms after a successful accept), while the connections wait in the kernel's backlog, whose
 * clients see a slow greeting instead of a reset. A session that closes restarts the poll at
 * once, since it freed descriptors. One accepted socket at a time is handed to the session
 * through the same path as after a PROXY header (l->handoff, conn_accept_fd). */

#define LISTENER_ACCEPT_BATCH 64 /* per readable event: other handles get their turn */
#define LISTENER_LOG_INTERVAL_MS 10000u

static void listener_free_if_done(struct listener *l)
{
    if (l->closing == 2 && l->active == 0 && LIST_EMPTY(&l->pending)) {
        free(l->peers);
        free(l);
    }
}

static void listener_closed_cb(uv_handle_t *h)
{
    struct listener *l = h->data;
    if (--l->open_handles != 0)
        return;
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
    if (l->tls != NULL)
        SSL_CTX_free(l->tls);
    l->tls = NULL;
    l->closing = 2;
    listener_free_if_done(l);
}

static void listener_poll_cb(uv_poll_t *h, int status, int events);

/* listener_new failed after its timer was initialised: the memory goes with the handle. */
static void listener_unstarted_closed_cb(uv_handle_t *h) { free(h->data); }

static void listener_resume(struct listener *l)
{
    if (!l->paused || l->closing)
        return;
    l->paused = 0;
    uv_timer_stop(&l->backoff_timer);
    uv_poll_start(&l->poll, UV_READABLE, listener_poll_cb);
}

static void listener_backoff_cb(uv_timer_t *t)
{
    listener_resume(t->data);
}

/* Out of descriptors (or kernel memory): stop accepting for a while. */
static void listener_pause(struct listener *l, int err)
{
    uint64_t now = uv_now(l->srv->loop);
    l->backoff_ms = l->backoff_ms == 0 ? LISTENER_BACKOFF_MIN_MS
                    : l->backoff_ms * 2 > LISTENER_BACKOFF_MAX_MS ? LISTENER_BACKOFF_MAX_MS
                    : l->backoff_ms * 2;
    if (l->episode_start_ms == 0) {
        l->episode_start_ms = now;
        /* One line per episode, at most one per LISTENER_LOG_INTERVAL_MS. */
        if (l->emfile_logged_ms != 0 && now - l->emfile_logged_ms < LISTENER_LOG_INTERVAL_MS) {
            l->emfile_suppressed++;
        } else {
            log_warn(NULL, "event=accept_paused listener=%s reason=\"%s\" backoff_ms=%u "
                     "episodes_not_logged=%u active=%u note=\"new connections wait in the "
                     "listen backlog until descriptors are free; raise the descriptor limit "
                     "(LimitNOFILE= in the systemd unit, ulimit -n) or lower max_connections\"",
                     l->cfg->name, strerror(err), l->backoff_ms, l->emfile_suppressed,
                     l->active);
            l->emfile_logged_ms = now;
            l->emfile_suppressed = 0;
        }
    }
    l->paused = 1;
    uv_poll_stop(&l->poll);
    uv_timer_start(&l->backoff_timer, listener_backoff_cb, l->backoff_ms, 0);
}

static void listener_accepted(struct listener *l, int fd)
{
    if (l->episode_start_ms != 0) {
        log_info(NULL, "event=accept_resumed listener=%s paused_ms=%llu", l->cfg->name,
                 (unsigned long long)(uv_now(l->srv->loop) - l->episode_start_ms));
        l->episode_start_ms = 0;
    }
    l->backoff_ms = 0;
    if (l->cfg->proxy_protocol) {
        proxy_accept_start(l, fd);
        return;
    }
    l->handoff = 1;
    l->handoff_fd = fd;
    l->handoff_has_peer = 0;
    listener_start_session(l, NULL);
    if (l->handoff) {
        /* No session took it (out of memory): the descriptor is still ours. */
        l->handoff = 0;
        close(fd);
    }
}

static void listener_poll_cb(uv_poll_t *h, int status, int events)
{
    struct listener *l = h->data;
    (void)events;
    if (status != 0) {
        log_warn(NULL, "event=accept_failed listener=%s reason=\"%s\"", l->cfg->name,
                 uv_strerror(status));
        return;
    }
    for (int i = 0; i < LISTENER_ACCEPT_BATCH && !l->closing && !l->paused; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            listener_accepted(l, fd);
            continue;
        }
        switch (errno) {
        case EAGAIN:
#if EWOULDBLOCK != EAGAIN
        case EWOULDBLOCK:
#endif
            return;
        case EINTR:
        case ECONNABORTED: /* the client gave up while waiting: nothing to do */
        case EPROTO:
        case EPERM: /* a firewall rule refused it */
            continue;
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM:
            listener_pause(l, errno);
            return;
        default:
            log_warn(NULL, "event=accept_failed listener=%s reason=\"%s\"", l->cfg->name,
                     strerror(errno));
            return;
        }
    }
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

/* socket + bind + listen, as uv_tcp_bind and uv_listen would: SO_REUSEADDR (a restart must not
 * wait for TIME_WAIT), IPv6 sockets dual-stack. A descriptor or a negative errno. */
static int listener_socket(const struct sockaddr_storage *ss)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int on = 1, off = 0;
    socklen_t len = ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                              : sizeof(struct sockaddr_in);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
        (ss->ss_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off) != 0) ||
        bind(fd, (const struct sockaddr *)ss, len) != 0 || listen(fd, 511) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

struct listener *listener_new(struct server *srv, const struct config_listen *cfg, int *err)
{
    if (err != NULL)
        *err = 0;
    struct listener *l = calloc(1, sizeof *l);
    if (l == NULL)
        return NULL;
    l->srv = srv;
    l->cfg = cfg;
    l->fd = -1;
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
        const char *weak = l->tls != NULL ? tls_weak_cipher(l->tls) : NULL;
        if (weak != NULL)
            log_warn(NULL, "event=weak_tls listener=%s cipher=%s note=\"tls_ciphers enables "
                     "suites without forward secrecy or below 128 bits for old clients; the "
                     "server still prefers the strongest the client has\"", cfg->name, weak);
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
    int fd = listener_socket(&ss);
    int r = fd < 0 ? uv_translate_sys_error(-fd) : 0;
    if (r == 0) {
        l->fd = fd;
        r = uv_timer_init(srv->loop, &l->backoff_timer);
        l->backoff_timer.data = l;
        if (r == 0) {
            r = uv_poll_init_socket(srv->loop, &l->poll, fd);
            if (r != 0) /* the timer is in the loop: it goes through its close callback */
                uv_close((uv_handle_t *)&l->backoff_timer, listener_unstarted_closed_cb);
        }
        if (r != 0) {
            close(fd);
            l->fd = -1;
        }
    }
    if (r != 0) {
        fprintf(stderr, "%s:%d: [listen %s]: cannot listen on %s port %u: %s\n", srv->cfg->path,
                cfg->line, cfg->name, cfg->host, (unsigned)cfg->port, uv_strerror(r));
        if (err != NULL)
            *err = r;
        goto fail_ctx;
    }
    l->poll.data = l;
    l->open_handles = 2;
    uv_poll_start(&l->poll, UV_READABLE, listener_poll_cb);
    log_info(NULL, "event=listening listener=%s protocol=%s address=%s port=%u tls=%s",
             cfg->name, config_protocol_name(cfg->protocol), cfg->host, (unsigned)cfg->port,
             cfg->tls == CONFIG_TLS_NONE ? "none"
             : cfg->tls == CONFIG_TLS_STARTTLS ? "starttls" : "implicit");
    return l;
fail_ctx:
    if (l->tls != NULL)
        SSL_CTX_free(l->tls);
    if (l->backoff_timer.loop == NULL)
        free(l);
    /* else listener_unstarted_closed_cb frees it */
    return NULL;
}

int listener_conn_accept(struct listener *l, struct conn *c, uv_stream_t *stream)
{
    if (!l->handoff)
        return stream != NULL ? conn_accept(c, stream) : -1;
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
    uv_close((uv_handle_t *)&l->poll, listener_closed_cb);
    uv_close((uv_handle_t *)&l->backoff_timer, listener_closed_cb);
    /* uv_close has already taken the descriptor out of the poll set: close it now, so that
     * the port refuses connections as soon as a reload or shutdown says it is gone. */
    close(l->fd);
    l->fd = -1;
}

void listener_admit(struct listener *l)
{
    if (l->handoff && l->handoff_admitted) {
        l->handoff_admitted = 0; /* the PROXY connection's place is the session's now */
        return;
    }
    l->active++;
}

void listener_connection_closed(struct listener *l, int admitted)
{
    if (admitted)
        l->active--;
    /* Its descriptors are free again: try the backlog now rather than after the back-off. */
    listener_resume(l);
    listener_free_if_done(l);
}

int listener_addr_in_networks(const struct config_allow_network *nets, size_t n,
                              const struct sockaddr_storage *addr)
{
    for (size_t i = 0; i < n; i++)
        if (netaddr_contains(&nets[i].net, nets[i].prefix, addr))
            return 1;
    return 0;
}

const struct config_account *listener_allowed_account(const struct listener *l,
                                                      const struct sockaddr_storage *addr)
{
    for (size_t i = 0; i < l->cfg->n_allow_networks; i++) {
        const struct config_allow_network *an = &l->cfg->allow_networks[i];
        if (netaddr_contains(&an->net, an->prefix, addr))
            return an->account;
    }
    return NULL;
}
