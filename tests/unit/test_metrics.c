/* Unit tests for what is parse-like in the status/metrics code: the /metrics request
 * classifier (fed whole and one byte at a time), label escaping, the counters and the session
 * summary line's fields. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "metrics.h"
#include "session_log.h"
#include "stats.h"

static enum metrics_request classify(const char *req)
{
    return metrics_parse_request(req, strlen(req));
}

/* Every proper prefix must be AGAIN, the whole request r. */
static int bytewise(const char *req, enum metrics_request r)
{
    size_t n = strlen(req);
    for (size_t i = 0; i < n; i++)
        if (metrics_parse_request(req, i) != METRICS_REQ_AGAIN)
            return 0;
    return metrics_parse_request(req, n) == r;
}

static void test_requests(void)
{
    CHECK(classify("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n") == METRICS_REQ_GET);
    CHECK(classify("GET /metrics HTTP/1.0\r\n\r\n") == METRICS_REQ_GET);
    CHECK(classify("GET /metrics HTTP/1.1\n\n") == METRICS_REQ_GET);
    CHECK(classify("GET /metrics?name[]=x HTTP/1.1\r\n\r\n") == METRICS_REQ_GET);
    CHECK(classify("HEAD /metrics HTTP/1.1\r\n\r\n") == METRICS_REQ_HEAD);
    CHECK(classify("GET / HTTP/1.1\r\n\r\n") == METRICS_REQ_NOT_FOUND);
    CHECK(classify("GET /metricsx HTTP/1.1\r\n\r\n") == METRICS_REQ_NOT_FOUND);
    CHECK(classify("GET /metric HTTP/1.1\r\n\r\n") == METRICS_REQ_NOT_FOUND);
    CHECK(classify("POST /metrics HTTP/1.1\r\n\r\n") == METRICS_REQ_METHOD);
    CHECK(classify("get /metrics HTTP/1.1\r\n\r\n") == METRICS_REQ_METHOD);
    CHECK(classify("GET /metrics\r\n\r\n") == METRICS_REQ_BAD);
    CHECK(classify("GET /metrics SMTP/1.1\r\n\r\n") == METRICS_REQ_BAD);
    CHECK(classify(" /metrics HTTP/1.1\r\n\r\n") == METRICS_REQ_BAD);
    CHECK(classify("\r\n\r\n") == METRICS_REQ_BAD);
    CHECK(classify("GET /metrics HTTP/1.1\r\n") == METRICS_REQ_AGAIN);
    CHECK(classify("") == METRICS_REQ_AGAIN);
    CHECK(bytewise("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n",
                   METRICS_REQ_GET));
    CHECK(bytewise("DELETE /metrics HTTP/1.1\r\n\r\n", METRICS_REQ_METHOD));

    /* A head that never ends: BAD once the limit is reached, never a read past it. */
    char *big = malloc(METRICS_MAX_REQUEST);
    CHECK(big != NULL);
    if (big != NULL) {
        memset(big, 'a', METRICS_MAX_REQUEST);
        CHECK(metrics_parse_request(big, METRICS_MAX_REQUEST - 1) == METRICS_REQ_AGAIN);
        CHECK(metrics_parse_request(big, METRICS_MAX_REQUEST) == METRICS_REQ_BAD);
        free(big);
    }
}

static void test_label(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK(f != NULL);
    if (f == NULL)
        return;
    metrics_label(f, "a\"b\\c\nd");
    fclose(f);
    CHECK(strcmp(buf, "a\\\"b\\\\c\\nd") == 0);
    free(buf);
}

static void test_stats(void)
{
    stats_reset();
    stats_token_request("b");
    stats_token_request("a");
    stats_token_failure("a");
    stats_message("a", 100);
    const struct stats *st = stats_get();
    CHECK(st->accounts != NULL && strcmp(st->accounts->name, "a") == 0); /* sorted */
    CHECK(st->accounts != NULL && st->accounts->next != NULL &&
          strcmp(st->accounts->next->name, "b") == 0);
    CHECK(stats_account("a")->token_requests == 1 && stats_account("a")->token_failures == 1);
    CHECK(st->messages == 1 && st->message_bytes == 100);
    for (int i = 0; i < STATS_MAX_CODES + 5; i++) {
        char c[16];
        snprintf(c, sizeof c, "%d", 400 + i);
        stats_upstream_error(c);
    }
    stats_upstream_error("401");
    stats_upstream_error("a b\"c");
    CHECK(st->n_upstream_errors == STATS_MAX_CODES);
    int found451 = 0, other = 0;
    for (size_t i = 0; i < st->n_upstream_errors; i++) {
        if (strcmp(st->upstream_errors[i].code, "401") == 0)
            found451 = st->upstream_errors[i].count == 2; /* within the table */
        if (strcmp(st->upstream_errors[i].code, "other") == 0)
            other = 1;
        CHECK(strpbrk(st->upstream_errors[i].code, " \"") == NULL);
    }
    CHECK(found451);
    CHECK(other);
    stats_reset();
    CHECK(stats_get()->accounts == NULL && stats_get()->messages == 0);
}

static void test_session_log(void)
{
    struct config_provider prov;
    struct config_account acct;
    struct session_log sl;
    char line[1024];
    memset(&prov, 0, sizeof prov);
    memset(&acct, 0, sizeof acct);
    prov.smtp.present = 1;
    prov.smtp.host = "smtp.example.com";
    prov.smtp.port = 587;
    acct.name = "scanner";
    acct.provider = &prov;
    acct.n_submit = 1;
    acct.submit[0] = CONFIG_SUBMIT_SMTP;

    stats_reset();
    session_log_begin(&sl, NULL, STATS_PROTO_SMTP, "ab-1", "10.0.0.7", 1000);
    CHECK(stats_get()->sessions_active[STATS_PROTO_SMTP] == 1);
    session_log_format(&sl, line, sizeof line);
    CHECK(strstr(line, "client=10.0.0.7 user=- account=- protocol=smtp upstream=- "
                       "result=no_login ") == line);
    session_log_result(&sl, "auth_failed");
    session_log_format(&sl, line, sizeof line);
    CHECK(strstr(line, " result=auth_failed ") != NULL);
    session_log_login(&sl, "scan ner", &acct); /* an odd name is quoted */
    session_log_message(&sl, 1234, 250, "250 2.0.0 Ok: queued as 4AB\r\n", 29);
    session_log_message(&sl, 10, 452, "452 4.3.1 full\r\n", 16);
    session_log_format(&sl, line, sizeof line);
    /* One message accepted, one refused: partial, and the reply shown is the refusal. */
    CHECK(strstr(line, "user=\"scan ner\" account=scanner protocol=smtp "
                       "upstream=smtp.example.com:587 result=partial messages=1 size=1234 ") !=
          NULL);
    CHECK(strstr(line, " reply=\"452 4.3.1 full\"") != NULL);
    CHECK(stats_account("scanner")->messages == 1 && stats_account("scanner")->sessions == 1);
    CHECK(stats_get()->n_upstream_errors == 1 &&
          strcmp(stats_get()->upstream_errors[0].code, "452") == 0);
    session_log_end(&sl, 2500);
    session_log_end(&sl, 2600); /* once */
    CHECK(stats_get()->sessions_active[STATS_PROTO_SMTP] == 0);
    CHECK(stats_get()->sessions_total[STATS_PROTO_SMTP] == 1);

    acct.submit[0] = CONFIG_SUBMIT_GRAPH;
    session_log_begin(&sl, NULL, STATS_PROTO_SMTP, "ab-2", "::1", 0);
    session_log_login(&sl, NULL, &acct);
    session_log_format(&sl, line, sizeof line);
    CHECK(strstr(line, "user=- account=scanner protocol=smtp upstream=graph result=ok ") !=
          NULL);
    /* Everything refused (a foreign sender here): refused, with the reply the client got,
     * its control characters escaped; a later failure still says what ended the session. */
    const char *refusal = "550 5.7.1 Sender \x1b[1m not allowed\r\n";
    session_log_refusal(&sl, refusal, strlen(refusal));
    session_log_format(&sl, line, sizeof line);
    CHECK(strstr(line, " result=refused messages=0 ") != NULL);
    CHECK(strstr(line, " reply=\"550 5.7.1 Sender \\x1b[1m not allowed\"") != NULL);
    session_log_result(&sl, "timeout");
    session_log_format(&sl, line, sizeof line);
    CHECK(strstr(line, " result=timeout ") != NULL);
    session_log_end(&sl, 0);

    /* Never begun (the accept failed): nothing counted, nothing printed. */
    memset(&sl, 0, sizeof sl);
    session_log_end(&sl, 5);
    CHECK(stats_get()->sessions_active[STATS_PROTO_SMTP] == 0);
    stats_reset();
}

/* log_target = stderr | syslog in [xoauthd]. */
static struct config *load_text(const char *text)
{
    char path[] = "/tmp/xoauthd-test-metrics-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return NULL;
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    FILE *err = fopen("/dev/null", "w");
    struct config *cfg = config_load(path, err);
    fclose(err);
    unlink(path);
    return cfg;
}

static void test_log_target(void)
{
    struct config *cfg = load_text("[xoauthd]\nstate_dir = /tmp\nlog_target = syslog\n");
    CHECK(cfg != NULL && cfg->log_syslog == 1);
    config_free(cfg);
    cfg = load_text("[xoauthd]\nstate_dir = /tmp\nlog_target = stderr\n");
    CHECK(cfg != NULL && cfg->log_syslog == 0);
    config_free(cfg);
    cfg = load_text("[xoauthd]\nstate_dir = /tmp\n");
    CHECK(cfg != NULL && cfg->log_syslog == 0);
    config_free(cfg);
    CHECK(load_text("[xoauthd]\nstate_dir = /tmp\nlog_target = journal\n") == NULL);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    test_requests();
    test_label();
    test_stats();
    test_session_log();
    test_log_target();
    return CHECK_DONE();
}
