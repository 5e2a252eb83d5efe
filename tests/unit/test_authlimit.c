/* authlimit: the sliding window, the lockout and its end, per address and per user, and a
 * flood of names that must not grow or break the table. */
#include <stdio.h>

#include "authlimit.h"
#include "check.h"

int main(void)
{
    uint64_t t = 1000000;
    authlimit_reset();

    /* Nine failures in the window: not locked; the tenth locks address and user. */
    for (int i = 0; i < 9; i++)
        authlimit_failed("192.0.2.1", "alice", t + (uint64_t)i * 1000);
    CHECK(!authlimit_locked("192.0.2.1", "alice", t + 9000));
    authlimit_failed("192.0.2.1", "alice", t + 9000);
    CHECK(authlimit_locked("192.0.2.1", NULL, t + 9001));
    CHECK(authlimit_locked("192.0.2.1", "bob", t + 9001));  /* the address is locked */
    CHECK(authlimit_locked("192.0.2.99", "alice", t + 9001)); /* and the user, from anywhere */
    CHECK(!authlimit_locked("192.0.2.99", "bob", t + 9001));
    /* The lock lasts AUTHLIMIT_LOCK_MS from the failure that set it. */
    CHECK(authlimit_locked("192.0.2.1", NULL, t + 9000 + AUTHLIMIT_LOCK_MS - 1));
    CHECK(!authlimit_locked("192.0.2.1", "alice", t + 9000 + AUTHLIMIT_LOCK_MS));

    /* Failures spread wider than the window never lock. */
    authlimit_reset();
    for (int i = 0; i < 50; i++)
        authlimit_failed("198.51.100.7", NULL, t + (uint64_t)i * (AUTHLIMIT_WINDOW_MS / 8));
    CHECK(!authlimit_locked("198.51.100.7", NULL, t + 50 * (AUTHLIMIT_WINDOW_MS / 8)));

    /* A flood of made-up names: bounded table, the locked address stays locked. */
    authlimit_reset();
    for (int i = 0; i < AUTHLIMIT_MAX_FAILURES; i++)
        authlimit_failed("203.0.113.5", NULL, t);
    char name[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(name, sizeof name, "user%d", i);
        authlimit_failed("203.0.113.6", name, t + 1 + (uint64_t)i);
    }
    CHECK(authlimit_locked("203.0.113.5", NULL, t + 20000));
    CHECK(authlimit_locked("203.0.113.6", NULL, t + 20000));

    /* Empty and over-long names are harmless. */
    authlimit_failed("", "", t);
    char longname[400];
    for (size_t i = 0; i < sizeof longname - 1; i++)
        longname[i] = 'x';
    longname[sizeof longname - 1] = '\0';
    authlimit_failed(longname, longname, t);
    CHECK(!authlimit_locked(longname, longname, t));

    /* Configured limits (tests use small ones). */
    authlimit_reset();
    authlimit_configure(2, 1000, 500);
    authlimit_failed("192.0.2.2", "carol", t);
    CHECK(!authlimit_locked("192.0.2.2", "carol", t));
    authlimit_failed("192.0.2.2", "carol", t + 10);
    CHECK(authlimit_locked("192.0.2.2", "carol", t + 11));
    CHECK(!authlimit_locked("192.0.2.2", "carol", t + 511));
    authlimit_configure(0, 0, 0);
    return CHECK_DONE();
}
