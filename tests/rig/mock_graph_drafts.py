"""The mock Graph mailbox: drafts, attachment upload sessions, send and delete, by Microsoft's rules.

Used by tests/rig/mock_ews_graph.py for every Graph request other than sendMail, and for the
PUTs to upload URLs. The rules, with their sources, are in docs/graph-large-messages.md:

  POST   /v1.0/users/{u}/messages                      text/plain base64 MIME -> 201 {id}
  POST   /v1.0/users/{u}/messages/{id}/attachments/createUploadSession
                                                       -> 201 {uploadUrl, expirationDateTime,
                                                               nextExpectedRanges: ["0-"]}
  POST   /v1.0/users/{u}/messages/{id}/send            -> 202; the draft leaves Drafts
  GET    /v1.0/users/{u}/messages/{id}                 -> 200 {id, isDraft} | 404
  DELETE /v1.0/users/{u}/messages/{id}                 -> 204 | 404
  PUT    /upload/{session}?authtoken=...               the pre-authenticated upload URL
  GET    /upload/{session}?authtoken=...               the session's state (OneDrive's resume
                                                       call; docs/graph-large-messages.md 3.)

Upload PUTs are checked: no Authorization header (the URL is pre-authenticated), Content-Type
application/octet-stream, Content-Range "bytes start-end/total" with total = the size given to
createUploadSession, start = the next expected byte (in order; otherwise 416 with
nextExpectedRanges), Content-Length = end - start + 1 = the body's length, at most 4 MiB per PUT,
every chunk but the last a multiple of 320 KiB, the session not expired. A client that breaks a
rule (as opposed to a scripted failure) is reported through `on_problem`: the mock adds it to
its `validation_errors`, which the tests assert to be empty.

Sent messages are kept in `sent` as {"user", "mime", "attachments": [{name, contentType, size,
isInline, contentId, sha256}]}: the attachments reassembled from their chunks (only a running
sha256 is kept, so a 150 MB attachment costs no memory).

Scripts (lists of tuples; each request takes the next entry):
  graph_script (shared with the sendMail face, in mock_ews_graph.py), for Graph requests:
    ("http", 429, 1) / ("error", 400, "Code") as there, and
    ("lose",)          the request takes effect, then the connection drops without an answer
  upload_script, for PUTs (None: answered normally, to aim at a later PUT):
    ("http", 429, 1)   a status [with Retry-After], nothing stored
    ("reset",)         half of the chunk (rounded down to 320 KiB) is stored, then the
                       connection drops without an answer
"""
import hashlib
import json
import re
import socket
import threading
import time
import urllib.parse
import uuid

MIB = 1024 * 1024
MAX_REQUEST = 4 * MIB           # sendMail / create-message body (base64)
MAX_ATTACHMENT = 150 * MIB      # createUploadSession
MAX_CHUNK = 4 * MIB             # Outlook: "up to 4 MB each time"
CHUNK_ALIGN = 320 * 1024        # OneDrive's fragment rule; enforced as well
DEFAULT_SESSION_LIFETIME = 15 * 60

_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


def _json(obj):
    return json.dumps(obj).encode()


def graph_error(code, message):
    return _json({"error": {"code": code, "message": message,
                            "innerError": {"request-id": str(uuid.uuid4())}}})


class GraphMailbox:
    def __init__(self, base_url, on_problem):
        self.base_url = base_url            # https://127.0.0.1:port (no /v1.0)
        self.on_problem = on_problem
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.drafts = {}        # id -> {"user", "mime", "attachments": [...]}
            self.sent = []
            self.deleted = []       # ids of deleted drafts
            self.sessions = {}      # session id -> state
            self.upload_script = []
            self.session_lifetime = DEFAULT_SESSION_LIFETIME

    # -- helpers --
    def _problem(self, text):
        self.on_problem(text)

    @staticmethod
    def drop(h):
        """Close the connection without an answer (a reset, a lost response)."""
        h.close_connection = True
        try:
            h.request.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _status(self, s):
        return {"expirationDateTime": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                    time.gmtime(s["expires"])),
                "nextExpectedRanges": ["%d" % s["received"]] if s["received"] else ["0-"]}

    # -- Graph API (rec: the request record of mock_ews_graph; path below /v1.0/users/{u}) --
    def graph(self, mock, h, rec, method, rest, step):
        """Answer one Graph mailbox request; `step` is the scripted entry or None."""
        if step is not None and step[0] != "lose":
            return mock._graph_scripted(h, step)
        status, body, headers = self._graph_op(rec, method, rest)
        if step is not None:        # ("lose",): done, but the answer never arrives
            return self.drop(h)
        ctype = "application/json" if body else None
        return mock._send(h, status, body, ctype or "text/plain", headers)

    def _graph_op(self, rec, method, rest):
        user = rec["user"]
        m = re.match(r"^messages(?:/([^/]+)(/attachments/createUploadSession|/send)?)?$", rest)
        if not m:
            return 404, graph_error("BadRequest", "Unsupported path in the mock."), None
        mid = urllib.parse.unquote(m.group(1)) if m.group(1) else None
        action = m.group(2)
        if mid is None:
            if method != "POST":
                return 405, graph_error("BadRequest", "Unsupported method."), None
            return self._create_draft(rec, user)
        with self.lock:
            d = self.drafts.get(mid)
        if d is None or d["user"] != user:
            return 404, graph_error("ErrorItemNotFound",
                                    "The specified object was not found in the store."), None
        if action is None and method == "GET":
            return 200, _json({"id": mid, "isDraft": True}), None
        if action is None and method == "DELETE":
            with self.lock:
                self.drafts.pop(mid, None)
                self.deleted.append(mid)
                for sid in [k for k, s in self.sessions.items() if s["draft"] == mid]:
                    del self.sessions[sid]
            return 204, b"", None
        if action == "/send" and method == "POST":
            return self._send_draft(mid, d)
        if action and method == "POST":
            return self._create_session(rec, mid)
        return 405, graph_error("BadRequest", "Unsupported method."), None

    def _create_draft(self, rec, user):
        if len(rec["body"]) > MAX_REQUEST:
            self._problem("create message: body of %d bytes over Graph's 4 MB" % len(rec["body"]))
            return 413, graph_error("RequestEntityTooLarge", "The request is too large."), None
        if rec.get("mime") is None:
            return 400, graph_error("ErrorMimeContentInvalidBase64String",
                                    "Invalid base64 string for MIME content."), None
        mid = "AAMkAD" + uuid.uuid4().hex + "="
        with self.lock:
            self.drafts[mid] = {"user": user, "mime": rec["mime"], "attachments": []}
        return 201, _json({"id": mid, "isDraft": True}), None

    def _create_session(self, rec, mid):
        try:
            item = json.loads(rec["body"]).get("AttachmentItem") or {}
        except ValueError:
            return 400, graph_error("BadRequest", "Body is not JSON."), None
        size = item.get("size")
        if not isinstance(size, int) or size <= 0:
            self._problem("createUploadSession: AttachmentItem.size missing")
            return 400, graph_error("BadRequest", "AttachmentItem.size is required."), None
        if size > MAX_ATTACHMENT:
            return 400, graph_error("ErrorAttachmentSizeLimitExceeded",
                                    "The attachment exceeds the maximum size of 150 MB."), None
        sid = uuid.uuid4().hex
        tok = uuid.uuid4().hex
        s = {"draft": mid, "token": tok, "item": item, "size": size, "received": 0,
             "sha": hashlib.sha256(), "expires": time.time() + self.session_lifetime}
        with self.lock:
            self.sessions[sid] = s
        body = dict(self._status(s))
        body["uploadUrl"] = "%s/upload/%s?authtoken=%s" % (self.base_url, sid, tok)
        return 201, _json(body), None

    def _send_draft(self, mid, d):
        with self.lock:
            open_sessions = [s for s in self.sessions.values() if s["draft"] == mid]
        if open_sessions:
            self._problem("send: draft %s has %d unfinished upload session(s)"
                          % (mid, len(open_sessions)))
        with self.lock:
            self.drafts.pop(mid, None)
            self.sent.append({"user": d["user"], "mime": d["mime"], "id": mid,
                              "attachments": d["attachments"]})
        return 202, b"", None

    # -- upload URL --
    def upload(self, mock, h, method, path, query, body):
        sid = path[len("/upload/"):]
        tok = urllib.parse.parse_qs(query).get("authtoken", [""])[0]
        if h.headers.get("Authorization") is not None:
            self._problem("upload: Authorization header sent to the pre-authenticated uploadUrl")
            return mock._send(h, 401, graph_error(
                "InvalidAuthenticationToken", "Do not send an Authorization header to the "
                "pre-authenticated upload URL."), "application/json")
        with self.lock:
            s = self.sessions.get(sid)
        if s is None or s["token"] != tok:
            return mock._send(h, 404, graph_error("ErrorItemNotFound",
                                                  "The upload session was not found."),
                              "application/json")
        if time.time() > s["expires"]:
            with self.lock:
                self.sessions.pop(sid, None)
            return mock._send(h, 404, graph_error("ErrorItemNotFound",
                                                  "The upload session has expired."),
                              "application/json")
        if method == "GET":
            return mock._send(h, 200, _json(self._status(s)), "application/json")
        if method != "PUT":
            return mock._send(h, 405, graph_error("BadRequest", "Use PUT."), "application/json")
        err = self._check_chunk(h, s, body)
        if err:
            status, text = err
            if status != 416:
                self._problem("upload: " + text)
            out = dict(self._status(s)) if status == 416 else {}
            out["error"] = {"code": "InvalidRange" if status == 416 else "BadRequest",
                            "message": text}
            return mock._send(h, status, _json(out), "application/json")
        with self.lock:
            step = self.upload_script.pop(0) if self.upload_script else None
        if step is not None and step[0] == "http":
            hdrs = {"Retry-After": str(step[2])} if len(step) > 2 else {}
            return mock._send(h, step[1], graph_error(
                "TooManyRequests" if step[1] == 429 else "ServiceUnavailable", "Scripted."),
                "application/json", hdrs)
        if step is not None and step[0] == "reset":
            keep = (len(body) // 2) // CHUNK_ALIGN * CHUNK_ALIGN
            self._accept(sid, s, body[:keep])
            return self.drop(h)
        done = self._accept(sid, s, body)
        if done:
            loc = "%s/v1.0/users/%s/messages/%s/attachments/%s" % (
                self.base_url, urllib.parse.quote(self._draft_user(s)), s["draft"], done)
            return mock._send(h, 201, b"", "text/plain", {"Location": loc})
        return mock._send(h, 200, _json(self._status(s)), "application/json")

    def _draft_user(self, s):
        with self.lock:
            d = self.drafts.get(s["draft"])
        return d["user"] if d else ""

    @staticmethod
    def _check_chunk(h, s, body):
        """(status, reason) for a PUT that breaks the rules, or None."""
        ctype = (h.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/octet-stream":
            return 400, "Content-Type %r, not application/octet-stream" % ctype
        m = _RANGE.match(h.headers.get("Content-Range") or "")
        if not m:
            return 400, "Content-Range %r is not 'bytes start-end/total'" % (
                h.headers.get("Content-Range"),)
        start, end, total = (int(x) for x in m.groups())
        if total != s["size"]:
            return 400, "Content-Range total %d, the session's size is %d" % (total, s["size"])
        if end < start or end >= total:
            return 400, "Content-Range %d-%d outside 0-%d" % (start, end, total - 1)
        n = end - start + 1
        if n != len(body) or str(n) != (h.headers.get("Content-Length") or ""):
            return 400, "Content-Range says %d bytes, Content-Length %s, body %d" % (
                n, h.headers.get("Content-Length"), len(body))
        if n > MAX_CHUNK:
            return 400, "chunk of %d bytes over 4 MiB" % n
        if end + 1 < total and n % CHUNK_ALIGN:
            return 400, "chunk of %d bytes, not a multiple of 320 KiB" % n
        if start != s["received"]:
            return 416, "range starts at %d, expected %d" % (start, s["received"])
        return None

    def _accept(self, sid, s, data):
        """Store bytes; the attachment's id when the last byte arrived, else None."""
        with self.lock:
            s["sha"].update(data)
            s["received"] += len(data)
            if s["received"] < s["size"]:
                return None
            self.sessions.pop(sid, None)
            d = self.drafts.get(s["draft"])
            aid = "AAMkAtt" + uuid.uuid4().hex
            if d is not None:
                it = s["item"]
                d["attachments"].append({
                    "id": aid, "name": it.get("name"), "contentType": it.get("contentType"),
                    "size": s["size"], "isInline": bool(it.get("isInline")),
                    "contentId": it.get("contentId"), "sha256": s["sha"].hexdigest()})
            return aid
