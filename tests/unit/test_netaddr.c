/* Unit tests for netaddr.c: parsing networks and addresses, containment (IPv4, IPv6, IPv4
 * clients of a dual-stack socket), loopback addresses and host names. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "check.h"
#include "netaddr.h"

/* addr parsed as a one-host network. */
static struct sockaddr_storage addr_of(const char *s)
{
    struct sockaddr_storage ss;
    int prefix;
    if (netaddr_parse(s, &ss, &prefix) != NETADDR_OK)
        memset(&ss, 0, sizeof ss);
    return ss;
}

static int in_net(const char *net, const char *addr)
{
    struct sockaddr_storage n, a = addr_of(addr);
    int prefix;
    return netaddr_parse(net, &n, &prefix) == NETADDR_OK && netaddr_contains(&n, prefix, &a);
}

static void test_parse(void)
{
    struct sockaddr_storage ss;
    int prefix = -1;
    char text[NETADDR_TEXT_MAX];
    CHECK(netaddr_parse("10.0.0.0/24", &ss, &prefix) == NETADDR_OK && prefix == 24 &&
          ss.ss_family == AF_INET &&
          ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) == 0x0a000000);
    CHECK(netaddr_parse("192.168.7.9", &ss, &prefix) == NETADDR_OK && prefix == 32);
    CHECK(netaddr_parse("2001:db8::/32", &ss, &prefix) == NETADDR_OK && prefix == 32 &&
          ss.ss_family == AF_INET6 && ((struct sockaddr_in6 *)&ss)->sin6_addr.s6_addr[3] == 0xb8);
    CHECK(netaddr_parse("::1", &ss, &prefix) == NETADDR_OK && prefix == 128);
    CHECK(netaddr_parse("0.0.0.0/0", &ss, &prefix) == NETADDR_OK && prefix == 0);
    CHECK(netaddr_parse("::/0", &ss, &prefix) == NETADDR_OK && prefix == 0);
    CHECK(netaddr_parse("10.0.0.0/024", &ss, &prefix) == NETADDR_OK && prefix == 24);
    /* Host bits: refused, with the network they were probably meant to be. */
    CHECK(netaddr_parse("10.0.0.1/8", &ss, &prefix) == NETADDR_HOST_BITS && prefix == 8);
    netaddr_text(&ss, text, sizeof text);
    CHECK(strcmp(text, "10.0.0.0") == 0);
    CHECK(netaddr_parse("2001:db8::1/64", &ss, &prefix) == NETADDR_HOST_BITS);
    netaddr_text(&ss, text, sizeof text);
    CHECK(strcmp(text, "2001:db8::") == 0);
    static const char *const bad[] = {"",           "banana",      "10.0.0.0/33", "::/129",
                                      "10.0.0.0/",  "10.0.0.0/-1", "10.0.0.0/2x", "10.0.0/8",
                                      "/8",         "10.0.0.0/8/8", "localhost",  " 10.0.0.1",
                                      "[::1]",      "1.2.3.4/99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(netaddr_parse(bad[i], &ss, &prefix) == NETADDR_BAD);
}

static void test_contains(void)
{
    CHECK(in_net("10.0.0.0/24", "10.0.0.255"));
    CHECK(!in_net("10.0.0.0/24", "10.0.1.0"));
    CHECK(in_net("10.0.0.0/23", "10.0.1.7"));
    CHECK(in_net("10.0.0.0/7", "11.255.0.1") && !in_net("10.0.0.0/7", "12.0.0.1"));
    CHECK(in_net("192.168.7.9", "192.168.7.9") && !in_net("192.168.7.9", "192.168.7.8"));
    CHECK(in_net("0.0.0.0/0", "203.0.113.5"));
    CHECK(in_net("2001:db8::/32", "2001:db8:ffff::1") && !in_net("2001:db8::/32", "2001:db9::1"));
    CHECK(in_net("::/0", "::1"));
    /* An IPv4 client on a dual-stack socket is in the IPv4 network, not in "::/0". */
    CHECK(in_net("10.0.0.0/8", "::ffff:10.1.2.3") && !in_net("10.0.0.0/8", "::ffff:11.1.2.3"));
    CHECK(in_net("::ffff:0:0/96", "::ffff:10.1.2.3"));
    /* No family crosses over otherwise. */
    CHECK(!in_net("10.0.0.0/8", "::a01:203") && !in_net("::/0", "10.0.0.1"));
    struct sockaddr_storage net = addr_of("10.0.0.0"), unspec;
    memset(&unspec, 0, sizeof unspec);
    CHECK(!netaddr_contains(&net, 0, &unspec) && !netaddr_contains(&unspec, 0, &net));
    CHECK(!netaddr_contains(&net, 33, &net) && !netaddr_contains(&net, -1, &net));
}

static void test_loopback(void)
{
    struct sockaddr_storage a = addr_of("127.0.0.1"), b = addr_of("::ffff:127.9.9.9"),
                            c = addr_of("::1"), d = addr_of("128.0.0.1"), e = addr_of("::2");
    CHECK(netaddr_is_loopback(&a) && netaddr_is_loopback(&b) && netaddr_is_loopback(&c));
    CHECK(!netaddr_is_loopback(&d) && !netaddr_is_loopback(&e));
    CHECK(netaddr_host_is_loopback("127.0.0.1") && netaddr_host_is_loopback("127.1.2.3"));
    CHECK(netaddr_host_is_loopback("::1") && netaddr_host_is_loopback("localhost"));
    CHECK(netaddr_host_is_loopback("::ffff:127.0.0.1"));
    CHECK(!netaddr_host_is_loopback("128.0.0.1") && !netaddr_host_is_loopback("::2"));
    CHECK(!netaddr_host_is_loopback("localhost.example.com") && !netaddr_host_is_loopback(NULL));
    /* Brackets as a URL's host has them (curl_url_get CURLUPART_HOST). */
    CHECK(netaddr_host_is_loopback("[::1]") && netaddr_host_is_loopback("[::ffff:127.0.0.1]"));
    CHECK(netaddr_host_is_loopback("LocalHost"));
    CHECK(!netaddr_host_is_loopback("[127.0.0.1]") && !netaddr_host_is_loopback("[::1"));
    CHECK(!netaddr_host_is_loopback("[::2]") && !netaddr_host_is_loopback("[]"));
    CHECK(!netaddr_host_is_loopback("127.0.0.1.example.com") && !netaddr_host_is_loopback(""));
}

int main(void)
{
    test_parse();
    test_contains();
    test_loopback();
    return CHECK_DONE();
}
