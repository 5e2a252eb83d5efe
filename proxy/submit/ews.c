#include "ews.h"

#include <libxml/parser.h>
#include <libxml/parserInternals.h> /* xmlCreateMemoryParserCtxt */
#include <libxml/tree.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "body_stream.h"
#include "log.h"

#define EWS_DEFAULT_TIMEOUT_MS 30000u
#define EWS_MAX_RESPONSE ((size_t)1 << 20)

#define EWS_NS_SOAP "http://schemas.xmlsoap.org/soap/envelope/"
#define EWS_NS_T "http://schemas.microsoft.com/exchange/services/2006/types"
#define EWS_NS_M "http://schemas.microsoft.com/exchange/services/2006/messages"

struct ews_call {
    struct http_request *req;
    char *head, *tail;
    struct body_stream body;
    char sid[32];
    ews_cb cb;
    void *arg;
};

/* ---- building ----------------------------------------------------------------------------- */

static void ews_buf_add(struct ews_buf *b, const char *s, size_t n)
{
    if (b->err)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (q == NULL) {
            b->err = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void ews_buf_str(struct ews_buf *b, const char *s) { ews_buf_add(b, s, strlen(s)); }

/* Appends an escaped value; a value XML cannot carry fails the whole request. */
void ews_buf_esc(struct ews_buf *b, const char *s)
{
    char *e = ews_xml_escape(s != NULL ? s : "");
    if (e == NULL) {
        b->err = 1;
        return;
    }
    ews_buf_str(b, e);
    free(e);
}

char *ews_xml_escape(const char *s)
{
    size_t len = strlen(s);
    char *out = malloc(len * 6 + 1);
    size_t o = 0;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *rep = NULL;
        switch (c) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&apos;"; break;
        default:
            /* XML 1.0 2.2: no C0 controls but TAB, LF, CR, even as references. */
            if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
                free(out);
                return NULL;
            }
            break;
        }
        if (rep != NULL) {
            size_t n = strlen(rep);
            memcpy(out + o, rep, n);
            o += n;
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
    return out;
}

/* The SOAP envelope up to and with <soap:Body>: RequestServerVersion, and for app-only tokens
 * ExchangeImpersonation (the account's mailbox). */
void ews_envelope_open(struct ews_buf *b, const struct ews_target *t)
{
    ews_buf_str(b, "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
                   "<soap:Envelope xmlns:soap=\"" EWS_NS_SOAP "\" xmlns:t=\"" EWS_NS_T
                   "\" xmlns:m=\"" EWS_NS_M "\">\n<soap:Header>\n"
                   "<t:RequestServerVersion Version=\"");
    ews_buf_esc(b, t->version != NULL ? t->version : EWS_DEFAULT_VERSION);
    ews_buf_str(b, "\"/>\n");
    if (t->impersonate != NULL) {
        ews_buf_str(b, "<t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>");
        ews_buf_esc(b, t->impersonate);
        ews_buf_str(b, "</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>\n");
    }
    ews_buf_str(b, "</soap:Header>\n<soap:Body>\n");
}

void ews_envelope_close(struct ews_buf *b)
{
    ews_buf_str(b, "</soap:Body>\n</soap:Envelope>\n");
}

int ews_request_finish(struct ews_buf *head, struct ews_buf *tail, char **head_out,
                       char **tail_out)
{
    if (tail->p == NULL)
        ews_buf_str(tail, "");
    if (head->err || tail->err) {
        free(head->p);
        free(tail->p);
        *head_out = *tail_out = NULL;
        return -1;
    }
    *head_out = head->p;
    *tail_out = tail->p;
    return 0;
}

int ews_build_send(const struct ews_target *t, char **head, char **tail)
{
    struct ews_buf b = {0}, tb = {0};
    ews_envelope_open(&b, t);
    ews_buf_str(&b, "<m:CreateItem MessageDisposition=\"SendAndSaveCopy\">"
                    "<m:SavedItemFolderId><t:DistinguishedFolderId Id=\"sentitems\"/>"
                    "</m:SavedItemFolderId>"
                    "<m:Items><t:Message><t:MimeContent CharacterSet=\"UTF-8\">");
    ews_buf_str(&tb, "</t:MimeContent></t:Message></m:Items></m:CreateItem>\n");
    ews_envelope_close(&tb);
    return ews_request_finish(&b, &tb, head, tail);
}

/* ---- parsing ------------------------------------------------------------------------------ */

static int ews_name_is(const xmlNode *n, const char *name)
{
    return n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

/* First element called name under n, in document order. */
static xmlNode *ews_find(xmlNode *n, const char *name)
{
    for (xmlNode *c = n; c != NULL; c = c->next) {
        if (ews_name_is(c, name))
            return c;
        xmlNode *f = ews_find(c->children, name);
        if (f != NULL)
            return f;
    }
    return NULL;
}

/* Copies the text of the TEXT and CDATA nodes in the sibling list first into out (cut to
 * outsz - 1 bytes, NUL-terminated; out may be NULL to measure) and returns the full length.
 * Entity references are skipped, never resolved: xmlNodeGetContent() and xmlGetProp() expand
 * them, which is how a 104 KB response with an internal entity became a gigabyte. A DTD is
 * refused before this runs (ews_read_xml); this is the second line. */
static size_t ews_text_into(const xmlNode *first, char *out, size_t outsz)
{
    size_t total = 0, o = 0;
    for (const xmlNode *c = first; c != NULL; c = c->next) {
        if ((c->type != XML_TEXT_NODE && c->type != XML_CDATA_SECTION_NODE) || c->content == NULL)
            continue;
        size_t l = strlen((const char *)c->content);
        total += l;
        if (out != NULL && o + 1 < outsz) {
            size_t n = l < outsz - 1 - o ? l : outsz - 1 - o;
            memcpy(out + o, c->content, n);
            o += n;
        }
    }
    if (out != NULL && outsz > 0)
        out[o] = '\0';
    return total;
}

static void ews_text(xmlNode *n, char *out, size_t outsz)
{
    out[0] = '\0';
    if (n != NULL)
        ews_text_into(n->children, out, outsz);
}

static void ews_attr(xmlNode *n, const char *name, char *out, size_t outsz)
{
    xmlAttr *a = n != NULL ? xmlHasProp(n, (const xmlChar *)name) : NULL;
    out[0] = '\0';
    if (a != NULL)
        ews_text_into(a->children, out, outsz);
}

/* The first element that carries a ResponseClass attribute: the ...ResponseMessage. */
static xmlNode *ews_find_response_message(xmlNode *n)
{
    for (xmlNode *c = n; c != NULL; c = c->next) {
        if (c->type == XML_ELEMENT_NODE && xmlHasProp(c, (const xmlChar *)"ResponseClass"))
            return c;
        xmlNode *f = ews_find_response_message(c->children);
        if (f != NULL)
            return f;
    }
    return NULL;
}

static void ews_decode_mime(xmlNode *n, struct ews_result *r)
{
    /* Usually one text node: decode it in place rather than copy up to 200 MiB. */
    const xmlNode *c = n->children;
    int one = c != NULL && c->next == NULL && c->type == XML_TEXT_NODE && c->content != NULL;
    size_t len = one ? strlen((const char *)c->content) : ews_text_into(c, NULL, 0);
    char *copy = !one && len <= INT_MAX ? malloc(len + 1) : NULL;
    const char *t = one ? (const char *)c->content : copy;
    if (t == NULL || len > INT_MAX)
        return;
    if (copy != NULL)
        ews_text_into(c, copy, len + 1);
    r->mime = malloc(len / 4 * 3 + 4);
    if (r->mime != NULL) {
        /* Exchange may break long base64 text into lines. */
        long got = base64_decode_lines(t, len, r->mime);
        if (got < 0) {
            free(r->mime);
            r->mime = NULL;
        } else {
            r->mime_len = (size_t)got;
        }
    }
    free(copy);
}

void ews_result_clear(struct ews_result *r)
{
    free(r->mime);
    memset(r, 0, sizeof *r);
    r->retry_after = -1;
    r->backoff_ms = -1;
}

/* What a parse may build. EWS answers are a few dozen elements a dozen deep (the deepest,
 * GetItem's MimeContent, is 8); the bounds leave room and keep a hostile answer's tree small. */
#define EWS_XML_MAX_DEPTH 64u
#define EWS_XML_MAX_ELEMENTS 10000u

struct ews_guard {
    xmlParserCtxtPtr ctxt;
    startElementNsSAX2Func start;
    endElementNsSAX2Func end;
    unsigned depth, elements;
    const char *refused; /* why the parse stopped, NULL while it goes on */
};

static void ews_guard_stop(void *ctx, const char *why)
{
    xmlParserCtxtPtr ctxt = ctx;
    struct ews_guard *g = ctxt->_private;
    if (g->refused == NULL)
        g->refused = why;
    xmlStopParser(ctxt); /* empties the input: nothing after this point is read */
}

/* Called as soon as <!DOCTYPE name ...> is read, before any declaration in it: no SOAP
 * message has a DTD (SOAP 1.1 section 3: "A SOAP message MUST NOT contain a Document Type
 * Declaration"), and a DTD is what declares the entities of an expansion bomb. */
static void ews_guard_subset(void *ctx, const xmlChar *name, const xmlChar *external_id,
                             const xmlChar *system_id)
{
    (void)name;
    (void)external_id;
    (void)system_id;
    ews_guard_stop(ctx, "the response carries a DTD");
}

static void ews_guard_start(void *ctx, const xmlChar *localname, const xmlChar *prefix,
                            const xmlChar *uri, int nb_ns, const xmlChar **ns, int nb_attrs,
                            int nb_defaulted, const xmlChar **attrs)
{
    struct ews_guard *g = ((xmlParserCtxtPtr)ctx)->_private;
    if (++g->depth > EWS_XML_MAX_DEPTH) {
        ews_guard_stop(ctx, "the response is nested too deeply");
        return;
    }
    if (++g->elements > EWS_XML_MAX_ELEMENTS) {
        ews_guard_stop(ctx, "the response has too many elements");
        return;
    }
    g->start(ctx, localname, prefix, uri, nb_ns, ns, nb_attrs, nb_defaulted, attrs);
}

static void ews_guard_end(void *ctx, const xmlChar *localname, const xmlChar *prefix,
                          const xmlChar *uri)
{
    struct ews_guard *g = ((xmlParserCtxtPtr)ctx)->_private;
    g->depth--;
    g->end(ctx, localname, prefix, uri);
}

/* Parses body into a tree, or NULL: not well-formed XML (*refused stays NULL), or refused
 * (*refused says why). No NOENT (entities are never substituted), no DTD loading, no network,
 * and a DTD stops the parse where it starts, so a hostile or broken server cannot make the
 * parser fetch or amplify anything; the work is linear in the size of the body. HUGE only for
 * the MIME of large messages, which is one long text node. */
static xmlDoc *ews_read_xml(const char *body, size_t len, const char **refused)
{
    int opts = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING;
    struct ews_guard g = {0};
    *refused = NULL;
    if (len > 8u << 20)
        opts |= XML_PARSE_HUGE;
    if (len > INT32_MAX)
        return NULL;
    g.ctxt = xmlCreateMemoryParserCtxt(body, (int)len);
    if (g.ctxt == NULL)
        return NULL;
    xmlCtxtUseOptions(g.ctxt, opts);
    g.ctxt->_private = &g;
    g.start = g.ctxt->sax->startElementNs;
    g.end = g.ctxt->sax->endElementNs;
    g.ctxt->sax->internalSubset = ews_guard_subset;
    g.ctxt->sax->startElementNs = ews_guard_start;
    g.ctxt->sax->endElementNs = ews_guard_end;
    xmlParseDocument(g.ctxt);
    xmlDoc *doc = g.ctxt->myDoc;
    g.ctxt->myDoc = NULL;
    if (g.refused == NULL && doc != NULL && (doc->intSubset != NULL || doc->extSubset != NULL))
        g.refused = "the response carries a DTD";
    if (!g.ctxt->wellFormed || g.refused != NULL) {
        xmlFreeDoc(doc);
        doc = NULL;
    }
    xmlFreeParserCtxt(g.ctxt);
    *refused = g.refused;
    return doc;
}

int ews_parse_response(const char *body, size_t len, struct ews_result *r)
{
    const char *refused;
    xmlDoc *doc = ews_read_xml(body, len, &refused);
    if (refused != NULL) {
        snprintf(r->message_text, sizeof r->message_text, "%s", refused);
        return EWS_PARSE_REFUSED;
    }
    if (doc == NULL)
        return -1;
    int rc = -1;
    xmlNode *root = xmlDocGetRootElement(doc);
    xmlNode *soap_body = root != NULL ? ews_find(root, "Body") : NULL;
    if (soap_body == NULL)
        goto done;
    xmlNode *fault = ews_find(soap_body->children, "Fault");
    if (fault != NULL) {
        r->outcome = EWS_OUT_FAULT;
        ews_text(ews_find(fault->children, "faultstring"), r->message_text,
                 sizeof r->message_text);
        /* Exchange names the error in detail/ResponseCode (ErrorSchemaValidation, ...). */
        ews_text(ews_find(fault->children, "ResponseCode"), r->response_code,
                 sizeof r->response_code);
        rc = 0;
        goto done;
    }
    xmlNode *rm = ews_find_response_message(soap_body->children);
    if (rm == NULL)
        goto done;
    ews_attr(rm, "ResponseClass", r->response_class, sizeof r->response_class);
    ews_text(ews_find(rm->children, "ResponseCode"), r->response_code, sizeof r->response_code);
    ews_text(ews_find(rm->children, "MessageText"), r->message_text, sizeof r->message_text);
    xmlNode *mx = ews_find(rm->children, "MessageXml");
    for (xmlNode *v = mx != NULL ? mx->children : NULL; v != NULL; v = v->next) {
        char name[64], val[32];
        if (!ews_name_is(v, "Value"))
            continue;
        ews_attr(v, "Name", name, sizeof name);
        if (strcmp(name, "BackOffMilliseconds") == 0) {
            ews_text(v, val, sizeof val);
            r->backoff_ms = strtol(val, NULL, 10);
        }
    }
    xmlNode *id = ews_find(rm->children, "ItemId");
    ews_attr(id, "Id", r->item_id, sizeof r->item_id);
    ews_attr(id, "ChangeKey", r->change_key, sizeof r->change_key);
    xmlNode *mime = ews_find(rm->children, "MimeContent");
    if (mime != NULL)
        ews_decode_mime(mime, r);
    if (strcmp(r->response_class, "Success") == 0 ||
        (strcmp(r->response_class, "Warning") == 0 && strcmp(r->response_code, "NoError") == 0))
        r->outcome = EWS_OUT_OK;
    else
        r->outcome = EWS_OUT_ERROR;
    rc = 0;
done:
    xmlFreeDoc(doc);
    return rc;
}

/* ---- classification ----------------------------------------------------------------------- */

void ews_verdict(const struct ews_result *r, struct submit_verdict *v)
{
    memset(v, 0, sizeof *v);
    v->wait_ms = -1;
    v->kind = SUBMIT_V_FAIL;
    switch (r->outcome) {
    case EWS_OUT_OK:
        v->kind = SUBMIT_V_OK;
        v->reply = SUBMIT_REPLY_OK;
        return;
    case EWS_OUT_TRANSPORT:
        /* The message may or may not have arrived; 451 risks a duplicate, never a loss. */
        v->reply = SUBMIT_REPLY_UNREACH;
        v->hint = r->timed_out ? "the request timed out" : "check ews_url and the network";
        return;
    case EWS_OUT_REFUSED:
        /* Not a reply Exchange gives: something between xoauthd and the server (or the server
         * itself) is hostile or broken. Temporary, so that nothing is lost. */
        v->reply = SUBMIT_REPLY_TEMP;
        v->hint = "the EWS response was refused unread (see reason=): check what answers at "
                  "ews_url";
        return;
    case EWS_OUT_FAULT:
        v->reply = SUBMIT_REPLY_SCHEMA;
        v->hint = "SOAP fault: see fault=; check ews_version";
        return;
    case EWS_OUT_ERROR:
        if (strcmp(r->response_code, "ErrorServerBusy") == 0) {
            v->kind = SUBMIT_V_BUSY;
            v->wait_ms = r->backoff_ms;
            v->reply = SUBMIT_REPLY_BUSY;
            return;
        }
        v->reply = submit_code_reply(r->response_code);
        v->hint = submit_code_hint(r->response_code);
        if (v->reply == NULL) {
            /* Unknown: temporary, so that nothing is lost; the log names the code. */
            v->reply = SUBMIT_REPLY_TEMP;
            v->hint = "unknown EWS response code";
        }
        return;
    case EWS_OUT_HTTP:
        break;
    }
    switch (r->http_status) {
    case 401:
        v->kind = SUBMIT_V_REAUTH;
        v->reply = SUBMIT_REPLY_AUTH;
        v->hint = "the token was refused: check ews_scope (or scope, when ews is the first "
                  "path): EWS.AccessAsUser.All delegated, https://outlook.office365.com/.default "
                  "app-only; and the account's flow";
        return;
    case 403:
        v->reply = SUBMIT_REPLY_AUTH;
        v->hint = "forbidden: the app lacks EWS access (Exchange Online allow-list, "
                  "full_access_as_app)";
        return;
    case 413:
        v->reply = SUBMIT_REPLY_SIZE;
        return;
    case 429:
    case 503:
    case 504:
        v->kind = SUBMIT_V_BUSY;
        v->wait_ms = submit_retry_after_ms(r->retry_after);
        v->reply = SUBMIT_REPLY_BUSY;
        return;
    case 400:
        v->reply = SUBMIT_REPLY_SCHEMA; /* the server could not read our request */
        v->hint = "HTTP 400: check ews_url and ews_version";
        return;
    default:
        /* 2xx without a readable answer (the message may have gone: a duplicate beats a
         * loss), redirects (a login page), 404, 5xx: temporary, with what to check. */
        v->reply = SUBMIT_REPLY_TEMP;
        v->hint = r->http_status >= 500 ? NULL : "unexpected HTTP status: check ews_url";
        return;
    }
}

/* ---- calls -------------------------------------------------------------------------------- */

static void ews_call_free(struct ews_call *c)
{
    free(c->head);
    free(c->tail);
    free(c);
}

void ews_result_from_http(const struct http_response *resp, struct ews_result *r)
{
    int rc = 0;
    memset(r, 0, sizeof *r);
    r->backoff_ms = -1;
    r->http_status = resp->status;
    r->retry_after = resp->retry_after;
    if (resp->status == 0) {
        r->outcome = EWS_OUT_TRANSPORT;
        r->timed_out = resp->timed_out;
        snprintf(r->message_text, sizeof r->message_text, "%s",
                 resp->error != NULL ? resp->error : "no response");
    } else if (resp->status == 401 || resp->status == 429 || resp->status == 503 ||
               resp->body_len == 0 ||
               (rc = ews_parse_response(resp->body, resp->body_len, r)) == -1) {
        /* Some statuses mean the same whatever the body says (an IIS error page, mostly). */
        ews_result_clear(r);
        r->http_status = resp->status;
        r->retry_after = resp->retry_after;
        r->outcome = EWS_OUT_HTTP;
    } else if (rc == EWS_PARSE_REFUSED) {
        r->outcome = EWS_OUT_REFUSED;
    } else if (resp->status != 200 && r->outcome == EWS_OUT_OK) {
        r->outcome = EWS_OUT_HTTP; /* a success body with an error status is not a success */
    }
}

static void ews_done_cb(void *arg, const struct http_response *resp)
{
    struct ews_call *c = arg;
    struct ews_result r;
    c->req = NULL;
    ews_result_from_http(resp, &r);
    if (r.outcome == EWS_OUT_REFUSED)
        log_warn(c->sid, "event=ews_response_refused http_status=%d size=%zu reason=\"%s\" "
                 "note=\"not parsed further; the request counts as failed temporarily\"",
                 r.http_status, resp->body_len, r.message_text);
    c->cb(c->arg, &r);
    ews_result_clear(&r);
    ews_call_free(c);
}

struct ews_call *ews_call_start(struct http *http, const struct ews_target *t, int built,
                                char *head, char *tail, const struct capture_source *msg,
                                size_t max_response, const char *sid, ews_cb cb, void *arg)
{
    struct ews_call *c = calloc(1, sizeof *c);
    char *auth = NULL;
    if (c == NULL) {
        free(head);
        free(tail);
        return NULL;
    }
    c->head = head;
    c->tail = tail;
    c->cb = cb;
    c->arg = arg;
    snprintf(c->sid, sizeof c->sid, "%s", sid != NULL ? sid : "-");
    if (built != 0) {
        log_error(c->sid, "event=ews_request_invalid note=\"a value cannot be written as XML\"");
        goto fail;
    }
    size_t alen = strlen(t->token) + 8;
    auth = malloc(alen);
    if (auth == NULL)
        goto fail;
    snprintf(auth, alen, "Bearer %s", t->token);
    struct http_header hdrs[4];
    size_t nh = 0;
    hdrs[nh++] = (struct http_header){"Authorization", auth};
    if (t->mailbox != NULL)
        hdrs[nh++] = (struct http_header){"X-AnchorMailbox", t->mailbox};
    hdrs[nh++] = (struct http_header){"Accept", "text/xml"};
    struct http_opts o = {0};
    o.method = "POST";
    o.url = t->url;
    o.headers = hdrs;
    o.n_headers = nh;
    o.content_type = "text/xml; charset=utf-8";
    o.ca_file = t->ca_file;
    o.tls_no_verify = t->tls_no_verify;
    o.timeout_ms = t->timeout_ms != 0 ? t->timeout_ms : EWS_DEFAULT_TIMEOUT_MS;
    o.max_response = max_response != 0 ? max_response : EWS_MAX_RESPONSE;
    if (msg != NULL) {
        body_stream_init(&c->body, c->head, strlen(c->head), *msg, c->tail, strlen(c->tail));
        o.body_read = body_stream_read;
        o.body_arg = &c->body;
        o.body_size = body_stream_size(&c->body);
    } else {
        o.body = c->head;
        o.body_len = strlen(c->head);
    }
    xmlInitParser(); /* idempotent; first call on the loop thread, before any parse */
    c->req = http_request_start(http, &o, ews_done_cb, c);
    OPENSSL_cleanse(auth, alen);
    free(auth);
    auth = NULL;
    if (c->req == NULL)
        goto fail;
    return c;
fail:
    free(auth);
    ews_call_free(c);
    return NULL;
}

struct ews_call *ews_send(struct http *http, const struct ews_target *t,
                          const struct capture_source *msg, const char *sid, ews_cb cb, void *arg)
{
    char *head, *tail;
    if (msg == NULL)
        return NULL;
    int built = ews_build_send(t, &head, &tail);
    return ews_call_start(http, t, built, head, tail, msg, 0, sid, cb, arg);
}

void ews_cancel(struct ews_call *c)
{
    if (c == NULL)
        return;
    http_request_cancel(c->req);
    ews_call_free(c);
}
