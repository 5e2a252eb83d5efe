/* log_syslog: syslog(3) output for log.c, see log_syslog.h. */
#include "log_syslog.h"

#include <syslog.h>

void log_syslog_open(void) { openlog("xoauthd", LOG_PID | LOG_NDELAY, LOG_MAIL); }

void log_syslog_write(int level, const char *line)
{
    static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    int p = level >= 0 && level <= 3 ? prio[level] : LOG_INFO;
    syslog(p, "%s", line);
}
