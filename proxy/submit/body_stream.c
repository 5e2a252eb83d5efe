#include "body_stream.h"

#include <string.h>

#include "base64.h"

void body_stream_init(struct body_stream *b, const char *head, size_t head_len,
                      struct capture_source src, const char *tail, size_t tail_len)
{
    memset(b, 0, sizeof *b);
    b->head = head;
    b->head_len = head_len;
    b->tail = tail;
    b->tail_len = tail_len;
    b->src = src;
}

size_t body_stream_size(const struct body_stream *b)
{
    return b->head_len + base64_encoded_len(b->src.size) + b->tail_len;
}

static size_t body_stream_copy(const char *from, size_t from_len, size_t off, char *buf,
                               size_t len)
{
    size_t n = from_len - off < len ? from_len - off : len;
    memcpy(buf, from + off, n);
    return n;
}

size_t body_stream_read(void *arg, char *buf, size_t len)
{
    struct body_stream *b = arg;
    size_t done = 0;
    size_t b64_end = b->head_len + base64_encoded_len(b->src.size);
    while (done < len) {
        if (b->pos < b->head_len) {
            size_t n = body_stream_copy(b->head, b->head_len, b->pos, buf + done, len - done);
            b->pos += n;
            done += n;
            continue;
        }
        if (b->pos < b64_end) {
            if (b->enc_off == b->enc_len) {
                unsigned char raw[BODY_STREAM_RAW_CHUNK];
                size_t want = b->src.size - b->src_off;
                if (want > sizeof raw)
                    want = sizeof raw;
                size_t got = 0;
                /* Fill completely: base64 of a chunk is only self-contained in multiples of 3. */
                while (got < want) {
                    size_t r = b->src.read(b->src.arg, b->src_off + got, (char *)raw + got,
                                           want - got);
                    if (r == CAPTURE_READ_ERROR || r == 0)
                        return (size_t)-1;
                    got += r;
                }
                b->src_off += got;
                b->enc_len = base64_encode_into(b->enc, raw, got);
                b->enc_off = 0;
            }
            size_t n = body_stream_copy(b->enc, b->enc_len, b->enc_off, buf + done, len - done);
            b->enc_off += n;
            b->pos += n;
            done += n;
            continue;
        }
        if (b->pos < b64_end + b->tail_len) {
            size_t n = body_stream_copy(b->tail, b->tail_len, b->pos - b64_end, buf + done,
                                        len - done);
            b->pos += n;
            done += n;
            continue;
        }
        break;
    }
    return done;
}
