/* ews_probe: runs one mailbox operation of xoauthd's EWS client (proxy/mailbox/ews_mailbox.c on
 * proxy/submit/ews.c) against an endpoint and prints the result as key=value lines, for
 * tests/e2e/test_ews_ops.py.
 *
 *   ews_probe URL CA_FILE TOKEN MAILBOX OP ARGS...
 *     save FOLDER MIMEFILE | get ITEM_ID OUTFILE | copy ITEM_ID FOLDER | delete ITEM_ID
 *     delete-folder FOLDER | set-read ITEM_ID CHANGE_KEY 0|1 | cancel ITEM_ID
 *   FOLDER is dist:NAME (a distinguished folder) or id:FOLDER_ID.
 * Exit status 0 when the loop closed cleanly (uv_loop_close() == 0). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "ews.h"
#include "ews_mailbox.h"
#include "http.h"
#include "message_capture.h"

static const char *out_file;

static void probe_cb(void *arg, const struct ews_result *r)
{
    static const char *const names[] = {"ok", "error", "fault", "http", "transport"};
    (void)arg;
    printf("outcome=%s\nhttp_status=%d\nclass=%s\ncode=%s\nitem_id=%s\nchange_key=%s\n",
           names[r->outcome], r->http_status, r->response_class, r->response_code, r->item_id,
           r->change_key);
    if (r->mime != NULL && out_file != NULL) {
        FILE *f = fopen(out_file, "wb");
        if (f != NULL) {
            fwrite(r->mime, 1, r->mime_len, f);
            fclose(f);
        }
        printf("mime_len=%zu\n", r->mime_len);
    }
}

static int parse_folder(const char *s, struct ews_folder *f)
{
    memset(f, 0, sizeof *f);
    if (strncmp(s, "dist:", 5) == 0) {
        f->id = s + 5;
        f->distinguished = 1;
        return 0;
    }
    if (strncmp(s, "id:", 3) == 0) {
        f->id = s + 3;
        return 0;
    }
    return -1;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b != NULL && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: ews_probe URL CA_FILE TOKEN MAILBOX OP ARGS...\n");
        return 2;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct http *http = http_new(&loop);
    struct ews_target t = {0};
    struct ews_mailbox_params p = {0};
    struct capture_mem mem = {NULL, 0};
    struct capture_source src = {0};
    enum ews_mailbox_op op;
    const char *cmd = argv[5];
    int cancel = 0;
    t.url = argv[1];
    t.ca_file = argv[2];
    t.token = argv[3];
    t.mailbox = argv[4];
    char *mime = NULL;
    if (strcmp(cmd, "save") == 0 && argc == 8) {
        op = EWS_MAILBOX_SAVE;
        if (parse_folder(argv[6], &p.folder) != 0 || (mime = read_file(argv[7], &mem.len)) == NULL)
            return 2;
        mem.data = mime;
        src = capture_source_mem(&mem);
    } else if (strcmp(cmd, "get") == 0 && argc == 8) {
        op = EWS_MAILBOX_GET_MIME;
        p.item_id = argv[6];
        out_file = argv[7];
    } else if (strcmp(cmd, "copy") == 0 && argc == 8) {
        op = EWS_MAILBOX_COPY;
        p.item_id = argv[6];
        if (parse_folder(argv[7], &p.folder) != 0)
            return 2;
    } else if (strcmp(cmd, "delete") == 0) {
        op = EWS_MAILBOX_DELETE_ITEM;
        p.item_id = argv[6];
    } else if (strcmp(cmd, "delete-folder") == 0) {
        op = EWS_MAILBOX_DELETE_FOLDER;
        if (parse_folder(argv[6], &p.folder) != 0)
            return 2;
    } else if (strcmp(cmd, "set-read") == 0 && argc == 9) {
        op = EWS_MAILBOX_SET_READ;
        p.item_id = argv[6];
        p.change_key = argv[7][0] != '\0' ? argv[7] : NULL;
        p.is_read = atoi(argv[8]);
    } else if (strcmp(cmd, "cancel") == 0) {
        op = EWS_MAILBOX_GET_MIME;
        p.item_id = argv[6];
        cancel = 1;
    } else {
        fprintf(stderr, "ews_probe: bad operation\n");
        return 2;
    }
    struct ews_call *c = ews_mailbox_start(http, &t, op, &p, mime != NULL ? &src : NULL,
                                           "probe", probe_cb, NULL);
    if (c == NULL) {
        printf("outcome=not-started\n");
    } else if (cancel) {
        /* Let the request get under way, then take it back: no callback may follow. */
        uv_run(&loop, UV_RUN_NOWAIT);
        ews_cancel(c);
        printf("outcome=cancelled\n");
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    http_close(http);
    uv_run(&loop, UV_RUN_DEFAULT);
    free(mime);
    int rc = uv_loop_close(&loop);
    printf("loop_close=%d\n", rc);
    return rc == 0 ? 0 : 1;
}
