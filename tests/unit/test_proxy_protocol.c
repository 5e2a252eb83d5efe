/* PROXY protocol v1 and v2 headers, fed whole and one byte at a time the way proxy_accept.c
 * reads them (never more than proxy_proto_want() octets), with the client's first bytes
 * behind the header that must not be consumed. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "proxy_protocol.h"

/* Reads in like proxy_accept.c: want() octets at a time, at most step per read. Returns the
 * final result; *consumed = octets taken. */
static enum proxy_proto_result feed(const char *in, size_t len, size_t step,
                                    struct proxy_proto_info *info, size_t *consumed)
{
    size_t have = 0;
    for (;;) {
        enum proxy_proto_result r = proxy_proto_parse(in, have, info);
        if (r != PROXY_PROTO_AGAIN) {
            *consumed = have;
            return r;
        }
        size_t want = proxy_proto_want(in, have);
        CHECK(want > 0);
        if (want > step)
            want = step;
        if (have + want > len) {
            *consumed = have;
            return PROXY_PROTO_AGAIN;
        }
        have += want;
    }
}

static void check_v4(const struct proxy_proto_info *info, const char *src, unsigned sport)
{
    const struct sockaddr_in *in = (const struct sockaddr_in *)&info->src;
    char buf[64];
    CHECK(in->sin_family == AF_INET);
    inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
    CHECK(strcmp(buf, src) == 0);
    CHECK(ntohs(in->sin_port) == sport);
}

static void test_v1(void)
{
    static const char hdr[] = "PROXY TCP4 192.0.2.7 198.51.100.1 40000 2525\r\n";
    char in[256];
    snprintf(in, sizeof in, "%sEHLO x\r\n", hdr);
    size_t steps[] = {1, 3, 1000};
    for (size_t i = 0; i < 3; i++) {
        struct proxy_proto_info info;
        size_t used;
        CHECK(feed(in, strlen(in), steps[i], &info, &used) == PROXY_PROTO_OK);
        CHECK(used == strlen(hdr) && info.used == strlen(hdr)); /* not one byte more */
        CHECK(info.version == 1 && !info.local);
        check_v4(&info, "192.0.2.7", 40000);
    }
    struct proxy_proto_info info;
    size_t used;
    const char *v6 = "PROXY TCP6 2001:db8::7 2001:db8::1 1 25\r\n";
    CHECK(feed(v6, strlen(v6), 1, &info, &used) == PROXY_PROTO_OK);
    CHECK(info.src.ss_family == AF_INET6 &&
          ntohs(((struct sockaddr_in6 *)&info.src)->sin6_port) == 1);
    const char *unk = "PROXY UNKNOWN\r\n";
    CHECK(feed(unk, strlen(unk), 1, &info, &used) == PROXY_PROTO_OK && info.local &&
          used == 15);
    const char *unk2 = "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n";
    CHECK(proxy_proto_parse(unk2, strlen(unk2), &info) == PROXY_PROTO_OK && info.local);

    /* Whole-buffer prefixes are AGAIN, never INVALID. */
    for (size_t n = 0; n < strlen(hdr); n++)
        CHECK(proxy_proto_parse(hdr, n, &info) == PROXY_PROTO_AGAIN);

    const char *bad[] = {
        "EHLO x\r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 40000\r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 40000 65536\r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 040000 25\r\n",
        "PROXY TCP4 2001:db8::1 198.51.100.1 1 25\r\n",
        "PROXY TCP5 192.0.2.7 198.51.100.1 1 25\r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 1 25\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 1 25 extra\r\n",
        "proxy TCP4 192.0.2.7 198.51.100.1 1 25\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (feed(bad[i], strlen(bad[i]), 1, &info, &used) != PROXY_PROTO_INVALID) {
            fprintf(stderr, "not refused: %s", bad[i]);
            CHECK(0);
        }
        CHECK(info.why != NULL);
    }
    /* No CRLF within 107 octets. */
    char longline[200];
    memset(longline, 'A', sizeof longline);
    memcpy(longline, "PROXY TCP4 ", 11);
    CHECK(feed(longline, sizeof longline, 1, &info, &used) == PROXY_PROTO_INVALID);
    CHECK(used <= PROXY_PROTO_V1_MAX);
}

static size_t make_v2(unsigned char *b, unsigned cmd, unsigned fam, const void *addr,
                      size_t alen, size_t tlv)
{
    static const unsigned char sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                          0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
    memcpy(b, sig, 12);
    b[12] = (unsigned char)(0x20 | cmd);
    b[13] = (unsigned char)fam;
    size_t body = alen + tlv;
    b[14] = (unsigned char)(body >> 8);
    b[15] = (unsigned char)(body & 0xff);
    memcpy(b + 16, addr, alen);
    memset(b + 16 + alen, 0xee, tlv);
    return 16 + body;
}

static void test_v2(void)
{
    unsigned char b[4096];
    unsigned char a4[12] = {192, 0, 2, 7, 198, 51, 100, 1, 0x9c, 0x40, 0x09, 0xc5};
    size_t n = make_v2(b, 1, 0x11, a4, sizeof a4, 0);
    memcpy(b + n, "\x16\x03\x01", 3); /* a ClientHello right behind */
    struct proxy_proto_info info;
    size_t used;
    for (size_t step = 1; step <= 64; step *= 4) {
        CHECK(feed((char *)b, n + 3, step, &info, &used) == PROXY_PROTO_OK);
        CHECK(used == n && info.used == n && info.version == 2 && !info.local);
        check_v4(&info, "192.0.2.7", 40000);
    }
    /* With TLVs (ignored). */
    n = make_v2(b, 1, 0x11, a4, sizeof a4, 300);
    CHECK(feed((char *)b, n, 1, &info, &used) == PROXY_PROTO_OK && used == n);
    /* TCP6. */
    unsigned char a6[36];
    memset(a6, 0, sizeof a6);
    a6[0] = 0x20;
    a6[1] = 0x01;
    a6[15] = 7;
    a6[32] = 0;
    a6[33] = 99;
    n = make_v2(b, 1, 0x21, a6, sizeof a6, 0);
    CHECK(feed((char *)b, n, 1, &info, &used) == PROXY_PROTO_OK);
    CHECK(info.src.ss_family == AF_INET6 &&
          ntohs(((struct sockaddr_in6 *)&info.src)->sin6_port) == 99);
    /* LOCAL, UNSPEC, UDP: the real address is used. */
    n = make_v2(b, 0, 0x00, a4, 0, 0);
    CHECK(feed((char *)b, n, 1, &info, &used) == PROXY_PROTO_OK && info.local && used == 16);
    n = make_v2(b, 1, 0x12, a4, sizeof a4, 0);
    CHECK(proxy_proto_parse((char *)b, n, &info) == PROXY_PROTO_OK && info.local);
    /* Bad: version 1 nibble, command 2, short TCP4 block, too long. */
    n = make_v2(b, 1, 0x11, a4, sizeof a4, 0);
    b[12] = 0x11;
    CHECK(proxy_proto_parse((char *)b, n, &info) == PROXY_PROTO_INVALID);
    n = make_v2(b, 2, 0x11, a4, sizeof a4, 0);
    CHECK(proxy_proto_parse((char *)b, n, &info) == PROXY_PROTO_INVALID);
    n = make_v2(b, 1, 0x11, a4, 8, 0);
    CHECK(proxy_proto_parse((char *)b, n, &info) == PROXY_PROTO_INVALID);
    make_v2(b, 1, 0x11, a4, sizeof a4, 0);
    b[14] = 0xff;
    CHECK(proxy_proto_parse((char *)b, 16, &info) == PROXY_PROTO_INVALID);
    /* A broken signature is refused as soon as it differs. */
    n = make_v2(b, 1, 0x11, a4, sizeof a4, 0);
    b[5] = 'X';
    CHECK(proxy_proto_parse((char *)b, 6, &info) == PROXY_PROTO_INVALID);
    CHECK(proxy_proto_parse((char *)b, 5, &info) == PROXY_PROTO_AGAIN);
}

int main(void)
{
    test_v1();
    test_v2();
    return CHECK_DONE();
}
