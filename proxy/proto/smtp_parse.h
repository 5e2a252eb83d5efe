/* smtp_parse: SMTP command lines and the DATA stream, without I/O.
 *
 * Command parsing only splits what the session needs to decide (verb, the argument, the path of
 * MAIL/RCPT and its parameters); the exact line is relayed upstream unchanged, so parameters
 * xoauthd does not know (SIZE=, BODY=, ...) reach the provider as the client wrote them.
 * The DATA scanner finds the end-of-data marker "CRLF . CRLF" across arbitrary chunk boundaries
 * while counting the size; lines may have any length (see smtp_parse.c for why, and for what
 * it does with bare LF, bare CR and a "." that is not between two CRLFs). */
#ifndef XOAUTHD_SMTP_PARSE_H
#define XOAUTHD_SMTP_PARSE_H

#include <stddef.h>

enum smtp_verb {
    SMTP_CMD_UNKNOWN,
    SMTP_CMD_HELO,
    SMTP_CMD_EHLO,
    SMTP_CMD_STARTTLS,
    SMTP_CMD_AUTH,
    SMTP_CMD_MAIL,
    SMTP_CMD_RCPT,
    SMTP_CMD_DATA,
    SMTP_CMD_BDAT,
    SMTP_CMD_RSET,
    SMTP_CMD_NOOP,
    SMTP_CMD_QUIT,
    SMTP_CMD_VRFY,
    SMTP_CMD_EXPN,
    SMTP_CMD_HELP
};

struct smtp_command {
    enum smtp_verb verb;
    const char *arg; /* after the verb and one space, into the line; "" when none */
    size_t arg_len;
    /* MAIL/RCPT: the reverse/forward path between < and > (without them) and the parameters */
    const char *path;
    size_t path_len;
    const char *params;
    size_t params_len;
    int bracketed; /* the path was written with its angle brackets */
};

enum smtp_parse_result {
    SMTP_PARSE_OK,
    SMTP_PARSE_UNKNOWN,    /* 500 5.5.1 command unrecognized */
    SMTP_PARSE_SYNTAX      /* 501 5.5.4 / 5.5.2 syntax error in arguments */
};

/* line is one command line without CRLF. */
enum smtp_parse_result smtp_parse_command(const char *line, size_t len, struct smtp_command *cmd);
const char *smtp_verb_name(enum smtp_verb v);
/* A parsed MAIL or RCPT as RFC 5321 writes it: "MAIL FROM:<path> params" (brackets added where
 * the client left them out). Its length, or -1 when it does not fit outsz (with the NUL). */
long smtp_path_line(const struct smtp_command *cmd, char *out, size_t outsz);

struct smtp_data_scan {
    int state;          /* position relative to the last line end, see smtp_parse.c */
    size_t size;        /* message bytes seen, end marker excluded */
    int bare_lf;        /* some line ended in LF without CR */
    int lone_dot;       /* a "." stood alone between line ends that were not both CRLF: what
                         * SMTP smuggling sends; the message is to be refused */
    int dot_after_lf;   /* the held "." began a line after a bare LF */
    int unstuff;        /* set by smtp_data_scan_unstuffed(): see below */
};

void smtp_data_scan_init(struct smtp_data_scan *s);
/* Scans buf and writes the bytes to relay into out (room for 2 * len + 3 bytes: a ".\r"
 * held from the last call can come out stuffed, "..\r", before this call's bytes): a bare LF
 * becomes CRLF on the way, and a lone "." that is not the end marker goes out stuffed, so that
 * the upstream and xoauthd always agree on where the message ends (the ambiguity "SMTP
 * smuggling" exploits). Dot-stuffing is kept: the upstream speaks SMTP too. Returns the number
 * of bytes of buf up to and including the end marker when it was found (out then ends with the
 * marker, CRLF "." CRLF), or -1 when all of buf belongs to the message. *out_len is set in both
 * cases. out may be NULL (not after smtp_data_scan_unstuffed): nothing is written, and *out_len
 * is the number of bytes of buf used when the bytes to relay are exactly those (no bare LF or
 * lone "." among them, no "." held back across pieces), so that they can be
 * sent from buf itself; otherwise (size_t)-1, and the piece must be scanned again into out
 * from the state before. */
long smtp_data_scan(struct smtp_data_scan *s, const char *buf, size_t len, char *out,
                    size_t *out_len);
/* After smtp_data_scan_init: the same scan for a message that is kept instead of relayed (EWS,
 * Graph). The leading dot of a stuffed line is removed (RFC 5321 4.5.2: "If the first character
 * is a period and there are other characters on the line, the first character is deleted") and
 * out never holds the end marker; everything else (CRLF line ends, size, limits) is unchanged. */
void smtp_data_scan_unstuffed(struct smtp_data_scan *s);

#endif
