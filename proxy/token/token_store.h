/* token_store: refresh tokens on disk, one file per account under state_dir, encrypted.
 *
 * A refresh token is data, not cache: Microsoft rotates it on every use and the old one dies, so
 * losing the new one locks the mailbox out until a human signs in again. Writes are temp file +
 * fsync + rename + fsync of the directory, mode 0600, directory 0700; the daemon runs them on
 * libuv's thread pool so the loop never waits on the disk.
 *
 * File format (docs/protocol-notes.md, "Tokens at rest"), three lines:
 *     xoauthd-token v2 aes-256-gcm\n
 *     kdf=scrypt ln=15 r=8 p=1 salt=<base64>\n      or      kdf=keyfile\n
 *     <base64 of nonce(12) | ciphertext | tag(16)>\n
 * The plaintext is the refresh token. The first two lines and the account name are the GCM
 * additional data, so a file cannot be moved to another account or have its header edited.
 *
 * Keys. An account with a local password (and no allow_networks entry, which would let clients
 * in without one) gets a key derived from that password with scrypt: whoever copies state_dir
 * learns nothing without the password. The salt is random per password: it is derived from the
 * random salt inside the account's local_password hash (SHA-256 with a label and the account
 * name), so the daemon and `xoauthd auth` arrive at the same key without talking to each other,
 * and a changed local password gives a new salt. It is written into the file too, which lets a
 * reader tell "encrypted under another password" from "damaged". Accounts that never see a
 * password (allowlisted networks, client credentials) use state_dir/store.key: 32 random bytes,
 * 0600, created on first use. That protects a copied token file, not a copied state_dir: back
 * store.key up separately, or not at all.
 *
 * Old files "xoauthd-token v1 plain" are still read (and re-written encrypted by the next save).
 * A file that cannot be read as either is reported, and never overwritten silently: a save first
 * moves it aside as NAME.refresh.corrupt-YYYYMMDDTHHMMSSZ. A key that does not open the file is
 * treated the same way: the load says UNUSABLE, the daemon stops using the account until
 * someone signs in again, and the file stays where it is until then.
 *
 * Beside each token file the daemon keeps NAME.status (no secrets: state, valid until, last
 * refresh, last error) for `xoauthd tokens`.
 *
 * Account names must match [A-Za-z0-9._-]+, must not start with '.', and are at most
 * TOKEN_STORE_MAX_ACCOUNT bytes: they become file names. */
#ifndef XOAUTHD_TOKEN_STORE_H
#define XOAUTHD_TOKEN_STORE_H

#include <stddef.h>
#include <uv.h>

#define TOKEN_STORE_MAGIC "xoauthd-token v2 aes-256-gcm"
#define TOKEN_STORE_MAGIC_PLAIN "xoauthd-token v1 plain"
#define TOKEN_STORE_MAX_ACCOUNT 128
#define TOKEN_STORE_KEY_LEN 32
#define TOKEN_STORE_SALT_LEN 16
#define TOKEN_STORE_KEYFILE "store.key"

/* Results of a load. */
#define TOKEN_STORE_FOUND 1     /* the token is in *out */
#define TOKEN_STORE_NONE 0      /* no file: nobody signed in yet */
#define TOKEN_STORE_IOERR (-1)  /* could not read (permissions, I/O): maybe temporary */
#define TOKEN_STORE_UNUSABLE (-2) /* damaged, unknown format, or the key does not open it */

enum token_store_key_kind {
    TOKEN_KEY_FILE,    /* state_dir/store.key, read (or created) by the store itself */
    TOKEN_KEY_PASSWORD /* derived from the local password: token_store_key_derive */
};

struct token_store_key {
    enum token_store_key_kind kind;
    unsigned ln, r, p;                       /* PASSWORD: scrypt cost */
    unsigned char salt[TOKEN_STORE_SALT_LEN]; /* PASSWORD */
    unsigned char key[TOKEN_STORE_KEY_LEN];   /* PASSWORD: the derived key */
};

/* What a load or save found out, for log lines and `xoauthd tokens`. Never a secret. */
struct token_store_info {
    int format;            /* 0 no file, 1 v1 plain, 2 v2 encrypted, -1 unreadable */
    int key_kind;          /* v2: a token_store_key_kind; -1 otherwise */
    char detail[160];      /* why a file is UNUSABLE, "" otherwise */
    char set_aside[64];    /* save: the name an unusable file was moved to, "" when none */
};

/* 1 when account is safe as a file name (see above), else 0. */
int token_store_account_ok(const char *account);

/* The path of an account's token file (malloc'ed); NULL for a refused account name. */
char *token_store_path(const char *state_dir, const char *account);

/* Fills key (kind PASSWORD) for account from its local password. hash is the account's
 * local_password string (its random salt seeds the store salt, see above). Slow (scrypt, about
 * 0.1 s and 32 MiB): never on the loop thread. Returns 0 or -1 (OpenSSL failure). */
int token_store_key_derive(const char *account, const char *hash, const char *password,
                           size_t len, struct token_store_key *key);
/* The same on the thread pool: cb runs on the loop thread with 0 and the key, or -1. The
 * password is copied and cleansed. Returns -1 (cb never called) when it cannot be queued. */
typedef void (*token_store_key_cb)(void *arg, int result, const struct token_store_key *key);
int token_store_key_derive_async(uv_loop_t *loop, const char *account, const char *hash,
                                 const char *password, size_t len, token_store_key_cb cb,
                                 void *arg);

/* Reads and decrypts synchronously (CLI, tests). key may be NULL (then only a v1 plain file
 * can be read). Returns a TOKEN_STORE_* result; *out (FOUND only) is malloc'ed, cleanse it.
 * Failures are logged; info (may be NULL) says more. */
int token_store_load(const char *state_dir, const char *account,
                     const struct token_store_key *key, char **out,
                     struct token_store_info *info);

/* Encrypts and writes synchronously (CLI, tests). An existing file that key cannot open is
 * moved aside first (info->set_aside). Returns 0 or -1 (logged). */
int token_store_save_sync(const char *state_dir, const char *account,
                          const struct token_store_key *key, const char *refresh_token,
                          struct token_store_info *info);

/* Writes on the thread pool; cb(arg, 0 or -1) runs on the loop thread afterwards. Failures and
 * a moved-aside file are logged before cb runs. Returns -1 (cb never called) when the work
 * cannot be queued or the account name is refused. The loop must run until cb ran. */
typedef void (*token_store_cb)(void *arg, int result);
int token_store_save(uv_loop_t *loop, const char *state_dir, const char *account,
                     const struct token_store_key *key, const char *refresh_token,
                     token_store_cb cb, void *arg);

/* Reads on the thread pool; cb runs on the loop thread with a TOKEN_STORE_* result (failures
 * logged), the token for FOUND (cb owns it: cleanse + free) and what was found. Returns -1
 * (cb never called) when the work cannot be queued or the account name is refused. */
typedef void (*token_store_load_cb)(void *arg, int result, char *refresh_token,
                                    const struct token_store_info *info);
int token_store_load_async(uv_loop_t *loop, const char *state_dir, const char *account,
                           const struct token_store_key *key, token_store_load_cb cb, void *arg);

/* Looks at an account's file without a key (format and key kind only; `xoauthd tokens`).
 * Returns the format as in token_store_info. */
int token_store_peek(const char *state_dir, const char *account, struct token_store_info *info);

/* Moves an account's token file aside (NAME.refresh.corrupt-TIMESTAMP); 0, or -1 (logged). */
int token_store_set_aside(const char *state_dir, const char *account,
                          struct token_store_info *info);

/* ---- status files (no secrets) ---- */

struct token_store_status {
    char state[24];          /* token_status_name(), or "signed_in" after `xoauthd auth` */
    long long valid_until;   /* Unix time the cached access token expires, 0 = none */
    long long last_refresh;  /* Unix time of the last token the endpoint handed out, 0 = never */
    long long last_attempt;  /* Unix time of the last request to the endpoint */
    char last_error[200];    /* one sanitized sentence, "" when the last attempt worked */
};

/* Writes NAME.status on the thread pool (best effort; cb may be NULL). 0, or -1 when the work
 * cannot be queued. */
int token_store_status_save(uv_loop_t *loop, const char *state_dir, const char *account,
                            const struct token_store_status *st, token_store_cb cb, void *arg);
int token_store_status_save_sync(const char *state_dir, const char *account,
                                 const struct token_store_status *st);
/* 1 when read, 0 when there is none, -1 when unreadable. */
int token_store_status_load(const char *state_dir, const char *account,
                            struct token_store_status *st);

#endif
