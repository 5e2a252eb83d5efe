/* Unit tests for session_send: a reply line longer than its stack buffer (an IMAP
 * "OK [CAPABILITY ...]" with a provider's long list) goes out whole with its CRLF, not cut at
 * 4 KiB; a short one as before. Only the session's client conn is needed (a socketpair). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "check.h"
#include "session.h"

static void ignore_event_cb(struct conn *c, enum conn_event ev)
{
    (void)c;
    (void)ev;
}

static void closed_cb(struct conn *c) { (void)c; }

/* Reads exactly len bytes (the socketpair's buffer holds them all), or fewer on EOF. */
static size_t peer_read_all(int peer, char *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = recv(peer, buf + got, len - got, MSG_DONTWAIT);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    return got;
}

static void check_line(struct session *s, int peer, size_t text_len)
{
    char *text = malloc(text_len + 1);
    char *got = malloc(text_len + 64);
    CHECK(text != NULL && got != NULL);
    if (text == NULL || got == NULL) {
        free(text);
        free(got);
        return;
    }
    for (size_t i = 0; i < text_len; i++)
        text[i] = (char)('A' + i % 26);
    text[text_len] = '\0';
    session_send(s, "a1 OK [CAPABILITY %s] done", text);
    size_t want = strlen("a1 OK [CAPABILITY ") + text_len + strlen("] done\r\n");
    size_t n = peer_read_all(peer, got, text_len + 64);
    if (n != want)
        fprintf(stderr, "got %zu of %zu bytes: %s\n", n, want, s->conn.error);
    CHECK(n == want);
    CHECK(n == want && memcmp(got + 18, text, text_len) == 0);
    CHECK(n == want && memcmp(got + n - 8, "] done\r\n", 8) == 0);
    free(text);
    free(got);
}

int main(void)
{
    uv_loop_t loop;
    int sv[2];
    struct session *s = calloc(1, sizeof *s);
    CHECK(s != NULL);
    CHECK(uv_loop_init(&loop) == 0);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    if (s == NULL)
        return CHECK_DONE();
    CHECK(conn_init(&s->conn, &loop, ignore_event_cb, s) == 0);
    CHECK(conn_accept_fd(&s->conn, sv[0], NULL) == 0);
    snprintf(s->sid, sizeof s->sid, "test-1");

    check_line(s, sv[1], 10);         /* fits the stack buffer */
    check_line(s, sv[1], 4096 - 28);  /* the longest that fits: 4093 bytes before the CRLF */
    check_line(s, sv[1], 4096);       /* just over */
    check_line(s, sv[1], 40000);      /* a provider's very long list */

    conn_close(&s->conn, closed_cb);
    uv_run(&loop, UV_RUN_DEFAULT);
    close(sv[1]);
    CHECK(uv_loop_close(&loop) == 0);
    free(s);
    return CHECK_DONE();
}
