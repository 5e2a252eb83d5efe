#include "network_match.h"

#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

static int network_match_one(const struct sockaddr_storage *net, int prefix,
                             const struct sockaddr_storage *addr)
{
    const unsigned char *a, *n;
    size_t bits;
    struct sockaddr_in mapped;
    if (addr->ss_family == AF_INET6 && net->ss_family == AF_INET) {
        /* An IPv4 client on a dual-stack socket appears as ::ffff:a.b.c.d. */
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)addr;
        if (!IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr))
            return 0;
        memset(&mapped, 0, sizeof mapped);
        mapped.sin_family = AF_INET;
        memcpy(&mapped.sin_addr, &a6->sin6_addr.s6_addr[12], 4);
        addr = (const struct sockaddr_storage *)(const void *)&mapped;
    }
    if (addr->ss_family != net->ss_family)
        return 0;
    if (net->ss_family == AF_INET) {
        a = (const unsigned char *)&((const struct sockaddr_in *)addr)->sin_addr;
        n = (const unsigned char *)&((const struct sockaddr_in *)net)->sin_addr;
        bits = 32;
    } else {
        a = ((const struct sockaddr_in6 *)addr)->sin6_addr.s6_addr;
        n = ((const struct sockaddr_in6 *)net)->sin6_addr.s6_addr;
        bits = 128;
    }
    if (prefix < 0 || (size_t)prefix > bits)
        return 0;
    size_t full = (size_t)prefix / 8, rest = (size_t)prefix % 8;
    if (memcmp(a, n, full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[full] & mask) == (n[full] & mask);
}

int network_match_any(const struct config_allow_network *nets, size_t n,
                             const struct sockaddr_storage *addr)
{
    for (size_t i = 0; i < n; i++)
        if (network_match_one(&nets[i].net, nets[i].prefix, addr))
            return 1;
    return 0;
}

const struct config_account *network_match_account(const struct config_allow_network *nets,
                                                   size_t n, const struct sockaddr_storage *addr)
{
    for (size_t i = 0; i < n; i++)
        if (network_match_one(&nets[i].net, nets[i].prefix, addr))
            return nets[i].account;
    return NULL;
}
