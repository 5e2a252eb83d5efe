#include "proxy_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char proxy_v2_sig[12] = {'\r', '\n', '\r', '\n', '\0', '\r',
                                      '\n', 'Q',  'U',  'I',  'T',  '\n'};
static const char proxy_v1_sig[6] = {'P', 'R', 'O', 'X', 'Y', ' '};

/* -1: neither signature can match; 0: not decided yet; 1 or 2: the version. */
static int proxy_proto_version(const char *buf, size_t len)
{
    size_t n1 = len < sizeof proxy_v1_sig ? len : sizeof proxy_v1_sig;
    size_t n2 = len < sizeof proxy_v2_sig ? len : sizeof proxy_v2_sig;
    int v1 = memcmp(buf, proxy_v1_sig, n1) == 0;
    int v2 = memcmp(buf, proxy_v2_sig, n2) == 0;
    if (!v1 && !v2)
        return -1;
    if (v1 && len >= sizeof proxy_v1_sig)
        return 1;
    if (v2 && len >= sizeof proxy_v2_sig)
        return 2;
    return 0;
}

static enum proxy_proto_result proxy_invalid(struct proxy_proto_info *info, const char *why)
{
    info->why = why;
    return PROXY_PROTO_INVALID;
}

/* One v1 field: an address of the family, or a port (0-65535, no leading zeros but "0"). */
static int proxy_v1_port(const char *s, uint16_t *out)
{
    if (*s == '\0' || strlen(s) > 5 || (s[0] == '0' && s[1] != '\0'))
        return -1;
    unsigned long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (v > 65535)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

static int proxy_v1_addr(int family, const char *a, const char *port,
                         struct sockaddr_storage *ss)
{
    uint16_t p;
    memset(ss, 0, sizeof *ss);
    if (proxy_v1_port(port, &p) != 0)
        return -1;
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        if (inet_pton(AF_INET, a, &in->sin_addr) != 1)
            return -1;
        in->sin_family = AF_INET;
        in->sin_port = htons(p);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        if (inet_pton(AF_INET6, a, &in6->sin6_addr) != 1)
            return -1;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(p);
    }
    return 0;
}

static enum proxy_proto_result proxy_parse_v1(const char *buf, size_t len,
                                              struct proxy_proto_info *info)
{
    const char *lf = memchr(buf, '\n', len);
    if (lf == NULL)
        return len >= PROXY_PROTO_V1_MAX ? proxy_invalid(info, "v1 header longer than 107 octets")
                                         : PROXY_PROTO_AGAIN;
    size_t line_len = (size_t)(lf - buf) + 1;
    if (line_len > PROXY_PROTO_V1_MAX)
        return proxy_invalid(info, "v1 header longer than 107 octets");
    if (line_len < 2 || buf[line_len - 2] != '\r')
        return proxy_invalid(info, "v1 header does not end in CRLF");
    char line[PROXY_PROTO_V1_MAX + 1];
    memcpy(line, buf, line_len - 2);
    line[line_len - 2] = '\0';
    info->version = 1;
    info->used = line_len;
    char *f[7];
    size_t n = 0;
    char *save = NULL;
    for (char *t = strtok_r(line, " ", &save); t != NULL && n < 7; t = strtok_r(NULL, " ", &save))
        f[n++] = t;
    if (n >= 2 && strcmp(f[1], "UNKNOWN") == 0) {
        /* "the receiver must accept this connection as valid and must use the real
         * connection endpoints and discard the protocol block including the family" */
        info->local = 1;
        return PROXY_PROTO_OK;
    }
    if (n != 6)
        return proxy_invalid(info, "v1 header does not have 6 fields");
    int family;
    if (strcmp(f[1], "TCP4") == 0)
        family = AF_INET;
    else if (strcmp(f[1], "TCP6") == 0)
        family = AF_INET6;
    else
        return proxy_invalid(info, "v1 protocol is not TCP4, TCP6 or UNKNOWN");
    if (proxy_v1_addr(family, f[2], f[4], &info->src) != 0 ||
        proxy_v1_addr(family, f[3], f[5], &info->dst) != 0)
        return proxy_invalid(info, "v1 address or port malformed");
    return PROXY_PROTO_OK;
}

static enum proxy_proto_result proxy_parse_v2(const char *buf, size_t len,
                                              struct proxy_proto_info *info)
{
    if (len < 16)
        return PROXY_PROTO_AGAIN;
    const unsigned char *u = (const unsigned char *)buf;
    if ((u[12] & 0xf0) != 0x20)
        return proxy_invalid(info, "v2 version is not 2");
    unsigned cmd = u[12] & 0x0f;
    if (cmd > 1)
        return proxy_invalid(info, "v2 command is neither LOCAL nor PROXY");
    size_t body = ((size_t)u[14] << 8) | u[15];
    if (16 + body > PROXY_PROTO_V2_MAX)
        return proxy_invalid(info, "v2 header too long");
    if (len < 16 + body)
        return PROXY_PROTO_AGAIN;
    info->version = 2;
    info->used = 16 + body;
    const unsigned char *a = u + 16;
    unsigned fam = u[13] >> 4, proto = u[13] & 0x0f;
    if (cmd == 0 || proto != 1 || (fam != 1 && fam != 2)) {
        /* LOCAL (health check), UNSPEC, UDP or UNIX: the real endpoints are used. */
        info->local = 1;
        return PROXY_PROTO_OK;
    }
    memset(&info->src, 0, sizeof info->src);
    memset(&info->dst, 0, sizeof info->dst);
    if (fam == 1) {
        if (body < 12)
            return proxy_invalid(info, "v2 TCP4 block shorter than 12 octets");
        struct sockaddr_in *s = (struct sockaddr_in *)&info->src;
        struct sockaddr_in *d = (struct sockaddr_in *)&info->dst;
        s->sin_family = d->sin_family = AF_INET;
        memcpy(&s->sin_addr, a, 4);
        memcpy(&d->sin_addr, a + 4, 4);
        memcpy(&s->sin_port, a + 8, 2);
        memcpy(&d->sin_port, a + 10, 2);
    } else {
        if (body < 36)
            return proxy_invalid(info, "v2 TCP6 block shorter than 36 octets");
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&info->src;
        struct sockaddr_in6 *d = (struct sockaddr_in6 *)&info->dst;
        s->sin6_family = d->sin6_family = AF_INET6;
        memcpy(&s->sin6_addr, a, 16);
        memcpy(&d->sin6_addr, a + 16, 16);
        memcpy(&s->sin6_port, a + 32, 2);
        memcpy(&d->sin6_port, a + 34, 2);
    }
    return PROXY_PROTO_OK;
}

enum proxy_proto_result proxy_proto_parse(const char *buf, size_t len,
                                          struct proxy_proto_info *info)
{
    memset(info, 0, sizeof *info);
    int v = proxy_proto_version(buf, len);
    if (v < 0)
        return proxy_invalid(info, "no PROXY protocol signature");
    if (v == 0)
        return PROXY_PROTO_AGAIN;
    return v == 1 ? proxy_parse_v1(buf, len, info) : proxy_parse_v2(buf, len, info);
}

size_t proxy_proto_want(const char *buf, size_t len)
{
    struct proxy_proto_info info;
    if (proxy_proto_parse(buf, len, &info) != PROXY_PROTO_AGAIN)
        return 0;
    /* 8 octets tell v1 from v2 and belong to either header (v1's shortest is 15). */
    if (len < 8)
        return 8 - len;
    if (memcmp(buf, proxy_v1_sig, sizeof proxy_v1_sig) == 0)
        return 1; /* v1 ends at a LF only a byte-wise read can stop at */
    if (len < 16)
        return 16 - len;
    const unsigned char *u = (const unsigned char *)buf;
    return 16 + (((size_t)u[14] << 8) | u[15]) - len;
}
