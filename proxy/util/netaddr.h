/* netaddr: numeric IPv4 and IPv6 addresses and networks ("10.0.0.0/24", "2001:db8::/32", a
 * bare address for one host), whether a network contains an address, and whether an address
 * is a loopback one. The one place where allow_networks, auth_lockout_exempt,
 * proxy_trusted and every "loopback only" rule get their answer.
 *
 * A network is a struct sockaddr_storage (family and address; port and the rest zero) and a
 * prefix length. IPv4 clients of a dual-stack socket appear as ::ffff:a.b.c.d (RFC 4291
 * section 2.5.5.2); they are in an IPv4 network and loopback as their IPv4 address is. */
#ifndef XOAUTHD_NETADDR_H
#define XOAUTHD_NETADDR_H

#include <stddef.h>
#include <sys/socket.h>

enum netaddr_parse_result {
    NETADDR_OK = 0,
    NETADDR_BAD = -1,       /* not ADDRESS or ADDRESS/PREFIX, or the prefix is too long */
    NETADDR_HOST_BITS = -2, /* bits past the prefix are set (a typo, usually): net holds
                               the address with them cleared, for "did you mean" */
};

/* Parses "ADDRESS" (prefix 32 or 128) or "ADDRESS/PREFIX", both numeric. */
enum netaddr_parse_result netaddr_parse(const char *s, struct sockaddr_storage *net,
                                        int *prefix);

/* The address as text ("10.0.0.0", "2001:db8::"); "" for another family. */
#define NETADDR_TEXT_MAX 46 /* INET6_ADDRSTRLEN */
void netaddr_text(const struct sockaddr_storage *addr, char *out, size_t outsz);

/* 1 when addr (AF_INET or AF_INET6) is in net/prefix. */
int netaddr_contains(const struct sockaddr_storage *net, int prefix,
                     const struct sockaddr_storage *addr);

/* 1 for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104. */
int netaddr_is_loopback(const struct sockaddr_storage *addr);

/* 1 when host is "localhost" or a numeric loopback address, IPv6 with or without the
 * brackets of a URL ("[::1]", RFC 3986 section 3.2.2). NULL is not. */
int netaddr_host_is_loopback(const char *host);

#endif
