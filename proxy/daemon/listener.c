/* accept4 (SOCK_CLOEXEC: token_command children must not inherit client sockets). */
#define _GNU_SOURCE
#include "listener.h"
#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "server.h"
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
 * once, since it freed descriptors. Every accepted socket goes to its session the same way,
 * after a PROXY header or not (listener_hand_over). */

#define LISTENER_ACCEPT_BATCH 64 /* per readable event: other handles get their turn */
#define LISTENER_LOG_INTERVAL_MS 10000u

static void listener_free_if_done(struct listener *l)
{
    if (l->closing == 2 && l->active == 0 && LIST_EMPTY(&l->proxy.pending)) {
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
    if (l->point.tls != NULL)
        SSL_CTX_free(l->point.tls);
    l->point.tls = NULL;
    l->closing = 2;
    listener_free_if_done(l);
}

static void listener_poll_cb(uv_poll_t *h, int status, int events);

static struct listener *listener_of_proxy(struct proxy_accept *pa)
{
    return (struct listener *)(void *)((char *)pa - offsetof(struct listener, proxy));
}

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
    uint64_t now = uv_now(l->srv->ctx.loop);
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
                     l->point.cfg->name, strerror(err), l->backoff_ms, l->emfile_suppressed,
                     l->active);
            l->emfile_logged_ms = now;
            l->emfile_suppressed = 0;
        }
    }
    l->paused = 1;
    uv_poll_stop(&l->poll);
    uv_timer_start(&l->backoff_timer, listener_backoff_cb, l->backoff_ms, 0);
}

/* Counts adm's client under max_connections_per_ip; 0, or -1 when the address already has
 * that many sessions. */
static int listener_peer_admit(struct listener *l, struct admission *adm)
{
    unsigned max = l->point.cfg->max_connections_per_ip;
    if (max == 0)
        return 0;
    struct listener_peer *p = NULL;
    for (size_t i = 0; i < l->n_peers; i++) {
        if (strcmp(l->peers[i].addr, adm->peer) == 0) {
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
        snprintf(p->addr, sizeof p->addr, "%s", adm->peer);
        p->n = 0;
    }
    if (p->n >= max)
        return -1;
    p->n++;
    adm->peer_counted = 1;
    return 0;
}

static void listener_peer_release(struct listener *l, const struct admission *adm)
{
    if (!adm->peer_counted)
        return;
    for (size_t i = 0; i < l->n_peers; i++) {
        if (strcmp(l->peers[i].addr, adm->peer) != 0)
            continue;
        if (--l->peers[i].n == 0)
            l->peers[i] = l->peers[--l->n_peers]; /* order does not matter */
        return;
    }
}

/* The one release path (admission.h): a connection of l is gone. Frees a closed listener with
 * nothing left. */
static void listener_release(struct admission *adm)
{
    struct listener *l = adm->owner;
    listener_peer_release(l, adm);
    l->active--;
    /* Its descriptors are free again: try the backlog now rather than after the back-off. */
    listener_resume(l);
    listener_free_if_done(l);
}

/* fd, holding the place adm, becomes a session of the listener's protocol; peer is the
 * client's address from a PROXY header, NULL to take the socket's own. The limits are decided
 * here, before the session exists: a refused client still gets a session, which only says
 * the protocol's "too busy" and closes. */
static void listener_hand_over(struct listener *l, uv_os_sock_t fd,
                               const struct sockaddr_storage *peer, struct admission *adm)
{
    struct sockaddr_storage own;
    if (peer == NULL) {
        socklen_t len = sizeof own;
        memset(&own, 0, sizeof own);
        if (getpeername(fd, (struct sockaddr *)&own, &len) == 0)
            peer = &own;
    }
    if (peer != NULL)
        conn_addr_name(peer, adm->peer, sizeof adm->peer);
    else
        snprintf(adm->peer, sizeof adm->peer, "?");
    const struct config_listen *lc = l->point.cfg;
    adm->refused = (lc->max_connections != 0 && l->active > lc->max_connections) ||
                   listener_peer_admit(l, adm) != 0;
    session_accept_fn accept = accept_table_lookup(lc->protocol);
    if (accept == NULL) {
        close(fd);
        admission_release(adm);
    }
    if (accept == NULL || accept(&l->point, fd, peer, adm) != 0)
        log_warn(NULL, "event=accept_failed listener=%s reason=\"cannot set up session\"",
                 lc->name);
}

static void listener_proxy_hand_off(struct proxy_accept *pa, uv_os_sock_t fd,
                                    const struct sockaddr_storage *peer, struct admission *adm)
{
    listener_hand_over(listener_of_proxy(pa), fd, peer, adm);
}

static void listener_proxy_gone(struct proxy_accept *pa)
{
    struct listener *l = listener_of_proxy(pa);
    listener_resume(l);
    listener_free_if_done(l);
}

/* Counts a place for a connection that was just accepted (admission.h). */
static void listener_take_place(struct listener *l, struct admission *adm)
{
    memset(adm, 0, sizeof *adm);
    adm->release = listener_release;
    adm->owner = l;
    l->active++;
}

static void listener_accepted(struct listener *l, int fd)
{
    if (l->episode_start_ms != 0) {
        log_info(NULL, "event=accept_resumed listener=%s paused_ms=%llu", l->point.cfg->name,
                 (unsigned long long)(uv_now(l->srv->ctx.loop) - l->episode_start_ms));
        l->episode_start_ms = 0;
    }
    l->backoff_ms = 0;
    struct admission adm;
    listener_take_place(l, &adm);
    if (l->point.cfg->proxy_protocol)
        proxy_accept_start(&l->proxy, fd, &adm);
    else
        listener_hand_over(l, fd, NULL, &adm);
}

static void listener_poll_cb(uv_poll_t *h, int status, int events)
{
    struct listener *l = h->data;
    (void)events;
    if (status != 0) {
        log_warn(NULL, "event=accept_failed listener=%s reason=\"%s\"", l->point.cfg->name,
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
            log_warn(NULL, "event=accept_failed listener=%s reason=\"%s\"", l->point.cfg->name,
                     strerror(errno));
            return;
        }
    }
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
    l->point.cfg = cfg;
    l->fd = -1;
    l->proxy.loop = srv->ctx.loop;
    l->proxy.cfg = cfg;
    l->proxy.hand_off = listener_proxy_hand_off;
    l->proxy.gone = listener_proxy_gone;
    if (cfg->tls != CONFIG_TLS_NONE) {
        l->point.tls = tls_server_ctx_new(cfg->tls_cert, cfg->tls_key, stderr);
        if (l->point.tls != NULL &&
            tls_server_ctx_set_policy(l->point.tls, cfg->tls_min_version, cfg->tls_ciphers,
                                      stderr) != 0) {
            SSL_CTX_free(l->point.tls);
            l->point.tls = NULL;
        }
        if (l->point.tls != NULL && cfg->tls_min_version != 0 && cfg->tls_min_version < 12)
            log_warn(NULL, "event=weak_tls listener=%s tls_min_version=1.%d note=\"TLS below "
                     "1.2 is enabled for old clients; prefer 1.2 where the devices allow it\"",
                     cfg->name, cfg->tls_min_version - 10);
        const char *weak = l->point.tls != NULL ? tls_weak_cipher(l->point.tls) : NULL;
        if (weak != NULL)
            log_warn(NULL, "event=weak_tls listener=%s cipher=%s note=\"tls_ciphers enables "
                     "suites without forward secrecy or below 128 bits for old clients; the "
                     "server still prefers the strongest the client has\"", cfg->name, weak);
        if (l->point.tls == NULL) {
            fprintf(stderr, "%s:%d: [listen %s]: TLS set-up failed\n", srv->ctx.cfg->path,
                    cfg->line, cfg->name);
            free(l);
            return NULL;
        }
    }
    struct sockaddr_storage ss;
    if (listener_parse_addr(cfg, &ss) != 0) {
        fprintf(stderr, "%s:%d: [listen %s]: bad address %s\n", srv->ctx.cfg->path, cfg->line,
                cfg->name, cfg->host);
        goto fail_ctx;
    }
    int fd = listener_socket(&ss);
    int r = fd < 0 ? uv_translate_sys_error(-fd) : 0;
    if (r == 0) {
        l->fd = fd;
        r = uv_timer_init(srv->ctx.loop, &l->backoff_timer);
        l->backoff_timer.data = l;
        if (r == 0) {
            r = uv_poll_init_socket(srv->ctx.loop, &l->poll, fd);
            if (r != 0) /* the timer is in the loop: it goes through its close callback */
                uv_close((uv_handle_t *)&l->backoff_timer, listener_unstarted_closed_cb);
        }
        if (r != 0) {
            close(fd);
            l->fd = -1;
        }
    }
    if (r != 0) {
        fprintf(stderr, "%s:%d: [listen %s]: cannot listen on %s port %u: %s\n", srv->ctx.cfg->path,
                cfg->line, cfg->name, cfg->host, (unsigned)cfg->port, uv_strerror(r));
        if (err != NULL)
            *err = r;
        goto fail_ctx;
    }
    l->point.ctx = &srv->ctx;
    l->poll.data = l;
    l->open_handles = 2;
    uv_poll_start(&l->poll, UV_READABLE, listener_poll_cb);
    log_info(NULL, "event=listening listener=%s protocol=%s address=%s port=%u tls=%s",
             cfg->name, config_protocol_name(cfg->protocol), cfg->host, (unsigned)cfg->port,
             cfg->tls == CONFIG_TLS_NONE ? "none"
             : cfg->tls == CONFIG_TLS_STARTTLS ? "starttls" : "implicit");
    return l;
fail_ctx:
    if (l->point.tls != NULL)
        SSL_CTX_free(l->point.tls);
    if (l->backoff_timer.loop == NULL)
        free(l);
    /* else listener_unstarted_closed_cb frees it */
    return NULL;
}

void listener_reconfigure(struct listener *l, const struct config_listen *lc, SSL_CTX *tls)
{
    l->point.cfg = lc;
    l->proxy.cfg = lc;
    if (l->point.tls != NULL)
        SSL_CTX_free(l->point.tls); /* live SSL objects hold their own reference */
    l->point.tls = tls;
}

void listener_close(struct listener *l)
{
    if (l->closing)
        return;
    proxy_accept_close_all(&l->proxy);
    l->closing = 1;
    uv_close((uv_handle_t *)&l->poll, listener_closed_cb);
    uv_close((uv_handle_t *)&l->backoff_timer, listener_closed_cb);
    /* uv_close has already taken the descriptor out of the poll set: close it now, so that
     * the port refuses connections as soon as a reload or shutdown says it is gone. */
    close(l->fd);
    l->fd = -1;
}
