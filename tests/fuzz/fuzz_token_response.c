/* libFuzzer target: the token endpoint's JSON (and non-JSON) answers, under every HTTP status
 * class; the first two octets pick the status. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "token_response.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int statuses[] = {200, 400, 401, 403, 429, 500, 503, 302, 0};
    int status = 200;
    if (size >= 1) {
        status = statuses[data[0] % (sizeof statuses / sizeof statuses[0])];
        data++;
        size--;
    }
    struct token_response tr;
    memset(&tr, 0, sizeof tr);
    if (status == 0)
        token_response_transport(&tr, size & 1, size > 0 ? "transport error" : NULL);
    else
        (void)token_response_parse(status, (const char *)data, size, &tr);
    if (tr.access_token != NULL && strlen(tr.access_token) > TOKEN_RESPONSE_MAX_TOKEN)
        abort();
    if (tr.expires_in < 0 || tr.expires_in > TOKEN_RESPONSE_MAX_EXPIRES_IN)
        abort();
    if (memchr(tr.error, '\0', sizeof tr.error) == NULL ||
        memchr(tr.reason, '\0', sizeof tr.reason) == NULL)
        abort();
    token_response_clear(&tr);
    (void)token_response_token_ok((const char *)data, size);
    return 0;
}
