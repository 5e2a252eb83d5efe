"""Mock Exchange Web Services and Microsoft Graph endpoints for xoauthd's submission bridges.

One HTTPS server (the rig's test CA; a certificate for 127.0.0.1/localhost) in a thread on a
free port, with two faces:

  POST /EWS/Exchange.asmx              SOAP: CreateItem, GetItem, CopyItem, DeleteItem,
                                        DeleteFolder, UpdateItem
  POST /v1.0/users/{user}/sendMail     Graph: base64 MIME body, 202
  /v1.0/users/{user}/messages...       Graph drafts, upload sessions, send, delete, and the
  /upload/...                          pre-authenticated upload URLs: tests/rig/mock_graph_drafts.py

Every request is recorded (headers, raw body, operation, decoded MIME). Bearer tokens are checked
with the mock IdP's introspection endpoint when one is given; with `check_scope` set (opt-in,
cleared by reset()) a token must also have been issued for the face's resource, like the real
services: Graph wants a https://graph.microsoft.com/ scope, EWS .default of Exchange Online or
EWS.AccessAsUser.All; any other (an SMTP.Send token, say) gets 401. The EWS face validates each
request's SOAP body operation and header elements against Microsoft's schema with
`<repo>/../shared/ews-schema/validate` (xmllint); without that folder it prints a notice once
and skips validation. A request that fails validation is answered with the SOAP fault a real
Exchange gives (ErrorSchemaValidation) and recorded with its reasons. Every Graph request
(method, path with query, body, content type) is validated the same way against Microsoft's
Graph metadata with `<repo>/../shared/graph-schema` (graph_validate.check); a problem is
answered 400 BadRequest and recorded in `validation_errors`.

Answers are scripted: push entries onto `ews_script` / `graph_script`; each request takes the
next one, and with the script empty it succeeds. EWS entries:
  ("error", "ErrorSendAsDenied")        ResponseClass="Error" with that ResponseCode
  ("busy", 1500)                        ErrorServerBusy with BackOffMilliseconds
  ("fault",)                            a SOAP fault (HTTP 500)
  ("bomb",)                             a SOAP fault (HTTP 500) whose faultstring expands an
                                        internal DTD entity of 50,000 characters 18,000 times
                                        (104 KB on the wire, 900 MB expanded)
  ("http", 401) / ("http", 503, 3600)   a bare HTTP status [with Retry-After seconds]
Graph entries:
  ("http", 429, 1)                      status [with Retry-After]
  ("error", 400, "ErrorInvalidRecipients")   a JSON error body
  ("lose",)                             the request takes effect, the answer is lost (the
                                        connection closes without one)
"""
import base64
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import threading
import urllib.parse
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import secret_collect  # (tokens seen, for tests/rig/secret_scan.py)
from .mock_graph_drafts import GraphMailbox

NS = {
    "soap": "http://schemas.xmlsoap.org/soap/envelope/",
    "t": "http://schemas.microsoft.com/exchange/services/2006/types",
    "m": "http://schemas.microsoft.com/exchange/services/2006/messages",
}
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
SCHEMA_DIR = os.path.normpath(os.path.join(REPO, "..", "shared", "ews-schema"))
GRAPH_SCHEMA_DIR = os.path.normpath(os.path.join(REPO, "..", "shared", "graph-schema"))

_notice_printed = False
_graph_schema = None


def schema_validator():
    """Path of the schema's validate script, or None (notice printed once)."""
    global _notice_printed
    v = os.path.join(SCHEMA_DIR, "validate")
    if os.path.exists(v):
        return v
    if not _notice_printed:
        sys.stderr.write("mock_ews_graph: %s not found; EWS requests are NOT schema-validated\n"
                         % SCHEMA_DIR)
        _notice_printed = True
    return None


def graph_schema():
    """(graph_validate module, parsed CSDL), or None (notice printed once)."""
    global _graph_schema
    if _graph_schema is None:
        if not os.path.exists(os.path.join(GRAPH_SCHEMA_DIR, "graph_validate.py")):
            sys.stderr.write("mock_ews_graph: %s not found; Graph requests are NOT "
                             "schema-validated\n" % GRAPH_SCHEMA_DIR)
            _graph_schema = False
        else:
            if GRAPH_SCHEMA_DIR not in sys.path:
                sys.path.insert(0, GRAPH_SCHEMA_DIR)
            import graph_validate
            _graph_schema = (graph_validate, graph_validate.load())
    return _graph_schema or None


def _env(body):
    return ('<?xml version="1.0" encoding="utf-8"?>'
            '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header>'
            '<h:ServerVersionInfo MajorVersion="15" MinorVersion="1" MajorBuildNumber="2507" '
            'MinorBuildNumber="6" xmlns:h="%s"/></s:Header><s:Body '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            'xmlns:xsd="http://www.w3.org/2001/XMLSchema">%s</s:Body></s:Envelope>'
            % (NS["t"], body)).encode()


def _response(op, inner_msgs):
    return _env('<m:%sResponse xmlns:m="%s" xmlns:t="%s"><m:ResponseMessages>%s'
                '</m:ResponseMessages></m:%sResponse>' % (op, NS["m"], NS["t"], inner_msgs, op))


def _msg(op, cls, code, text="", extra="", items=""):
    mt = "<m:MessageText>%s</m:MessageText>" % text if text else ""
    return ('<m:%sResponseMessage ResponseClass="%s">%s<m:ResponseCode>%s</m:ResponseCode>'
            '%s%s</m:%sResponseMessage>' % (op, cls, mt, code, extra, items, op))


def soap_fault(text="The request failed schema validation.", code="ErrorSchemaValidation"):
    return _env('<s:Fault><faultcode xmlns:a="%s">a:%s</faultcode><faultstring xml:lang="en-US">'
                '%s</faultstring><detail><e:ResponseCode xmlns:e="http://schemas.microsoft.com/'
                'exchange/services/2006/errors">%s</e:ResponseCode><e:Message xmlns:e="http://'
                'schemas.microsoft.com/exchange/services/2006/errors">%s</e:Message></detail>'
                '</s:Fault>' % (NS["t"], code, text, code, text))


def entity_bomb_fault(entity_len=50000, refs=18000):
    """A hostile SOAP fault: a DTD entity referenced over and over (billion laughs, flat)."""
    return ('<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE s:Envelope [<!ENTITY a "%s">]>\n'
            '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault>'
            '<faultcode>s:Server</faultcode><faultstring>%s</faultstring></s:Fault></s:Body>'
            '</s:Envelope>\n' % ("A" * entity_len, "&a;" * refs)).encode()


class MockEwsGraph:
    def __init__(self, certs, introspection_url=None, validate=True):
        self.lock = threading.Lock()
        self.requests = []          # every request: dict(kind, path, headers, body, ...)
        self.ews_script = []
        self.graph_script = []
        self.items = {}             # EWS store: item id -> {"mime": bytes, "folder": str, ...}
        self.folders = {"inbox", "sentitems", "drafts", "deleteditems"}
        self.introspection_url = introspection_url
        self.check_scope = False    # opt-in: refuse tokens issued for another resource
        self.validate = validate
        self.validation_errors = []
        self.tmp = tempfile.mkdtemp(prefix="mock-ews-")
        mock = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def do_POST(self):
                mock._handle(self)

            do_PUT = do_GET = do_DELETE = do_POST

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request, client_address):
                # A client that goes away (a cancelled call) is not a test failure.
                if isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError)):
                    return
                super().handle_error(request, client_address)

        self.server = Server(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certs["good_cert"], certs["good_key"])
        # The handshake runs in the request's thread, not in the accept loop.
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True,
                                             do_handshake_on_connect=False)
        self.port = self.server.server_address[1]
        self.ews_url = "https://127.0.0.1:%d/EWS/Exchange.asmx" % self.port
        self.graph_url = "https://127.0.0.1:%d/v1.0" % self.port
        self.mailbox = GraphMailbox("https://127.0.0.1:%d" % self.port, self._graph_problem)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        for n in os.listdir(self.tmp):
            os.unlink(os.path.join(self.tmp, n))
        os.rmdir(self.tmp)

    def reset(self):
        with self.lock:
            self.requests = []
            self.ews_script = []
            self.graph_script = []
            self.validation_errors = []
            self.check_scope = False
        self.mailbox.reset()

    def _graph_problem(self, text):
        with self.lock:
            self.validation_errors.append(text)

    def of_kind(self, kind):
        with self.lock:
            return [r for r in self.requests if r["kind"] == kind]

    # -- plumbing --
    def _send(self, h, status, body=b"", ctype="text/xml; charset=utf-8", headers=None):
        h.send_response(status)
        if body:
            h.send_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if body:
            h.wfile.write(body)

    def _token_info(self, token):
        """(active, scope): scope is None when there is no introspection to ask."""
        if not token:
            return False, None
        secret_collect.register("bearer token seen by the mock EWS/Graph", token,
                                "mock_ews_graph")
        if self.introspection_url is None:
            return True, None
        data = urllib.parse.urlencode({"token": token}).encode()
        try:
            with urllib.request.urlopen(self.introspection_url, data=data, timeout=10) as r:
                info = json.loads(r.read())
                return bool(info.get("active")), info.get("scope")
        except Exception:
            return False, None

    def _token_ok(self, token):
        return self._token_info(token)[0]

    @staticmethod
    def scope_fits(kind, scope):
        """Whether a token issued for `scope` is accepted by the `kind` ("ews"/"graph") face."""
        items = (scope or "").split()
        if kind == "graph":
            return any(s.startswith("https://graph.microsoft.com/") for s in items)
        return any(s in ("https://outlook.office365.com/.default",
                         "https://outlook.office.com/.default")
                   or s.endswith("/EWS.AccessAsUser.All") for s in items)

    def _scope_refused(self, rec):
        if not self.check_scope or not rec["token_ok"] or rec["token_scope"] is None:
            return False
        rec["scope_refused"] = not self.scope_fits(rec["kind"], rec["token_scope"])
        return rec["scope_refused"]

    def _handle(self, h):
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        url = urllib.parse.urlsplit(h.path)
        path = url.path
        auth = h.headers.get("Authorization") or ""
        token = auth[7:] if auth.startswith("Bearer ") else None
        active, scope = self._token_info(token)
        rec = {"path": path, "headers": dict(h.headers.items()), "body": body, "token": token,
               "token_ok": active, "token_scope": scope}
        if path.lower() == "/ews/exchange.asmx":
            rec["kind"] = "ews"
            with self.lock:
                self.requests.append(rec)
            return self._ews(h, rec)
        if path.startswith("/upload/"):
            rec["kind"] = "upload"
            with self.lock:
                self.requests.append(rec)
            return self.mailbox.upload(self, h, h.command, path, url.query, body)
        m = re.match(r"^/v1\.0/users/([^/]+)/(.+)$", path)
        if m:
            rec["kind"] = "graph" if m.group(2) == "sendMail" else "graph-mailbox"
            rec["user"] = urllib.parse.unquote(m.group(1))
            rec["method"] = h.command
            with self.lock:
                self.requests.append(rec)
            return self._graph(h, rec, m.group(2))
        rec["kind"] = "other"
        with self.lock:
            self.requests.append(rec)
        self._send(h, 404, b"not found", "text/plain")

    # -- EWS --
    def _validate(self, rec, root):
        """Each SOAP header element and the body's operation, as separate fragments."""
        v = schema_validator() if self.validate else None
        if v is None:
            return []
        frags = []
        hdr = root.find("soap:Header", NS)
        for el in (list(hdr) if hdr is not None else []):
            frags.append(el)
        body = root.find("soap:Body", NS)
        frags.extend(list(body) if body is not None else [])
        errors = []
        paths = []
        for i, el in enumerate(frags):
            el = _copy_without_big_mime(el)
            p = os.path.join(self.tmp, "%s-%d.xml" % (uuid.uuid4().hex, i))
            ET.register_namespace("t", NS["t"])
            ET.register_namespace("m", NS["m"])
            with open(p, "wb") as f:
                f.write(ET.tostring(el))
            paths.append(p)
        if paths:
            r = subprocess.run([v] + paths, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=60)
            if r.returncode != 0:
                errors.append(r.stdout.decode(errors="replace"))
        for p in paths:
            os.unlink(p)
        return errors

    def _ews(self, h, rec):
        try:
            root = ET.fromstring(rec["body"])
        except ET.ParseError as e:
            rec["error"] = "not XML: %s" % e
            return self._send(h, 400, soap_fault("bad XML", "ErrorInvalidRequest"))
        hdr = root.find("soap:Header", NS)
        rec["version"] = None
        rec["impersonate"] = None
        if hdr is not None:
            rv = hdr.find("t:RequestServerVersion", NS)
            rec["version"] = rv.get("Version") if rv is not None else None
            ps = hdr.find("t:ExchangeImpersonation/t:ConnectingSID/t:PrimarySmtpAddress", NS)
            rec["impersonate"] = ps.text if ps is not None else None
        body = root.find("soap:Body", NS)
        op_el = list(body)[0] if body is not None and len(body) else None
        op = op_el.tag.split("}")[1] if op_el is not None else None
        rec["op"] = op
        rec["op_el"] = op_el
        mc = op_el.find(".//t:MimeContent", NS) if op_el is not None else None
        if mc is not None:
            rec["mime"] = base64.b64decode((mc.text or "").encode(), validate=True)
        errs = self._validate(rec, root)
        if errs:
            rec["schema_errors"] = errs
            with self.lock:
                self.validation_errors.extend(errs)
            return self._send(h, 500, soap_fault())
        if not rec["token_ok"] or self._scope_refused(rec):
            return self._send(h, 401, b"", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        with self.lock:
            step = self.ews_script.pop(0) if self.ews_script else None
        if step is not None:
            kind = step[0]
            if kind == "http":
                hdrs = {"Retry-After": str(step[2])} if len(step) > 2 else {}
                return self._send(h, step[1], b"", headers=hdrs)
            if kind == "fault":
                return self._send(h, 500, soap_fault("An internal server error occurred.",
                                                     "ErrorInternalServerError"))
            if kind == "bomb":
                return self._send(h, 500, entity_bomb_fault())
            if kind == "error":
                return self._send(h, 200, _response(op, _msg(op, "Error", step[1],
                                                             "Scripted %s." % step[1])))
            if kind == "busy":
                xml = ('<m:MessageXml><t:Value Name="BackOffMilliseconds">%d</t:Value>'
                       '</m:MessageXml>' % step[1])
                return self._send(h, 200, _response(op, _msg(
                    op, "Error", "ErrorServerBusy", "The server cannot service this request "
                    "right now. Try again later.", xml)))
        return self._send(h, 200, self._ews_success(op, op_el, rec))

    def _ews_success(self, op, el, rec):
        def new_item(mime, folder):
            iid = base64.b64encode(uuid.uuid4().bytes * 2).decode()
            ck = base64.b64encode(os.urandom(8)).decode()
            with self.lock:
                self.items[iid] = {"mime": mime, "folder": folder, "change_key": ck,
                                   "is_read": False}
            return iid, ck

        def folder_of(parent):
            f = parent.find("t:DistinguishedFolderId", NS)
            if f is None:
                f = parent.find("t:FolderId", NS)
            return f.get("Id") if f is not None else None

        ok = lambda items="": _response(op, _msg(op, "Success", "NoError", items=items))  # noqa
        if op == "CreateItem":
            disp = el.get("MessageDisposition")
            sf = el.find("m:SavedItemFolderId", NS)
            folder = folder_of(sf) if sf is not None else "drafts"
            rec["disposition"] = disp
            if disp == "SendAndSaveCopy":
                new_item(rec.get("mime", b""), folder)
                return ok("<m:Items/>")
            iid, ck = new_item(rec.get("mime", b""), folder)
            return ok('<m:Items><t:Message><t:ItemId Id="%s" ChangeKey="%s"/></t:Message>'
                      '</m:Items>' % (iid, ck))
        ids = [i.get("Id") for i in el.iter("{%s}ItemId" % NS["t"])]
        if op in ("GetItem", "CopyItem", "DeleteItem", "UpdateItem"):
            missing = [i for i in ids if i not in self.items]
            if missing:
                return _response(op, _msg(op, "Error", "ErrorItemNotFound",
                                          "The specified object was not found in the store."))
        if op == "GetItem":
            it = self.items[ids[0]]
            return ok('<m:Items><t:Message><t:MimeContent CharacterSet="UTF-8">%s</t:MimeContent>'
                      '<t:ItemId Id="%s" ChangeKey="%s"/></t:Message></m:Items>'
                      % (base64.b64encode(it["mime"]).decode(), ids[0], it["change_key"]))
        if op == "CopyItem":
            to = folder_of(el.find("m:ToFolderId", NS))
            iid, ck = new_item(self.items[ids[0]]["mime"], to)
            return ok('<m:Items><t:Message><t:ItemId Id="%s" ChangeKey="%s"/></t:Message>'
                      '</m:Items>' % (iid, ck))
        if op == "DeleteItem":
            with self.lock:
                for i in ids:
                    self.items.pop(i, None)
            return ok()
        if op == "DeleteFolder":
            f = folder_of(el.find("m:FolderIds", NS))
            with self.lock:
                self.folders.discard(f)
            return ok()
        if op == "UpdateItem":
            v = el.find(".//t:Message/t:IsRead", NS)
            with self.lock:
                self.items[ids[0]]["is_read"] = v is not None and v.text == "true"
            return ok('<m:Items><t:Message><t:ItemId Id="%s" ChangeKey="%s"/></t:Message>'
                      '</m:Items>' % (ids[0], self.items[ids[0]]["change_key"]))
        return soap_fault("Unsupported operation %s" % op, "ErrorInvalidRequest")

    # -- Graph --
    def _graph_validate(self, h, rec):
        """Problems of one Graph request against Microsoft's metadata (recorded)."""
        gs = graph_schema() if self.validate else None
        if gs is None:
            return []
        gv, schema = gs
        ctype = (rec["content_type"] or "application/json").split(";")[0].strip()
        problems = gv.check(schema, h.command, h.path, rec["body"], ctype)
        if problems:
            rec["schema_errors"] = problems
            with self.lock:
                self.validation_errors.extend("%s %s: %s" % (h.command, h.path, p)
                                              for p in problems)
        return problems

    def _graph(self, h, rec, rest):
        rec["content_type"] = h.headers.get("Content-Type")
        problems = self._graph_validate(h, rec)
        if problems:
            return self._send(h, 400, json.dumps({"error": {
                "code": "BadRequest", "message": "; ".join(problems)}}).encode(),
                "application/json")
        if not rec["token_ok"] or self._scope_refused(rec):
            return self._send(h, 401, json.dumps({"error": {
                "code": "InvalidAuthenticationToken",
                "message": "Access token validation failure."}}).encode(), "application/json")
        if (rec["content_type"] or "").startswith("text/plain"):
            try:
                rec["mime"] = base64.b64decode(rec["body"], validate=True)
            except Exception as e:
                rec["error"] = "bad base64: %s" % e
                return self._send(h, 400, json.dumps({"error": {
                    "code": "ErrorMimeContentInvalidBase64String",
                    "message": "Invalid base64 string for MIME content."}}).encode(),
                    "application/json")
        with self.lock:
            step = self.graph_script.pop(0) if self.graph_script else None
        if rest != "sendMail":
            return self.mailbox.graph(self, h, rec, h.command, rest, step)
        if step is not None and step[0] == "lose":
            return self.mailbox.drop(h)
        if step is not None:
            return self._graph_scripted(h, step)
        return self._send(h, 202)

    def _graph_scripted(self, h, step):
        """Answer a scripted Graph failure (see the module docstring)."""
        if step[0] == "http":
            hdrs = {"Retry-After": str(step[2])} if len(step) > 2 else {}
            return self._send(h, step[1], json.dumps({"error": {
                "code": "TooManyRequests" if step[1] == 429 else "ServiceUnavailable",
                "message": "Scripted."}}).encode(), "application/json", hdrs)
        if step[0] == "error":
            return self._send(h, step[1], json.dumps({"error": {
                "code": step[2], "message": "Scripted %s." % step[2]}}).encode(),
                "application/json")
        return self._send(h, 500)


def _copy_without_big_mime(el):
    """The schema only says base64Binary: a short stand-in keeps xmllint fast on 20 MB."""
    mcs = list(el.iter("{%s}MimeContent" % NS["t"]))
    if not mcs:
        return el
    import copy
    c = copy.deepcopy(el)
    for mc in c.iter("{%s}MimeContent" % NS["t"]):
        if mc.text and len(mc.text) > 4096:
            mc.text = "U3ViamVjdDogeA0KDQp4DQo="
    return c
