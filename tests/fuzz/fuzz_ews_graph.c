/* libFuzzer target: what the EWS (SOAP/XML) and Graph (JSON) endpoints answer, through the
 * parsers and the verdict tables that turn an answer into an SMTP reply (ews_result_from_http,
 * as ews_done_cb uses it, and graph_done_cb's steps); also the Retry-After value (libcurl's
 * CURLINFO_RETRY_AFTER through http_retry_after_seconds) that reaches the verdicts, and an
 * upload session's nextExpectedRanges (graph_upload_next_offset). The first octet picks the
 * HTTP status (low bits) and, when its high bit is set, takes up to 8 octets of the body's
 * first line as the curl_off_t seconds libcurl would have given. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ews.h"
#include "graph.h"
#include "graph_upload.h"
#include "http.h"

static void check_verdict(const struct submit_verdict *v)
{
    if (v->kind != SUBMIT_V_OK && v->kind != SUBMIT_V_REAUTH &&
        (v->reply == NULL || v->reply[0] < '2' || v->reply[0] > '5'))
        abort();
    if (v->kind == SUBMIT_V_BUSY && v->wait_ms < -1)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int statuses[] = {200, 400, 401, 403, 404, 413, 429, 500, 503, 202, 504, 0};
    int status = 200;
    long retry_after = -1;
    const char *body = (const char *)data;
    if (size >= 1) {
        status = statuses[(data[0] & 0x7f) % (sizeof statuses / sizeof statuses[0])];
        int with_retry_after = data[0] & 0x80;
        body++;
        size--;
        if (with_retry_after) {
            const char *nl = memchr(body, '\n', size);
            size_t hl = nl != NULL ? (size_t)(nl - body) + 1 : size;
            curl_off_t secs = 0;
            memcpy(&secs, body, hl < sizeof secs ? hl : sizeof secs);
            retry_after = http_retry_after_seconds(secs);
            if (retry_after < -1 || retry_after > HTTP_RETRY_AFTER_MAX)
                abort();
            body += hl;
            size -= hl;
        }
    }

    /* ews_done_cb */
    struct ews_result er;
    struct http_response resp = {status, status == 0 ? "no response" : NULL, (int)(size & 1),
                                 body, size, retry_after};
    ews_result_from_http(&resp, &er);
    if (memchr(er.response_code, '\0', sizeof er.response_code) == NULL ||
        memchr(er.message_text, '\0', sizeof er.message_text) == NULL ||
        memchr(er.item_id, '\0', sizeof er.item_id) == NULL ||
        memchr(er.change_key, '\0', sizeof er.change_key) == NULL ||
        (er.mime == NULL && er.mime_len != 0))
        abort();
    if (er.mime != NULL && er.mime_len > 0) {
        /* the decoded MIME is read by the session (GetItem) */
        volatile unsigned char sink = er.mime[er.mime_len - 1];
        (void)sink;
    }
    struct submit_verdict v;
    ews_verdict(&er, &v);
    check_verdict(&v);
    ews_result_clear(&er);

    /* graph_done_cb */
    struct graph_result gr;
    memset(&gr, 0, sizeof gr);
    gr.retry_after = retry_after;
    gr.http_status = status;
    gr.timed_out = (int)(size & 1);
    if (status != 0 && status != 202 && size > 0)
        graph_parse_error(body, size, &gr);
    if (memchr(gr.code, '\0', sizeof gr.code) == NULL ||
        memchr(gr.message, '\0', sizeof gr.message) == NULL)
        abort();
    graph_verdict(&gr, &v);
    check_verdict(&v);
    /* an upload session's answer (graph_upload_put_done) */
    if (graph_upload_next_offset(body, size) < -1)
        abort();
    return 0;
}
