/* conn: one TCP connection with optional TLS, a plaintext input buffer and a write queue.
 *
 * Both sides of the proxy use it: sessions accept client connections, upstream modules open
 * connections to the provider. TLS runs over memory BIOs so that OpenSSL never touches the
 * socket and libuv stays in charge of all I/O. The owner is told about everything through one
 * event callback; it consumes input from c->in at its own pace (the buffer is bounded, and a full
 * buffer stops reading: that is the backpressure towards the peer). Writes go to the socket at
 * once and only what the kernel did not take is copied; when the queued bytes pass the
 * high-water mark the owner should stop reading the other side until CONN_EV_DRAINED. Closing
 * is asynchronous: the struct stays valid until close_cb runs. */
#ifndef XOAUTHD_CONN_H
#define XOAUTHD_CONN_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>
#include <uv.h>

enum conn_event {
    CONN_EV_READ,           /* new plaintext bytes in c->in */
    CONN_EV_EOF,            /* the peer closed (c->in may still hold bytes) */
    CONN_EV_ERROR,          /* read/write error; c->error says what */
    CONN_EV_CONNECTED,      /* conn_connect succeeded */
    CONN_EV_CONNECT_FAILED, /* c->error says why */
    CONN_EV_TLS_DONE,       /* handshake finished */
    CONN_EV_TLS_FAILED,     /* c->error says why (verification result included) */
    CONN_EV_DRAINED,        /* write queue fell below the low-water mark after being high */
    CONN_EV_TIMEOUT         /* the idle timer fired */
};

struct conn;
typedef void (*conn_event_cb)(struct conn *c, enum conn_event ev);
typedef void (*conn_close_cb)(struct conn *c);

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect_req;
    uv_loop_t *loop;

    SSL *ssl;
    BIO *net_in;  /* ciphertext from the socket, read by OpenSSL */
    BIO *net_out; /* ciphertext written by OpenSSL, sent to the socket */
    int tls_handshaking;
    /* The fatal TLS alert of a failed handshake (its description, RFC 8446 section 6.2), so
     * that a log line can say who gave up and why: 0 = none seen. */
    int tls_alert;
    int tls_alert_from_peer; /* 1: the peer sent it (it refused us), 0: OpenSSL sent it */

    char *in; /* plaintext input, owner consumes with conn_consume() */
    size_t in_len, in_cap, in_max;

    size_t out_pending; /* bytes handed to libuv and not yet written */
    size_t high_water, low_water;
    int above_high;

    uint64_t timeout_ms;
    uint64_t flush_deadline_ms; /* conn_close_after_flush gives up when no write completes */
    int reading;      /* owner wants input */
    int read_active;  /* uv_read_start is on */
    int connecting;
    int closing;
    int close_after_flush;
    int write_failed; /* sending what the cork held failed: CONN_EV_ERROR comes from the timer */
    int open_handles;
    char error[160];
    char peer[64]; /* "address" of the peer, for logs */
    /* The client's address from a PROXY protocol header (proxy_accept.c): what
     * conn_peer_sockaddr() reports instead of the balancer's address. */
    struct sockaddr_storage proxied_peer;
    int has_proxied_peer;

    /* Optional: plaintext that arrives while c->in is empty is offered here first, straight
     * from the shared read (or decrypt) buffer; it returns how many bytes it took, the rest
     * lands in c->in with CONN_EV_READ as usual. The relay forwards without a copy this way. */
    size_t (*pass_cb)(struct conn *c, const char *buf, size_t len);

    conn_event_cb event_cb;
    conn_close_cb close_cb;
    void *data;
};

int conn_init(struct conn *c, uv_loop_t *loop, conn_event_cb event_cb, void *data);
int conn_connect(struct conn *c, const struct sockaddr *addr);
/* Takes over a socket that was accepted elsewhere (after conn_init); proxied_peer, when not
 * NULL, is the client's real address (PROXY protocol). On failure the caller still owns fd. */
int conn_accept_fd(struct conn *c, uv_os_sock_t fd, const struct sockaddr_storage *proxied_peer);
/* The address part of ss as the logs show it ("192.0.2.1", "2001:db8::1"), "?" for another
 * family. */
void conn_addr_name(const struct sockaddr_storage *ss, char *out, size_t outsz);

void conn_read_start(struct conn *c);
void conn_read_stop(struct conn *c);

/* At most CONN_WRITE_MAX bytes per call (SSL_write's int, uv_buf_t's unsigned int): a longer
 * write is refused with -1 and c->error, nothing sent. */
#define CONN_WRITE_MAX ((size_t)INT_MAX)
int conn_write(struct conn *c, const void *buf, size_t len);

/* Holds small writes to c back until conn_uncork, so that several replies (or pipelined
 * commands) produced by one event leave in one segment. One conn at a time per process: 1 when
 * c is now corked, 0 when another conn holds the cork (writes then go out as usual). Closing
 * drops the held bytes, conn_close_after_flush sends them first. */
int conn_cork(struct conn *c);
void conn_uncork(struct conn *c);
int conn_writef(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Starts a handshake. For a client, hostname is verified (DNS name or IP address) and sent as
 * SNI when it is a name. Bytes already in c->in are plaintext from before the handshake. */
int conn_tls_start(struct conn *c, SSL_CTX *ctx, int is_client, const char *hostname);
int conn_is_tls(const struct conn *c);

void conn_consume(struct conn *c, size_t n);
/* Drops every buffered input byte, including decrypted bytes not yet delivered (STARTTLS). */
void conn_discard_input(struct conn *c);

/* (Re)arms the idle timer; 0 disables it. */
void conn_set_timeout(struct conn *c, uint64_t ms);
void conn_touch(struct conn *c);

/* Closes now (pending writes are dropped). close_cb may be NULL. */
void conn_close(struct conn *c, conn_close_cb close_cb);
/* Closes once everything queued has been written (TLS close_notify first). */
void conn_close_after_flush(struct conn *c, conn_close_cb close_cb);

/* Peer address as text ("127.0.0.1", "::1"); 1 when it is a loopback address. */
int conn_peer_is_loopback(const struct conn *c);
int conn_local_is_loopback(const struct conn *c);
int conn_peer_sockaddr(const struct conn *c, struct sockaddr_storage *ss);

#endif
