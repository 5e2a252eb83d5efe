/* libFuzzer target: the header_from filter (sender_rules.c) over a hostile message, fed in
 * pieces the way smtp_session.c relays DATA, then finished. The first octet picks the mode
 * (bit 0: account-with-name, else account) and the piece size (the other bits). Besides
 * crashes, it checks what the filter promises: its output has exactly one From:, and filtered
 * again it comes back unchanged (so that From: is the mailbox). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sender_rules.h"

struct fuzz_out {
    char *p;
    size_t len;
};

static void fuzz_put(struct fuzz_out *o, const char *p, size_t n)
{
    char *g = realloc(o->p, o->len + n + 1);
    if (g == NULL)
        abort();
    memcpy(g + o->len, p, n);
    o->p = g;
    o->len += n;
}

/* Runs in through a filter for acct in pieces of step octets; 0, or -1 when it refused. */
static int fuzz_filter(const struct config_account *acct, const char *in, size_t len,
                       size_t step, struct fuzz_out *o)
{
    struct sender_filter f;
    sender_filter_init(&f, acct);
    const char *p;
    size_t pl;
    int r = 0;
    for (size_t i = 0; i < len && r == 0; i += step) {
        r = sender_filter_feed(&f, in + i, len - i < step ? len - i : step, &p, &pl);
        if (r == 0)
            fuzz_put(o, p, pl);
    }
    if (r == 0 && sender_filter_finish(&f, &p, &pl) == 0)
        fuzz_put(o, p, pl);
    sender_filter_reset(&f);
    return r;
}

/* From: fields in the header block of o, counted without sender_rules.c: lines up to the
 * first empty one that start (the first line: after WSP) with "from", WSP and a colon. */
static size_t fuzz_count_from(const struct fuzz_out *o)
{
    size_t n = 0;
    for (size_t i = 0; i < o->len;) {
        const char *lf = memchr(o->p + i, '\n', o->len - i);
        size_t end = lf != NULL ? (size_t)(lf - o->p) : o->len, j = i;
        if (end == i || (end == i + 1 && o->p[i] == '\r'))
            break;
        while (i == 0 && j < end && (o->p[j] == ' ' || o->p[j] == '\t'))
            j++;
        if (end - j >= 4 && strncasecmp(o->p + j, "from", 4) == 0) {
            for (j += 4; j < end && (o->p[j] == ' ' || o->p[j] == '\t');)
                j++;
            n += j < end && o->p[j] == ':';
        }
        i = end + 1;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct config_account acct;
    memset(&acct, 0, sizeof acct);
    acct.name = "fuzz";
    acct.username = "scanner@contoso.com";
    acct.header_from = (data[0] & 1) ? CONFIG_HDRFROM_ACCOUNT_WITH_NAME : CONFIG_HDRFROM_ACCOUNT;
    size_t step = (size_t)(data[0] >> 1) + 1;
    const char *in = (const char *)data + 1;
    size_t len = size - 1;

    struct fuzz_out once = {0}, twice = {0};
    if (fuzz_filter(&acct, in, len, step, &once) == 0 &&
        fuzz_filter(&acct, once.p != NULL ? once.p : "", once.len, once.len + 1, &twice) == 0 &&
        (twice.len != once.len || (once.len > 0 && memcmp(once.p, twice.p, once.len) != 0)))
        abort(); /* the first pass left something a second one changes */
    if (once.len > 0 && fuzz_count_from(&once) != 1)
        abort(); /* not exactly one From: */
    free(once.p);
    free(twice.p);
    return 0;
}
