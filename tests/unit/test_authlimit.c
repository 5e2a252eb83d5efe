/* authlimit: the sliding window, the lockout and its end, per address and per user, and a
 * flood of names that must not grow or break the table; known (address, name) pairs that the
 * name lock leaves alone, their file and its parser; attempts while locked that neither count
 * nor extend; unlock; eviction that keeps the counter of the name under attack. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authlimit.h"
#include "check.h"
#include "tmpdir.h"

static time_t fake_now = 1800000000; /* the injectable wall clock */
static time_t fake_clock(void) { return fake_now; }

/* The name lock is for new addresses only: a pair that logged in recently stays in. */
static void test_known_pair(void)
{
    uint64_t t = 5000000;
    authlimit_reset();
    authlimit_known_reset();
    authlimit_succeeded("192.0.2.10", "dave");
    CHECK(authlimit_known("192.0.2.10", "dave"));
    CHECK(!authlimit_known("192.0.2.10", "erin"));
    CHECK(!authlimit_known("192.0.2.11", "dave"));
    for (int i = 0; i < AUTHLIMIT_MAX_FAILURES; i++) {
        char peer[32];
        snprintf(peer, sizeof peer, "198.51.100.%d", i + 1); /* a guesser on many addresses */
        authlimit_failed(peer, "dave", t + (uint64_t)i);
    }
    CHECK(authlimit_locked("203.0.113.77", "dave", t + 100));  /* a new address: locked */
    CHECK(!authlimit_locked("192.0.2.10", "dave", t + 100));   /* the known one: not */
    CHECK(authlimit_lock_left("203.0.113.77", "dave", t + 100) == AUTHLIMIT_LOCK_MS - 91);
    /* The address lock still holds for a known pair: it is this address's own failures. */
    for (int i = 0; i < AUTHLIMIT_MAX_FAILURES; i++)
        authlimit_failed("192.0.2.10", "nobody", t + 200 + (uint64_t)i);
    CHECK(authlimit_locked("192.0.2.10", "dave", t + 300));
    /* Known for AUTHLIMIT_KNOWN_DAYS days, no more. */
    authlimit_reset();
    for (int i = 0; i < AUTHLIMIT_MAX_FAILURES; i++)
        authlimit_failed(NULL, "dave", t + (uint64_t)i);
    fake_now += (time_t)AUTHLIMIT_KNOWN_DAYS * 86400 - 1;
    CHECK(!authlimit_locked("192.0.2.10", "dave", t + 100));
    fake_now += 2;
    CHECK(!authlimit_known("192.0.2.10", "dave"));
    CHECK(authlimit_locked("192.0.2.10", "dave", t + 100));
    authlimit_known_reset();
    authlimit_reset();
}

/* Attempts while locked neither count nor extend; after the lock the key starts afresh. */
static void test_locked_attempts(void)
{
    uint64_t t = 9000000;
    authlimit_reset();
    for (int i = 0; i < AUTHLIMIT_MAX_FAILURES; i++)
        authlimit_failed("192.0.2.20", NULL, t);
    CHECK(authlimit_locked("192.0.2.20", NULL, t));
    /* A retrying client: 32 more failures during the lock (the field's Postfix queue). */
    for (int i = 1; i <= 32; i++)
        authlimit_failed("192.0.2.20", NULL, t + (uint64_t)i * (AUTHLIMIT_LOCK_MS / 33));
    uint64_t end = t + AUTHLIMIT_LOCK_MS;
    CHECK(authlimit_lock_left("192.0.2.20", NULL, end - 1) == 1); /* not extended */
    CHECK(!authlimit_locked("192.0.2.20", NULL, end));
    /* One failure after the lock does not re-lock it. */
    authlimit_failed("192.0.2.20", NULL, end);
    CHECK(!authlimit_locked("192.0.2.20", NULL, end + 1));
    for (int i = 0; i < AUTHLIMIT_MAX_FAILURES - 2; i++)
        authlimit_failed("192.0.2.20", NULL, end + 2);
    CHECK(!authlimit_locked("192.0.2.20", NULL, end + 3));
    authlimit_failed("192.0.2.20", NULL, end + 4);
    CHECK(authlimit_locked("192.0.2.20", NULL, end + 5));
    authlimit_reset();
}

/* unlock forgets an address or a name, nothing else. */
static void test_unlock(void)
{
    uint64_t t = 20000000;
    authlimit_reset();
    for (int i = 0; i < AUTHLIMIT_MAX_FAILURES; i++)
        authlimit_failed("192.0.2.30", "frank", t);
    authlimit_failed("192.0.2.31", "grace", t);
    CHECK(authlimit_unlock("192.0.2.30") == 1);
    CHECK(!authlimit_locked("192.0.2.30", NULL, t + 1));
    CHECK(authlimit_locked("192.0.2.99", "frank", t + 1));
    CHECK(authlimit_unlock("frank") == 1);
    CHECK(!authlimit_locked("192.0.2.99", "frank", t + 1));
    CHECK(authlimit_unlock("frank") == 0);
    for (int i = 0; i < AUTHLIMIT_MAX_FAILURES; i++)
        authlimit_failed("2001:db8::30", NULL, t);
    CHECK(authlimit_unlock("2001:0db8:0:0::30") == 1); /* the address in another spelling */
    CHECK(!authlimit_locked("2001:db8::30", NULL, t + 1));
    CHECK(authlimit_unlock("") == 0);
    /* The other entries survived the moves inside the table. */
    for (int i = 0; i < AUTHLIMIT_MAX_FAILURES - 1; i++)
        authlimit_failed("192.0.2.31", NULL, t + 2);
    CHECK(authlimit_locked("192.0.2.31", NULL, t + 3));
    authlimit_reset();
}

/* A guesser fills the table with fresh names: the counter of the name it attacks stays. */
static void test_eviction(void)
{
    uint64_t t = 30000000;
    char name[32];
    authlimit_reset();
    for (int i = 0; i < AUTHLIMIT_MAX_FAILURES / 2; i++)
        authlimit_failed(NULL, "target", t + (uint64_t)i);
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof name, "fresh%d", i);
        authlimit_failed(NULL, name, t + 100 + (uint64_t)i);
    }
    for (int i = 0; i < AUTHLIMIT_MAX_FAILURES - AUTHLIMIT_MAX_FAILURES / 2; i++)
        authlimit_failed(NULL, "target", t + 6000 + (uint64_t)i);
    CHECK(authlimit_locked("192.0.2.40", "target", t + 7000));
    /* A locked entry outlives a flood of unlocked ones. */
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof name, "again%d", i);
        authlimit_failed(NULL, name, t + 8000 + (uint64_t)i);
    }
    CHECK(authlimit_locked("192.0.2.40", "target", t + 14000));
    authlimit_reset();
}

/* Checks in flight count as failures when a new check would start: a burst of concurrent
 * checks from many addresses stops at the limit, and the known pair is still let through. */
static void test_pending(void)
{
    uint64_t t = 40000000;
    char peer[32];
    authlimit_reset();
    authlimit_known_reset();
    authlimit_succeeded("192.0.2.60", "kate");
    authlimit_configure(5, 600000, 900000);
    for (int i = 0; i < 3; i++)
        authlimit_failed("198.51.100.200", "kate", t);
    for (int i = 0; i < 2; i++) {
        snprintf(peer, sizeof peer, "198.51.100.%d", i + 1);
        CHECK(authlimit_start_left(peer, "kate", t) == 0);
        authlimit_check_begin(peer, "kate", t);
    }
    /* 3 failures + 2 in flight: a new address waits, the known pair does not; neither is
     * locked yet (nothing has failed past the limit). */
    CHECK(authlimit_start_left("203.0.113.1", "kate", t) == 900000);
    CHECK(!authlimit_locked("203.0.113.1", "kate", t));
    CHECK(authlimit_start_left("192.0.2.60", "kate", t) == 0);
    /* One check ends well (no failure): room for one more. */
    authlimit_check_end("198.51.100.1", "kate");
    CHECK(authlimit_start_left("203.0.113.1", "kate", t + 1) == 0);
    /* The other fails: now the name is really locked, for new addresses only. */
    authlimit_check_end("198.51.100.2", "kate");
    authlimit_failed("198.51.100.2", "kate", t + 2);
    CHECK(!authlimit_locked("203.0.113.1", "kate", t + 3));
    authlimit_failed("198.51.100.3", "kate", t + 3);
    CHECK(authlimit_locked("203.0.113.1", "kate", t + 4));
    CHECK(!authlimit_locked("192.0.2.60", "kate", t + 4));
    /* The address key counts its checks in flight too, whatever the names. */
    for (int i = 0; i < 5; i++) {
        snprintf(peer, sizeof peer, "user%d", i);
        CHECK(authlimit_start_left("192.0.2.61", peer, t) == 0);
        authlimit_check_begin("192.0.2.61", peer, t);
    }
    CHECK(authlimit_start_left("192.0.2.61", "other", t) != 0);
    CHECK(authlimit_start_left("192.0.2.62", "other", t) == 0);
    /* An unlock forgets the counter; the ends that follow are harmless. */
    CHECK(authlimit_unlock("192.0.2.61") == 1);
    for (int i = 0; i < 5; i++) {
        snprintf(peer, sizeof peer, "user%d", i);
        authlimit_check_end("192.0.2.61", peer);
        authlimit_check_end("192.0.2.61", peer); /* one too many: no underflow */
    }
    CHECK(authlimit_start_left("192.0.2.61", "user0", t) == 0);
    authlimit_configure(0, 0, 0);
    authlimit_known_reset();
    authlimit_reset();
}

/* The file's parser: whatever it is fed, it takes only well-formed, fresh pairs. */
static void test_known_parse(void)
{
    static const char good[] =
        "# comment\n"
        "192.0.2.1 alice 1800000000\n"
        "2001:db8::1 bob%20smith 1799990000\n"
        "\n"
        "192.0.2.2 carol 1800000000"; /* no newline at the end */
    CHECK(authlimit_known_parse(good, sizeof good - 1) == 3);
    CHECK(authlimit_known("192.0.2.1", "alice"));
    CHECK(authlimit_known("2001:db8::1", "bob smith"));
    CHECK(authlimit_known("192.0.2.2", "carol"));
    static const char *const bad[] = {
        "192.0.2.1 alice\n",                 /* no date */
        "192.0.2.1  alice 1800000000\n",     /* empty name */
        "host.example alice 1800000000\n",   /* not an address */
        "192.0.2.1 al ice 1800000000\n",     /* a field too many */
        "192.0.2.1 al%4 1800000000\n",       /* short escape */
        "192.0.2.1 al%zz 1800000000\n",      /* bad escape */
        "192.0.2.1 al%00ice 1800000000\n",   /* NUL */
        "192.0.2.1 alice 18000000x0\n",      /* not a number */
        "192.0.2.1 alice 99999999999999999999\n", /* too long a number */
        "192.0.2.1 alice 1700000000\n",      /* older than the retention */
        "192.0.2.1 alice 1900000000\n",      /* in the future */
        "192.0.2.1 alice 1800000000\r\n",    /* CR: not the daemon's own writing */
        " 192.0.2.1 alice 1800000000\n",
        "192.0.2.1 alice -1800000000\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(authlimit_known_parse(bad[i], strlen(bad[i])) == 0);
        CHECK(!authlimit_known("192.0.2.1", "alice"));
    }
    /* A NUL inside the buffer ends nothing early and breaks nothing. */
    static const char nul[] = "192.0.2.1 ali\0ce 1800000000\n192.0.2.3 dan 1800000000\n";
    CHECK(authlimit_known_parse(nul, sizeof nul - 1) == 1);
    CHECK(authlimit_known("192.0.2.3", "dan"));
    /* An over-long user field and a huge number of lines stay bounded. */
    size_t big = (AUTHLIMIT_KNOWN_MAX + 50) * 40 + 400;
    char *buf = malloc(big);
    size_t o = 0;
    o += (size_t)snprintf(buf + o, big - o, "192.0.2.1 ");
    memset(buf + o, 'x', 300);
    o += 300;
    o += (size_t)snprintf(buf + o, big - o, " 1800000000\n");
    for (int i = 0; i < AUTHLIMIT_KNOWN_MAX + 50; i++)
        o += (size_t)snprintf(buf + o, big - o, "10.%d.%d.1 u 1800000000\n", i / 256, i % 256);
    authlimit_known_parse(buf, o);
    CHECK(authlimit_known("10.4.49.1", "u")); /* the last line fits: the oldest went */
    free(buf);
    authlimit_known_reset();
}

/* The file round trip: saved on a new pair, read back at the next start. */
static void test_known_file(void)
{
    char dir[] = "/tmp/xoauthd-authlimit-XXXXXX";
    char path[128], text[512];
    CHECK(mkdtemp(dir) != NULL);
    authlimit_known_reset();
    CHECK(authlimit_known_open(dir) == 0); /* no file yet: empty */
    authlimit_succeeded("192.0.2.50", "heidi");
    authlimit_succeeded("2001:db8::50", "ivan k");
    authlimit_known_reset();
    CHECK(!authlimit_known("192.0.2.50", "heidi"));
    CHECK(authlimit_known_open(dir) == 0);
    CHECK(authlimit_known("192.0.2.50", "heidi"));
    CHECK(authlimit_known("2001:db8::50", "ivan k"));
    snprintf(path, sizeof path, "%s/known_clients", dir);
    FILE *f = fopen(path, "r");
    size_t n = f != NULL ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f != NULL)
        fclose(f);
    text[n] = '\0';
    CHECK(strstr(text, "2001:db8::50 ivan%20k 1800000000\n") != NULL);
    snprintf(path, sizeof path, "%s/known_clients.tmp", dir);
    CHECK(access(path, F_OK) != 0); /* renamed, not left behind */
    authlimit_known_reset();
    remove_tree(dir);
    CHECK(authlimit_known_open("/nonexistent-dir/x") == 0); /* unreadable: memory only */
    authlimit_succeeded("192.0.2.51", "judy");             /* a failed save is harmless */
    CHECK(authlimit_known("192.0.2.51", "judy"));
    authlimit_known_reset();
}

int main(void)
{
    authlimit_set_clock(fake_clock);
    test_known_pair();
    fake_now = 1800000000;
    test_locked_attempts();
    test_unlock();
    test_eviction();
    test_pending();
    test_known_parse();
    test_known_file();

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
