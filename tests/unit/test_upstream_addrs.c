/* upstream_order_addrs: the order in which a provider's addresses are tried (RFC 8305 section
 * 4: getaddrinfo's order within a family, the families interleaved, the first address's family
 * first), what is skipped, and the bound. */
#include <arpa/inet.h>
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

/* Appends "v4:a.b.c.d", "v6:x::y" or "unix" to the list, with port 143. */
static void add(struct fixture *f, const char *spec)
{
    struct addrinfo *a = &f->ai[f->n];
    memset(a, 0, sizeof *a);
    if (strncmp(spec, "v4:", 3) == 0) {
        f->sa[f->n].in4.sin_family = AF_INET;
        f->sa[f->n].in4.sin_port = htons(143);
        inet_pton(AF_INET, spec + 3, &f->sa[f->n].in4.sin_addr);
        a->ai_family = AF_INET;
        a->ai_addrlen = sizeof f->sa[f->n].in4;
        a->ai_addr = &f->sa[f->n].sa;
    } else if (strncmp(spec, "v6:", 3) == 0) {
        f->sa[f->n].in6.sin6_family = AF_INET6;
        f->sa[f->n].in6.sin6_port = htons(143);
        inet_pton(AF_INET6, spec + 3, &f->sa[f->n].in6.sin6_addr);
        a->ai_family = AF_INET6;
        a->ai_addrlen = sizeof f->sa[f->n].in6;
        a->ai_addr = &f->sa[f->n].sa;
    } else {
        f->un.sun_family = AF_UNIX;
        a->ai_family = AF_UNIX;
        a->ai_addrlen = sizeof f->un;
        a->ai_addr = (struct sockaddr *)&f->un;
    }
    a->ai_socktype = SOCK_STREAM;
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
    const char *dual[] = {"v6:2001:db8::1", "v6:2001:db8::2", "v6:2001:db8::3",
                          "v4:192.0.2.1", "v4:192.0.2.2", NULL};
    CHECK(ordered(dual, UPSTREAM_MAX_ADDRS,
                  "2001:db8::1,192.0.2.1,2001:db8::2,192.0.2.2,2001:db8::3"));
    /* IPv4 first (a host without IPv6 route, gai.conf): IPv4 leads, order within kept. */
    const char *v4first[] = {"v4:192.0.2.9", "v4:192.0.2.8", "v6:2001:db8::9", NULL};
    CHECK(ordered(v4first, UPSTREAM_MAX_ADDRS, "192.0.2.9,2001:db8::9,192.0.2.8"));
    /* One family only: unchanged. */
    const char *only4[] = {"v4:192.0.2.3", "v4:192.0.2.1", "v4:192.0.2.2", NULL};
    CHECK(ordered(only4, UPSTREAM_MAX_ADDRS, "192.0.2.3,192.0.2.1,192.0.2.2"));
    /* The loopback pair of a dual-stack "localhost". */
    const char *lo[] = {"v6:::1", "v4:127.0.0.1", NULL};
    CHECK(ordered(lo, UPSTREAM_MAX_ADDRS, "::1,127.0.0.1"));
    /* Other families are skipped, also when first: the first usable one decides. */
    const char *unix_first[] = {"unix", "v4:192.0.2.1", "unix", "v6:2001:db8::1", NULL};
    CHECK(ordered(unix_first, UPSTREAM_MAX_ADDRS, "192.0.2.1,2001:db8::1"));
    const char *none[] = {"unix", NULL};
    CHECK(ordered(none, UPSTREAM_MAX_ADDRS, ""));
    const char *empty[] = {NULL};
    CHECK(ordered(empty, UPSTREAM_MAX_ADDRS, ""));
    /* Bounded: max entries at most, interleaving first. */
    const char *many[] = {"v6:2001:db8::1", "v6:2001:db8::2", "v6:2001:db8::3",
                          "v6:2001:db8::4", "v6:2001:db8::5", "v6:2001:db8::6",
                          "v4:192.0.2.1",   "v4:192.0.2.2",   "v4:192.0.2.3",
                          "v4:192.0.2.4",   "v4:192.0.2.5",   "v4:192.0.2.6", NULL};
    CHECK(ordered(many, 3, "2001:db8::1,192.0.2.1,2001:db8::2"));
    CHECK(ordered(many, UPSTREAM_MAX_ADDRS,
                  "2001:db8::1,192.0.2.1,2001:db8::2,192.0.2.2,2001:db8::3,192.0.2.3,"
                  "2001:db8::4,192.0.2.4"));
    /* An entry whose length does not fit its family is not copied. */
    struct fixture f;
    char buf[256];
    memset(&f, 0, sizeof f);
    add(&f, "v6:2001:db8::1");
    add(&f, "v4:192.0.2.1");
    f.ai[0].ai_addrlen = sizeof(struct sockaddr_in);
    CHECK(strcmp(order(&f, UPSTREAM_MAX_ADDRS, buf, sizeof buf), "192.0.2.1") == 0);
    return CHECK_DONE();
}
