/* stats: the daemon's counters, for `xoauthd status` (control.h) and /metrics (metrics.h).
 *
 * One process, one loop: the counters are plain integers in one static struct, touched only
 * from the loop thread. Per-account counters are keyed by the account's name, not by its
 * config pointer, so they survive a reload. Nothing here ever holds a secret: names, numbers
 * and reply codes only. */
#ifndef XOAUTHD_STATS_H
#define XOAUTHD_STATS_H

#include <stddef.h>
#include <stdint.h>

enum stats_proto { STATS_PROTO_SMTP, STATS_PROTO_IMAP, STATS_PROTO_POP3, STATS_PROTO_N };

#define STATS_NAME_MAX 64
#define STATS_CODE_MAX 16
#define STATS_MAX_CODES 32

struct stats_account {
    struct stats_account *next;
    char name[STATS_NAME_MAX];
    uint64_t sessions;       /* logins (local or allowlisted) */
    uint64_t messages;       /* accepted by the upstream */
    uint64_t message_bytes;
    uint64_t token_requests; /* requests to the token endpoint (or token_command runs) */
    uint64_t token_failures; /* failures of any kind, remembered failures not counted again */
};

struct stats_code {
    char code[STATS_CODE_MAX]; /* "451", "535", or a failure class ("connect", "token") */
    uint64_t count;
};

struct stats {
    uint64_t sessions_total[STATS_PROTO_N];
    uint64_t sessions_active[STATS_PROTO_N];
    uint64_t auth_failures;              /* wrong local user or password */
    uint64_t messages;                   /* relayed (the upstream said 2xx) */
    uint64_t message_bytes;
    uint64_t bytes_from_client;          /* IMAP/POP3 relay bytes, and SMTP message bytes */
    uint64_t bytes_from_server;
    struct stats_code upstream_errors[STATS_MAX_CODES];
    size_t n_upstream_errors;            /* codes beyond the table count as "other" */
    struct stats_account *accounts;
};

const struct stats *stats_get(void);
const char *stats_proto_name(enum stats_proto p);

void stats_session_open(enum stats_proto p);
void stats_session_close(enum stats_proto p, uint64_t from_client, uint64_t from_server);
void stats_auth_failure(void);
void stats_login(const char *account);
void stats_message(const char *account, uint64_t size);
/* code: an SMTP/IMAP reply code or a short failure class; cut at STATS_CODE_MAX - 1. */
void stats_upstream_error(const char *code);
void stats_token_request(const char *account);
void stats_token_failure(const char *account);
/* The account's counters (created on first use); NULL only when out of memory. */
struct stats_account *stats_account(const char *name);
/* Frees the per-account list and zeroes every counter (daemon exit, tests). */
void stats_reset(void);

#endif
