#include "message_header.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
    HEADER_SCAN_LINE_START, /* after LF (or at the start): an empty line ends the header */
    HEADER_SCAN_CR_AT_START,
    HEADER_SCAN_MID_LINE
};

void message_header_scan_init(struct message_header_scan *h)
{
    memset(h, 0, sizeof *h);
    h->state = HEADER_SCAN_LINE_START;
}

void message_header_scan_free(struct message_header_scan *h)
{
    free(h->buf);
    memset(h, 0, sizeof *h);
}

static void header_scan_keep(struct message_header_scan *h, const char *p, size_t n)
{
    if (h->failed || h->truncated)
        return;
    if (h->len + n > MESSAGE_HEADER_MAX) {
        n = MESSAGE_HEADER_MAX - h->len;
        h->truncated = 1;
    }
    if (h->len + n + 1 > h->cap) {
        size_t cap = h->cap != 0 ? h->cap : 4096;
        while (cap < h->len + n + 1)
            cap *= 2;
        char *b = realloc(h->buf, cap);
        if (b == NULL) {
            h->failed = 1;
            return;
        }
        h->buf = b;
        h->cap = cap;
    }
    memcpy(h->buf + h->len, p, n);
    h->len += n;
    h->buf[h->len] = '\0';
}

void message_header_scan_feed(struct message_header_scan *h, const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && !h->done) {
        char c = p[i];
        switch (h->state) {
        case HEADER_SCAN_LINE_START:
            if (c == '\n') {
                h->done = 1;
            } else if (c == '\r') {
                h->state = HEADER_SCAN_CR_AT_START;
            } else {
                h->state = HEADER_SCAN_MID_LINE;
                continue; /* the byte is part of a line */
            }
            i++;
            continue;
        case HEADER_SCAN_CR_AT_START:
            if (c == '\n') {
                h->done = 1;
                i++;
                continue;
            }
            /* A lone CR at a line start is text: keep it. */
            header_scan_keep(h, "\r", 1);
            h->state = HEADER_SCAN_MID_LINE;
            continue;
        default: {
            const char *lf = memchr(p + i, '\n', n - i);
            size_t end = lf != NULL ? (size_t)(lf - p) + 1 : n;
            header_scan_keep(h, p + i, end - i);
            i = end;
            if (lf != NULL)
                h->state = HEADER_SCAN_LINE_START;
            continue;
        }
        }
    }
}

/* Characters that can be part of an addr-spec (RFC 5322 3.2.3 atext, '.', '@'). */
static int message_header_addr_char(unsigned char c)
{
    return isalnum(c) || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~.@", (int)c) != NULL) || c >= 0x80;
}

/* Is addr a token of text (case-insensitive, with non-address characters around it)? */
static int message_header_contains_addr(const char *text, size_t tlen, const char *addr,
                                        size_t alen)
{
    if (alen == 0 || alen > tlen)
        return 0;
    for (size_t i = 0; i + alen <= tlen; i++) {
        if (strncasecmp(text + i, addr, alen) != 0)
            continue;
        if (i > 0 && message_header_addr_char((unsigned char)text[i - 1]))
            continue;
        if (i + alen < tlen && message_header_addr_char((unsigned char)text[i + alen]))
            continue;
        return 1;
    }
    return 0;
}

/* Appends the values of every To:, Cc: and Bcc: field (unfolded enough for matching: a folded
 * continuation just stays as text) to out. */
static char *message_header_recipient_text(const struct message_header_scan *h, size_t *out_len)
{
    char *out = malloc(h->len + 1);
    size_t o = 0;
    if (out == NULL)
        return NULL;
    const char *p = h->buf != NULL ? h->buf : "";
    const char *end = p + h->len;
    int in_rcpt_field = 0;
    while (p < end) {
        const char *lf = memchr(p, '\n', (size_t)(end - p));
        const char *le = lf != NULL ? lf + 1 : end;
        if (*p == ' ' || *p == '\t') {
            /* RFC 5322 2.2.3: a line starting with white space continues the field. */
        } else {
            const char *colon = memchr(p, ':', (size_t)(le - p));
            in_rcpt_field = 0;
            if (colon != NULL) {
                size_t nl = (size_t)(colon - p);
                while (nl > 0 && (p[nl - 1] == ' ' || p[nl - 1] == '\t'))
                    nl--;
                in_rcpt_field = (nl == 2 && strncasecmp(p, "to", 2) == 0) ||
                                (nl == 2 && strncasecmp(p, "cc", 2) == 0) ||
                                (nl == 3 && strncasecmp(p, "bcc", 3) == 0);
                if (in_rcpt_field) {
                    out[o++] = ' ';
                    p = colon + 1;
                }
            }
        }
        if (in_rcpt_field) {
            memcpy(out + o, p, (size_t)(le - p));
            o += (size_t)(le - p);
        }
        p = le;
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

char *message_header_bcc(const struct message_header_scan *h, const char *const *rcpts,
                         size_t n_rcpts, size_t *n_missing)
{
    size_t tlen = 0, missing = 0, need = 8;
    char *text = message_header_recipient_text(h, &tlen);
    if (text == NULL)
        return NULL;
    for (size_t i = 0; i < n_rcpts; i++)
        need += strlen(rcpts[i]) + 4;
    char *out = malloc(need);
    if (out == NULL) {
        free(text);
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < n_rcpts; i++) {
        size_t alen = strlen(rcpts[i]);
        if (message_header_contains_addr(text, tlen, rcpts[i], alen))
            continue;
        /* The same address twice in the envelope is added once. */
        int dup = 0;
        for (size_t j = 0; j < i && !dup; j++)
            dup = strcasecmp(rcpts[i], rcpts[j]) == 0;
        if (dup)
            continue;
        if (missing == 0) {
            memcpy(out, "Bcc: ", 5);
            o = 5;
        } else {
            /* One address per line keeps every line far below 998 octets (RFC 5322 2.1.1). */
            memcpy(out + o, ",\r\n ", 4);
            o += 4;
        }
        memcpy(out + o, rcpts[i], alen);
        o += alen;
        missing++;
    }
    if (missing > 0) {
        out[o++] = '\r';
        out[o++] = '\n';
    }
    out[o] = '\0';
    free(text);
    if (n_missing != NULL)
        *n_missing = missing;
    return out;
}
