#include "proxy_accept.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "network_match.h"
#include "proxy_protocol.h"

struct proxy_pending {
    LIST_ENTRY(proxy_pending) link; /* in pa->pending */
    struct proxy_accept *pa;
    uv_tcp_t tcp;
    uv_timer_t timer;
    int open_handles;
    int closing;
    struct admission adm; /* its place, until the session it becomes takes it over */
    size_t len;
    char peer[64];
    char buf[PROXY_PROTO_V2_MAX];
};

static int proxy_trusted(const struct proxy_accept *pa, const struct sockaddr_storage *ss)
{
    return network_match_any(pa->cfg->proxy_trusted, pa->cfg->n_proxy_trusted, ss);
}

static void proxy_closed_cb(uv_handle_t *h)
{
    struct proxy_pending *p = h->data;
    if (--p->open_handles > 0)
        return;
    struct proxy_accept *pa = p->pa;
    LIST_REMOVE(p, link);
    struct admission adm = p->adm;
    free(p);
    admission_release(&adm); /* empty when a session took the place over */
    pa->gone(pa);
}

/* proxy_accept_start failed between its two handles: p was never listed. */
static void proxy_unstarted_closed_cb(uv_handle_t *h) { free(h->data); }

static void proxy_close(struct proxy_pending *p)
{
    if (p->closing)
        return;
    p->closing = 1;
    uv_close((uv_handle_t *)&p->tcp, proxy_closed_cb);
    uv_close((uv_handle_t *)&p->timer, proxy_closed_cb);
}

static void proxy_timeout_cb(uv_timer_t *t)
{
    struct proxy_pending *p = t->data;
    log_warn(NULL, "event=proxy_header_timeout listener=%s peer=%s received=%zu",
             p->pa->cfg->name, p->peer, p->len);
    proxy_close(p);
}

static void proxy_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct proxy_pending *p = h->data;
    (void)suggested;
    size_t want = proxy_proto_want(p->buf, p->len);
    if (want > sizeof p->buf - p->len)
        want = sizeof p->buf - p->len;
    *buf = uv_buf_init(p->buf + p->len, (unsigned)want);
}

/* The header is complete: the socket goes to a protocol session. */
static void proxy_hand_off(struct proxy_pending *p, const struct proxy_proto_info *info)
{
    struct proxy_accept *pa = p->pa;
    uv_os_fd_t fd;
    if (pa->closing || uv_fileno((uv_handle_t *)&p->tcp, &fd) != 0) {
        proxy_close(p);
        return;
    }
    /* A second descriptor for the same socket: this handle closes its own. */
    int dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dupfd < 0) {
        log_warn(NULL, "event=accept_failed listener=%s reason=\"dup: %s\"", pa->cfg->name,
                 strerror(errno));
        proxy_close(p);
        return;
    }
    char src[64] = "-";
    if (!info->local)
        conn_addr_name(&info->src, src, sizeof src);
    log_debug(NULL, "event=proxy_header listener=%s proxy=%s version=%d client=%s",
              pa->cfg->name, p->peer, info->version, info->local ? "(local)" : src);
    /* The place this connection took under max_connections at accept goes with it: counted
     * twice, the last allowed connection would be refused. */
    struct admission adm = p->adm;
    p->adm.release = NULL;
    pa->hand_off(pa, dupfd, info->local ? NULL : &info->src, &adm);
    proxy_close(p);
}

static void proxy_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct proxy_pending *p = s->data;
    (void)buf;
    if (p->closing)
        return;
    if (nread < 0) {
        log_info(NULL, "event=proxy_header_incomplete listener=%s peer=%s received=%zu "
                 "reason=\"%s\"", p->pa->cfg->name, p->peer, p->len, uv_strerror((int)nread));
        proxy_close(p);
        return;
    }
    p->len += (size_t)nread;
    struct proxy_proto_info info;
    switch (proxy_proto_parse(p->buf, p->len, &info)) {
    case PROXY_PROTO_AGAIN:
        if (p->len < sizeof p->buf)
            return;
        info.why = "header too long";
        /* fall through */
    case PROXY_PROTO_INVALID:
        log_warn(NULL, "event=proxy_header_invalid listener=%s peer=%s reason=\"%s\"",
                 p->pa->cfg->name, p->peer, info.why);
        proxy_close(p);
        return;
    case PROXY_PROTO_OK:
        uv_read_stop(s);
        proxy_hand_off(p, &info);
        return;
    }
}

void proxy_accept_start(struct proxy_accept *pa, uv_os_sock_t fd, struct admission *adm)
{
    struct proxy_pending *p = calloc(1, sizeof *p);
    if (p == NULL) {
        log_warn(NULL, "event=accept_failed listener=%s reason=\"out of memory\"",
                 pa->cfg->name);
        close(fd);
        admission_release(adm);
        return;
    }
    p->pa = pa;
    p->tcp.data = p->timer.data = p;
    int r = uv_tcp_init(pa->loop, &p->tcp);
    if (r == 0) {
        r = uv_timer_init(pa->loop, &p->timer);
        if (r != 0) /* the tcp handle is in the loop: p goes with it */
            uv_close((uv_handle_t *)&p->tcp, proxy_unstarted_closed_cb);
    } else {
        free(p);
    }
    if (r != 0) {
        log_warn(NULL, "event=accept_failed listener=%s reason=\"%s\"", pa->cfg->name,
                 uv_strerror(r));
        close(fd);
        admission_release(adm);
        return;
    }
    p->open_handles = 2;
    LIST_INSERT_HEAD(&pa->pending, p, link);
    /* Counted from the start, so that connections still sending their header are bounded by
     * max_connections too; the session it becomes takes this place over. */
    p->adm = *adm;
    adm->release = NULL;
    snprintf(p->peer, sizeof p->peer, "?");
    if (uv_tcp_open(&p->tcp, fd) != 0) {
        close(fd);
        proxy_close(p);
        return;
    }
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    memset(&ss, 0, sizeof ss);
    if (uv_tcp_getpeername(&p->tcp, (struct sockaddr *)&ss, &sl) == 0)
        conn_addr_name(&ss, p->peer, sizeof p->peer);
    if (!proxy_trusted(pa, &ss)) {
        log_warn(NULL, "event=refused listener=%s peer=%s reason=\"not in proxy_trusted; this "
                 "listener expects a PROXY protocol header\"", pa->cfg->name, p->peer);
        proxy_close(p);
        return;
    }
    uv_timer_start(&p->timer, proxy_timeout_cb, PROXY_ACCEPT_TIMEOUT_MS, 0);
    r = uv_read_start((uv_stream_t *)&p->tcp, proxy_alloc_cb, proxy_read_cb);
    if (r != 0) {
        log_warn(NULL, "event=accept_failed listener=%s peer=%s reason=\"%s\"", pa->cfg->name,
                 p->peer, uv_strerror(r));
        proxy_close(p);
    }
}

void proxy_accept_close_all(struct proxy_accept *pa)
{
    pa->closing = 1;
    struct proxy_pending *p;
    LIST_FOREACH(p, &pa->pending, link)
        proxy_close(p);
}
