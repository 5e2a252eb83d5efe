/* config_loader: what the pieces of the configuration loader share while one file is read
 * (config.c drives them): the sections as read, the error reporter, and small helpers that
 * every value parser uses. Not used outside proxy/config/ (but by config_keys.h, which
 * `xoauthd config-keys` prints). */
#ifndef XOAUTHD_CONFIG_LOADER_H
#define XOAUTHD_CONFIG_LOADER_H

#include <stddef.h>
#include <stdio.h>


struct config;
struct config_listen;
struct config_provider;
struct config_account;
struct config_endpoint;
struct config_allow_network;

#define CONFIG_NAME_MAX 64 /* section names and key names */
#define CONFIG_N_PRESETS 2
#define CONFIG_COUNT(a) (sizeof(a) / sizeof((a)[0]))

enum config_sec_type { CONFIG_SEC_MAIN, CONFIG_SEC_LISTEN, CONFIG_SEC_PROVIDER, CONFIG_SEC_ACCOUNT };

struct config_kv {
    char *key;
    char *value; /* may be a secret: cleansed on free */
    int line;
};

struct config_section {
    enum config_sec_type type;
    char *name;      /* NULL for [xoauthd] */
    char label[96];  /* "[listen submission]", for messages */
    int line;
    struct config_kv *kv;
    size_t n_kv, cap_kv;
};

struct config_loader {
    const char *path;
    FILE *err;
    int errors;
    int oom;
    FILE *fp;
    char *buf;
    size_t bufcap;
    int lineno;
    int read_errno;
    char iobuf[4096]; /* ld->fp's buffer */
    struct config_section *sections;
    size_t n_sections, cap_sections;
    long cur; /* index of the current section; CONFIG_CUR_NONE / CONFIG_CUR_SKIP otherwise */
    char *pending_key;   /* a line the reader kept from inih (config_reader.c) */
    char *pending_value;
    struct config *cfg;
    int *named; /* named[i]: some allow_networks names account i (while listeners are built) */
};

#define CONFIG_CUR_NONE (-1L) /* before the first section header */
#define CONFIG_CUR_SKIP (-2L) /* inside a section that was rejected: its keys are ignored */

extern const char *const config_protocol_names[];
extern const char *const config_tls_names[];
extern const char *const config_flow_names[];
extern const char *const config_submit_names[];

void config_error(struct config_loader *ld, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
char *config_strdup(struct config_loader *ld, const char *s);
void config_free_secret(char *s);
/* Replaces *dst with a copy of v, or NULL when v is empty: an empty value means "not set". */
void config_set_str(struct config_loader *ld, char **dst, const char *v);
/* A value quoted for an error message. Never used for secrets. */
const char *config_q(char *buf, size_t sz, const char *v);
void config_bad_value(struct config_loader *ld, const struct config_section *sec,
                      const struct config_kv *kv, const char *accepted);
const struct config_kv *config_sec_kv(const struct config_section *sec, const char *key);

/* Reads ld->fp through inih into ld->sections (config_reader.c). inih's return value. */
int config_read(struct config_loader *ld);

/* The checks across sections (config_check.c). */
void config_check_account(struct config_loader *ld, const struct config_section *sec,
                          struct config_account *a, int named_by_network);
void config_check_local_users(struct config_loader *ld,
                              const struct config_section *const *acct_sec);
void config_check_token_urls(struct config_loader *ld);

void config_endpoint_clear(struct config_endpoint *ep);

/* A key's parser, for keys the table cannot describe (config_keys.h, CONFIG_KEY_CUSTOM). obj
 * is the section's struct (struct config, config_listen, config_provider, config_account). */
typedef void config_key_parse(struct config_loader *ld, const struct config_section *sec,
                              const struct config_kv *kv, void *obj);

/* The lockout's defaults and its bound of FAILURES (lockout_defaults.h, shared with
 * front/authlimit.h); config.c hands them over. */
void config_lockout_defaults(struct config *cfg);
unsigned config_lockout_failures_max(void);

#endif
