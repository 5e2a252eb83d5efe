/* pop3_parse: resumable POP3 command-line parser, see pop3_parse.h. */
#include "pop3_parse.h"

#include <openssl/crypto.h>
#include <string.h>

void pop3_parser_init(struct pop3_parser *p)
{
    memset(p, 0, sizeof *p);
    p->arg = "";
}

void pop3_parser_reset(struct pop3_parser *p)
{
    OPENSSL_cleanse(p->buf, p->len < sizeof p->buf ? p->len + 1 : sizeof p->buf);
    p->len = 0;
    p->skipping = p->finished = 0;
    p->keyword[0] = '\0';
    p->arg = "";
    p->arg_len = 0;
}

/* Splits the finished line into keyword and argument. */
static enum pop3_parse_status pop3_split(struct pop3_parser *p)
{
    p->buf[p->len] = '\0';
    /* A NUL would cut a password short when it is handled as a C string. */
    if (memchr(p->buf, '\0', p->len) != NULL)
        return POP3_PARSE_BAD;
    if (p->raw) {
        p->arg = p->buf;
        p->arg_len = p->len;
        return POP3_PARSE_DONE;
    }
    size_t k = 0;
    while (k < p->len && k < 4 && ((p->buf[k] >= 'A' && p->buf[k] <= 'Z') ||
                                   (p->buf[k] >= 'a' && p->buf[k] <= 'z'))) {
        p->keyword[k] = (char)(p->buf[k] & ~0x20);
        k++;
    }
    p->keyword[k] = '\0';
    /* RFC 1939 section 3: "Keywords are three or four characters long", then SP or the end. */
    if (k < 3 || (k < p->len && p->buf[k] != ' '))
        return POP3_PARSE_BAD;
    p->arg = k < p->len ? p->buf + k + 1 : p->buf + k;
    p->arg_len = k < p->len ? p->len - k - 1 : 0;
    return POP3_PARSE_DONE;
}

size_t pop3_parse(struct pop3_parser *p, const char *in, size_t len, enum pop3_parse_status *st)
{
    *st = POP3_PARSE_AGAIN;
    if (p->finished)
        pop3_parser_reset(p);
    const char *lf = memchr(in, '\n', len);
    size_t n = lf != NULL ? (size_t)(lf - in) : len; /* bytes before the LF */
    if (!p->skipping) {
        if (p->len + n >= sizeof p->buf) {
            /* One byte stays free for the NUL. */
            p->skipping = 1;
            OPENSSL_cleanse(p->buf, p->len);
            p->len = 0;
        } else {
            memcpy(p->buf + p->len, in, n);
            p->len += n;
        }
    }
    if (lf == NULL)
        return len;
    p->finished = 1;
    if (p->skipping) {
        *st = POP3_PARSE_TOO_LONG;
        return n + 1;
    }
    /* Bare LF is accepted (old scripts); a CR before it is not part of the line. */
    if (p->len > 0 && p->buf[p->len - 1] == '\r')
        p->len--;
    *st = pop3_split(p);
    return n + 1;
}
