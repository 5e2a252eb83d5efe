#include "line.h"

#include <string.h>

enum line_result line_next(const char *buf, size_t len, size_t max, size_t *line_len,
                           size_t *consumed)
{
    size_t scan = len < max ? len : max;
    const char *lf = memchr(buf, '\n', scan);
    if (lf == NULL)
        return len >= max ? LINE_TOO_LONG : LINE_AGAIN;
    size_t n = (size_t)(lf - buf);
    *consumed = n + 1;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    *line_len = n;
    return LINE_OK;
}

int line_skip(const char *buf, size_t len, size_t *consumed)
{
    const char *lf = memchr(buf, '\n', len);
    if (lf == NULL) {
        *consumed = len;
        return 0;
    }
    *consumed = (size_t)(lf - buf) + 1;
    return 1;
}
