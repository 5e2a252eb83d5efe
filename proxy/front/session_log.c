/* session_log: the summary line of a session, see session_log.h. */
#include "session_log.h"

#include <stdio.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "proxy_context.h"

void session_log_begin(struct session_log *sl, struct session_link *link, enum stats_proto p,
                       const char *sid, const char *client, uint64_t now_ms)
{
    memset(sl, 0, sizeof *sl);
    sl->proto = p;
    sl->start_ms = now_ms;
    snprintf(sl->sid, sizeof sl->sid, "%s", sid);
    snprintf(sl->client, sizeof sl->client, "%s", client != NULL && client[0] ? client : "-");
    snprintf(sl->user, sizeof sl->user, "-");
    snprintf(sl->account, sizeof sl->account, "-");
    snprintf(sl->upstream, sizeof sl->upstream, "-");
    if (link != NULL)
        link->slog = sl;
    stats_session_open(p);
}

/* The upstream an account's sessions of protocol p go to. */
static void session_log_account_upstream(struct session_log *sl, const struct config_account *a)
{
    const struct config_provider *prov = a->provider;
    const struct config_endpoint *ep = NULL;
    if (prov == NULL)
        return;
    if (sl->proto == STATS_PROTO_SMTP && a->n_submit > 0 && a->submit[0] != CONFIG_SUBMIT_SMTP) {
        snprintf(sl->upstream, sizeof sl->upstream, "%s",
                 a->submit[0] == CONFIG_SUBMIT_EWS ? "ews" : "graph");
        return;
    }
    ep = sl->proto == STATS_PROTO_SMTP   ? &prov->smtp
         : sl->proto == STATS_PROTO_IMAP ? &prov->imap
                                         : &prov->pop3;
    if (ep->present && ep->host != NULL)
        snprintf(sl->upstream, sizeof sl->upstream, "%s%s%s:%u", strchr(ep->host, ':') ? "[" : "",
                 ep->host, strchr(ep->host, ':') ? "]" : "", (unsigned)ep->port);
}

/* 1 when s can stand unquoted in a key=value line (the usual user names). */
static int session_log_plain(const char *s)
{
    for (; *s != '\0'; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr("._-+@", *s) != NULL))
            return 0;
    return 1;
}

void session_log_login(struct session_log *sl, const char *user,
                       const struct config_account *acct)
{
    char q[sizeof sl->user];
    if (user != NULL && user[0] != '\0' && session_log_plain(user))
        snprintf(sl->user, sizeof sl->user, "%s", user);
    else if (user != NULL && user[0] != '\0')
        snprintf(sl->user, sizeof sl->user, "%s", log_quote(q, sizeof q, user, strlen(user)));
    else
        snprintf(sl->user, sizeof sl->user, "-");
    if (acct != NULL) {
        int same = sl->logged_in && strcmp(sl->account, acct->name) == 0;
        snprintf(sl->account, sizeof sl->account, "%s", acct->name);
        session_log_account_upstream(sl, acct);
        if (!same)
            stats_login(acct->name);
    }
    sl->logged_in = 1;
    sl->result[0] = '\0';
}

void session_log_upstream(struct session_log *sl, const char *upstream)
{
    if (upstream != NULL && upstream[0] != '\0')
        snprintf(sl->upstream, sizeof sl->upstream, "%s", upstream);
}

/* A reply line as the log shows it: without its line end, quoted (control characters
 * escaped) and cut to the field. */
static void session_log_quote_reply(char *out, size_t outsz, const char *reply, size_t len)
{
    while (len > 0 && (reply[len - 1] == '\n' || reply[len - 1] == '\r'))
        len--;
    log_quote(out, outsz, reply, len);
}

void session_log_refusal(struct session_log *sl, const char *reply, size_t len)
{
    session_log_quote_reply(sl->refusal, sizeof sl->refusal, reply, len);
    sl->refusals++;
}

void session_log_message(struct session_log *sl, uint64_t size, int code, const char *reply,
                         size_t len)
{
    session_log_quote_reply(sl->reply, sizeof sl->reply, reply, len);
    sl->bytes_in += size;
    if (code >= 200 && code < 300) {
        sl->messages++;
        sl->size += size;
        stats_message(sl->account, size);
    } else {
        char c[16];
        snprintf(c, sizeof c, "%d", code);
        stats_upstream_error(c);
        session_log_refusal(sl, reply, len);
    }
}

void session_log_result(struct session_log *sl, const char *result)
{
    snprintf(sl->result, sizeof sl->result, "%s", result);
}

/* A session whose mail bounced must not look like one that went well: `grep -v result=ok`
 * is how the README finds trouble. */
static const char *session_log_result_name(const struct session_log *sl)
{
    if (sl->result[0] != '\0')
        return sl->result;
    if (!sl->logged_in)
        return "no_login";
    if (sl->refusals == 0)
        return "ok";
    return sl->messages > 0 ? "partial" : "refused";
}

char *session_log_format(const struct session_log *sl, char *out, size_t outsz)
{
    const char *reply = sl->refusals > 0 ? sl->refusal : sl->reply;
    snprintf(out, outsz,
             "client=%s user=%s account=%s protocol=%s upstream=%s result=%s messages=%u "
             "size=%llu bytes_in=%llu bytes_out=%llu reply=%s",
             sl->client, sl->user, sl->account, stats_proto_name(sl->proto), sl->upstream,
             session_log_result_name(sl), sl->messages, (unsigned long long)sl->size,
             (unsigned long long)sl->bytes_in, (unsigned long long)sl->bytes_out,
             reply[0] != '\0' ? reply : "-");
    return out;
}

void session_log_end(struct session_log *sl, uint64_t now_ms)
{
    if (sl->ended || sl->sid[0] == '\0') /* ended, or never begun (accept failed) */
        return;
    sl->ended = 1;
    char line[900];
    uint64_t ms = now_ms >= sl->start_ms ? now_ms - sl->start_ms : 0;
    stats_session_close(sl->proto, sl->bytes_in, sl->bytes_out);
    log_info(sl->sid, "event=session %s duration=%llu.%03llus",
             session_log_format(sl, line, sizeof line), (unsigned long long)(ms / 1000),
             (unsigned long long)(ms % 1000));
}
