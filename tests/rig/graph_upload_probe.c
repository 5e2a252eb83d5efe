/* graph_upload_probe: uploads one file through xoauthd's Graph upload-session client
 * (proxy/submit/graph_upload.c) to an uploadUrl and prints the result as key=value lines, for
 * tests/e2e/test_graph_upload.py.
 *
 *   graph_upload_probe UPLOAD_URL CA_FILE FILE BUDGET_SECONDS
 * Exit status 0 when the loop closed cleanly (uv_loop_close() == 0). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "graph_upload.h"
#include "http.h"

static struct http *http;

static void probe_cb(void *arg, const struct graph_upload_result *r)
{
    (void)arg;
    printf("ok=%d\nhttp_status=%d\nputs=%u\nresumes=%u\nwaits=%u\nerror=%s\n", r->ok,
           r->http_status, r->puts, r->resumes, r->waits, r->error);
    http_close(http);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: graph_upload_probe UPLOAD_URL CA_FILE FILE BUDGET_SECONDS\n");
        return 2;
    }
    int fd = open(argv[3], O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        return 2;
    uv_loop_t loop;
    uv_loop_init(&loop);
    http = http_new(&loop);
    struct graph_upload_opts o = {0};
    o.upload_url = argv[1];
    o.ca_file = argv[2];
    o.fd = fd;
    o.size = (size_t)st.st_size;
    o.timeout_ms = 20000;
    o.deadline_ms = uv_now(&loop) + (uint64_t)atoi(argv[4]) * 1000;
    if (graph_upload_start(&loop, http, &o, probe_cb, NULL) == NULL) {
        printf("ok=0\nerror=cannot start\n");
        http_close(http);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    close(fd);
    return uv_loop_close(&loop) == 0 ? 0 : 1;
}
