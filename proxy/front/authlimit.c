#include "authlimit.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomic_file.h"
#include "log.h"

#define AUTHLIMIT_SLOTS 2048
#define AUTHLIMIT_KEY_MAX 96
#define AUTHLIMIT_DAY 86400
/* A pair seen again is re-saved only when its date is this old: one write a day per pair at
 * most, never one per login. */
#define AUTHLIMIT_KNOWN_REFRESH AUTHLIMIT_DAY
#define AUTHLIMIT_ADDR_MAX 64   /* INET6_ADDRSTRLEN and then some */
#define AUTHLIMIT_USER_MAX 128  /* longer names are not remembered: they stay "new" */
#define AUTHLIMIT_FILE_MAX (1u << 20)
#define AUTHLIMIT_FILE_NAME "known_clients"

struct authlimit_entry {
    char key[AUTHLIMIT_KEY_MAX]; /* "a:ADDRESS" or "u:USER"; "" = free slot */
    uint64_t fail_ms[AUTHLIMIT_HISTORY]; /* ring of the latest failure times */
    unsigned n_fail;   /* valid entries in fail_ms */
    unsigned next;     /* ring position of the next failure */
    uint64_t locked_until;
    uint64_t last_ms;  /* last failure: the tie-breaker of eviction */
    unsigned pending;  /* password checks of this key still running (authlimit_check_begin) */
};

struct authlimit_pair {
    char addr[AUTHLIMIT_ADDR_MAX]; /* "" = free slot */
    char user[AUTHLIMIT_USER_MAX];
    time_t seen;       /* wall clock of the last successful login */
};

static struct authlimit_entry authlimit_table[AUTHLIMIT_SLOTS];
/* The used slots are always authlimit_table[0 .. authlimit_used - 1] (an unlock moves the
 * last one into the hole). Every login looks up two keys: scanning only those keeps a login
 * from walking 750 KB of empty table (callgrind: 20,000 instructions per login, the largest
 * single cost of a cached login). */
static size_t authlimit_used;
static unsigned authlimit_max = AUTHLIMIT_MAX_FAILURES;
static uint64_t authlimit_window = AUTHLIMIT_WINDOW_MS;
static uint64_t authlimit_lock = AUTHLIMIT_LOCK_MS;

static struct authlimit_pair authlimit_pairs[AUTHLIMIT_KNOWN_MAX];
static size_t authlimit_n_pairs;
static char *authlimit_path; /* STATE_DIR/known_clients; NULL = memory only */
static char *authlimit_dir;  /* STATE_DIR, where it is saved */
static time_t (*authlimit_clock)(void);

void authlimit_configure(unsigned max_failures, uint64_t window_ms, uint64_t lock_ms)
{
    if (max_failures == 0) {
        authlimit_max = AUTHLIMIT_MAX_FAILURES;
        authlimit_window = AUTHLIMIT_WINDOW_MS;
        authlimit_lock = AUTHLIMIT_LOCK_MS;
        return;
    }
    authlimit_max = max_failures > AUTHLIMIT_HISTORY ? AUTHLIMIT_HISTORY : max_failures;
    authlimit_window = window_ms;
    authlimit_lock = lock_ms;
}

void authlimit_reset(void)
{
    memset(authlimit_table, 0, sizeof authlimit_table);
    authlimit_used = 0;
}

static void authlimit_key(char *out, char kind, const char *name)
{
    /* Longer names are cut: two names equal in their first 93 bytes share a counter, which
     * only makes the limit stricter. */
    snprintf(out, AUTHLIMIT_KEY_MAX, "%c:%s", kind, name);
}

static struct authlimit_entry *authlimit_find(const char *key)
{
    for (size_t i = 0; i < authlimit_used; i++)
        if (strcmp(authlimit_table[i].key, key) == 0)
            return &authlimit_table[i];
    return NULL;
}

static uint64_t authlimit_entry_left(const struct authlimit_entry *e, uint64_t now_ms)
{
    return e != NULL && e->locked_until > now_ms ? e->locked_until - now_ms : 0;
}

static uint64_t authlimit_key_left(char kind, const char *name, uint64_t now_ms)
{
    char key[AUTHLIMIT_KEY_MAX];
    if (name == NULL || name[0] == '\0')
        return 0;
    authlimit_key(key, kind, name);
    return authlimit_entry_left(authlimit_find(key), now_ms);
}

uint64_t authlimit_lock_left(const char *peer, const char *user, uint64_t now_ms)
{
    uint64_t left = authlimit_key_left('a', peer, now_ms);
    if (left != 0)
        return left;
    /* The pairs are looked at only when the name is locked: most logins never walk them. */
    left = authlimit_key_left('u', user, now_ms);
    if (left != 0 && peer != NULL && authlimit_known(peer, user))
        left = 0;
    return left;
}

int authlimit_locked(const char *peer, const char *user, uint64_t now_ms)
{
    return authlimit_lock_left(peer, user, now_ms) != 0;
}

static unsigned authlimit_recent(const struct authlimit_entry *e, uint64_t now_ms)
{
    unsigned recent = 0;
    for (unsigned i = 0; i < e->n_fail; i++)
        if (now_ms - e->fail_ms[i] < authlimit_window)
            recent++;
    return recent;
}

/* 1 when a should be evicted before b. */
static int authlimit_evict_first(const struct authlimit_entry *a, const struct authlimit_entry *b,
                                 uint64_t now_ms)
{
    uint64_t la = authlimit_entry_left(a, now_ms), lb = authlimit_entry_left(b, now_ms);
    if ((la != 0) != (lb != 0))
        return la == 0;
    if (la != 0)
        return la < lb; /* all locked: the lock that ends soonest */
    /* A check in flight counts like a failure here too: its end must find its counter. */
    unsigned ra = authlimit_recent(a, now_ms) + a->pending;
    unsigned rb = authlimit_recent(b, now_ms) + b->pending;
    if (ra != rb)
        return ra < rb;
    return a->last_ms < b->last_ms;
}

/* A free slot, else the victim. Why this order: a guesser who wants to keep guessing one name
 * without locking it would push that name's counter out by filling the table with fresh
 * names. Each fresh name costs the guesser one failure and holds one recent failure; the name
 * under attack holds as many as were guessed against it. Evicting unlocked entries with the
 * fewest failures in the window first (expired ones hold none), the oldest of equals, means
 * the attacked counter (k failures) goes only after every other unlocked entry holds k or
 * more: some 2,047 * k failures inside the window, each also counted against the guesser's
 * addresses, which lock after FAILURES and are then never evicted before an unlocked entry.
 * A counter of one failure may go, which loses one failure. Locked entries go only when
 * everything is locked, the one whose lock ends soonest first. Linear, and only on a miss
 * with a full table. */
static struct authlimit_entry *authlimit_slot(uint64_t now_ms)
{
    if (authlimit_used < AUTHLIMIT_SLOTS)
        return &authlimit_table[authlimit_used++];
    struct authlimit_entry *best = &authlimit_table[0];
    for (size_t i = 1; i < AUTHLIMIT_SLOTS; i++)
        if (authlimit_evict_first(&authlimit_table[i], best, now_ms))
            best = &authlimit_table[i];
    return best;
}

/* The entry of a key, made when missing. */
static struct authlimit_entry *authlimit_get(char kind, const char *name, uint64_t now_ms)
{
    char key[AUTHLIMIT_KEY_MAX];
    authlimit_key(key, kind, name);
    struct authlimit_entry *e = authlimit_find(key);
    if (e == NULL) {
        e = authlimit_slot(now_ms);
        memset(e, 0, sizeof *e);
        memcpy(e->key, key, sizeof e->key);
    }
    return e;
}

static void authlimit_count(char kind, const char *name, const char *peer, uint64_t now_ms)
{
    struct authlimit_entry *e = authlimit_get(kind, name, now_ms);
    /* A failure while locked neither counts nor extends the lock: a client retrying with
     * the right password would otherwise keep itself locked out for ever. */
    if (authlimit_entry_left(e, now_ms) != 0)
        return;
    e->last_ms = now_ms;
    e->fail_ms[e->next] = now_ms;
    e->next = (e->next + 1) % AUTHLIMIT_HISTORY;
    if (e->n_fail < AUTHLIMIT_HISTORY)
        e->n_fail++;
    unsigned recent = authlimit_recent(e, now_ms);
    if (recent < authlimit_max)
        return;
    e->locked_until = now_ms + authlimit_lock;
    /* The lock replaces the failures that set it: when it ends the key starts afresh. */
    e->n_fail = 0;
    e->next = 0;
    char quoted[128];
    log_warn(NULL, "event=auth_lockout peer=%s %s=%s failures=%u seconds=%llu", peer,
             kind == 'a' ? "address" : "user",
             log_quote(quoted, sizeof quoted, name, strlen(name)), recent,
             (unsigned long long)(authlimit_lock / 1000));
}

void authlimit_failed(const char *peer, const char *user, uint64_t now_ms)
{
    if (peer != NULL && peer[0] != '\0')
        authlimit_count('a', peer, peer, now_ms);
    if (user != NULL && user[0] != '\0')
        authlimit_count('u', user, peer != NULL ? peer : "-", now_ms);
}

/* 1 when the failures in the window plus the checks in flight of a key reach the limit: one
 * more check could fail past it. */
static int authlimit_key_full(char kind, const char *name, uint64_t now_ms)
{
    char key[AUTHLIMIT_KEY_MAX];
    if (name == NULL || name[0] == '\0')
        return 0;
    authlimit_key(key, kind, name);
    const struct authlimit_entry *e = authlimit_find(key);
    return e != NULL && authlimit_recent(e, now_ms) + e->pending >= authlimit_max;
}

uint64_t authlimit_start_left(const char *peer, const char *user, uint64_t now_ms)
{
    uint64_t left = authlimit_lock_left(peer, user, now_ms);
    if (left != 0)
        return left;
    /* The same exemption as the name lock: a known pair is not held up by guesses at its
     * name, only by its own address. */
    if (authlimit_key_full('a', peer, now_ms) ||
        (authlimit_key_full('u', user, now_ms) && !(peer != NULL && authlimit_known(peer, user))))
        return authlimit_lock != 0 ? authlimit_lock : 1; /* the lock those checks would set */
    return 0;
}

static void authlimit_pending_add(char kind, const char *name, int delta, uint64_t now_ms)
{
    char key[AUTHLIMIT_KEY_MAX];
    if (name == NULL || name[0] == '\0')
        return;
    if (delta > 0) {
        authlimit_get(kind, name, now_ms)->pending++;
        return;
    }
    /* The entry may be gone (unlock, reset): then there is nothing left to undo. */
    authlimit_key(key, kind, name);
    struct authlimit_entry *e = authlimit_find(key);
    if (e != NULL && e->pending > 0)
        e->pending--;
}

void authlimit_check_begin(const char *peer, const char *user, uint64_t now_ms)
{
    authlimit_pending_add('a', peer, 1, now_ms);
    authlimit_pending_add('u', user, 1, now_ms);
}

void authlimit_check_end(const char *peer, const char *user)
{
    authlimit_pending_add('a', peer, -1, 0);
    authlimit_pending_add('u', user, -1, 0);
}

static int authlimit_remove(char kind, const char *name)
{
    char key[AUTHLIMIT_KEY_MAX];
    authlimit_key(key, kind, name);
    struct authlimit_entry *e = authlimit_find(key);
    if (e == NULL)
        return 0;
    struct authlimit_entry *last = &authlimit_table[authlimit_used - 1];
    if (e != last)
        *e = *last;
    memset(last, 0, sizeof *last);
    authlimit_used--;
    return 1;
}

unsigned authlimit_unlock(const char *name)
{
    if (name == NULL || name[0] == '\0')
        return 0;
    unsigned n = (unsigned)(authlimit_remove('a', name) + authlimit_remove('u', name));
    /* An address as typed ("0:0::1") may differ from the form peers are logged in ("::1"). */
    unsigned char bin[16];
    char canon[64];
    int af = inet_pton(AF_INET, name, bin) == 1 ? AF_INET
             : inet_pton(AF_INET6, name, bin) == 1 ? AF_INET6 : 0;
    if (af != 0 && inet_ntop(af, bin, canon, sizeof canon) != NULL && strcmp(canon, name) != 0)
        n += (unsigned)authlimit_remove('a', canon);
    return n;
}

/* ---- known pairs ----
 *
 * The file, one pair a line: "ADDRESS USER SECONDS\n", ADDRESS numeric (IPv4 or IPv6), USER
 * with every byte outside '!'..'~' and '%' written as %XX, SECONDS the Unix time of the last
 * successful login. Lines starting with '#' are comments. */

static time_t authlimit_now(void) { return authlimit_clock != NULL ? authlimit_clock() : time(NULL); }

void authlimit_set_clock(time_t (*now)(void)) { authlimit_clock = now; }

void authlimit_known_reset(void)
{
    memset(authlimit_pairs, 0, sizeof authlimit_pairs);
    authlimit_n_pairs = 0;
}

static int authlimit_fresh(time_t seen, time_t now)
{
    /* A date in the future (a clock set back, a forged file) is not trusted beyond a day. */
    return seen <= now + AUTHLIMIT_DAY && now - seen < (time_t)AUTHLIMIT_KNOWN_DAYS * AUTHLIMIT_DAY;
}

static struct authlimit_pair *authlimit_pair_find(const char *addr, const char *user)
{
    for (size_t i = 0; i < authlimit_n_pairs; i++)
        if (strcmp(authlimit_pairs[i].addr, addr) == 0 && strcmp(authlimit_pairs[i].user, user) == 0)
            return &authlimit_pairs[i];
    return NULL;
}

int authlimit_known(const char *peer, const char *user)
{
    const struct authlimit_pair *p = authlimit_pair_find(peer, user);
    return p != NULL && authlimit_fresh(p->seen, authlimit_now());
}

static int authlimit_pair_fits(const char *addr, const char *user)
{
    return addr[0] != '\0' && user[0] != '\0' && strlen(addr) < AUTHLIMIT_ADDR_MAX &&
           strlen(user) < AUTHLIMIT_USER_MAX;
}

/* Adds or updates a pair; a full memory drops the pair seen longest ago. */
static void authlimit_pair_put(const char *addr, const char *user, time_t seen)
{
    struct authlimit_pair *p = authlimit_pair_find(addr, user);
    if (p == NULL && authlimit_n_pairs < AUTHLIMIT_KNOWN_MAX) {
        p = &authlimit_pairs[authlimit_n_pairs++];
    } else if (p == NULL) {
        p = &authlimit_pairs[0];
        for (size_t i = 1; i < authlimit_n_pairs; i++)
            if (authlimit_pairs[i].seen < p->seen)
                p = &authlimit_pairs[i];
    }
    snprintf(p->addr, sizeof p->addr, "%s", addr);
    snprintf(p->user, sizeof p->user, "%s", user);
    p->seen = seen;
}

/* Decodes %XX in a field of n bytes into out (size outsz). -1 on a bad escape, a NUL, or no
 * room. */
static int authlimit_unescape(const char *s, size_t n, char *out, size_t outsz)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= n || !isxdigit((unsigned char)s[i + 1]) ||
                !isxdigit((unsigned char)s[i + 2]))
                return -1;
            char hex[3] = {s[i + 1], s[i + 2], '\0'};
            c = (int)strtol(hex, NULL, 16);
            i += 2;
        } else if (c <= ' ' || c > '~') {
            return -1;
        }
        if (c == 0 || o + 1 >= outsz)
            return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return o > 0 ? 0 : -1;
}

static int authlimit_addr_ok(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* "1700000000": at most 12 digits (no overflow, and far beyond any real date). */
static int authlimit_seconds(const char *s, size_t n, time_t *out)
{
    long long v = 0;
    if (n == 0 || n > 12)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = (time_t)v;
    return 0;
}

/* One line without its newline; 1 when it held a pair that was taken. */
static int authlimit_parse_line(const char *s, size_t n, time_t now)
{
    char addr[AUTHLIMIT_ADDR_MAX], user[AUTHLIMIT_USER_MAX];
    time_t seen;
    if (n == 0 || s[0] == '#')
        return 0;
    const char *sp1 = memchr(s, ' ', n);
    if (sp1 == NULL || (size_t)(sp1 - s) >= sizeof addr)
        return 0;
    const char *u = sp1 + 1;
    const char *sp2 = memchr(u, ' ', n - (size_t)(u - s));
    if (sp2 == NULL)
        return 0;
    memcpy(addr, s, (size_t)(sp1 - s));
    addr[sp1 - s] = '\0';
    if (!authlimit_addr_ok(addr) ||
        authlimit_unescape(u, (size_t)(sp2 - u), user, sizeof user) < 0 ||
        authlimit_seconds(sp2 + 1, n - (size_t)(sp2 + 1 - s), &seen) < 0 ||
        !authlimit_fresh(seen, now))
        return 0;
    authlimit_pair_put(addr, user, seen);
    return 1;
}

size_t authlimit_known_parse(const char *buf, size_t len)
{
    time_t now = authlimit_now();
    size_t taken = 0;
    authlimit_known_reset();
    while (len > 0) {
        const char *nl = memchr(buf, '\n', len);
        size_t n = nl != NULL ? (size_t)(nl - buf) : len;
        taken += (size_t)authlimit_parse_line(buf, n, now);
        if (nl == NULL)
            break;
        len -= n + 1;
        buf = nl + 1;
    }
    return taken;
}

static void authlimit_escape(const char *s, char *out, size_t outsz)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s != '\0' && o + 4 <= outsz; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= ' ' || c > '~' || c == '%') {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
}

/* Writes the pairs through atomic_file (temporary file + rename), so that a reader (the next
 * start) sees either the old or the new file, never half of one. Synchronous on the loop: at
 * most AUTHLIMIT_KNOWN_MAX short lines, and only when a pair is new or a day old. Not durable
 * (no fsync): after a crash the worst is an older or empty memory, which only makes clients
 * "new". */
static void authlimit_known_save(void)
{
    if (authlimit_dir == NULL)
        return;
    static const char head[] =
        "# xoauthd: addresses that logged in with a name recently (safe to delete)\n";
    /* A line: address, escaped name (3 octets per byte at most), a date, two spaces, LF. */
    size_t cap = sizeof head + authlimit_n_pairs * (AUTHLIMIT_ADDR_MAX + AUTHLIMIT_USER_MAX * 3 + 24);
    char *text = malloc(cap);
    if (text == NULL) {
        log_warn(NULL, "event=known_clients_not_saved path=%s reason=\"out of memory\"",
                 authlimit_path);
        return;
    }
    size_t len = (size_t)snprintf(text, cap, "%s", head);
    time_t now = authlimit_now();
    for (size_t i = 0; i < authlimit_n_pairs; i++) {
        const struct authlimit_pair *p = &authlimit_pairs[i];
        char user[AUTHLIMIT_USER_MAX * 3 + 1];
        if (!authlimit_fresh(p->seen, now))
            continue;
        authlimit_escape(p->user, user, sizeof user);
        len += (size_t)snprintf(text + len, cap - len, "%s %s %lld\n", p->addr, user,
                                (long long)p->seen);
    }
    struct atomic_file_result r = {0};
    if (atomic_file_write(authlimit_dir, AUTHLIMIT_FILE_NAME, text, len, 0, 0, &r) != 0)
        log_warn(NULL, "event=known_clients_not_saved path=%s step=\"%s\" reason=\"%s\"",
                 authlimit_path, r.step != NULL ? r.step : "-", strerror(r.err));
    free(text);
}

void authlimit_succeeded(const char *peer, const char *user)
{
    if (peer == NULL || user == NULL || !authlimit_pair_fits(peer, user))
        return;
    time_t now = authlimit_now();
    const struct authlimit_pair *p = authlimit_pair_find(peer, user);
    if (p != NULL && p->seen <= now && now - p->seen < AUTHLIMIT_KNOWN_REFRESH)
        return;
    authlimit_pair_put(peer, user, now);
    authlimit_known_save();
}

int authlimit_known_open(const char *dir)
{
    free(authlimit_path);
    free(authlimit_dir);
    authlimit_path = authlimit_dir = NULL;
    size_t n = strlen(dir) + sizeof "/" AUTHLIMIT_FILE_NAME;
    if (n > 4096 - sizeof ".tmp")
        return -1;
    authlimit_path = malloc(n);
    authlimit_dir = strdup(dir);
    if (authlimit_path == NULL || authlimit_dir == NULL) {
        free(authlimit_path);
        free(authlimit_dir);
        authlimit_path = authlimit_dir = NULL;
        return -1;
    }
    snprintf(authlimit_path, n, "%s/%s", dir, AUTHLIMIT_FILE_NAME);
    int fd = open(authlimit_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno != ENOENT)
            log_warn(NULL, "event=known_clients_unreadable path=%s reason=\"%s\"", authlimit_path,
                     strerror(errno));
        return 0;
    }
    char *buf = malloc(AUTHLIMIT_FILE_MAX);
    size_t len = 0;
    ssize_t r = 0;
    while (buf != NULL && len < AUTHLIMIT_FILE_MAX &&
           (r = read(fd, buf + len, AUTHLIMIT_FILE_MAX - len)) > 0)
        len += (size_t)r;
    close(fd);
    if (buf != NULL) {
        size_t taken = authlimit_known_parse(buf, len);
        log_info(NULL, "event=known_clients path=%s pairs=%zu", authlimit_path, taken);
    }
    free(buf);
    return 0;
}
