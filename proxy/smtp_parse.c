#include "smtp_parse.h"

#include <string.h>
#include <strings.h>

#define SMTP_TEXT_LINE_MAX 1000 /* RFC 5321 4.5.3.1.6, CRLF included */

static const struct {
    const char *name;
    enum smtp_verb verb;
} smtp_verbs[] = {
    {"HELO", SMTP_CMD_HELO}, {"EHLO", SMTP_CMD_EHLO}, {"STARTTLS", SMTP_CMD_STARTTLS},
    {"AUTH", SMTP_CMD_AUTH}, {"MAIL", SMTP_CMD_MAIL}, {"RCPT", SMTP_CMD_RCPT},
    {"DATA", SMTP_CMD_DATA}, {"BDAT", SMTP_CMD_BDAT}, {"RSET", SMTP_CMD_RSET},
    {"NOOP", SMTP_CMD_NOOP}, {"QUIT", SMTP_CMD_QUIT}, {"VRFY", SMTP_CMD_VRFY},
    {"EXPN", SMTP_CMD_EXPN}, {"HELP", SMTP_CMD_HELP},
};

const char *smtp_verb_name(enum smtp_verb v)
{
    for (size_t i = 0; i < sizeof smtp_verbs / sizeof smtp_verbs[0]; i++)
        if (smtp_verbs[i].verb == v)
            return smtp_verbs[i].name;
    return "UNKNOWN";
}

/* "FROM:<path> params" / "TO:<path> params". Some clients put a space after the colon, which
 * RFC 5321 does not allow but every server tolerates. */
static enum smtp_parse_result smtp_parse_path(struct smtp_command *cmd, const char *keyword)
{
    size_t kl = strlen(keyword);
    const char *p = cmd->arg;
    const char *end = cmd->arg + cmd->arg_len;
    if (cmd->arg_len < kl || strncasecmp(p, keyword, kl) != 0)
        return SMTP_PARSE_SYNTAX;
    p += kl;
    while (p < end && *p == ' ')
        p++;
    if (p >= end || *p != '<')
        return SMTP_PARSE_SYNTAX;
    p++;
    const char *close = NULL;
    int quoted = 0;
    for (const char *q = p; q < end; q++) {
        if (*q == '"' && (q == p || q[-1] != '\\'))
            quoted = !quoted;
        else if (*q == '>' && !quoted) {
            close = q;
            break;
        }
    }
    if (close == NULL)
        return SMTP_PARSE_SYNTAX;
    for (const char *q = p; q < close; q++)
        if ((unsigned char)*q < 0x20 || *q == 0x7f)
            return SMTP_PARSE_SYNTAX;
    cmd->path = p;
    cmd->path_len = (size_t)(close - p);
    const char *params = close + 1;
    if (params < end && *params != ' ')
        return SMTP_PARSE_SYNTAX;
    while (params < end && *params == ' ')
        params++;
    cmd->params = params;
    cmd->params_len = (size_t)(end - params);
    return SMTP_PARSE_OK;
}

enum smtp_parse_result smtp_parse_command(const char *line, size_t len, struct smtp_command *cmd)
{
    memset(cmd, 0, sizeof *cmd);
    cmd->arg = "";
    cmd->path = "";
    cmd->params = "";
    for (size_t i = 0; i < len; i++)
        if (line[i] == '\0')
            return SMTP_PARSE_SYNTAX;
    size_t vl = 0;
    while (vl < len && line[vl] != ' ')
        vl++;
    for (size_t i = 0; i < sizeof smtp_verbs / sizeof smtp_verbs[0]; i++) {
        if (strlen(smtp_verbs[i].name) == vl && strncasecmp(line, smtp_verbs[i].name, vl) == 0) {
            cmd->verb = smtp_verbs[i].verb;
            break;
        }
    }
    if (cmd->verb == SMTP_CMD_UNKNOWN)
        return SMTP_PARSE_UNKNOWN;
    if (vl < len) {
        cmd->arg = line + vl + 1;
        cmd->arg_len = len - vl - 1;
        /* Trailing spaces are noise some devices add. */
        while (cmd->arg_len > 0 && cmd->arg[cmd->arg_len - 1] == ' ')
            cmd->arg_len--;
    }
    switch (cmd->verb) {
    case SMTP_CMD_HELO:
    case SMTP_CMD_EHLO:
    case SMTP_CMD_AUTH:
        return cmd->arg_len > 0 ? SMTP_PARSE_OK : SMTP_PARSE_SYNTAX;
    case SMTP_CMD_MAIL:
        return smtp_parse_path(cmd, "FROM:");
    case SMTP_CMD_RCPT:
        if (smtp_parse_path(cmd, "TO:") != SMTP_PARSE_OK || cmd->path_len == 0)
            return SMTP_PARSE_SYNTAX;
        return SMTP_PARSE_OK;
    case SMTP_CMD_STARTTLS:
    case SMTP_CMD_DATA:
    case SMTP_CMD_RSET:
    case SMTP_CMD_QUIT:
        return cmd->arg_len == 0 ? SMTP_PARSE_OK : SMTP_PARSE_SYNTAX;
    default:
        return SMTP_PARSE_OK;
    }
}

enum {
    DATA_LINE_START, /* just after a line end (or at the start of the message) */
    DATA_DOT,        /* "." at the start of a line */
    DATA_DOT_CR,     /* ".\r" at the start of a line */
    DATA_MID         /* inside a line */
};

void smtp_data_scan_init(struct smtp_data_scan *s)
{
    memset(s, 0, sizeof *s);
    s->state = DATA_LINE_START;
}

void smtp_data_scan_unstuffed(struct smtp_data_scan *s) { s->unstuff = 1; }

/* out == NULL: count only (smtp_data_scan's "as it came" mode). */
static inline void smtp_data_put(char *out, size_t *o, char c)
{
    if (out != NULL)
        out[*o] = c;
    (*o)++;
}

static void smtp_data_line_end(struct smtp_data_scan *s, char *out, size_t *o)
{
    if (!s->last_cr) {
        smtp_data_put(out, o, '\r');
        s->bare_lf = 1;
    } else if (s->line_len > 0) {
        s->line_len--; /* the CR belongs to the line end, not the text */
    }
    smtp_data_put(out, o, '\n');
    if (s->line_len > SMTP_TEXT_LINE_MAX - 2)
        s->line_too_long = 1;
    s->line_len = 0;
    s->last_cr = 0;
    s->state = DATA_LINE_START;
}

long smtp_data_scan(struct smtp_data_scan *s, const char *buf, size_t len, char *out,
                    size_t *out_len)
{
    size_t o = 0, i = 0;
    /* A "." (and CR) held back from the previous piece comes out in this one. */
    int held = s->state == DATA_DOT || s->state == DATA_DOT_CR;
    while (i < len) {
        char c = buf[i];
        switch (s->state) {
        case DATA_LINE_START:
            if (c == '.') {
                s->state = DATA_DOT;
                i++;
            } else {
                s->state = DATA_MID;
            }
            continue;
        case DATA_DOT:
            if (c == '\r') {
                s->state = DATA_DOT_CR;
                i++;
                continue;
            }
            if (c == '\n') {
                s->bare_lf = 1;
                goto end;
            }
            if (!s->unstuff)
                smtp_data_put(out, &o, '.');
            s->line_len++;
            s->state = DATA_MID;
            continue;
        case DATA_DOT_CR:
            if (c == '\n')
                goto end;
            if (!s->unstuff)
                smtp_data_put(out, &o, '.');
            smtp_data_put(out, &o, '\r');
            s->line_len += 2;
            s->last_cr = 1;
            s->state = DATA_MID;
            continue;
        default:
            break;
        }
        /* At the start of a line that does not begin with ".": a run of complete ordinary lines
         * (CRLF, not too long, the next one not starting with ".") needs none of the state
         * above and is copied in one go. This is where a message's bytes are; per line it
         * leaves a memchr and two compares (callgrind: the scan cost 1.6 instructions per
         * byte with a state change per line). Anything else takes the way below. */
        if (s->line_len == 0) {
            size_t j = i;
            for (;;) {
                const char *lf = memchr(buf + j, '\n', len - j);
                if (lf == NULL)
                    break;
                size_t e = (size_t)(lf - buf);
                if (e == j || buf[e - 1] != '\r' || e - 1 - j > SMTP_TEXT_LINE_MAX - 2)
                    break; /* bare LF or too long: the careful way */
                j = e + 1;
                if (j == len || buf[j] == '.')
                    break;
            }
            if (j > i) { /* j is just after a line end */
                if (out != NULL)
                    memcpy(out + o, buf + i, j - i);
                o += j - i;
                i = j;
                s->state = DATA_LINE_START;
                continue;
            }
        }
        /* Inside a line: copy up to the next LF in one go. */
        const char *lf = memchr(buf + i, '\n', len - i);
        size_t n = (lf != NULL ? (size_t)(lf - buf) : len) - i;
        if (n > 0) {
            if (out != NULL)
                memcpy(out + o, buf + i, n);
            o += n;
            s->line_len += n;
            s->last_cr = buf[i + n - 1] == '\r';
            i += n;
        }
        if (s->line_len > SMTP_TEXT_LINE_MAX)
            s->line_too_long = 1; /* too long whatever ends it */
        if (lf != NULL) {
            smtp_data_line_end(s, out, &o);
            i++;
        }
        continue;
    end:
        s->size += o;
        if (!s->unstuff) {
            smtp_data_put(out, &o, '.');
            smtp_data_put(out, &o, '\r');
            smtp_data_put(out, &o, '\n');
        }
        *out_len = out != NULL || (!held && o == i + 1) ? o : (size_t)-1;
        s->state = DATA_LINE_START;
        return (long)(i + 1);
    }
    s->size += o;
    held = held || s->state == DATA_DOT || s->state == DATA_DOT_CR;
    *out_len = out != NULL || (!held && o == len) ? o : (size_t)-1;
    return -1;
}
