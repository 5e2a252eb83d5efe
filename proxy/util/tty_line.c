/* tty_line: a line of standard input for the CLI, see tty_line.h. */
#include "tty_line.h"

#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <termios.h>
#include <unistd.h>

static struct termios tty_line_saved;
static volatile sig_atomic_t tty_line_echo_off;

static void tty_line_restore_signal(int sig)
{
    if (tty_line_echo_off)
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &tty_line_saved);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void tty_line_echo_stop(void)
{
    if (tcgetattr(STDIN_FILENO, &tty_line_saved) != 0)
        return;
    struct termios noecho = tty_line_saved;
    signal(SIGINT, tty_line_restore_signal);
    signal(SIGTERM, tty_line_restore_signal);
    signal(SIGHUP, tty_line_restore_signal);
    noecho.c_lflag &= ~(tcflag_t)ECHO;
    noecho.c_lflag |= ECHONL; /* the Enter still moves to the next line */
    tty_line_echo_off = 1;
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &noecho);
}

static void tty_line_echo_restore(void)
{
    if (tty_line_echo_off) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &tty_line_saved);
        tty_line_echo_off = 0;
    }
}

long tty_line_read(const char *prompt, int hide, size_t max, char **out)
{
    char *line = NULL;
    size_t cap = 0;
    int tty = isatty(STDIN_FILENO);

    *out = NULL;
    if (prompt != NULL && tty) {
        fputs(prompt, stderr);
        fflush(stderr);
    }
    if (hide && tty)
        tty_line_echo_stop();
    ssize_t n = getline(&line, &cap, stdin);
    tty_line_echo_restore();
    long result = n;
    if (n >= 0 && memchr(line, '\0', (size_t)n) != NULL)
        result = TTY_LINE_NUL;
    else if (n >= 0 && max != 0 && (size_t)n > max)
        result = -1;
    if (result < 0) {
        if (line != NULL) {
            OPENSSL_cleanse(line, cap);
            free(line);
        }
        return result;
    }
    if (n > 0 && line[n - 1] == '\n')
        line[--n] = '\0';
    if (n > 0 && line[n - 1] == '\r')
        line[--n] = '\0';
    *out = line;
    return (long)n;
}

void tty_line_free(char **line)
{
    if (*line != NULL) {
        OPENSSL_cleanse(*line, strlen(*line));
        free(*line);
        *line = NULL;
    }
}
