#include "sender_rules.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <strings.h>

/* No buffer here grows beyond this (far above SENDER_FILTER_MAX_HEADER plus one feed). */
#define SENDER_GROW_MAX (SIZE_MAX / 4)

/* ---- allowed senders and the envelope ------------------------------------------------------ */

int sender_rules_allowed(const struct config_account *acct, const char *path, size_t path_len)
{
    if (acct == NULL || acct->n_allowed_senders == 0)
        return 1;
    const char *at = path_len > 0 ? memchr(path, '@', path_len) : NULL;
    for (size_t i = 0; i < acct->n_allowed_senders; i++) {
        const char *e = acct->allowed_senders[i];
        size_t elen = strlen(e);
        if (path_len == 0) {
            if (strcmp(e, "<>") == 0)
                return 1;
            continue;
        }
        if (elen > 2 && e[0] == '*' && e[1] == '@') {
            /* "*@domain": the part after the (last) '@' of the path. */
            const char *last = at;
            while (last != NULL) {
                const char *next = memchr(last + 1, '@', (size_t)(path + path_len - last - 1));
                if (next == NULL)
                    break;
                last = next;
            }
            if (last != NULL && (size_t)(path + path_len - last - 1) == elen - 2 &&
                strncasecmp(last + 1, e + 2, elen - 2) == 0)
                return 1;
        } else if (elen == path_len && strncasecmp(e, path, path_len) == 0) {
            return 1;
        }
    }
    return 0;
}

long sender_rules_mail_line(const struct config_account *acct, const char *path, size_t path_len,
                            const char *params, size_t params_len, char *out, size_t outsz)
{
    if (acct == NULL || acct->envelope_from != CONFIG_ENVFROM_ACCOUNT || acct->username == NULL)
        return 0;
    size_t ulen = strlen(acct->username);
    if (ulen == path_len && strncasecmp(acct->username, path, path_len) == 0)
        return 0;
    int n = snprintf(out, outsz, "MAIL FROM:<%s>%s%.*s", acct->username, params_len ? " " : "",
                     (int)params_len, params);
    if (n < 0 || (size_t)n >= outsz)
        return -1;
    return n;
}

/* ---- header rewriting ---------------------------------------------------------------------- */

struct sender_buf {
    char *p;
    size_t len, cap;
    int oom;
};

/* Makes room in *p (capacity *cap, len bytes used) for n more bytes and a NUL. Every sum is
 * bounded before it is made, so no size can wrap around (which is also what lets the compiler
 * prove the copies that follow stay inside the buffer). 0, or -1 when too big or out of
 * memory (*p is then unchanged). */
static int sender_reserve(char **p, size_t *cap, size_t len, size_t n)
{
    if (*p != NULL && len < *cap && n < *cap - len)
        return 0;
    if (len > SENDER_GROW_MAX || n > SENDER_GROW_MAX - len)
        return -1;
    size_t need = len + n + 1, c = *cap > 0 ? *cap : 1024;
    while (c < need)
        c *= 2; /* c < need <= SENDER_GROW_MAX + 1: cannot wrap */
    char *g = realloc(*p, c);
    if (g == NULL)
        return -1;
    *p = g;
    *cap = c;
    return 0;
}

static void sender_buf_add(struct sender_buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (sender_reserve(&b->p, &b->cap, b->len, n) != 0) {
        b->oom = 1;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sender_buf_str(struct sender_buf *b, const char *s) { sender_buf_add(b, s, strlen(s)); }

static int sender_is_wsp(char c) { return c == ' ' || c == '\t'; }

/* End of the logical header starting at i (one line plus its continuation lines). */
static size_t sender_header_end(const char *h, size_t len, size_t i)
{
    for (;;) {
        const char *lf = memchr(h + i, '\n', len - i);
        if (lf == NULL)
            return len;
        i = (size_t)(lf - h) + 1;
        if (i >= len || !sender_is_wsp(h[i]))
            return i;
    }
}

/* Whether the header [start, end) is the field `name`. Field names are case-insensitive
 * (RFC 5322 1.2.2), and the obsolete syntax that receivers must honour allows WSP between the
 * name and the colon (4.5.2: obs-from = "From" *WSP ":" mailbox-list CRLF). This reads more
 * than that on purpose: folding before the colon, and WSP before the name (only possible on
 * the first line of the block), which are no header field to a strict parser (Postfix's
 * is_header()) but may be one to a lenient one further on; dropping such a line costs nothing,
 * keeping one that a receiver reads as From: would let the device choose its sender. */
static int sender_header_is(const char *h, size_t start, size_t end, const char *name)
{
    size_t n = strlen(name), i = start;
    /* On the relay path the filter sees the dot-stuffed stream, where ".From:" is the line
     * "From:" once the receiver takes the first dot away (RFC 5321 4.5.2): one leading dot is
     * skipped. In the unstuffed capture ".From" is no field a strict parser knows, and
     * dropping it costs nothing, like the WSP cases above. */
    if (i < end && h[i] == '.')
        i++;
    while (i < end && sender_is_wsp(h[i]))
        i++;
    if (end - i <= n || strncasecmp(h + i, name, n) != 0)
        return 0;
    for (i += n; i < end && (sender_is_wsp(h[i]) || h[i] == '\r' || h[i] == '\n');)
        i++;
    return i < end && h[i] == ':';
}

/* The unfolded, trimmed value of the header [start, end) into a NUL-terminated malloc'ed
 * string. */
static char *sender_header_value(const char *h, size_t start, size_t end)
{
    const char *colon = memchr(h + start, ':', end - start);
    size_t i = (size_t)(colon - h) + 1;
    char *v = malloc(end - i + 1);
    if (v == NULL)
        return NULL;
    size_t o = 0;
    for (; i < end; i++) {
        if (h[i] == '\r' || h[i] == '\n')
            continue; /* unfolding (RFC 5322 2.2.3): CRLF before WSP goes, the WSP stays */
        v[o++] = h[i];
    }
    while (o > 0 && sender_is_wsp(v[o - 1]))
        o--;
    v[o] = '\0';
    size_t lead = 0;
    while (sender_is_wsp(v[lead]))
        lead++;
    memmove(v, v + lead, o - lead + 1);
    return v;
}

/* Splits a From: value into the address and the display name (or comment):
 *   Name <addr>     "Name" <addr>     addr     addr (Name)
 * Writes pointers into v (modified in place). */
static void sender_parse_mailbox(char *v, char **addr, char **name)
{
    *name = NULL;
    int in_quote = 0;
    char *lt = NULL;
    for (char *p = v; *p; p++) {
        if (*p == '\\' && in_quote && p[1] != '\0') {
            p++;
        } else if (*p == '"') {
            in_quote = !in_quote;
        } else if (*p == '<' && !in_quote) {
            lt = p;
            break;
        }
    }
    if (lt != NULL) {
        char *gt = strchr(lt, '>');
        if (gt != NULL)
            *gt = '\0';
        *addr = lt + 1;
        char *e = lt;
        while (e > v && sender_is_wsp(e[-1]))
            e--;
        *e = '\0';
        if (*v != '\0')
            *name = v;
        return;
    }
    char *paren = strchr(v, '(');
    if (paren != NULL) {
        char *close = strrchr(paren, ')');
        if (close != NULL)
            *close = '\0';
        *name = paren + 1;
        char *e = paren;
        while (e > v && sender_is_wsp(e[-1]))
            e--;
        *e = '\0';
    }
    *addr = v;
}

/* What the rewrite needs to know about a header block. */
struct sender_scan {
    size_t from_start, from_end; /* the first From: header; from_start == len when none */
    size_t n_from;
    int has_reply_to;
};

static void sender_scan_headers(const char *hdr, size_t len, struct sender_scan *sc)
{
    memset(sc, 0, sizeof *sc);
    sc->from_start = sc->from_end = len;
    for (size_t i = 0; i < len;) {
        size_t e = sender_header_end(hdr, len, i);
        if (sender_header_is(hdr, i, e, "From")) {
            if (sc->n_from++ == 0) {
                sc->from_start = i;
                sc->from_end = e;
            }
        } else if (sender_header_is(hdr, i, e, "Reply-To")) {
            sc->has_reply_to = 1;
        }
        i = e;
    }
}

/* atext of RFC 5322 3.2.3, with the UTF-8 of RFC 6532 3.2 (any octet over 0x7f). */
static int sender_is_atext(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c >= 0x80 || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* Whether s is a phrase (RFC 5322 3.2.5, with obs-phrase's dots): words, each an atom (an
 * RFC 2047 encoded word is one) or a quoted string, between WSP. */
static int sender_is_phrase(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    int words = 0;
    while (*p != '\0') {
        if (sender_is_wsp((char)*p)) {
            p++;
        } else if (*p == '"') {
            for (p++; *p != '"'; p++) {
                if (*p == '\\')
                    p++; /* quoted-pair */
                if (*p == '\0' || (*p < 0x20 && *p != '\t') || *p == 0x7f)
                    return 0;
            }
            p++;
            words++;
        } else if (sender_is_atext(*p) || *p == '.') {
            while (sender_is_atext(*p) || *p == '.')
                p++;
            words++;
        } else {
            return 0;
        }
    }
    return words > 0;
}

/* The device's display name in front of <mailbox>: as written when it is a phrase (quotes and
 * encoded words stay valid), else as one quoted string. Written as it came, a "name" such as
 * `boss@example.com,` would make the From: a list of two addresses, the first one chosen by
 * the device. In a comment (`mailbox (name)`, 3.2.2) parentheses and backslashes go, so that
 * it cannot close early and be followed by an address, and so do <, > and quotes, which a
 * naive reader (this file's sender_parse_mailbox among them) takes for an address or a
 * quoted string even there. Control characters go in both. */
static void sender_put_name(struct sender_buf *b, const char *name, int comment)
{
    int quote = !comment && !sender_is_phrase(name);
    if (!comment && !quote) {
        sender_buf_str(b, name);
        return;
    }
    sender_buf_str(b, quote ? "\"" : "");
    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
        if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
            continue;
        if (comment && strchr("()\\<>\"", *p) != NULL)
            continue;
        if (quote && (*p == '"' || *p == '\\'))
            sender_buf_add(b, "\\", 1);
        sender_buf_add(b, (const char *)p, 1);
    }
    sender_buf_str(b, quote ? "\"" : "");
}

/* The From: line that replaces the first original one (value: its unfolded value; name: the
 * display name or comment parsed from it, or NULL). */
static void sender_put_from(struct sender_buf *b, const struct config_account *acct,
                            const char *value, const char *name)
{
    sender_buf_str(b, "From: ");
    if (acct->header_from == CONFIG_HDRFROM_ACCOUNT_WITH_NAME && name != NULL && *name != '\0') {
        if (strchr(value, '<') != NULL) {
            sender_put_name(b, name, 0);
            sender_buf_str(b, " <");
            sender_buf_str(b, acct->username);
            sender_buf_str(b, ">");
        } else {
            sender_buf_str(b, acct->username);
            sender_buf_str(b, " (");
            sender_put_name(b, name, 1);
            sender_buf_str(b, ")");
        }
    } else {
        sender_buf_str(b, acct->username);
    }
    sender_buf_str(b, "\r\n");
}

/* The header block with every From: header dropped and the new From: (plus the Reply-To:, when
 * reply_to is not NULL) where the first one was. RFC 5322 3.6 allows exactly one From:, and
 * which of several a receiver shows is anyone's guess: leaving any of them would let the device
 * claim an address that is not the mailbox. */
static void sender_put_block(struct sender_buf *b, const struct config_account *acct,
                             const char *hdr, size_t len, const char *value, const char *name,
                             const char *reply_to)
{
    for (size_t i = 0; i < len;) {
        size_t e = sender_header_end(hdr, len, i);
        if (!sender_header_is(hdr, i, e, "From")) {
            sender_buf_add(b, hdr + i, e - i);
        } else if (value != NULL) {
            sender_put_from(b, acct, value, name);
            if (reply_to != NULL) {
                sender_buf_str(b, "Reply-To: ");
                sender_buf_str(b, reply_to);
                sender_buf_str(b, "\r\n");
            }
            value = NULL; /* the later ones go */
        }
        i = e;
    }
}

char *sender_rules_rewrite_headers(const struct config_account *acct, const char *hdr,
                                   size_t len, size_t *out_len, char *orig, size_t origsz)
{
    *out_len = 0;
    if (orig != NULL && origsz > 0)
        orig[0] = '\0';
    if (acct == NULL || acct->header_from == CONFIG_HDRFROM_KEEP || acct->username == NULL)
        return NULL;
    struct sender_scan sc;
    sender_scan_headers(hdr, len, &sc);
    struct sender_buf b = {0};
    char *value = NULL, *copy = NULL;
    if (sc.n_from == 0) {
        /* No From: at all (RFC 5322 requires one): give it the mailbox. */
        sender_buf_add(&b, hdr, len);
        if (len > 0 && hdr[len - 1] != '\n')
            sender_buf_str(&b, "\r\n"); /* a last line cut short (the EWS/Graph capture) */
        sender_buf_str(&b, "From: ");
        sender_buf_str(&b, acct->username);
        sender_buf_str(&b, "\r\n");
        goto done;
    }
    /* The first From: is what the device claimed: the log line and the Reply-To: show it. */
    value = sender_header_value(hdr, sc.from_start, sc.from_end);
    copy = value != NULL ? strdup(value) : NULL;
    if (copy == NULL) {
        b.oom = 1;
        goto done;
    }
    if (orig != NULL)
        snprintf(orig, origsz, "%s", value);
    char *addr, *name;
    sender_parse_mailbox(copy, &addr, &name);
    int is_mailbox = strcasecmp(addr, acct->username) == 0;
    if (sc.n_from == 1 && is_mailbox &&
        (acct->header_from == CONFIG_HDRFROM_ACCOUNT_WITH_NAME || name == NULL))
        goto done; /* already the mailbox */
    /* Answers go to whoever the device claimed to be, unless it already said otherwise (or
     * that is the mailbox anyway, or it claimed nothing). */
    int add_reply_to = !sc.has_reply_to && !is_mailbox && value[0] != '\0';
    sender_put_block(&b, acct, hdr, len, value, name, add_reply_to ? value : NULL);
done:
    free(copy);
    free(value);
    if (b.oom) {
        free(b.p);
        *out_len = (size_t)-1;
        return NULL;
    }
    *out_len = b.len;
    return b.p;
}

/* ---- the stream filter --------------------------------------------------------------------- */

void sender_filter_init(struct sender_filter *f, const struct config_account *acct)
{
    memset(f, 0, sizeof *f);
    f->acct = acct;
    f->state = acct != NULL && acct->header_from != CONFIG_HDRFROM_KEEP ? SENDER_FILTER_HEADERS
                                                                        : SENDER_FILTER_OFF;
}

void sender_filter_reset(struct sender_filter *f)
{
    free(f->hdr);
    free(f->out);
    memset(f, 0, sizeof *f);
}

/* The line [p, p + n) (with its LF) is ".": the end of data in a dot-stuffed stream. */
static int sender_is_dot_line(const char *p, size_t n)
{
    return p[0] == '.' && (n == 2 || (n == 3 && p[1] == '\r'));
}

/* Where the header block ends in f->hdr: the offset of the empty line that ends it (RFC 5322
 * 2.1), or -1 when not seen yet. Only whole lines are judged, and every other line is part of
 * the block, a header field or not: a receiver further on may be lenient and read on, and any
 * From: it reads must have been seen here. A line "." is the end of data in the dot-stuffed
 * stream (RFC 5321 4.1.1.4), which ends the block too; but in the unstuffed stream of the
 * EWS/Graph capture it is a line of the message ("..", unstuffed) that may be followed by more
 * header fields. So it ends the block only when nothing follows it: it stays held, undecided,
 * until more bytes come (it was a line of the block) or sender_filter_finish (it was the end). */
static long sender_filter_find_end(struct sender_filter *f)
{
    size_t i = f->scanned;
    while (i < f->hdr_len) {
        const char *lf = memchr(f->hdr + i, '\n', f->hdr_len - i);
        if (lf == NULL)
            break;
        size_t next = (size_t)(lf - f->hdr) + 1, n = next - i;
        if (n == 1 || (n == 2 && f->hdr[i] == '\r'))
            return (long)i;
        if (next == f->hdr_len && sender_is_dot_line(f->hdr + i, n))
            break;
        i = next;
        f->scanned = i;
    }
    return -1;
}

static int sender_filter_emit(struct sender_filter *f, size_t end, const char **out,
                              size_t *out_len);

int sender_filter_finish(struct sender_filter *f, const char **out, size_t *out_len)
{
    *out = "";
    *out_len = 0;
    if (f->state != SENDER_FILTER_HEADERS)
        return 0;
    f->state = SENDER_FILTER_BODY;
    if (f->hdr_len == 0)
        return 0;
    /* All that is held is the header block, but for a last line "." (the end of data) that
     * sender_filter_find_end left undecided. */
    size_t end = f->hdr_len;
    if (f->scanned < end && sender_is_dot_line(f->hdr + f->scanned, end - f->scanned))
        end = f->scanned;
    return sender_filter_emit(f, end, out, out_len);
}

int sender_filter_feed(struct sender_filter *f, const char *in, size_t len, const char **out,
                       size_t *out_len)
{
    *out = in; /* never NULL: callers may memcpy(dst, *out, 0) */
    *out_len = 0;
    if (f->state == SENDER_FILTER_REFUSED)
        return -1;
    if (f->state != SENDER_FILTER_HEADERS) {
        *out_len = len;
        return 0;
    }
    if (sender_reserve(&f->hdr, &f->hdr_cap, f->hdr_len, len) != 0)
        return -1;
    memcpy(f->hdr + f->hdr_len, in, len);
    f->hdr_len += len;
    long end = sender_filter_find_end(f);
    if (end < 0) {
        if (f->hdr_len <= SENDER_FILTER_MAX_HEADER)
            return 0; /* all held bytes count: a line without its LF may be long too */
        f->gave_up = 1; /* too big to hold (sender_rules.h) */
        f->state = SENDER_FILTER_REFUSED;
        return -1;
    }
    f->state = SENDER_FILTER_BODY;
    return sender_filter_emit(f, (size_t)end, out, out_len);
}

/* The header block is f->hdr[0, end): rewrite it and put what follows behind. */
static int sender_filter_emit(struct sender_filter *f, size_t end, const char **out,
                              size_t *out_len)
{
    size_t new_len;
    char *rw = sender_rules_rewrite_headers(f->acct, f->hdr, end, &new_len,
                                            f->original_from, sizeof f->original_from);
    if (rw == NULL) {
        if (new_len == (size_t)-1)
            return -1;
        *out = f->hdr;
        *out_len = f->hdr_len;
        return 0;
    }
    size_t rest = f->hdr_len - (size_t)end;
    free(f->out);
    f->out = malloc(new_len + rest + 1);
    if (f->out == NULL) {
        free(rw);
        return -1;
    }
    memcpy(f->out, rw, new_len);
    memcpy(f->out + new_len, f->hdr + end, rest);
    free(rw);
    f->rewritten = 1;
    *out = f->out;
    *out_len = new_len + rest;
    return 0;
}
