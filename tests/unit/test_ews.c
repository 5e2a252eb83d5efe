/* EWS request building (checked against Microsoft's schema when ../shared/ews-schema is there),
 * response parsing and the classification of every outcome into an SMTP reply; Graph's URL,
 * error parsing and verdicts. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "ews.h"
#include "ews_mailbox.h"
#include "graph.h"
#include "http.h"

#define NS_DECL " xmlns:t=\"http://schemas.microsoft.com/exchange/services/2006/types\"" \
                " xmlns:m=\"http://schemas.microsoft.com/exchange/services/2006/messages\""

static char schema_validate[1024];

/* Writes the element starting at start (up to its closing tag end) with namespace
 * declarations into a file and runs the schema's validate script on it. */
static int validate_fragment(const char *start, size_t len, const char *name)
{
    char path[256], cmd[1400];
    const char *sp = start + 1;
    size_t tag = strcspn(sp, " />");
    snprintf(path, sizeof path, "/tmp/xoauthd-test-ews-%d-%s.xml", (int)getpid(), name);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "<%.*s%s%.*s\n", (int)tag, sp, NS_DECL, (int)(len - 1 - tag), sp + tag);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s %s >/tmp/xoauthd-test-ews-%d.out 2>&1", schema_validate, path,
             (int)getpid());
    int rc = system(cmd);
    if (rc != 0) {
        char out[400];
        snprintf(out, sizeof out, "cat /tmp/xoauthd-test-ews-%d.out >&2; cat %s >&2",
                 (int)getpid(), path);
        if (system(out) != 0)
            fprintf(stderr, "(could not show the validator's output)\n");
    }
    unlink(path);
    snprintf(path, sizeof path, "/tmp/xoauthd-test-ews-%d.out", (int)getpid());
    unlink(path);
    return rc == 0 ? 0 : -1;
}

/* The body's operation and each header element, validated one by one. */
static void validate_request(const char *req, const char *name)
{
    if (schema_validate[0] == '\0')
        return;
    const char *b = strstr(req, "<soap:Body>\n");
    const char *e = strstr(req, "</soap:Body>");
    CHECK(b != NULL && e != NULL);
    if (b == NULL || e == NULL)
        return;
    b += strlen("<soap:Body>\n");
    while (e > b && (e[-1] == '\n'))
        e--;
    CHECK(validate_fragment(b, (size_t)(e - b), name) == 0);
    const char *h = strstr(req, "<t:RequestServerVersion");
    const char *he = h != NULL ? strstr(h, "/>") : NULL;
    CHECK(h != NULL && he != NULL);
    if (h != NULL && he != NULL)
        CHECK(validate_fragment(h, (size_t)(he + 2 - h), "version") == 0);
    const char *imp = strstr(req, "<t:ExchangeImpersonation>");
    if (imp != NULL) {
        const char *ie = strstr(imp, "</t:ExchangeImpersonation>");
        CHECK(ie != NULL);
        if (ie != NULL)
            CHECK(validate_fragment(imp, (size_t)(ie + strlen("</t:ExchangeImpersonation>") - imp),
                                    "imp") == 0);
    }
}

static char *join3(const char *a, const char *b, const char *c)
{
    size_t n = strlen(a) + strlen(b) + strlen(c) + 1;
    char *r = malloc(n);
    snprintf(r, n, "%s%s%s", a, b, c);
    return r;
}

static void test_escape(void)
{
    char *e = ews_xml_escape("a<b>&\"c'");
    CHECK(strcmp(e, "a&lt;b&gt;&amp;&quot;c&apos;") == 0);
    free(e);
    CHECK(ews_xml_escape("bad\001") == NULL);
    e = ews_xml_escape("tab\there");
    CHECK(strcmp(e, "tab\there") == 0);
    free(e);
}

static void test_build(void)
{
    struct ews_target t = {0};
    char *head, *tail;
    t.mailbox = "scanner@contoso.com";
    t.impersonate = "scanner@contoso.com";
    t.version = NULL;
    CHECK(ews_build_send(&t, &head, &tail) == 0);
    CHECK(strstr(head, "MessageDisposition=\"SendAndSaveCopy\"") != NULL);
    CHECK(strstr(head, "<t:DistinguishedFolderId Id=\"sentitems\"/>") != NULL);
    CHECK(strstr(head, "Version=\"Exchange2013_SP1\"") != NULL);
    CHECK(strstr(head, "<t:PrimarySmtpAddress>scanner@contoso.com</t:PrimarySmtpAddress>") !=
          NULL);
    /* the head ends where the base64 goes */
    CHECK(strlen(head) > 20 &&
          strcmp(head + strlen(head) - strlen("<t:MimeContent CharacterSet=\"UTF-8\">"),
                 "<t:MimeContent CharacterSet=\"UTF-8\">") == 0);
    CHECK(strncmp(tail, "</t:MimeContent>", 16) == 0);
    char *full = join3(head, "U3ViamVjdDogaGkNCg0KaGkNCg==", tail);
    validate_request(full, "send");
    free(full);
    free(head);
    free(tail);

    /* values are escaped; a version cannot break out of its attribute */
    t.impersonate = "a&b@x<y>";
    t.version = "Exchange2016";
    CHECK(ews_build_send(&t, &head, &tail) == 0);
    CHECK(strstr(head, "a&amp;b@x&lt;y&gt;") != NULL);
    CHECK(strstr(head, "Version=\"Exchange2016\"") != NULL);
    free(head);
    free(tail);
    t.impersonate = NULL;
    CHECK(ews_build_send(&t, &head, &tail) == 0);
    CHECK(strstr(head, "ExchangeImpersonation") == NULL);
    free(head);
    free(tail);

    struct ews_mailbox_params p = {0};
    p.folder.id = "inbox";
    p.folder.distinguished = 1;
    CHECK(ews_mailbox_build_request(EWS_MAILBOX_SAVE, &t, &p, &head, &tail) == 0);
    CHECK(strstr(head, "MessageDisposition=\"SaveOnly\"") != NULL);
    CHECK(strstr(tail, "PropertyTag=\"3591\"") != NULL);
    full = join3(head, "U3ViamVjdDogaGkNCg0KaGkNCg==", tail);
    validate_request(full, "save");
    free(full);
    free(head);
    free(tail);

    p.item_id = "AAMkAD\"x<";
    p.change_key = "CQAAAB";
    p.folder.id = "AAMkFolder";
    p.folder.distinguished = 0;
    const enum ews_mailbox_op ops[] = {EWS_MAILBOX_GET_MIME, EWS_MAILBOX_COPY,
                                       EWS_MAILBOX_DELETE_ITEM, EWS_MAILBOX_DELETE_FOLDER,
                                       EWS_MAILBOX_SET_READ};
    const char *names[] = {"<m:GetItem>", "<m:CopyItem>", "DeleteType=\"HardDelete\"><m:ItemIds>",
                           "<m:DeleteFolder DeleteType=\"HardDelete\">",
                           "FieldURI=\"message:IsRead\""};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        char n[16];
        CHECK(ews_mailbox_build_request(ops[i], &t, &p, &head, &tail) == 0);
        CHECK(strstr(head, names[i]) != NULL);
        CHECK(tail != NULL && tail[0] == '\0');
        if (ops[i] != EWS_MAILBOX_DELETE_FOLDER)
            CHECK(strstr(head, "Id=\"AAMkAD&quot;x&lt;\"") != NULL);
        snprintf(n, sizeof n, "op%zu", i);
        validate_request(head, n);
        free(head);
        free(tail);
    }
    p.is_read = 1;
    CHECK(ews_mailbox_build_request(EWS_MAILBOX_SET_READ, &t, &p, &head, &tail) == 0);
    CHECK(strstr(head, "<t:IsRead>true</t:IsRead>") != NULL);
    free(head);
    free(tail);
    /* an operation on an item needs its id */
    p.item_id = NULL;
    CHECK(ews_mailbox_build_request(EWS_MAILBOX_COPY, &t, &p, &head, &tail) == -1);
}

static const char resp_head[] =
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>"
    "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Header>"
    "<h:ServerVersionInfo MajorVersion=\"15\" xmlns:h=\"http://schemas.microsoft.com/exchange/"
    "services/2006/types\"/></s:Header><s:Body>"
    "<m:CreateItemResponse xmlns:m=\"http://schemas.microsoft.com/exchange/services/2006/messages\""
    " xmlns:t=\"http://schemas.microsoft.com/exchange/services/2006/types\"><m:ResponseMessages>";
static const char resp_tail[] = "</m:ResponseMessages></m:CreateItemResponse></s:Body></s:Envelope>";

static void parse_error_code(const char *code, const char *extra, struct ews_result *r)
{
    char body[4096];
    snprintf(body, sizeof body,
             "%s<m:CreateItemResponseMessage ResponseClass=\"Error\"><m:MessageText>Something "
             "&amp; more</m:MessageText><m:ResponseCode>%s</m:ResponseCode>"
             "<m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>%s<m:Items/>"
             "</m:CreateItemResponseMessage>%s",
             resp_head, code, extra, resp_tail);
    ews_result_clear(r);
    CHECK(ews_parse_response(body, strlen(body), r) == 0);
    r->http_status = 200;
}

static void expect_reply(const char *code, const char *prefix)
{
    struct ews_result r;
    struct submit_verdict v;
    memset(&r, 0, sizeof r);
    parse_error_code(code, "", &r);
    CHECK(r.outcome == EWS_OUT_ERROR);
    CHECK(strcmp(r.response_code, code) == 0);
    CHECK(strcmp(r.message_text, "Something & more") == 0);
    ews_verdict(&r, &v);
    if (strncmp(v.reply, prefix, strlen(prefix)) != 0)
        fprintf(stderr, "%s -> %s (want %s)\n", code, v.reply, prefix);
    CHECK(strncmp(v.reply, prefix, strlen(prefix)) == 0);
    ews_result_clear(&r);
}

static void test_parse_and_classify(void)
{
    struct ews_result r;
    struct submit_verdict v;
    char body[4096];
    memset(&r, 0, sizeof r);
    snprintf(body, sizeof body,
             "%s<m:CreateItemResponseMessage ResponseClass=\"Success\"><m:ResponseCode>NoError"
             "</m:ResponseCode><m:Items/></m:CreateItemResponseMessage>%s",
             resp_head, resp_tail);
    ews_result_clear(&r);
    CHECK(ews_parse_response(body, strlen(body), &r) == 0);
    CHECK(r.outcome == EWS_OUT_OK);
    ews_verdict(&r, &v);
    CHECK(v.kind == SUBMIT_V_OK && strncmp(v.reply, "250 ", 4) == 0);

    expect_reply("ErrorSendAsDenied", "550 5.7.60");
    expect_reply("ErrorMessageSizeExceeded", "552 5.3.4");
    expect_reply("ErrorInvalidRecipients", "550 5.1.1");
    expect_reply("ErrorMailRecipientNotFound", "550 5.1.1");
    expect_reply("ErrorServerBusy", "451 4.");
    expect_reply("ErrorTimeoutExpired", "451 4.");
    expect_reply("ErrorSchemaValidation", "554 5.6.0");
    expect_reply("ErrorSomethingNew", "451 4.");

    /* ErrorServerBusy carries its back-off */
    parse_error_code("ErrorServerBusy",
                     "<m:MessageXml><t:Value Name=\"BackOffMilliseconds\">1500</t:Value>"
                     "</m:MessageXml>", &r);
    CHECK(r.backoff_ms == 1500);
    ews_verdict(&r, &v);
    CHECK(v.kind == SUBMIT_V_BUSY && v.wait_ms == 1500);
    CHECK(strncmp(v.reply, "451 4.", 6) == 0);

    /* SOAP fault: 554 5.6.0, the text is for the log */
    snprintf(body, sizeof body,
             "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>"
             "<s:Fault><faultcode xmlns:a=\"http://schemas.microsoft.com/exchange/services/2006/"
             "types\">a:ErrorSchemaValidation</faultcode><faultstring xml:lang=\"en-US\">The "
             "request failed schema validation</faultstring><detail><e:ResponseCode xmlns:e="
             "\"http://schemas.microsoft.com/exchange/services/2006/errors\">"
             "ErrorSchemaValidation</e:ResponseCode></detail></s:Fault></s:Body></s:Envelope>");
    ews_result_clear(&r);
    CHECK(ews_parse_response(body, strlen(body), &r) == 0);
    CHECK(r.outcome == EWS_OUT_FAULT);
    CHECK(strstr(r.message_text, "schema validation") != NULL);
    ews_verdict(&r, &v);
    CHECK(strncmp(v.reply, "554 5.6.0", 9) == 0);
    CHECK(strstr(v.reply, "schema") == NULL); /* the fault text stays out of the reply */

    /* HTTP-level outcomes */
    ews_result_clear(&r);
    r.outcome = EWS_OUT_HTTP;
    r.http_status = 401;
    ews_verdict(&r, &v);
    CHECK(v.kind == SUBMIT_V_REAUTH && strncmp(v.reply, "451 4.7.0", 9) == 0);
    r.http_status = 429;
    r.retry_after = 3;
    ews_verdict(&r, &v);
    CHECK(v.kind == SUBMIT_V_BUSY && v.wait_ms == 3000 && strncmp(v.reply, "451 4.", 6) == 0);
    r.http_status = 503;
    r.retry_after = -1;
    ews_verdict(&r, &v);
    CHECK(v.kind == SUBMIT_V_BUSY && v.wait_ms == -1);
    /* "Retry-After: 9999999999999999999" (libcurl reads up to the largest curl_off_t) is capped at
     * HTTP_RETRY_AFTER_MAX: no overflow in the verdict (fuzz finding) */
    r.retry_after = http_retry_after_seconds(CURL_OFF_T_C(9223372036854775807));
    CHECK(r.retry_after == HTTP_RETRY_AFTER_MAX);
    ews_verdict(&r, &v);
    CHECK(v.kind == SUBMIT_V_BUSY && v.wait_ms == LONG_MAX);
    CHECK(submit_retry_after_ms(LONG_MAX / 1000) == LONG_MAX / 1000 * 1000);
    CHECK(submit_retry_after_ms(LONG_MAX / 1000 + 1) == LONG_MAX);
    CHECK(submit_retry_after_ms(0) == 0 && submit_retry_after_ms(-1) == -1);
    r.retry_after = -1;
    r.http_status = 500;
    ews_verdict(&r, &v);
    CHECK(v.kind == SUBMIT_V_FAIL && strncmp(v.reply, "451 4.", 6) == 0);
    r.http_status = 200; /* a 200 nobody can read: the message may have gone */
    ews_verdict(&r, &v);
    CHECK(strncmp(v.reply, "451 4.", 6) == 0);
    r.http_status = 404;
    ews_verdict(&r, &v);
    CHECK(strncmp(v.reply, "451 4.", 6) == 0 && v.hint != NULL);
    r.http_status = 400;
    ews_verdict(&r, &v);
    CHECK(strncmp(v.reply, "554 5.6.0", 9) == 0);
    r.http_status = 413;
    ews_verdict(&r, &v);
    CHECK(strncmp(v.reply, "552 5.3.4", 9) == 0);
    r.outcome = EWS_OUT_TRANSPORT;
    r.http_status = 0;
    ews_verdict(&r, &v);
    CHECK(strncmp(v.reply, "451 4.4.1", 9) == 0);

    /* not SOAP at all */
    ews_result_clear(&r);
    CHECK(ews_parse_response("<html>busy</html>", 17, &r) == -1);
    CHECK(ews_parse_response("garbage", 7, &r) == -1);

    /* GetItem: id and decoded MIME (with Exchange's line breaks in the base64) */
    snprintf(body, sizeof body,
             "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>"
             "<m:GetItemResponse xmlns:m=\"http://schemas.microsoft.com/exchange/services/2006/"
             "messages\" xmlns:t=\"http://schemas.microsoft.com/exchange/services/2006/types\">"
             "<m:ResponseMessages><m:GetItemResponseMessage ResponseClass=\"Success\">"
             "<m:ResponseCode>NoError</m:ResponseCode><m:Items><t:Message><t:MimeContent "
             "CharacterSet=\"UTF-8\">U3ViamVjdDog\naGkNCg0KaGkNCg==</t:MimeContent><t:ItemId "
             "Id=\"AAMk1\" ChangeKey=\"CQ1\"/></t:Message></m:Items></m:GetItemResponseMessage>"
             "</m:ResponseMessages></m:GetItemResponse></s:Body></s:Envelope>");
    ews_result_clear(&r);
    CHECK(ews_parse_response(body, strlen(body), &r) == 0);
    CHECK(r.outcome == EWS_OUT_OK);
    CHECK(strcmp(r.item_id, "AAMk1") == 0 && strcmp(r.change_key, "CQ1") == 0);
    CHECK(r.mime != NULL && r.mime_len == 19 && memcmp(r.mime, "Subject: hi\r\n\r\nhi\r\n", 19) == 0);
    ews_result_clear(&r);

    /* an entity the parser must not expand or fetch */
    snprintf(body, sizeof body,
             "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>"
             "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>"
             "<m:R xmlns:m=\"urn:x\" ResponseClass=\"Error\"><m:ResponseCode>&e;</m:ResponseCode>"
             "</m:R></s:Body></s:Envelope>");
    CHECK(ews_parse_response(body, strlen(body), &r) == EWS_PARSE_REFUSED);
    CHECK(strstr(r.response_code, "root:") == NULL && strstr(r.message_text, "DTD") != NULL);
    ews_result_clear(&r);
}

/* head, times copies of unit, then tail: the big bodies of the cases below. */
static char *big_body(size_t *len, const char *head, const char *unit, size_t times,
                      const char *tail)
{
    size_t hl = strlen(head), ul = strlen(unit), tl = strlen(tail);
    char *b = malloc(hl + ul * times + tl + 1);
    CHECK(b != NULL);
    memcpy(b, head, hl);
    for (size_t i = 0; i < times; i++)
        memcpy(b + hl + i * ul, unit, ul);
    memcpy(b + hl + ul * times, tail, tl + 1);
    *len = hl + ul * times + tl;
    return b;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The expansion bomb seen in the field: a SOAP fault whose faultstring references an internal
 * entity of 50,000 characters 18,000 times (104 KB on the wire, 900 MB expanded). It used to
 * take 11 s and 0.9 GB; it must be refused unread, in far less than a second. */
static char *entity_bomb(size_t *len)
{
    char *ent = malloc(50001);
    CHECK(ent != NULL);
    memset(ent, 'A', 50000);
    ent[50000] = '\0';
    char head[50400];
    snprintf(head, sizeof head,
             "<?xml version=\"1.0\"?>\n<!DOCTYPE s:Envelope [<!ENTITY a \"%s\">]>\n"
             "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>"
             "<s:Fault><faultcode>s:Server</faultcode><faultstring>", ent);
    free(ent);
    return big_body(len, head, "&a;", 18000,
                    "</faultstring></s:Fault></s:Body></s:Envelope>\n");
}

static void test_parse_refusals(void)
{
    struct ews_result r;
    size_t len;
    memset(&r, 0, sizeof r);
    char *bomb = entity_bomb(&len);
    CHECK(len > 100000 && len < 110000);
    double t0 = now_s();
    CHECK(ews_parse_response(bomb, len, &r) == EWS_PARSE_REFUSED);
    double took = now_s() - t0;
    printf("entity bomb (%zu bytes) refused in %.4f s\n", len, took);
    CHECK(took < 1.0);
    CHECK(strstr(r.message_text, "DTD") != NULL && r.message_text[0] != 'A');
    ews_result_clear(&r);

    /* ... and through the HTTP mapping: a temporary failure, never a send */
    struct http_response resp = {200, NULL, 0, bomb, len, -1};
    struct submit_verdict v;
    ews_result_from_http(&resp, &r);
    CHECK(r.outcome == EWS_OUT_REFUSED);
    ews_verdict(&r, &v);
    CHECK(v.kind == SUBMIT_V_FAIL && strncmp(v.reply, "451 4.", 6) == 0 && v.hint != NULL);
    ews_result_clear(&r);
    free(bomb);

    /* a DTD without entities, an external one, a parameter entity: all refused */
    static const char *const dtds[] = {
        "<!DOCTYPE x><x/>",
        "<!DOCTYPE x SYSTEM \"http://127.0.0.1:1/x.dtd\"><x/>",
        "<!DOCTYPE x [<!ENTITY % p \"<!ENTITY q 'b'>\"> %p;]><x>&q;</x>",
    };
    for (size_t i = 0; i < sizeof dtds / sizeof dtds[0]; i++) {
        CHECK(ews_parse_response(dtds[i], strlen(dtds[i]), &r) == EWS_PARSE_REFUSED);
        ews_result_clear(&r);
    }

    /* an undeclared entity is not well-formed; predefined and character references are text */
    const char *undeclared = "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\">"
                             "<s:Body><s:Fault><faultstring>&a;</faultstring></s:Fault></s:Body>"
                             "</s:Envelope>";
    CHECK(ews_parse_response(undeclared, strlen(undeclared), &r) == -1);
    ews_result_clear(&r);
    const char *text = "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\">"
                       "<s:Body><s:Fault><faultstring>a &amp; b<![CDATA[ <c> ]]>&#x64;"
                       "<!-- no -->e</faultstring></s:Fault></s:Body></s:Envelope>";
    CHECK(ews_parse_response(text, strlen(text), &r) == 0);
    CHECK(r.outcome == EWS_OUT_FAULT && strcmp(r.message_text, "a & b <c> de") == 0);
    ews_result_clear(&r);

    /* the work of a parse is bounded: far deeper or wider than any EWS answer is refused */
    static const struct {
        const char *unit;
        size_t times;
        const char *why;
    } big[] = {{"<a>", 100, "deep"}, {"<a/>", 20000, "elements"}};
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        char *b = big_body(&len, "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/"
                           "envelope/\"><s:Body>", big[i].unit, big[i].times,
                           "</s:Body></s:Envelope>");
        CHECK(ews_parse_response(b, len, &r) == EWS_PARSE_REFUSED);
        CHECK(strstr(r.message_text, big[i].why) != NULL);
        ews_result_clear(&r);
        free(b);
    }
}

static void test_graph(void)
{
    char *u = graph_send_url("https://graph.microsoft.com/v1.0/", "scan ner@contoso.com");
    CHECK(strcmp(u, "https://graph.microsoft.com/v1.0/users/scan%20ner@contoso.com/sendMail") == 0);
    free(u);
    CHECK(graph_fits(3 * 1024 * 1024));
    CHECK(!graph_fits(4 * 1024 * 1024));

    struct graph_result r;
    struct submit_verdict v;
    memset(&r, 0, sizeof r);
    r.retry_after = -1;
    r.http_status = 202;
    graph_verdict(&r, &v);
    CHECK(v.kind == SUBMIT_V_OK);
    const char *js = "{\"error\":{\"code\":\"ErrorSendAsDenied\",\"message\":\"nope\"}}";
    r.http_status = 403;
    graph_parse_error(js, strlen(js), &r);
    CHECK(strcmp(r.code, "ErrorSendAsDenied") == 0 && strcmp(r.message, "nope") == 0);
    graph_verdict(&r, &v);
    CHECK(strncmp(v.reply, "550 5.7.60", 10) == 0);
    js = "{\"error\":{\"code\":\"ErrorInvalidRecipients\",\"message\":\"x\"}}";
    r.http_status = 400;
    graph_parse_error(js, strlen(js), &r);
    graph_verdict(&r, &v);
    CHECK(strncmp(v.reply, "550 5.1.1", 9) == 0);
    js = "{\"error\":{\"code\":\"ErrorMessageSizeExceeded\",\"message\":\"x\"}}";
    graph_parse_error(js, strlen(js), &r);
    graph_verdict(&r, &v);
    CHECK(strncmp(v.reply, "552 5.3.4", 9) == 0);
    js = "{\"error\":{\"code\":\"BadRequest\",\"message\":\"x\"}}";
    graph_parse_error(js, strlen(js), &r);
    graph_verdict(&r, &v);
    CHECK(strncmp(v.reply, "554 5.6.0", 9) == 0);
    graph_parse_error("not json", 8, &r);
    CHECK(r.code[0] == '\0');
    r.http_status = 401;
    graph_verdict(&r, &v);
    CHECK(v.kind == SUBMIT_V_REAUTH);
    const int busy[] = {429, 503, 504};
    for (size_t i = 0; i < 3; i++) {
        r.http_status = busy[i];
        r.retry_after = 7;
        graph_verdict(&r, &v);
        CHECK(v.kind == SUBMIT_V_BUSY && v.wait_ms == 7000 && strncmp(v.reply, "451 4.", 6) == 0);
    }
    r.http_status = 429;
    r.retry_after = LONG_MAX / 2;
    graph_verdict(&r, &v);
    CHECK(v.kind == SUBMIT_V_BUSY && v.wait_ms == LONG_MAX);
    r.http_status = 500;
    graph_verdict(&r, &v);
    CHECK(strncmp(v.reply, "451 4.", 6) == 0);
    r.http_status = 0;
    graph_verdict(&r, &v);
    CHECK(strncmp(v.reply, "451 4.4.1", 9) == 0);
}

/* The configuration keys of the submission bridges report FILE:LINE. */
static void test_config_keys(void)
{
    char path[] = "/tmp/xoauthd-test-ews-cfg-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    const char *ini = "[xoauthd]\nstate_dir = /tmp\n\n[provider ex]\n"
                      "token_url = https://login.example.com/token\n"
                      "ews_url = https://mail.example.com/EWS/Exchange.asmx\n"
                      "ews_version = Exchange2013_SP1\"/><x\n\n[account a]\nlocal_user = a\n"
                      "provider = ex\nusername = a@example.com\nflow = static\n"
                      "access_token = t\nsubmit = ews\news_impersonation = maybe\n";
    CHECK(write(fd, ini, strlen(ini)) == (ssize_t)strlen(ini));
    close(fd);
    char *err = NULL;
    size_t errlen = 0;
    FILE *ef = open_memstream(&err, &errlen);
    struct config *cfg = config_load(path, ef);
    fclose(ef);
    CHECK(cfg == NULL);
    char want[600];
    snprintf(want, sizeof want, "%s:7:", path);
    CHECK(strstr(err, want) != NULL && strstr(err, "ews_version") != NULL);
    snprintf(want, sizeof want, "%s:16:", path);
    CHECK(strstr(err, want) != NULL && strstr(err, "ews_impersonation") != NULL);
    if (check_failed)
        fprintf(stderr, "%s", err);
    config_free(cfg);
    free(err);
    unlink(path);
}

int main(void)
{
    const char *src = getenv("XOAUTHD_TEST_SRCDIR");
    char dir[900];
    snprintf(dir, sizeof dir, "%s/../../shared/ews-schema/validate", src != NULL ? src : ".");
    if (access(dir, X_OK) == 0 && system("command -v xmllint >/dev/null 2>&1") == 0)
        snprintf(schema_validate, sizeof schema_validate, "%s", dir);
    else
        printf("note: %s (or xmllint) missing; requests are not schema-validated\n", dir);
    test_escape();
    test_build();
    test_parse_and_classify();
    test_parse_refusals();
    test_graph();
    test_config_keys();
    return CHECK_DONE();
}
