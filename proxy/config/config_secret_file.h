/* config_secret_file: the value of a secret kept in a file of its own, named by the secret's
 * NAME_file twin (refresh_token_file, client_secret_file, upstream_password_file,
 * local_password_file, access_token_file). Then the main configuration holds no secret and
 * may be world-readable, and values of any length stay out of the INI line limit.
 *
 * An absolute path is read as it is. A relative one is a systemd credential name: the unit's
 * LoadCredential=NAME:PATH copies the file into $CREDENTIALS_DIRECTORY, readable by the
 * service only (systemd.exec(5), "Credentials"), and the name is looked up there; without
 * $CREDENTIALS_DIRECTORY a relative name is an error. The file holds the value; one trailing
 * newline (LF or CRLF) is stripped. Refused: a file every user may read (like private key
 * files, config_perms.h), an empty value, a value of several lines or with a NUL byte. */
#ifndef XOAUTHD_CONFIG_SECRET_FILE_H
#define XOAUTHD_CONFIG_SECRET_FILE_H

#include "config_loader.h"

/* The value of the file kv names, malloc'ed (free with config_free_secret), or NULL after
 * reporting "FILE:LINE: ..." for kv's line. */
char *config_secret_file_read(struct config_loader *ld, const struct config_section *sec,
                              const struct config_kv *kv);

#endif
