#include "log.h"
#include "log_syslog.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static enum log_level log_threshold = LOG_INFO;
static int log_to_syslog;
static const char *const log_level_names[] = {"error", "warn", "info", "debug"};

void log_set_level(enum log_level level) { log_threshold = level; }

void log_set_syslog(int to_syslog)
{
    if (to_syslog && !log_to_syslog)
        log_syslog_open();
    log_to_syslog = to_syslog;
}
enum log_level log_get_level(void) { return log_threshold; }

int log_level_parse(const char *s, enum log_level *out)
{
    for (size_t i = 0; i < sizeof log_level_names / sizeof log_level_names[0]; i++) {
        if (strcmp(s, log_level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

void log_msg(enum log_level level, const char *sid, const char *fmt, ...)
{
    if (level > log_threshold)
        return;
    /* One buffer and one write so that lines from one process never interleave. */
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000L, log_level_names[level]);
    if (sid != NULL && n < (int)sizeof line)
        n += snprintf(line + n, sizeof line - (size_t)n, "sid=%s ", sid);
    if (n < (int)sizeof line) {
        va_list ap;
        va_start(ap, fmt);
        n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
        va_end(ap);
    }
    if (n >= (int)sizeof line - 1)
        n = (int)sizeof line - 2;
    if (log_to_syslog) {
        /* "level=... " and after: syslog stamps the time itself. */
        const char *body = strstr(line, " level=");
        body = body != NULL ? body + 1 : line;
        line[n] = '\0';
        log_syslog_write((int)level, body);
        return;
    }
    line[n++] = '\n';
    fwrite(line, 1, (size_t)n, stderr);
    fflush(stderr);
}

char *log_quote(char *out, size_t outsz, const char *in, size_t inlen)
{
    size_t o = 0;
    if (outsz < 8) {
        if (outsz > 0)
            out[0] = '\0';
        return out;
    }
    out[o++] = '"';
    for (size_t i = 0; i < inlen; i++) {
        unsigned char c = (unsigned char)in[i];
        char tmp[8];
        size_t tl;
        if (c == '"' || c == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            tl = 2;
        } else if (c >= 0x20 && c < 0x7f) {
            tmp[0] = (char)c;
            tl = 1;
        } else {
            tl = (size_t)snprintf(tmp, sizeof tmp, "\\x%02x", c);
        }
        if (o + tl + 5 > outsz) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        memcpy(out + o, tmp, tl);
        o += tl;
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}
