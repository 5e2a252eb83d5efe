/* check: the smallest test harness that does the job. CHECK() records a failure with file,
 * line and the expression and carries on, so one run shows every broken case; CHECK_DONE()
 * prints the summary and gives main's exit status. */
#ifndef XOAUTHD_TEST_CHECK_H
#define XOAUTHD_TEST_CHECK_H

#include <stdio.h>

static int check_passed;
static int check_failed;

#define CHECK(expr)                                                                    \
    do {                                                                               \
        if (expr) {                                                                    \
            check_passed++;                                                            \
        } else {                                                                       \
            check_failed++;                                                            \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #expr);   \
        }                                                                              \
    } while (0)

#define CHECK_DONE()                                                                   \
    (printf("%d passed, %d failed\n", check_passed, check_failed), check_failed ? 1 : 0)

#endif
