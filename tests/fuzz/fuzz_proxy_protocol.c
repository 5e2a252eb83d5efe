/* libFuzzer target: PROXY protocol v1 (text) and v2 (binary) headers, whole and growing one
 * octet at a time the way proxy_accept.c reads them (proxy_proto_want). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    struct proxy_proto_info info;
    memset(&info, 0, sizeof info);
    enum proxy_proto_result r = proxy_proto_parse(in, size, &info);
    if (r == PROXY_PROTO_OK && (info.used == 0 || info.used > size))
        abort();
    size_t have = 0;
    while (have < size) {
        size_t want = proxy_proto_want(in, have);
        if (want == 0)
            break;
        have += want;
        if (have > size)
            have = size;
        memset(&info, 0, sizeof info);
        r = proxy_proto_parse(in, have, &info);
        if (r != PROXY_PROTO_AGAIN)
            break;
    }
    return 0;
}
