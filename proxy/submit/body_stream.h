/* body_stream: an HTTP request body made of a fixed head, a message in base64 and a fixed tail,
 * produced while curl sends it.
 *
 * EWS wants the MIME message base64-encoded inside a SOAP envelope and Graph wants it
 * base64-encoded as the whole body; for a 30 MB scan that is a 40 MB string nobody needs to
 * hold. The stream reads the message from its capture_source in multiples of 3 bytes and
 * encodes as it goes; its size is known in advance, so curl sends a Content-Length and no
 * chunked encoding (which some Exchange front ends refuse). */
#ifndef XOAUTHD_BODY_STREAM_H
#define XOAUTHD_BODY_STREAM_H

#include <stddef.h>

#include "message_capture.h"

#define BODY_STREAM_RAW_CHUNK (3 * 4096)

struct body_stream {
    const char *head, *tail; /* borrowed; must outlive the stream */
    size_t head_len, tail_len;
    struct capture_source src;
    size_t pos;                /* output bytes handed out */
    size_t src_off;            /* message bytes encoded */
    char enc[BODY_STREAM_RAW_CHUNK / 3 * 4 + 4];
    size_t enc_off, enc_len;
};

void body_stream_init(struct body_stream *b, const char *head, size_t head_len,
                      struct capture_source src, const char *tail, size_t tail_len);
size_t body_stream_size(const struct body_stream *b);
/* http_opts.body_read: fills buf with up to len bytes; 0 at the end; HTTP_BODY_ABORT
 * ((size_t)-1) when the message cannot be read. */
size_t body_stream_read(void *arg, char *buf, size_t len);

#endif
