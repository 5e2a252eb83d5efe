/* libFuzzer target: what the EWS (SOAP/XML) and Graph (JSON) endpoints answer, through the
 * parsers and the verdict tables that turn an answer into an SMTP reply. The first octet
 * picks the HTTP status. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ews.h"
#include "graph.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int statuses[] = {200, 400, 401, 403, 404, 413, 429, 500, 503};
    int status = 200;
    if (size >= 1) {
        status = statuses[data[0] % (sizeof statuses / sizeof statuses[0])];
        data++;
        size--;
    }
    const char *body = (const char *)data;

    struct ews_result er;
    memset(&er, 0, sizeof er);
    er.retry_after = -1;
    er.backoff_ms = -1;
    er.http_status = status;
    (void)ews_parse_response(body, size, &er);
    if (memchr(er.response_code, '\0', sizeof er.response_code) == NULL ||
        memchr(er.message_text, '\0', sizeof er.message_text) == NULL ||
        memchr(er.item_id, '\0', sizeof er.item_id) == NULL)
        abort();
    struct submit_verdict v;
    memset(&v, 0, sizeof v);
    ews_verdict(&er, &v);
    if (v.kind != SUBMIT_V_OK && v.kind != SUBMIT_V_REAUTH && v.reply != NULL &&
        (v.reply[0] < '2' || v.reply[0] > '5'))
        abort();
    ews_result_clear(&er);

    struct graph_result gr;
    memset(&gr, 0, sizeof gr);
    gr.retry_after = -1;
    gr.http_status = status;
    graph_parse_error(body, size, &gr);
    if (memchr(gr.code, '\0', sizeof gr.code) == NULL ||
        memchr(gr.message, '\0', sizeof gr.message) == NULL)
        abort();
    memset(&v, 0, sizeof v);
    graph_verdict(&gr, &v);
    return 0;
}
