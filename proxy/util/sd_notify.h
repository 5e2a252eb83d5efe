/* sd_notify: systemd's readiness protocol (sd_notify(3)) without libsystemd.
 *
 * With Type=notify, systemd starts dependent units (Postfix relaying through xoauthd) only
 * after READY=1, which xoauthd sends once every listener is bound; RELOADING=1 / READY=1
 * bracket a SIGHUP reload and STOPPING=1 starts the shutdown. The protocol is one datagram of
 * "KEY=VALUE\n" lines to the AF_UNIX socket named in $NOTIFY_SOCKET ('@' = abstract name).
 * Without $NOTIFY_SOCKET (run from a shell or the tests) nothing is sent. The datagram is sent
 * with MSG_DONTWAIT: a systemd that does not read its socket never stalls the loop. */
#ifndef XOAUTHD_SD_NOTIFY_H
#define XOAUTHD_SD_NOTIFY_H

/* Sends state ("READY=1", "STATUS=...", several lines joined with '\n'). 0 when sent or when
 * there is no $NOTIFY_SOCKET, -1 on failure (errors are not fatal: readiness is advisory). */
int sd_notify_send(const char *state);
/* printf-style convenience. */
int sd_notify_sendf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
