/* tty_line: one line of standard input for the command-line sub-commands (hash-password,
 * auth), where it is mostly a secret. The line comes without its line end in a malloc'ed
 * string that tty_line_free cleanses. With hide on a terminal the typing is not echoed, and the
 * terminal is restored even when a signal ends the program (a shell left without echo after ^C
 * would baffle the admin). */
#ifndef XOAUTHD_TTY_LINE_H
#define XOAUTHD_TTY_LINE_H

#include <stddef.h>

#define TTY_LINE_NUL (-2) /* the line held a NUL byte: it would silently shorten a password */

/* Writes prompt (may be NULL) to stderr when stdin is a terminal, then reads one line into
 * *out (NULL on failure). Returns its length; -1 at EOF, on a read error or past max bytes
 * (0: no limit); TTY_LINE_NUL. */
long tty_line_read(const char *prompt, int hide, size_t max, char **out);
/* Cleanses and frees *line; *line is NULL afterwards. */
void tty_line_free(char **line);

#endif
