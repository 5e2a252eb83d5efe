/* upstream_order_addrs: the order in which a provider's addresses are tried (RFC 8305 section
 * 4: getaddrinfo's order within a family, the families interleaved, the first address's family
 * first), what is skipped, and the bound. */
#include <arpa/inet.h>
#include <netdb.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "check.h"
#include "upstream.h"

#define N_MAX 16

struct fixture {
    struct addrinfo ai[N_MAX];
    union upstream_addr sa[N_MAX];
    struct sockaddr_un un;
    size_t n;
};

/* Appends a numeric address ("192.0.2.1", "2001:db8::1") or "unix" to the list, port 143. */
static void add(struct fixture *f, const char *spec)
{
    struct addrinfo *a = &f->ai[f->n];
    memset(a, 0, sizeof *a);
    a->ai_socktype = SOCK_STREAM;
    if (strcmp(spec, "unix") == 0) {
        f->un.sun_family = AF_UNIX;
        a->ai_family = AF_UNIX;
        a->ai_addrlen = sizeof f->un;
        a->ai_addr = (struct sockaddr *)&f->un;
    } else {
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof hints);
        hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
        hints.ai_socktype = SOCK_STREAM;
        CHECK(getaddrinfo(spec, "143", &hints, &res) == 0 && res != NULL);
        if (res != NULL && res->ai_addrlen <= sizeof f->sa[f->n]) {
            memcpy(&f->sa[f->n], res->ai_addr, res->ai_addrlen);
            a->ai_family = res->ai_family;
            a->ai_addrlen = res->ai_addrlen;
            a->ai_addr = &f->sa[f->n].sa;
        }
        if (res != NULL)
            freeaddrinfo(res);
    }
    if (f->n > 0)
        f->ai[f->n - 1].ai_next = a;
    f->n++;
}

/* The ordered list as "a,b,c" (addresses only), and the ports all kept. */
static const char *order(struct fixture *f, size_t max, char *out, size_t outsz)
{
    union upstream_addr got[N_MAX];
    size_t n = upstream_order_addrs(f->n > 0 ? &f->ai[0] : NULL, got, max);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        char ip[INET6_ADDRSTRLEN] = "?";
        int port = 0;
        if (got[i].sa.sa_family == AF_INET) {
            inet_ntop(AF_INET, &got[i].in4.sin_addr, ip, sizeof ip);
            port = ntohs(got[i].in4.sin_port);
        } else if (got[i].sa.sa_family == AF_INET6) {
            inet_ntop(AF_INET6, &got[i].in6.sin6_addr, ip, sizeof ip);
            port = ntohs(got[i].in6.sin6_port);
        }
        if (port != 143)
            return "bad port";
        snprintf(out + strlen(out), outsz - strlen(out), "%s%s", i > 0 ? "," : "", ip);
    }
    return out;
}

static int ordered(const char *const *specs, size_t max, const char *want)
{
    struct fixture f;
    char buf[512];
    memset(&f, 0, sizeof f);
    for (size_t i = 0; specs[i] != NULL; i++)
        add(&f, specs[i]);
    const char *got = order(&f, max, buf, sizeof buf);
    if (strcmp(got, want) != 0)
        fprintf(stderr, "want %s, got %s\n", want, got);
    return strcmp(got, want) == 0;
}

int main(void)
{
    /* Dual stack, IPv6 first (RFC 6724's usual answer): the families alternate. */
    const char *dual[] = {"2001:db8::1", "2001:db8::2", "2001:db8::3",
                          "192.0.2.1", "192.0.2.2", NULL};
    CHECK(ordered(dual, UPSTREAM_MAX_ADDRS,
                  "2001:db8::1,192.0.2.1,2001:db8::2,192.0.2.2,2001:db8::3"));
    /* IPv4 first (a host without IPv6 route, gai.conf): IPv4 leads, order within kept. */
    const char *v4first[] = {"192.0.2.9", "192.0.2.8", "2001:db8::9", NULL};
    CHECK(ordered(v4first, UPSTREAM_MAX_ADDRS, "192.0.2.9,2001:db8::9,192.0.2.8"));
    /* One family only: unchanged. */
    const char *only4[] = {"192.0.2.3", "192.0.2.1", "192.0.2.2", NULL};
    CHECK(ordered(only4, UPSTREAM_MAX_ADDRS, "192.0.2.3,192.0.2.1,192.0.2.2"));
    /* The loopback pair of a dual-stack "localhost". */
    const char *lo[] = {"::1", "127.0.0.1", NULL};
    CHECK(ordered(lo, UPSTREAM_MAX_ADDRS, "::1,127.0.0.1"));
    /* Other families are skipped, also when first: the first usable one decides. */
    const char *unix_first[] = {"unix", "192.0.2.1", "unix", "2001:db8::1", NULL};
    CHECK(ordered(unix_first, UPSTREAM_MAX_ADDRS, "192.0.2.1,2001:db8::1"));
    const char *none[] = {"unix", NULL};
    CHECK(ordered(none, UPSTREAM_MAX_ADDRS, ""));
    const char *empty[] = {NULL};
    CHECK(ordered(empty, UPSTREAM_MAX_ADDRS, ""));
    /* Bounded: max entries at most, interleaving first. */
    const char *many[] = {"2001:db8::1", "2001:db8::2", "2001:db8::3",
                          "2001:db8::4", "2001:db8::5", "2001:db8::6",
                          "192.0.2.1",   "192.0.2.2",   "192.0.2.3",
                          "192.0.2.4",   "192.0.2.5",   "192.0.2.6", NULL};
    CHECK(ordered(many, 3, "2001:db8::1,192.0.2.1,2001:db8::2"));
    CHECK(ordered(many, UPSTREAM_MAX_ADDRS,
                  "2001:db8::1,192.0.2.1,2001:db8::2,192.0.2.2,2001:db8::3,192.0.2.3,"
                  "2001:db8::4,192.0.2.4"));
    /* An entry whose length does not fit its family is not copied. */
    struct fixture f;
    char buf[256];
    memset(&f, 0, sizeof f);
    add(&f, "2001:db8::1");
    add(&f, "192.0.2.1");
    f.ai[0].ai_addrlen = sizeof(struct sockaddr_in);
    CHECK(strcmp(order(&f, UPSTREAM_MAX_ADDRS, buf, sizeof buf), "192.0.2.1") == 0);
    return CHECK_DONE();
}
