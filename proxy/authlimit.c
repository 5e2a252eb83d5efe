#include "authlimit.h"

#include <stdio.h>
#include <string.h>

#include "log.h"

#define AUTHLIMIT_SLOTS 2048
#define AUTHLIMIT_KEY_MAX 96
#define AUTHLIMIT_HISTORY 32 /* failure times kept per key; max_failures is capped to it */

struct authlimit_entry {
    char key[AUTHLIMIT_KEY_MAX]; /* "a:ADDRESS" or "u:USER"; "" = free slot */
    uint64_t fail_ms[AUTHLIMIT_HISTORY]; /* ring of the latest failure times */
    unsigned n_fail;   /* valid entries in fail_ms */
    unsigned next;     /* ring position of the next failure */
    uint64_t locked_until;
    uint64_t last_ms;  /* last failure: eviction picks the oldest */
};

static struct authlimit_entry authlimit_table[AUTHLIMIT_SLOTS];
/* Slots are taken in order and only freed all at once (authlimit_reset), so the used ones are
 * always authlimit_table[0 .. authlimit_used - 1]. Every login looks up two keys: scanning
 * only those keeps a login from walking 750 KB of empty table (callgrind: 20,000 instructions
 * per login, the largest single cost of a cached login). */
static size_t authlimit_used;
static unsigned authlimit_max = AUTHLIMIT_MAX_FAILURES;
static uint64_t authlimit_window = AUTHLIMIT_WINDOW_MS;
static uint64_t authlimit_lock = AUTHLIMIT_LOCK_MS;

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
        if (authlimit_table[i].key[0] != '\0' && strcmp(authlimit_table[i].key, key) == 0)
            return &authlimit_table[i];
    return NULL;
}

static int authlimit_entry_locked(const struct authlimit_entry *e, uint64_t now_ms)
{
    return e != NULL && e->locked_until > now_ms;
}

int authlimit_locked(const char *peer, const char *user, uint64_t now_ms)
{
    char key[AUTHLIMIT_KEY_MAX];
    if (peer != NULL) {
        authlimit_key(key, 'a', peer);
        if (authlimit_entry_locked(authlimit_find(key), now_ms))
            return 1;
    }
    if (user != NULL && user[0] != '\0') {
        authlimit_key(key, 'u', user);
        if (authlimit_entry_locked(authlimit_find(key), now_ms))
            return 1;
    }
    return 0;
}

/* A free slot, else the least recently failed one that is not locked, else the oldest. */
static struct authlimit_entry *authlimit_slot(uint64_t now_ms)
{
    struct authlimit_entry *best = NULL, *best_locked = NULL;
    if (authlimit_used < AUTHLIMIT_SLOTS)
        return &authlimit_table[authlimit_used++];
    for (size_t i = 0; i < AUTHLIMIT_SLOTS; i++) {
        struct authlimit_entry *e = &authlimit_table[i];
        if (e->key[0] == '\0')
            return e;
        if (authlimit_entry_locked(e, now_ms)) {
            if (best_locked == NULL || e->last_ms < best_locked->last_ms)
                best_locked = e;
        } else if (best == NULL || e->last_ms < best->last_ms) {
            best = e;
        }
    }
    return best != NULL ? best : best_locked;
}

static void authlimit_count(char kind, const char *name, const char *peer, uint64_t now_ms)
{
    char key[AUTHLIMIT_KEY_MAX];
    authlimit_key(key, kind, name);
    struct authlimit_entry *e = authlimit_find(key);
    if (e == NULL) {
        e = authlimit_slot(now_ms);
        memset(e, 0, sizeof *e);
        memcpy(e->key, key, sizeof e->key);
    }
    e->last_ms = now_ms;
    e->fail_ms[e->next] = now_ms;
    e->next = (e->next + 1) % AUTHLIMIT_HISTORY;
    if (e->n_fail < AUTHLIMIT_HISTORY)
        e->n_fail++;
    if (authlimit_entry_locked(e, now_ms))
        return;
    unsigned recent = 0;
    for (unsigned i = 0; i < e->n_fail; i++)
        if (now_ms - e->fail_ms[i] < authlimit_window)
            recent++;
    if (recent < authlimit_max)
        return;
    e->locked_until = now_ms + authlimit_lock;
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
