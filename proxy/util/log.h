/* log: one line per event on stderr, "key=value" pairs after a timestamp and level.
 *
 * Every line that concerns a session carries its id (sid=...) so that an admin can grep one
 * conversation out of a busy log. Secrets never reach this module: callers log account names,
 * peers and reasons, never tokens or passwords; log_value_redact() exists for the rare value
 * that might embed one (an upstream reply echoing a credential). */
#ifndef XOAUTHD_LOG_H
#define XOAUTHD_LOG_H

#include <stddef.h>

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parses "error" | "warn" | "info" | "debug"; returns 0, or -1 when unknown. */
int log_level_parse(const char *s, enum log_level *out);

/* to_syslog = 1: lines go to syslog(3) (facility mail, ident "xoauthd", the pid added) instead
 * of stderr, without the timestamp (syslog adds its own); 0: back to stderr. */
void log_set_syslog(int to_syslog);

/* sid may be NULL for lines not tied to a session. fmt continues the key=value list. */
void log_msg(enum log_level level, const char *sid, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_error(sid, ...) log_msg(LOG_ERROR, (sid), __VA_ARGS__)
#define log_warn(sid, ...) log_msg(LOG_WARN, (sid), __VA_ARGS__)
#define log_info(sid, ...) log_msg(LOG_INFO, (sid), __VA_ARGS__)
#define log_debug(sid, ...) log_msg(LOG_DEBUG, (sid), __VA_ARGS__)

/* Copies a peer-supplied string into out (size outsz) quoted for a log line: printable ASCII
 * kept, '"' and '\\' escaped, other bytes as \xNN, cut at outsz with "...". Returns out. */
char *log_quote(char *out, size_t outsz, const char *in, size_t inlen);

#endif
