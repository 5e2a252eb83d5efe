/* token_store: refresh tokens on disk, one file per account under state_dir.
 *
 * A refresh token is data, not cache: Microsoft rotates it on every use and the old one dies, so
 * losing the new one locks the mailbox out until a human signs in again. Writes are temp file +
 * fsync + rename + fsync of the directory, mode 0600, directory 0700; they run on libuv's thread
 * pool so the loop never waits on the disk.
 *
 * File format: a version line, then the token on one line:
 *     xoauthd-token v1 plain\n
 *     <refresh token>\n
 * "plain" is the seam for encryption at rest (DESIGN.md section 6): an encrypted format gets its
 * own tag on the first line, and a reader refuses tags it does not know instead of guessing.
 * Account names must match [A-Za-z0-9._-]+, must not start with '.', and are at most
 * TOKEN_STORE_MAX_ACCOUNT bytes: they become file names. */
#ifndef XOAUTHD_TOKEN_STORE_H
#define XOAUTHD_TOKEN_STORE_H

#include <uv.h>

#define TOKEN_STORE_MAGIC "xoauthd-token v1 plain"
#define TOKEN_STORE_MAX_ACCOUNT 128

/* 1 when account is safe as a file name (see above), else 0. */
int token_store_account_ok(const char *account);

/* Reads the stored refresh token of account into *out (malloc'ed; caller cleanses + frees).
 * Returns 1 when found, 0 when there is no file, -1 on a read error (logged).
 * Blocking: for start-up and the CLI, not for the loop's hot path. */
int token_store_load(const char *state_dir, const char *account, char **out);

/* Writes synchronously (CLI, tests). Returns 0 or -1 (logged). */
int token_store_save_sync(const char *state_dir, const char *account, const char *refresh_token);

/* Writes on the thread pool; cb(arg, 0 or -1) runs on the loop thread afterwards. A failure is
 * logged (path, step and errno) before cb runs. Returns -1 (cb never called) when the work
 * cannot be queued or the account name is refused. The loop must run until cb ran. */
typedef void (*token_store_cb)(void *arg, int result);
int token_store_save(uv_loop_t *loop, const char *state_dir, const char *account,
                     const char *refresh_token, token_store_cb cb, void *arg);

/* Reads on the thread pool; cb runs on the loop thread with the result of token_store_load
 * (1, 0 or -1, failures logged) and, for 1, the token, which cb owns (cleanse + free). Returns
 * -1 (cb never called) when the work cannot be queued or the account name is refused. */
typedef void (*token_store_load_cb)(void *arg, int result, char *refresh_token);
int token_store_load_async(uv_loop_t *loop, const char *state_dir, const char *account,
                           token_store_load_cb cb, void *arg);

/* The path of an account's file (malloc'ed), e.g. for `xoauthd tokens`; NULL for a refused
 * account name. */
char *token_store_path(const char *state_dir, const char *account);

#endif
