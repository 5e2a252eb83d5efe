/* imap_parse: resumable IMAP command-line parser, see imap_parse.h. */
#include "imap_parse.h"

#include <openssl/crypto.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

enum imap_pstate {
    IP_START,      /* nothing of this command yet */
    IP_TAG,
    IP_COMMAND,
    IP_AFTER_TOKEN, /* SP, ")" or the end of the line */
    IP_ARG,        /* the start of an argument */
    IP_ATOM,
    IP_QUOTED,
    IP_QUOTED_ESC,
    IP_LIT_LEN,    /* digits inside "{...}" */
    IP_LIT_CLOSE,  /* "+" seen, "}" expected */
    IP_LIT_CR,     /* "}" seen, CRLF expected */
    IP_LIT_LF,
    IP_LIT_DATA,
    IP_CR,         /* CR at the end of the line, LF expected */
    IP_SKIP,       /* a syntax error: skip to the end of the line, then BAD */
    IP_FINISHED    /* DONE or BAD was returned; the next call starts a new command */
};

/* RFC 9051 section 9: atom-specials are "(" ")" "{" SP CTL list-wildcards quoted-specials
 * resp-specials. Arguments also accept "%" "*" (list-mailbox) and "]" (astring). */
static int imap_atom_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '{' && c != '"' && c != '\\';
}

/* tag = 1*<any ASTRING-CHAR except "+">: no list-wildcards either. */
static int imap_tag_char(unsigned char c)
{
    return imap_atom_char(c) && c != '+' && c != '%' && c != '*';
}

void imap_parser_init(struct imap_parser *p, size_t max_literal)
{
    memset(p, 0, sizeof *p);
    p->max_literal = max_literal < IMAP_PARSE_BUF ? max_literal : IMAP_PARSE_BUF;
    p->state = IP_START;
}

void imap_parser_reset(struct imap_parser *p)
{
    OPENSSL_cleanse(p->buf, p->len);
    size_t max_literal = p->max_literal;
    memset(p, 0, offsetof(struct imap_parser, buf));
    p->max_literal = max_literal;
    p->len = p->tag_len = p->cmd_off = p->cmd_len = p->tok_off = p->nargs = 0;
    p->depth = 0;
    p->literal = 0;
    p->literal_plus = p->literal_digits = 0;
    p->error = NULL;
    p->id_mode = 0;
    p->id_items = p->id_strings = 0;
    p->tag = p->command = NULL;
    p->state = IP_START;
}

const char *imap_parser_reply_tag(const struct imap_parser *p)
{
    return p->tag_len > 0 && p->state != IP_TAG ? p->buf : "*";
}

static int imap_put(struct imap_parser *p, char c)
{
    /* One byte stays free for the NUL that ends the token. */
    if (p->len + 1 >= sizeof p->buf)
        return -1;
    /* ID holds one argument at a time: none may be longer than a value. */
    if (p->id_mode && p->len - p->tok_off >= IMAP_ID_MAX_VALUE) {
        if (p->error == NULL)
            p->error = "ID field or value too long";
        return -1;
    }
    p->buf[p->len++] = c;
    return 0;
}

static int imap_end_token(struct imap_parser *p)
{
    if (p->len >= sizeof p->buf)
        return -1;
    p->buf[p->len++] = '\0';
    return 0;
}

/* Enters the skip state: the rest of the line is ignored, then BAD is reported. */
static void imap_fail(struct imap_parser *p, const char *why)
{
    if (p->error == NULL)
        p->error = why;
    p->state = IP_SKIP;
}

/* imap_fail at byte c; returns 1 when c is the line's LF, which IP_SKIP must see again to end
 * the bad line (the caller steps back one byte). */
static int imap_fail_at(struct imap_parser *p, const char *why, unsigned char c)
{
    imap_fail(p, why);
    return c == '\n';
}

static int imap_add_arg(struct imap_parser *p, enum imap_arg_type type, size_t off, size_t len)
{
    if (p->nargs >= IMAP_PARSE_MAX_ARGS) {
        imap_fail(p, "Too many arguments");
        return -1;
    }
    p->arg_type[p->nargs] = type;
    p->arg_off[p->nargs] = off;
    p->arg_len[p->nargs] = len;
    p->nargs++;
    return 0;
}

/* RFC 2971 section 3.3's grammar and limits for one ID argument (a string or atom at the
 * top level or inside the list); 0, or -1 after imap_fail. */
static int imap_id_check(struct imap_parser *p, enum imap_arg_type type, const char *tok,
                         size_t len)
{
    /* id ::= "ID" SPACE id_params_list; id_params_list ::= "(" #(string SPACE nstring) ")" / nil */
    if (p->depth == 0) {
        int nil = type == IMAP_ARG_ATOM && len == 3 && strncasecmp(tok, "NIL", 3) == 0;
        if (!nil || p->id_items++ > 0) {
            imap_fail(p, "ID takes NIL or one list of field/value pairs");
            return -1;
        }
        return 0;
    }
    int field = p->id_strings % 2 == 0;
    if (field && p->id_strings / 2 >= IMAP_ID_MAX_PAIRS) {
        imap_fail(p, "Too many ID field/value pairs");
        return -1;
    }
    p->id_strings++;
    if (field && (type != IMAP_ARG_STRING || len > IMAP_ID_MAX_FIELD)) {
        imap_fail(p, type != IMAP_ARG_STRING ? "An ID field must be a string"
                                             : "ID field or value too long");
        return -1;
    }
    if (!field && type != IMAP_ARG_STRING && !(len == 3 && strncasecmp(tok, "NIL", 3) == 0)) {
        imap_fail(p, "An ID value must be a string or NIL");
        return -1;
    }
    return 0;
}

/* "(" or ")" of ID: one list, not nested, of whole pairs. */
static void imap_id_paren(struct imap_parser *p, unsigned char c)
{
    if (c == '(') {
        if (p->id_items++ > 0 || p->depth > 0) {
            imap_fail(p, "ID takes NIL or one list of field/value pairs");
            return;
        }
        p->depth = 1;
        p->state = IP_ARG;
        return;
    }
    if (p->id_strings % 2 != 0) {
        imap_fail(p, "An ID field without a value");
        return;
    }
    p->depth = 0;
    p->state = IP_AFTER_TOKEN;
}

/* Closes the token that started at tok_off. */
static void imap_finish_token(struct imap_parser *p)
{
    if (p->id_mode) {
        /* checked, then dropped: the buffer holds one ID argument at a time */
        if (imap_id_check(p, p->tok_type, p->buf + p->tok_off, p->len - p->tok_off) == 0)
            p->state = IP_AFTER_TOKEN;
        OPENSSL_cleanse(p->buf + p->tok_off, p->len - p->tok_off);
        p->len = p->tok_off;
        return;
    }
    size_t len = p->len - p->tok_off;
    if (imap_end_token(p) != 0) {
        imap_fail(p, "Command line too long");
        return;
    }
    if (imap_add_arg(p, p->tok_type, p->tok_off, len) == 0)
        p->state = IP_AFTER_TOKEN;
}

static void imap_fill_results(struct imap_parser *p)
{
    p->tag = p->buf;
    p->command = p->buf + p->cmd_off;
    for (size_t i = 0; i < p->nargs; i++) {
        p->args[i].type = p->arg_type[i];
        p->args[i].str = p->buf + p->arg_off[i];
        p->args[i].len = p->arg_len[i];
    }
}

/* The end of the line (LF) in a state where the command may end. */
static enum imap_parse_status imap_end_line(struct imap_parser *p)
{
    if (p->depth != 0) {
        p->error = "Unbalanced parentheses";
        p->state = IP_FINISHED;
        return IMAP_PARSE_BAD;
    }
    if (p->id_mode && p->id_items != 1) {
        p->error = "ID takes NIL or one list of field/value pairs";
        p->state = IP_FINISHED;
        return IMAP_PARSE_BAD;
    }
    p->state = IP_FINISHED;
    imap_fill_results(p);
    return IMAP_PARSE_DONE;
}

/* "{" seen: decides on the literal once "}" CRLF arrived. */
static enum imap_parse_status imap_literal_announced(struct imap_parser *p, int *stop)
{
    *stop = 0;
    uint64_t room = sizeof p->buf - 1 - p->len; /* the NUL after the data */
    uint64_t max = p->id_mode ? IMAP_ID_MAX_VALUE : p->max_literal;
    int too_big = p->literal_digits > 19 || p->literal > max || p->literal > room;
    if (too_big) {
        *stop = 1;
        if (p->literal_plus) {
            /* The octets are on their way and there are too many to take: the stream cannot
             * be resynchronised. RFC 7888 section 4 lets the server close the connection. */
            p->error = "Literal too large";
            p->state = IP_FINISHED;
            return IMAP_PARSE_FATAL;
        }
        /* RFC 9051 section 7.5: without "+", the client sends no octets of the literal, nor
         * the rest of the command. */
        p->error = "Literal too large";
        p->state = IP_FINISHED;
        return IMAP_PARSE_BAD;
    }
    p->tok_type = IMAP_ARG_STRING;
    p->tok_off = p->len;
    p->state = IP_LIT_DATA;
    if (p->literal == 0)
        imap_finish_token(p);
    if (!p->literal_plus) {
        *stop = 1;
        return IMAP_PARSE_CONTINUE;
    }
    return IMAP_PARSE_AGAIN;
}

size_t imap_parse(struct imap_parser *p, const char *in, size_t len, enum imap_parse_status *st)
{
    size_t i = 0;
    *st = IMAP_PARSE_AGAIN;
    if (p->state == IP_FINISHED)
        imap_parser_reset(p);
    while (i < len) {
        unsigned char c = (unsigned char)in[i];
        if (p->state == IP_LIT_DATA) {
            /* Bulk copy: literal octets are data, not syntax. */
            size_t n = len - i;
            if (n > p->literal)
                n = (size_t)p->literal;
            /* A NUL cannot be part of a user name or password (RFC 9051 CHAR8 excludes it):
             * the octets are still consumed, then the line is skipped. */
            if (p->error == NULL && memchr(in + i, '\0', n) != NULL)
                p->error = "NUL in literal";
            if (p->error == NULL) {
                memcpy(p->buf + p->len, in + i, n);
                p->len += n;
            }
            p->literal -= n;
            i += n;
            if (p->literal == 0) {
                if (p->error != NULL)
                    imap_fail(p, p->error);
                else
                    imap_finish_token(p);
            }
            continue;
        }
        i++;
        switch (p->state) {
        case IP_START:
            if (c == '\r' || c == '\n')
                break; /* an empty line is ignored */
            if (!imap_tag_char(c)) {
                imap_fail(p, "Invalid tag");
                p->tag_len = 0;
                break;
            }
            p->state = IP_TAG;
            /* fall through */
        case IP_TAG:
            if (c == ' ') {
                if (imap_end_token(p) != 0) {
                    p->tag_len = 0;
                    imap_fail(p, "Tag too long");
                    break;
                }
                p->cmd_off = p->len;
                p->state = IP_COMMAND;
            } else if (imap_tag_char(c)) {
                if (imap_put(p, (char)c) != 0) {
                    p->tag_len = 0;
                    imap_fail(p, "Tag too long");
                } else {
                    p->tag_len++;
                }
            } else {
                p->tag_len = 0;
                imap_fail(p, c == '\n' || c == '\r' ? "Missing command" : "Invalid tag");
                if (c == '\n') {
                    p->state = IP_FINISHED;
                    *st = IMAP_PARSE_BAD;
                    return i;
                }
            }
            break;
        case IP_COMMAND:
            if (imap_atom_char(c)) {
                if (imap_put(p, (char)c) != 0)
                    imap_fail(p, "Command line too long");
                else
                    p->cmd_len++;
                break;
            }
            if (p->cmd_len == 0) {
                imap_fail(p, "Missing command");
                if (c == '\n') {
                    p->state = IP_FINISHED;
                    *st = IMAP_PARSE_BAD;
                    return i;
                }
                break;
            }
            if (imap_end_token(p) != 0) {
                imap_fail(p, "Command line too long");
                break;
            }
            p->id_mode = p->cmd_len == 2 && strncasecmp(p->buf + p->cmd_off, "ID", 2) == 0;
            p->state = IP_AFTER_TOKEN;
            i--; /* the separator is handled there */
            break;
        case IP_AFTER_TOKEN:
            if (c == ' ') {
                p->state = IP_ARG;
            } else if (c == ')') {
                i--;
                p->state = IP_ARG;
            } else if (c == '\r') {
                p->state = IP_CR;
            } else if (c == '\n') {
                *st = imap_end_line(p);
                return i;
            } else {
                imap_fail(p, "Missing space between arguments");
            }
            break;
        case IP_ARG:
            if (c == ' ')
                break; /* be lenient about doubled spaces */
            if (c == '(' || c == ')') {
                if (c == ')' && p->depth == 0) {
                    imap_fail(p, "Unbalanced parentheses");
                    break;
                }
                if (p->id_mode) {
                    imap_id_paren(p, c);
                    break;
                }
                p->depth += c == '(' ? 1 : -1;
                if (imap_end_token(p) != 0) {
                    imap_fail(p, "Command line too long");
                    break;
                }
                if (imap_add_arg(p, c == '(' ? IMAP_ARG_LPAREN : IMAP_ARG_RPAREN,
                                 p->len - 1, 0) == 0)
                    p->state = c == '(' ? IP_ARG : IP_AFTER_TOKEN;
                break;
            }
            if (c == '\r' || c == '\n') {
                /* A trailing space: lenient, as with doubled spaces. */
                i--;
                p->state = IP_AFTER_TOKEN;
                break;
            }
            p->tok_off = p->len;
            if (c == '"') {
                p->tok_type = IMAP_ARG_STRING;
                p->state = IP_QUOTED;
            } else if (c == '{') {
                p->literal = 0;
                p->literal_digits = 0;
                p->literal_plus = 0;
                p->state = IP_LIT_LEN;
            } else if (imap_atom_char(c)) {
                p->tok_type = IMAP_ARG_ATOM;
                p->state = IP_ATOM;
                if (imap_put(p, (char)c) != 0)
                    imap_fail(p, "Command line too long");
            } else {
                imap_fail(p, "Invalid character in argument");
            }
            break;
        case IP_ATOM:
            if (imap_atom_char(c)) {
                if (imap_put(p, (char)c) != 0)
                    imap_fail(p, "Command line too long");
                break;
            }
            i--;
            imap_finish_token(p);
            break;
        case IP_QUOTED:
            if (c == '"') {
                imap_finish_token(p);
            } else if (c == '\\') {
                p->state = IP_QUOTED_ESC;
            } else if (c == '\r' || c == '\n' || c == '\0') {
                i -= imap_fail_at(p, "Unterminated quoted string", c);
            } else if (imap_put(p, (char)c) != 0) {
                imap_fail(p, "Command line too long");
            }
            break;
        case IP_QUOTED_ESC:
            /* quoted-specials only: "\\" and "\"" (RFC 9051 section 9, QUOTED-CHAR). */
            if (c != '"' && c != '\\') {
                i -= imap_fail_at(p, "Invalid escape in quoted string", c);
            } else if (imap_put(p, (char)c) != 0) {
                imap_fail(p, "Command line too long");
            } else {
                p->state = IP_QUOTED;
            }
            break;
        case IP_LIT_LEN:
            if (c >= '0' && c <= '9') {
                /* Past 19 digits the value may not fit 64 bits: remembered as too big. */
                if (p->literal_digits < 19)
                    p->literal = p->literal * 10 + (uint64_t)(c - '0');
                if (p->literal_digits < 20)
                    p->literal_digits++;
            } else if (c == '+' && p->literal_digits > 0) {
                p->literal_plus = 1;
                p->state = IP_LIT_CLOSE;
            } else if (c == '}' && p->literal_digits > 0) {
                p->state = IP_LIT_CR;
            } else {
                i -= imap_fail_at(p, "Invalid literal", c);
            }
            break;
        case IP_LIT_CLOSE:
            if (c == '}') {
                p->state = IP_LIT_CR;
            } else {
                i -= imap_fail_at(p, "Invalid literal", c);
            }
            break;
        case IP_LIT_CR:
        case IP_LIT_LF:
            if (c == '\r' && p->state == IP_LIT_CR) {
                p->state = IP_LIT_LF;
            } else if (c == '\n') {
                int stop;
                enum imap_parse_status r = imap_literal_announced(p, &stop);
                if (stop) {
                    *st = r;
                    return i;
                }
            } else {
                i -= imap_fail_at(p, "A literal must end its line", c);
            }
            break;
        case IP_CR:
            if (c != '\n') {
                imap_fail(p, "CR without LF");
                i--;
                break;
            }
            *st = imap_end_line(p);
            return i;
        case IP_SKIP:
            if (c == '\n') {
                p->state = IP_FINISHED;
                *st = IMAP_PARSE_BAD;
                return i;
            }
            break;
        case IP_FINISHED:
        case IP_LIT_DATA:
            break;
        }
    }
    return i;
}

/* ---- capability lists and response codes ----------------------------------------------- */

static int imap_atom_is(const char *a, size_t alen, const char *name)
{
    size_t n = strlen(name);
    return alen == n && strncasecmp(a, name, n) == 0;
}

static int imap_atom_has_prefix(const char *a, size_t alen, const char *prefix)
{
    size_t n = strlen(prefix);
    return alen >= n && strncasecmp(a, prefix, n) == 0;
}

/* The next space-separated atom of a list at *pos; 0 at the end. */
static int imap_next_atom(const char *in, size_t len, size_t *pos, const char **a, size_t *alen)
{
    size_t i = *pos;
    while (i < len && in[i] == ' ')
        i++;
    size_t start = i;
    while (i < len && in[i] != ' ')
        i++;
    *pos = i;
    *a = in + start;
    *alen = i - start;
    return *alen > 0;
}

size_t imap_capability_filter(const char *in, size_t len, char *out, size_t outsz)
{
    size_t o = 0, pos = 0, alen;
    const char *a;
    if (outsz == 0)
        return 0;
    while (imap_next_atom(in, len, &pos, &a, &alen)) {
        if (imap_atom_has_prefix(a, alen, "AUTH=") || imap_atom_is(a, alen, "SASL-IR") ||
            imap_atom_is(a, alen, "LOGINDISABLED") || imap_atom_is(a, alen, "STARTTLS") ||
            imap_atom_has_prefix(a, alen, "COMPRESS="))
            continue;
        size_t need = alen + (o > 0 ? 1 : 0);
        if (o + need + 1 > outsz)
            break;
        if (o > 0)
            out[o++] = ' ';
        memcpy(out + o, a, alen);
        o += alen;
    }
    out[o] = '\0';
    return o;
}

int imap_response_code(const char *text, size_t len, const char *name, const char **arg,
                       size_t *arg_len)
{
    size_t n = strlen(name);
    if (len < n + 2 || text[0] != '[' || strncasecmp(text + 1, name, n) != 0)
        return 0;
    size_t i = 1 + n;
    if (text[i] != ' ' && text[i] != ']')
        return 0;
    const char *end = memchr(text + i, ']', len - i);
    if (end == NULL)
        return 0;
    if (text[i] == ' ')
        i++;
    *arg = text + i;
    *arg_len = (size_t)(end - (text + i));
    return 1;
}

int imap_capability_has(const char *caps, size_t len, const char *atom)
{
    size_t pos = 0, alen;
    const char *a;
    while (imap_next_atom(caps, len, &pos, &a, &alen)) {
        if (imap_atom_is(a, alen, atom))
            return 1;
    }
    return 0;
}
