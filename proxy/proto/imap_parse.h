/* imap_parse: a resumable parser for IMAP command lines (RFC 9051 section 9), no I/O.
 *
 * The IMAP front needs only the commands a client sends before login, but it must read them
 * exactly as the grammar says, because a password can be an atom, a quoted string with "\\"
 * and "\"" escapes, or a literal: "{n}" (synchronising: the client waits for "+" before it
 * sends the n octets) or "{n+}" (non-synchronising, RFC 7888 LITERAL+: the octets follow at
 * once). Input arrives in arbitrary pieces, so the parser is a byte-state machine that keeps
 * its place between calls: feed it whatever the socket gave, it consumes what it can and says
 * AGAIN, DONE (a whole command), CONTINUE (send a continuation request now), BAD (a syntax error;
 * the line was skipped) or FATAL (the stream cannot be resynchronised: a non-synchronising
 * literal too large to take, or a length that overflows).
 *
 * Results (tag, command name, arguments with quotes and escapes removed) are copied into the
 * parser's own bounded buffer, because a literal may span many reads; they are valid until the
 * next call. ID is the exception: its arguments are only checked (see IMAP_ID_MAX_FIELD). The buffer may hold a password: imap_parser_reset() and the next command cleanse
 * it. */
#ifndef XOAUTHD_IMAP_PARSE_H
#define XOAUTHD_IMAP_PARSE_H

#include <stddef.h>
#include <stdint.h>

#define IMAP_PARSE_BUF 8192     /* tag + command + decoded arguments of one command */
#define IMAP_PARSE_MAX_ARGS 32

/* RFC 2971 section 3.3: ID field strings are at most 30 octets, values at most 1024, and at
 * most 30 pairs: a line of up to ~32 KB, more than the buffer and the argument limit allow for
 * any other command. ID's arguments are therefore checked against these limits and discarded
 * as they are read (a DONE ID has no arguments); a client's ID is not forwarded anyway. */
#define IMAP_ID_MAX_FIELD 30
#define IMAP_ID_MAX_VALUE 1024
#define IMAP_ID_MAX_PAIRS 30

enum imap_parse_status {
    IMAP_PARSE_AGAIN,    /* everything given was consumed; the command is not complete */
    IMAP_PARSE_DONE,     /* one command: tag, command, args */
    IMAP_PARSE_CONTINUE, /* a synchronising literal was announced and fits: send "+ ...", go on */
    IMAP_PARSE_BAD,      /* syntax error, error says what; the whole line was consumed */
    IMAP_PARSE_FATAL     /* the next command cannot be found: answer and close */
};

enum imap_arg_type {
    IMAP_ARG_ATOM,
    IMAP_ARG_STRING, /* quoted string or literal, decoded */
    IMAP_ARG_LPAREN,
    IMAP_ARG_RPAREN
};

struct imap_arg {
    enum imap_arg_type type;
    const char *str; /* NUL-terminated, inside the parser (empty for parentheses) */
    size_t len;
};

struct imap_parser {
    int state;
    size_t max_literal; /* largest literal accepted */
    char buf[IMAP_PARSE_BUF];
    size_t len;
    size_t tag_len;
    size_t cmd_off, cmd_len;
    size_t tok_off;     /* start of the token being read */
    enum imap_arg_type tok_type;
    size_t arg_off[IMAP_PARSE_MAX_ARGS], arg_len[IMAP_PARSE_MAX_ARGS];
    enum imap_arg_type arg_type[IMAP_PARSE_MAX_ARGS];
    size_t nargs;
    int depth;          /* open parentheses */
    uint64_t literal;   /* announced length, then octets still to read */
    int literal_plus;
    int literal_digits;
    const char *error;  /* why BAD / FATAL, for the reply */
    /* ID (RFC 2971): its arguments are checked and dropped one by one, see IMAP_ID_MAX_*. */
    int id_mode;
    unsigned id_items;   /* top-level arguments: NIL or one list */
    unsigned id_strings; /* fields and values inside the list so far */

    /* results after DONE */
    const char *tag;    /* NUL-terminated; "" when the tag itself was malformed */
    const char *command;
    struct imap_arg args[IMAP_PARSE_MAX_ARGS];
};

/* max_literal: the largest literal accepted (bounded by the buffer anyway). */
void imap_parser_init(struct imap_parser *p, size_t max_literal);
/* Forgets the command in progress and cleanses the buffer. */
void imap_parser_reset(struct imap_parser *p);
/* Consumes bytes of in; returns how many, and the status in *st. Call again with the rest
 * (after DONE, CONTINUE or BAD there may be more input to parse). */
size_t imap_parse(struct imap_parser *p, const char *in, size_t len,
                  enum imap_parse_status *st);
/* The tag of the command being parsed or just parsed, "*" when none was read (for BAD). */
const char *imap_parser_reply_tag(const struct imap_parser *p);

/* Rewrites a server's capability list (atoms separated by spaces) for a client that talks to
 * it through xoauthd after login, so that every capability the client sees is true:
 * AUTH=..., SASL-IR, LOGINDISABLED and STARTTLS concern logging in, which xoauthd did (and
 * RFC 9051 allows STARTTLS only before it). COMPRESS=... is left out to keep the promise
 * small: the byte-pump relay would carry a compressed stream unchanged, so a client that
 * learns it later from the provider's own CAPABILITY reply (relayed) still works.
 * Writes the kept atoms to out (NUL-terminated, cut at a whole atom when out is too small) and
 * returns their length. */
size_t imap_capability_filter(const char *in, size_t len, char *out, size_t outsz);

/* Looks for a response code "[NAME ...]" at the start of text (after "OK " etc.): returns 1 and
 * the code's argument (what follows "NAME " up to "]") in *arg / *arg_len, else 0. Case-
 * insensitive on NAME. */
int imap_response_code(const char *text, size_t len, const char *name, const char **arg,
                       size_t *arg_len);

/* Whether a space-separated capability list has an atom (case-insensitive). */
int imap_capability_has(const char *caps, size_t len, const char *atom);

#endif
