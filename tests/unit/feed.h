/* feed: the harness of the streaming parser tests (test_imap_parse.c, test_pop3_parse.c). A
 * parser keeps its place between reads, so it must give the same events however its input is
 * cut: feed_each_way() renders one case whole, one byte at a time and cut in two at every point
 * (the first 300), and compares every rendering with the expected text. */
#ifndef XOAUTHD_TEST_FEED_H
#define XOAUTHD_TEST_FEED_H

#include <stdio.h>
#include <string.h>

/* Renders into out what the parser under test makes of in[0..len), given to it in pieces of at
 * most step bytes (0: no limit) and cut after split bytes (0: not cut); arg is the test's. */
typedef void feed_render_fn(const char *in, size_t len, size_t step, size_t split, void *arg,
                            char *out, size_t outsz);

/* How much of in[off..len) the next piece holds, for step and split as above. */
static size_t feed_piece(size_t len, size_t off, size_t step, size_t split)
{
    size_t chunk = len - off;
    if (step > 0 && chunk > step)
        chunk = step;
    if (split > 0 && off < split && chunk > split - off)
        chunk = split - off;
    return chunk;
}

/* 1 when every way of feeding in renders as want; otherwise 0, after printing the first way
 * that did not, with what it gave. */
static int feed_each_way(feed_render_fn *render, void *arg, const char *in, size_t len,
                         const char *want)
{
    static char got[16384];
    static const char *const how[] = {"whole", "byte by byte"};
    for (size_t way = 0; way < 2; way++) {
        render(in, len, way, 0, arg, got, sizeof got);
        if (strcmp(got, want) != 0) {
            fprintf(stderr, "%s: %.60s...\n  want %s\n  got  %s\n", how[way], in, want, got);
            return 0;
        }
    }
    for (size_t k = 1; k < len && k < 300; k++) {
        render(in, len, 0, k, arg, got, sizeof got);
        if (strcmp(got, want) != 0) {
            fprintf(stderr, "split at %zu: %.60s...\n  want %s\n  got  %s\n", k, in, want, got);
            return 0;
        }
    }
    return 1;
}

#endif
