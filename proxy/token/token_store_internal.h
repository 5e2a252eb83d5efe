/* token_store_internal: what the files of the token store share (token_store.c, _key, _format,
 * _jobs, _status); not for use outside proxy/token/token_store*.c. */
#ifndef XOAUTHD_TOKEN_STORE_INTERNAL_H
#define XOAUTHD_TOKEN_STORE_INTERNAL_H

#include <stddef.h>

#include "atomic_file.h"

struct token_store_info;
struct token_store_key;
struct token_store_status;

#define TOKEN_STORE_MAX_FILE 65536
#define TOKEN_STORE_MAX_TOKEN (TOKEN_STORE_MAX_FILE / 2)
#define TOKEN_STORE_NONCE_LEN 12
#define TOKEN_STORE_TAG_LEN 16
/* scrypt cost for new keys: the same as local password hashes (about 0.1 s, 32 MiB). */
#define TOKEN_STORE_SCRYPT_LN 15
#define TOKEN_STORE_SCRYPT_R 8
#define TOKEN_STORE_SCRYPT_P 1
/* Bounds on a cost read from a file: a damaged header must not allocate gigabytes. */
#define TOKEN_STORE_SCRYPT_MAX_MEM ((uint64_t)1 << 30)
#define TOKEN_STORE_KEYFILE_MAGIC "xoauthd-store-key v1"
#define TOKEN_STORE_STATUS_MAGIC "xoauthd-status v1"
#define TOKEN_STORE_SALT_LABEL "xoauthd token store salt v2"

/* token_store.c */
int token_store_token_ok(const char *t, size_t len);
int token_store_fail(struct atomic_file_result *r, const char *step, int err);
void token_store_cleanse_free(void *p, size_t len);
void token_store_log(const char *what, const char *dir, const char *account, int rc,
                     const struct atomic_file_result *r,
                     const struct token_store_info *info);
char *token_store_file(const char *state_dir, const char *account, const char *suffix);
void token_store_info_init(struct token_store_info *info);

/* token_store_key.c; key is TOKEN_STORE_KEY_LEN bytes */
int token_store_keyfile_read(const char *dir, unsigned char *key,
                             char *detail, size_t detailsz, struct atomic_file_result *r);
int token_store_keyfile_get(const char *dir, unsigned char *key,
                            char *detail, size_t detailsz, struct atomic_file_result *r);

/* token_store_format.c */
int token_store_do_set_aside(const char *dir, const char *account,
                             struct token_store_info *info, struct atomic_file_result *r);
int token_store_do_save(const char *dir, const char *account,
                        const struct token_store_key *key, const char *token,
                        struct token_store_info *info, struct atomic_file_result *r);
int token_store_do_load(const char *dir, const char *account,
                        const struct token_store_key *key, char **out,
                        struct token_store_info *info, struct atomic_file_result *r);

/* token_store_status.c */
int token_store_do_status_save(const char *dir, const char *account,
                               const struct token_store_status *st,
                               struct atomic_file_result *r);

#endif
