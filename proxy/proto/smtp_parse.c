#include "smtp_parse.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

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

/* Control characters never belong in a path (and would reach the upstream and the log). */
static int smtp_path_clean(const char *p, const char *end)
{
    for (; p < end; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

/* "<path>": the closing ">" outside a quoted local part, or NULL. p is just after the "<". */
static const char *smtp_path_close(const char *p, const char *end)
{
    int quoted = 0;
    for (const char *q = p; q < end; q++) {
        if (*q == '"' && (q == p || q[-1] != '\\'))
            quoted = !quoted;
        else if (*q == '>' && !quoted)
            return q;
    }
    return NULL;
}

/* "FROM:<path> params" / "TO:<path> params". Some clients put a space after the colon, which
 * RFC 5321 does not allow but every server tolerates. Many devices leave out the angle brackets
 * ("MAIL FROM:scan@example.com"), which RFC 821 already did not allow and Postfix accepts by
 * default (strict_rfc821_envelopes = no): the path is then everything up to the first space,
 * without "<", ">" or '"' (so that it cannot be read two ways), and the session relays it with
 * the brackets (smtp_path_line). */
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
    if (p >= end)
        return SMTP_PARSE_SYNTAX;
    const char *close;
    const char *params;
    if (*p == '<') {
        p++;
        close = smtp_path_close(p, end);
        if (close == NULL)
            return SMTP_PARSE_SYNTAX;
        params = close + 1;
        cmd->bracketed = 1;
    } else {
        const char *sp = memchr(p, ' ', (size_t)(end - p));
        close = sp != NULL ? sp : end;
        for (const char *q = p; q < close; q++)
            if (*q == '<' || *q == '>' || *q == '"')
                return SMTP_PARSE_SYNTAX;
        params = close;
    }
    if (!smtp_path_clean(p, close))
        return SMTP_PARSE_SYNTAX;
    cmd->path = p;
    cmd->path_len = (size_t)(close - p);
    if (params < end && *params != ' ')
        return SMTP_PARSE_SYNTAX;
    while (params < end && *params == ' ')
        params++;
    cmd->params = params;
    cmd->params_len = (size_t)(end - params);
    return SMTP_PARSE_OK;
}

long smtp_path_line(const struct smtp_command *cmd, char *out, size_t outsz)
{
    const char *kw = cmd->verb == SMTP_CMD_MAIL ? "MAIL FROM:" : "RCPT TO:";
    int n = snprintf(out, outsz, "%s<%.*s>%s%.*s", kw, (int)cmd->path_len, cmd->path,
                     cmd->params_len > 0 ? " " : "", (int)cmd->params_len, cmd->params);
    return n >= 0 && (size_t)n < outsz ? n : -1;
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

/* The DATA scanner. RFC 5321 4.1.1.4: the data ends with "CRLF . CRLF" and nothing else; 2.3.8:
 * CR and LF occur only together. Senders do not all keep to 2.3.8, and "SMTP smuggling" lives in
 * the gap: a front MTA that passes "\n.\n" on lets its sender end the message early for a server
 * that takes a bare LF (or a bare CR) as a line end, and what follows runs as commands under the
 * account logged in here. So:
 *   - only CRLF "." CRLF, with a real CRLF on both sides, ends the data;
 *   - a bare LF is relayed as CRLF (old Unix devices send them; the provider then sees clean
 *     lines), a bare CR is relayed as it came (as Postfix does);
 *   - a "." that stands alone between line-end bytes of any kind (after a bare LF or bare CR, or
 *     before a bare CR) is what one receiver or another could take for the end: it never ends
 *     the data here, it is relayed stuffed ("..", so that no receiver sees a terminator either)
 *     and lone_dot tells the session, which refuses the message (550 5.5.2). No sender means
 *     such a line; a smuggler does.
 * Lines have no length limit (RFC 5321 4.5.3.1: receivers should not impose one where they can;
 * the provider decides): the scanner keeps no line, only the state below. */
enum {
    DATA_LINE_START, /* just after a CRLF (or at the start of the message) */
    DATA_LF_START,   /* just after a bare LF (relayed as CRLF) */
    DATA_DOT,        /* "." at the start of a line, held */
    DATA_DOT_CR,     /* ".\r" at the start of a line, held */
    DATA_MID,        /* inside a line */
    DATA_CR,         /* inside a line, just after a CR (bare unless an LF follows) */
    DATA_CR_DOT      /* inside a line, just after a bare CR and a ".", the "." held */
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

static int smtp_data_holds(int state)
{
    return state == DATA_DOT || state == DATA_DOT_CR || state == DATA_CR_DOT;
}

/* A held "." that could pass for an end marker somewhere: stuffed when relayed, kept as the
 * one character of its line when the message is kept. */
static void smtp_data_lone_dot(struct smtp_data_scan *s, char *out, size_t *o)
{
    s->lone_dot = 1;
    smtp_data_put(out, o, '.');
    if (!s->unstuff)
        smtp_data_put(out, o, '.');
}

/* One byte in the states around line ends. 1 when it completed the end marker. */
static int smtp_data_step(struct smtp_data_scan *s, char c, char *out, size_t *o)
{
    switch (s->state) {
    case DATA_LINE_START:
    case DATA_LF_START:
        if (c == '.') {
            s->dot_after_lf = s->state == DATA_LF_START;
            s->state = DATA_DOT;
            return 0;
        }
        s->state = DATA_MID;
        return smtp_data_step(s, c, out, o);
    case DATA_DOT:
        if (c == '\r') {
            s->state = DATA_DOT_CR;
            return 0;
        }
        if (c == '\n')
            smtp_data_lone_dot(s, out, o); /* "\n.\n", "\r\n.\n" */
        else if (!s->unstuff)
            smtp_data_put(out, o, '.'); /* the stuffing dot goes on to the upstream */
        s->state = DATA_MID;
        return smtp_data_step(s, c, out, o);
    case DATA_DOT_CR:
        if (c == '\n' && !s->dot_after_lf)
            return 1;
        smtp_data_lone_dot(s, out, o); /* "\n.\r\n", or ".\r" not followed by LF */
        smtp_data_put(out, o, '\r');
        s->state = DATA_CR;
        return smtp_data_step(s, c, out, o);
    case DATA_CR_DOT:
        if (c == '\r' || c == '\n')
            smtp_data_lone_dot(s, out, o); /* "\r.\r", "\r.\n" */
        else
            smtp_data_put(out, o, '.');
        s->state = DATA_MID;
        return smtp_data_step(s, c, out, o);
    case DATA_CR:
        if (c == '\n') {
            smtp_data_put(out, o, '\n');
            s->state = DATA_LINE_START;
            return 0;
        }
        if (c == '.') {
            s->state = DATA_CR_DOT;
            return 0;
        }
        s->state = DATA_MID;
        return smtp_data_step(s, c, out, o);
    default: /* DATA_MID */
        if (c == '\r') {
            s->state = DATA_CR;
        } else if (c == '\n') {
            smtp_data_put(out, o, '\r');
            s->bare_lf = 1;
            s->state = DATA_LF_START;
        }
        smtp_data_put(out, o, c);
        return 0;
    }
}

/* From buf[i], at the start of a line that does not begin with ".": the end of a run of
 * complete ordinary lines (CRLF and no other CR, the next one not starting with "."), which
 * need none of the states above and are copied in one go. This is where a message's bytes are;
 * per line it leaves two memchr and two compares. */
static size_t smtp_data_plain_lines(const char *buf, size_t i, size_t len)
{
    size_t j = i;
    for (;;) {
        const char *lf = memchr(buf + j, '\n', len - j);
        if (lf == NULL)
            break;
        size_t e = (size_t)(lf - buf);
        if (e == j || buf[e - 1] != '\r' || memchr(buf + j, '\r', e - 1 - j) != NULL)
            break; /* bare LF or bare CR: the careful way */
        j = e + 1;
        if (j == len || buf[j] == '.')
            break;
    }
    return j;
}

long smtp_data_scan(struct smtp_data_scan *s, const char *buf, size_t len, char *out,
                    size_t *out_len)
{
    size_t o = 0, i = 0;
    size_t lf_at = 0; /* once lf_known: the first LF at or after i while lf_at >= i (len: none) */
    int lf_known = 0;
    /* A "." (and CR) held back from the previous piece comes out in this one. */
    int held = smtp_data_holds(s->state);
    while (i < len) {
        size_t run = i;
        if (s->state == DATA_LINE_START && buf[i] != '.') {
            run = smtp_data_plain_lines(buf, i, len);
            if (run == i)
                s->state = DATA_MID;
        } else if (s->state == DATA_LF_START && buf[i] != '.') {
            s->state = DATA_MID;
        }
        if (s->state == DATA_MID) {
            /* Inside a line: copy up to the next CR or LF in one go. lf_at is kept so that
             * many bare CRs in a long line do not search for the same LF again each time. */
            if (!lf_known || lf_at < i) {
                const char *lf = memchr(buf + i, '\n', len - i);
                lf_at = lf != NULL ? (size_t)(lf - buf) : len;
                lf_known = 1;
            }
            const char *cr = memchr(buf + i, '\r', lf_at - i);
            run = cr != NULL ? (size_t)(cr - buf) : lf_at;
        }
        if (run > i) {
            if (out != NULL)
                memcpy(out + o, buf + i, run - i);
            o += run - i;
            i = run;
            continue;
        }
        if (!smtp_data_step(s, buf[i++], out, &o))
            continue;
        s->size += o;
        if (!s->unstuff) {
            smtp_data_put(out, &o, '.');
            smtp_data_put(out, &o, '\r');
            smtp_data_put(out, &o, '\n');
        }
        *out_len = out != NULL || (!held && o == i) ? o : (size_t)-1;
        s->state = DATA_LINE_START;
        return (long)i;
    }
    s->size += o;
    held = held || smtp_data_holds(s->state);
    *out_len = out != NULL || (!held && o == len) ? o : (size_t)-1;
    return -1;
}
