/* proxy_protocol: the PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2)
 * that a load balancer sends first on each connection, so that xoauthd sees the device's own
 * address (for allow_networks, allow_plaintext_auth = loopback and the logs) instead of the
 * balancer's.
 *
 *   v1: "PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\n" (text, at most 107 octets), or
 *       "PROXY UNKNOWN ...\r\n";
 *   v2: the 12-octet signature \r\n\r\n\0\r\nQUIT\n, version/command, family/protocol, a 16-bit
 *       length, then the addresses (and TLVs, ignored).
 *
 * A parser without I/O: it is handed the bytes received so far and says AGAIN (need more),
 * OK (the header is complete and *used octets long) or INVALID. It never asks for more than
 * the header: proxy_proto_want() tells the reader how many more octets it may read without
 * reading past the header, so that the client's first bytes (a TLS ClientHello) stay in the
 * socket for the session. LOCAL (v2) and UNKNOWN (v1) connections - the balancer's own health
 * checks - keep the socket's address. */
#ifndef XOAUTHD_PROXY_PROTOCOL_H
#define XOAUTHD_PROXY_PROTOCOL_H

#include <stddef.h>
#include <sys/socket.h>

#define PROXY_PROTO_V1_MAX 107
#define PROXY_PROTO_V2_MAX (16 + 2048) /* addresses plus a generous allowance of TLVs */

enum proxy_proto_result { PROXY_PROTO_AGAIN, PROXY_PROTO_OK, PROXY_PROTO_INVALID };

struct proxy_proto_info {
    int version;                  /* 1 or 2 */
    int local;                    /* LOCAL / UNKNOWN / non-TCP family: no address carried */
    struct sockaddr_storage src;  /* the client as the balancer saw it (when !local) */
    struct sockaddr_storage dst;
    size_t used;                  /* header length, when OK */
    const char *why;              /* reason, when INVALID */
};

enum proxy_proto_result proxy_proto_parse(const char *buf, size_t len,
                                          struct proxy_proto_info *info);

/* How many more octets may be read after len octets without crossing the end of the header
 * (at least 1 while AGAIN; 0 when the header is complete or invalid). */
size_t proxy_proto_want(const char *buf, size_t len);

#endif
