/* token_cli: the sub-commands that deal with tokens outside the daemon.
 *
 *   xoauthd auth ACCOUNT [-c FILE] [--device | --browser | --paste] [--timeout SECONDS]
 *       The first sign-in (and every later one, after "needs sign-in"): device code or
 *       authorization code with PKCE, then the refresh token goes to the token store, encrypted.
 *       For an account with a local password the store key is derived from it, so the command
 *       asks for that password (terminal without echo, or one line of standard input). A running
 *       daemon picks the new token up at the next login, without a restart. For flows without a
 *       sign-in (client_credentials, password, command) it asks the endpoint once and reports.
 *
 *   xoauthd tokens [-c FILE]
 *       Lists every account with its token state: store format, state, access token valid
 *       until, last refresh, last error. It reads the store's headers and the daemon's status
 *       files; it never prints, and never needs, a secret.
 *
 * Each runs its own short-lived loop (the same token manager and HTTP client as the daemon);
 * they print for humans on stdout and return the process exit status. */
#ifndef XOAUTHD_TOKEN_CLI_H
#define XOAUTHD_TOKEN_CLI_H

/* argv[0] is the sub-command's name. */
int token_cli_auth(int argc, char **argv);
int token_cli_tokens(int argc, char **argv);

#endif
