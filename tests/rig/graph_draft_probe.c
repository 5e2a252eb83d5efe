/* graph_draft_probe: runs one request of xoauthd's Graph draft client (proxy/submit/
 * graph_draft.c) and prints the result as key=value lines, for tests/e2e/test_graph_draft.py.
 *
 *   graph_draft_probe GRAPH_URL CA_FILE TOKEN USER OP ARGS...
 *     create MIMEFILE | session ID NAME SIZE CONTENT_TYPE CONTENT_ID|- INLINE(0|1)
 *     send ID | exists ID | delete ID
 * Exit status 0 when the loop closed cleanly (uv_loop_close() == 0). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "graph_draft.h"
#include "http.h"

static struct http *http;

static void probe_cb(void *arg, const struct graph_draft_result *r)
{
    (void)arg;
    printf("ok=%d\nhttp_status=%d\nretry_after=%ld\ncode=%s\nvalue=%s\n", r->ok,
           r->g.http_status, r->g.retry_after, r->g.code, r->value != NULL ? r->value : "");
    http_close(http);
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: graph_draft_probe GRAPH_URL CA_FILE TOKEN USER OP ARGS...\n");
        return 2;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    http = http_new(&loop);
    struct graph_target t = {argv[1], argv[4], argv[2], 0, argv[3], 20000};
    const char *op = argv[5];
    struct graph_draft_call *c = NULL;
    int fd = -1;
    struct capture_fd cf = {-1, 0};
    if (strcmp(op, "create") == 0) {
        struct stat st;
        fd = open(argv[6], O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) != 0)
            return 2;
        cf.fd = fd;
        cf.len = (size_t)st.st_size;
        struct capture_source src = capture_source_fd(&cf);
        c = graph_draft_create(http, &t, &src, "probe", probe_cb, NULL);
    } else if (strcmp(op, "session") == 0 && argc == 12) {
        struct graph_attachment_item it = {argv[7], argv[9],
                                           strcmp(argv[10], "-") ? argv[10] : NULL,
                                           atoi(argv[11]), (size_t)strtoull(argv[8], NULL, 10)};
        c = graph_draft_session(http, &t, argv[6], &it, "probe", probe_cb, NULL);
    } else if (strcmp(op, "send") == 0) {
        c = graph_draft_send(http, &t, argv[6], "probe", probe_cb, NULL);
    } else if (strcmp(op, "exists") == 0) {
        c = graph_draft_exists(http, &t, argv[6], "probe", probe_cb, NULL);
    } else if (strcmp(op, "delete") == 0) {
        c = graph_draft_delete(http, &t, argv[6], "probe", probe_cb, NULL);
    } else {
        fprintf(stderr, "unknown operation\n");
        return 2;
    }
    if (c == NULL) {
        printf("ok=0\nerror=cannot start\n");
        http_close(http);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    if (fd >= 0)
        close(fd);
    return uv_loop_close(&loop) == 0 ? 0 : 1;
}
