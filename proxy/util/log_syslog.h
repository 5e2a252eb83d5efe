/* log_syslog: the syslog(3) side of log.c (log_target = syslog), in a file of its own because
 * <syslog.h> defines LOG_INFO and LOG_DEBUG as macros, which would clash with log.h's enum. */
#ifndef XOAUTHD_LOG_SYSLOG_H
#define XOAUTHD_LOG_SYSLOG_H

/* openlog("xoauthd", LOG_PID, LOG_MAIL). */
void log_syslog_open(void);
/* level: log.h's enum value (0 error .. 3 debug); line: one line, no newline. */
void log_syslog_write(int level, const char *line);

#endif
