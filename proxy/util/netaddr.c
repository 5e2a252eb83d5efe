/* netaddr: numeric addresses and networks with inet_pton. See netaddr.h. */
#include "netaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

/* The address bytes of an AF_INET or AF_INET6 sockaddr and their number of bits. Bytes are
 * reached by offset and family through ss_family, so that no store through one struct type
 * is read back through another (the aliasing rule of C11 6.5p7). */
static uint8_t *netaddr_bytes(const struct sockaddr_storage *ss, int *bits)
{
    if (ss->ss_family == AF_INET) {
        *bits = 32;
        return (uint8_t *)ss + offsetof(struct sockaddr_in, sin_addr);
    }
    if (ss->ss_family == AF_INET6) {
        *bits = 128;
        return (uint8_t *)ss + offsetof(struct sockaddr_in6, sin6_addr);
    }
    *bits = 0;
    return NULL;
}

/* A v4-mapped IPv6 address (::ffff:a.b.c.d) as the IPv4 address it stands for; anything
 * else unchanged. */
static const struct sockaddr_storage *netaddr_unmap(const struct sockaddr_storage *ss,
                                                    struct sockaddr_storage *tmp)
{
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    int bits;
    const uint8_t *b = netaddr_bytes(ss, &bits);
    memset(tmp, 0, sizeof *tmp);
    if (bits != 128 || memcmp(b, v4mapped, sizeof v4mapped) != 0)
        return ss;
    tmp->ss_family = AF_INET;
    memcpy(netaddr_bytes(tmp, &bits), b + 12, 4);
    return tmp;
}

/* Parses a numeric address into ss; 0 or -1. */
static int netaddr_parse_addr(const char *s, struct sockaddr_storage *ss)
{
    int bits;
    memset(ss, 0, sizeof *ss);
    ss->ss_family = AF_INET;
    if (inet_pton(AF_INET, s, netaddr_bytes(ss, &bits)) == 1)
        return 0;
    ss->ss_family = AF_INET6;
    if (inet_pton(AF_INET6, s, netaddr_bytes(ss, &bits)) == 1)
        return 0;
    memset(ss, 0, sizeof *ss);
    return -1;
}

enum netaddr_parse_result netaddr_parse(const char *s, struct sockaddr_storage *net,
                                        int *prefix)
{
    char addr[INET6_ADDRSTRLEN];
    const char *slash = strchr(s, '/');
    size_t alen = slash != NULL ? (size_t)(slash - s) : strlen(s);
    int bits, p = 0;
    if (alen >= sizeof addr)
        return NETADDR_BAD;
    memcpy(addr, s, alen);
    addr[alen] = '\0';
    if (netaddr_parse_addr(addr, net) != 0)
        return NETADDR_BAD;
    uint8_t *bytes = netaddr_bytes(net, &bits);
    if (slash == NULL) {
        p = bits;
    } else {
        const char *d = slash + 1;
        if (*d == '\0')
            return NETADDR_BAD;
        for (; *d != '\0'; d++) {
            if (*d < '0' || *d > '9')
                return NETADDR_BAD;
            p = p * 10 + (*d - '0');
            if (p > bits)
                return NETADDR_BAD;
        }
    }
    *prefix = p;
    int host_bits = 0;
    for (int bit = p; bit < bits; bit++) {
        uint8_t mask = (uint8_t)(0x80 >> (bit % 8));
        host_bits |= (bytes[bit / 8] & mask) != 0;
        bytes[bit / 8] &= (uint8_t)~mask;
    }
    return host_bits ? NETADDR_HOST_BITS : NETADDR_OK;
}

void netaddr_text(const struct sockaddr_storage *addr, char *out, size_t outsz)
{
    int bits;
    const uint8_t *b = netaddr_bytes(addr, &bits);
    if (outsz > 0 && (b == NULL || inet_ntop(addr->ss_family, b, out, (socklen_t)outsz) == NULL))
        out[0] = '\0';
}

int netaddr_contains(const struct sockaddr_storage *net, int prefix,
                     const struct sockaddr_storage *addr)
{
    struct sockaddr_storage tmp;
    int nbits, abits;
    if (net->ss_family == AF_INET)
        addr = netaddr_unmap(addr, &tmp);
    if (addr->ss_family != net->ss_family)
        return 0;
    const uint8_t *n = netaddr_bytes(net, &nbits), *a = netaddr_bytes(addr, &abits);
    if (n == NULL || prefix < 0 || prefix > nbits)
        return 0;
    size_t full = (size_t)prefix / 8, rest = (size_t)prefix % 8;
    if (memcmp(a, n, full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[full] & mask) == (n[full] & mask);
}

int netaddr_is_loopback(const struct sockaddr_storage *addr)
{
    static const uint8_t v6_loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    struct sockaddr_storage tmp;
    int bits;
    const uint8_t *b = netaddr_bytes(netaddr_unmap(addr, &tmp), &bits);
    return bits == 32 ? b[0] == 127 : bits == 128 && memcmp(b, v6_loopback, 16) == 0;
}

int netaddr_host_is_loopback(const char *host)
{
    char buf[INET6_ADDRSTRLEN];
    struct sockaddr_storage ss;
    if (host == NULL)
        return 0;
    if (strcasecmp(host, "localhost") == 0)
        return 1;
    size_t len = strlen(host);
    if (host[0] == '[') {
        /* "[::1]" as a URL writes it; a zone id ("%25eth0") is no loopback. */
        if (len < 3 || host[len - 1] != ']' || len - 2 >= sizeof buf)
            return 0;
        memcpy(buf, host + 1, len - 2);
        buf[len - 2] = '\0';
        return netaddr_parse_addr(buf, &ss) == 0 && ss.ss_family == AF_INET6 &&
               netaddr_is_loopback(&ss);
    }
    return netaddr_parse_addr(host, &ss) == 0 && netaddr_is_loopback(&ss);
}
