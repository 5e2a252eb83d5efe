/* Unit tests for how a connection becomes a session, built with the layers below the daemon
 * only (tests/CMakeLists.txt links xoauthd_front, not xoauthd_core): the accept table, the
 * session's use of the context it is given instead of the server, and the place it holds
 * (admission.h), given back exactly once when the session is gone, whether it was admitted,
 * refused (the client hears "421 ... Too many connections" first) or never set up.
 * The listener's side is a socketpair and a context of the test's own. */
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "accept_table.h"
#include "check.h"
#include "config.h"
#include "session.h"
#include "smtp_session.h"

static int added, removed, ids, released;

static void test_session_add(struct proxy_context *ctx, struct session_link *link)
{
    (void)ctx;
    (void)link;
    added++;
}

static void test_session_remove(struct proxy_context *ctx, struct session_link *link)
{
    (void)ctx;
    (void)link;
    removed++;
}

static void test_session_id(struct proxy_context *ctx, char *out, size_t outsz)
{
    (void)ctx;
    snprintf(out, outsz, "test-%d", ++ids);
}

static void test_release(struct admission *adm)
{
    CHECK(adm->owner == &released);
    released++;
}

static struct admission place(int refused)
{
    struct admission adm;
    memset(&adm, 0, sizeof adm);
    adm.release = test_release;
    adm.owner = &released;
    adm.refused = refused;
    return adm;
}

/* What the client side reads until the server closes, NUL-terminated. */
static void client_read_all(uv_loop_t *loop, int fd, char *buf, size_t size)
{
    size_t got = 0;
    for (;;) {
        uv_run(loop, UV_RUN_NOWAIT);
        ssize_t n = recv(fd, buf + got, size - 1 - got, MSG_DONTWAIT);
        if (n > 0) {
            got += (size_t)n;
            if (memchr(buf, '\n', got) != NULL)
                break;
        } else if (n == 0) {
            break;
        }
    }
    buf[got] = '\0';
}

/* One connection through the table: the greeting (or the refusal) and, once the client hung
 * up, one session_remove and one release. */
static void check_one(const struct listen_point *lp, int refused, const char *want)
{
    uv_loop_t *loop = lp->ctx->loop;
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct sockaddr_storage peer;
    memset(&peer, 0, sizeof peer);
    struct sockaddr_in *in = (struct sockaddr_in *)&peer;
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(0xc0000207); /* 192.0.2.7 */
    struct admission adm = place(refused);
    int before_added = added, before_removed = removed, before_released = released;
    session_accept_fn accept = accept_table_lookup(CONFIG_PROTO_SMTP);
    CHECK(accept != NULL);
    if (accept == NULL)
        return;
    CHECK(accept(lp, sv[0], &peer, &adm) == 0);
    CHECK(added == before_added + 1);
    char buf[512];
    client_read_all(loop, sv[1], buf, sizeof buf);
    if (strncmp(buf, want, strlen(want)) != 0)
        fprintf(stderr, "got \"%s\", want \"%s...\"\n", buf, want);
    CHECK(strncmp(buf, want, strlen(want)) == 0);
    if (!refused) /* a refused session may be gone already: it closes after its reply */
        CHECK(released == before_released); /* held while the session lives */
    close(sv[1]);
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(removed == before_removed + 1);
    CHECK(released == before_released + 1);
}

/* A protocol's accept function that cannot even allocate closes the descriptor and gives the
 * place back: the listener does neither afterwards. */
static void check_accept_failed(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct admission adm = place(0);
    int before = released;
    CHECK(session_accept_failed(sv[0], &adm) == -1);
    CHECK(released == before + 1);
    CHECK(fcntl(sv[0], F_GETFD) == -1); /* closed */
    close(sv[1]);
}

int main(void)
{
    uv_loop_t loop;
    CHECK(uv_loop_init(&loop) == 0);
    struct config *cfg = calloc(1, sizeof *cfg);
    CHECK(cfg != NULL);
    if (cfg == NULL)
        return CHECK_DONE();
    cfg->refs = 1; /* the test's own hold: the sessions' holds come and go around it */
    struct proxy_context ctx = {
        .loop = &loop,
        .cfg = cfg,
        .session_add = test_session_add,
        .session_remove = test_session_remove,
        .session_id = test_session_id,
    };
    snprintf(ctx.hostname, sizeof ctx.hostname, "mx.test");
    struct config_listen lc = {.name = "submission", .protocol = CONFIG_PROTO_SMTP,
                               .tls = CONFIG_TLS_NONE};
    struct listen_point lp = {.ctx = &ctx, .cfg = &lc, .tls = NULL};

    CHECK(accept_table_lookup(CONFIG_PROTO_SMTP) == NULL); /* nothing registered yet */
    accept_table_register(CONFIG_PROTO_SMTP, smtp_session_accept);
    CHECK(accept_table_lookup(CONFIG_PROTO_SMTP) == smtp_session_accept);
    CHECK(accept_table_lookup(CONFIG_PROTO_POP3) == NULL);
    CHECK(accept_table_lookup((enum config_protocol)99) == NULL);

    check_one(&lp, 0, "220 mx.test ESMTP xoauthd");
    check_one(&lp, 1, "421 4.7.0 mx.test Too many connections");
    CHECK(ids == 2);
    check_accept_failed();

    CHECK(cfg->refs == 1);
    free(cfg);
    CHECK(uv_loop_close(&loop) == 0);
    return CHECK_DONE();
}
