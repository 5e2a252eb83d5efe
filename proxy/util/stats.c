/* stats: counters for status and metrics, see stats.h. */
#include "stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct stats stats_now;

const struct stats *stats_get(void) { return &stats_now; }

const char *stats_proto_name(enum stats_proto p)
{
    switch (p) {
    case STATS_PROTO_SMTP:
        return "smtp";
    case STATS_PROTO_IMAP:
        return "imap";
    case STATS_PROTO_POP3:
        return "pop3";
    case STATS_PROTO_N:
        break;
    }
    return "?";
}

struct stats_account *stats_account(const char *name)
{
    struct stats_account **pp = &stats_now.accounts;
    if (name == NULL)
        name = "-";
    for (; *pp != NULL; pp = &(*pp)->next) {
        int c = strcmp((*pp)->name, name);
        if (c == 0)
            return *pp;
        if (c > 0)
            break; /* sorted by name: status and metrics print in a stable order */
    }
    struct stats_account *a = calloc(1, sizeof *a);
    if (a == NULL)
        return NULL;
    snprintf(a->name, sizeof a->name, "%s", name);
    a->next = *pp;
    *pp = a;
    return a;
}

void stats_session_open(enum stats_proto p)
{
    if (p >= STATS_PROTO_N)
        return;
    stats_now.sessions_total[p]++;
    stats_now.sessions_active[p]++;
}

void stats_session_close(enum stats_proto p, uint64_t from_client, uint64_t from_server)
{
    if (p >= STATS_PROTO_N)
        return;
    if (stats_now.sessions_active[p] > 0)
        stats_now.sessions_active[p]--;
    stats_now.bytes_from_client += from_client;
    stats_now.bytes_from_server += from_server;
}

void stats_auth_failure(void) { stats_now.auth_failures++; }

void stats_login(const char *account)
{
    struct stats_account *a = stats_account(account);
    if (a != NULL)
        a->sessions++;
}

void stats_message(const char *account, uint64_t size)
{
    stats_now.messages++;
    stats_now.message_bytes += size;
    struct stats_account *a = stats_account(account);
    if (a != NULL) {
        a->messages++;
        a->message_bytes += size;
    }
}

void stats_upstream_error(const char *code)
{
    char c[STATS_CODE_MAX];
    snprintf(c, sizeof c, "%s", code != NULL && code[0] != '\0' ? code : "other");
    /* A label value must stay simple: letters, digits, '_' and '.' only. */
    for (char *p = c; *p != '\0'; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '.'))
            *p = '_';
    size_t i;
    for (i = 0; i < stats_now.n_upstream_errors; i++)
        if (strcmp(stats_now.upstream_errors[i].code, c) == 0)
            break;
    if (i == stats_now.n_upstream_errors) {
        if (i == STATS_MAX_CODES) {
            i = STATS_MAX_CODES - 1; /* the last slot becomes "other" */
            snprintf(stats_now.upstream_errors[i].code, STATS_CODE_MAX, "other");
        } else {
            snprintf(stats_now.upstream_errors[i].code, STATS_CODE_MAX, "%s", c);
            stats_now.n_upstream_errors++;
        }
    }
    stats_now.upstream_errors[i].count++;
}

void stats_token_request(const char *account)
{
    struct stats_account *a = stats_account(account);
    if (a != NULL)
        a->token_requests++;
}

void stats_token_failure(const char *account)
{
    struct stats_account *a = stats_account(account);
    if (a != NULL)
        a->token_failures++;
}

void stats_reset(void)
{
    while (stats_now.accounts != NULL) {
        struct stats_account *a = stats_now.accounts;
        stats_now.accounts = a->next;
        free(a);
    }
    memset(&stats_now, 0, sizeof stats_now);
}
