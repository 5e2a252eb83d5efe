/* config_keys: one table of keys per section type. Each row says what the key is (name, type,
 * the field it fills, allowed values, bounds, default, whether it is a secret, one line of
 * documentation), and everything about keys comes from these rows: the loader
 * (config_sections.c), the secrets the permission check looks for (config_perms.h), the
 * NAME_file twins of secrets (config_secret_file.h) and the key lists of xoauthd.ini(5)
 * (`xoauthd config-keys` prints them; tests/unit/test_config_keys.c compares the page). */
#ifndef XOAUTHD_CONFIG_KEYS_H
#define XOAUTHD_CONFIG_KEYS_H

#include <stddef.h>
#include <stdio.h>

#include "config_loader.h"

enum config_key_type {
    CONFIG_KEY_STRING,   /* char *; empty = unset */
    CONFIG_KEY_ENUM,     /* int: base + index in values */
    CONFIG_KEY_UINT,     /* unsigned, min..max */
    CONFIG_KEY_SIZE,     /* size_t, min..max */
    CONFIG_KEY_BOOL,     /* int: yes/no */
    CONFIG_KEY_URL,      /* char *: https, or http to loopback */
    CONFIG_KEY_ENDPOINT, /* struct config_endpoint */
    CONFIG_KEY_NETWORKS, /* struct config_allow_network * with its size_t count */
    CONFIG_KEY_CUSTOM    /* parse() */
};

struct config_key {
    const char *name;
    enum config_key_type type;
    size_t offset;               /* of the field in obj */
    size_t count_offset;         /* NETWORKS: of its count */
    const char *const *values;   /* ENUM: the names, NULL-terminated */
    int base;                    /* ENUM: the field is base + the name's index */
    unsigned long long min, max; /* UINT, SIZE */
    int secret;                  /* never in a world-readable file; has a NAME_file twin */
    int repeats;                 /* may be given on several lines */
    const char *def;             /* the default, as documented; NULL = unset */
    const char *accepted;        /* what a bad value is told to be ("expected ...") */
    const char *doc;             /* one line for xoauthd.ini(5) */
    config_key_parse *parse;     /* CUSTOM */
};

struct config_key_table {
    enum config_sec_type type;
    const char *section; /* as in the man page: "xoauthd", "listen NAME" */
    const struct config_key *keys;
    size_t n_keys;
};

/* The four tables, in the man page's order. */
extern const struct config_key_table config_key_tables[4];
const struct config_key_table *config_key_table(enum config_sec_type type);

/* The row of name in a section of type, or NULL. A NAME_file twin is not a row: see
 * config_key_twin. */
const struct config_key *config_key_find(enum config_sec_type type, const char *name);
/* The secret row whose NAME_file twin name is, or NULL. */
const struct config_key *config_key_twin(enum config_sec_type type, const char *name);
/* 1 when name may be given on several lines of one section. */
int config_key_repeats(enum config_sec_type type, const char *name);

/* Writes every table as man-page text: per section a .SH line and per key a .TP entry
 * (NAME_file twins included). */
void config_keys_print_man(FILE *out);

#endif
