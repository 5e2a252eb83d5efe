#!/usr/bin/env python3
"""Self-check of the mock Graph mailbox (tests/rig/mock_graph_drafts.py), WITHOUT xoauthd: the
tests of the draft path prove nothing unless the mock keeps Microsoft's rules
(docs/graph-large-messages.md).

Proves: a draft created from MIME, an attachment uploaded in 320 KiB-aligned chunks and sent
is kept reassembled (sha256 equal) and leaves Drafts; the upload URL refuses an Authorization
header; Content-Range, Content-Length, alignment and the 4 MiB chunk limit are checked and
recorded as problems; an out-of-order chunk gets 416 with nextExpectedRanges; a scripted reset
keeps half of the chunk, GET on the upload URL tells where to resume; an expired session is
gone; 429 with Retry-After on a PUT stores nothing; a lost send answer still sends; delete
removes a draft; 150 MB is the largest attachment; every Graph request is validated against
Microsoft's metadata (an invalid one is answered 400 and recorded).
"""
import base64
import hashlib
import json
import os
import time
import urllib.parse

from rig.case import RigTestCase, main
from rig.graph_test_client import GraphTestClient
from rig.mock_ews_graph import MockEwsGraph
from rig.mock_graph_drafts import CHUNK_ALIGN, MIB

USER = "scanner@contoso.test"
MIME = (b"From: Scanner <scanner@contoso.test>\r\nTo: boss@contoso.test\r\n"
        b"Subject: scan\r\nMessage-ID: <scan@test>\r\nMIME-Version: 1.0\r\n\r\nsee attached\r\n")


class MockGraphDrafts(RigTestCase):
    RIG = {"needs_xoauthd": False, "mail_servers": False}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.mock = MockEwsGraph(cls.rig.certs)     # no introspection: any bearer token is good
        cls.addClassCleanup(cls.mock.stop)
        cls.client = GraphTestClient(cls.mock, cls.rig.certs["ca"], USER)

    def setUp(self):
        self.mock.reset()

    # -- through the test client --
    def request(self, *a, **kw):
        return self.client.request(*a, **kw)

    def graph(self, *a, **kw):
        return self.client.graph(*a, **kw)

    def draft(self):
        return self.client.draft(MIME)

    def session(self, mid, size, name="scan.pdf"):
        st, s = self.client.session(mid, size, name)
        self.assertEqual(st, 201, s)
        self.assertEqual(s["nextExpectedRanges"], ["0-"])
        self.assertIn("expirationDateTime", s)
        return s["uploadUrl"]

    def put(self, url, data, start, total, **over):
        h = {"Content-Type": "application/octet-stream",
             "Content-Range": "bytes %d-%d/%d" % (start, start + len(data) - 1, total)}
        h.update(over)
        return self.request("PUT", url, data, h, bearer=False)

    def upload(self, url, data, chunk=12 * CHUNK_ALIGN):
        last = None
        for off in range(0, len(data), chunk):
            last = self.put(url, data[off:off + chunk], off, len(data))
            self.assertIn(last[0], (200, 201), last)
        return last

    # -- tests --
    def test_draft_upload_send_reassembled(self):
        data = os.urandom(9 * MIB + 12345)
        mid = self.draft()
        url = self.session(mid, len(data))
        st, hdrs, _ = self.upload(url, data)
        self.assertEqual(st, 201)
        self.assertIn("/attachments/", hdrs["Location"])
        self.assertEqual(self.graph("GET", "messages/" + urllib.parse.quote(mid))[0], 200)
        self.assertEqual(self.graph("POST", "messages/%s/send" % urllib.parse.quote(mid))[0],
                         202)
        self.assertEqual(self.graph("GET", "messages/" + urllib.parse.quote(mid))[0], 404)
        sent = self.mock.mailbox.sent
        self.assertEqual(len(sent), 1)
        self.assertEqual(sent[0]["mime"], MIME)
        att = sent[0]["attachments"]
        self.assertEqual([(a["name"], a["size"], a["sha256"]) for a in att],
                         [("scan.pdf", len(data), hashlib.sha256(data).hexdigest())])
        self.assertEqual(self.mock.mailbox.drafts, {})
        self.assertEqual(self.mock.validation_errors, [])

    def test_upload_url_refuses_authorization(self):
        url = self.session(self.draft(), 4 * MIB)
        st = self.request("PUT", url, b"x" * CHUNK_ALIGN, {
            "Content-Type": "application/octet-stream",
            "Content-Range": "bytes 0-%d/%d" % (CHUNK_ALIGN - 1, 4 * MIB)})[0]
        self.assertEqual(st, 401)
        self.assertTrue(any("Authorization" in e for e in self.mock.validation_errors))

    def test_chunk_rules(self):
        total = 8 * MIB
        url = self.session(self.draft(), total)
        cases = [
            (b"x" * (CHUNK_ALIGN + 1), {}, "multiple of 320 KiB"),
            (b"x" * (4 * MIB + CHUNK_ALIGN), {}, "over 4 MiB"),
            (b"x" * CHUNK_ALIGN, {"Content-Range": "bytes 0-9/%d" % total}, "Content-Range says"),
            (b"x" * CHUNK_ALIGN, {"Content-Range": "0-%d" % (CHUNK_ALIGN - 1)}, "is not 'bytes"),
            (b"x" * CHUNK_ALIGN, {"Content-Range": "bytes 0-%d/5" % (CHUNK_ALIGN - 1)},
             "session's size"),
            (b"x" * CHUNK_ALIGN, {"Content-Type": "application/pdf"}, "octet-stream"),
        ]
        for data, over, reason in cases:
            with self.mock.lock:
                self.mock.validation_errors = []
            st = self.put(url, data, 0, total, **over)[0]
            self.assertEqual(st, 400, reason)
            self.assertTrue(any(reason in e for e in self.mock.validation_errors),
                            (reason, self.mock.validation_errors))
        # Nothing was stored: the session still expects byte 0.
        st, _, body = self.request("GET", url, bearer=False)
        self.assertEqual((st, json.loads(body)["nextExpectedRanges"]), (200, ["0-"]))

    def test_out_of_order_and_reset_resume(self):
        data = os.urandom(3 * 12 * CHUNK_ALIGN + 999)
        url = self.session(self.draft(), len(data))
        chunk = 12 * CHUNK_ALIGN
        self.assertEqual(self.put(url, data[:chunk], 0, len(data))[0], 200)
        # A chunk that skips ahead: 416 and where to continue; not a rule broken.
        st, _, body = self.put(url, data[2 * chunk:3 * chunk], 2 * chunk, len(data))
        self.assertEqual((st, json.loads(body)["nextExpectedRanges"]), (416, ["%d" % chunk]))
        # A reset in the middle of the second chunk: half of it (aligned) was stored.
        self.mock.mailbox.upload_script.append(("reset",))
        self.assertIsNone(self.put(url, data[chunk:2 * chunk], chunk, len(data)))
        st, _, body = self.request("GET", url, bearer=False)
        at = int(json.loads(body)["nextExpectedRanges"][0])
        self.assertEqual(at, chunk + 6 * CHUNK_ALIGN)
        for off in range(at, len(data), chunk):
            st = self.put(url, data[off:off + chunk], off, len(data))[0]
        self.assertEqual(st, 201)
        self.assertEqual(self.mock.validation_errors, [])

    def test_429_stores_nothing(self):
        data = os.urandom(2 * CHUNK_ALIGN)
        mid = self.draft()
        url = self.session(mid, len(data))
        self.mock.mailbox.upload_script.append(("http", 429, 2))
        st, hdrs, _ = self.put(url, data, 0, len(data))
        self.assertEqual((st, hdrs.get("Retry-After")), (429, "2"))
        self.assertEqual(self.put(url, data, 0, len(data))[0], 201)
        self.assertEqual(self.mock.mailbox.drafts[mid]["attachments"][0]["sha256"],
                         hashlib.sha256(data).hexdigest())

    def test_session_expires(self):
        self.mock.mailbox.session_lifetime = 0.3
        url = self.session(self.draft(), 4 * MIB)
        time.sleep(0.5)
        self.assertEqual(self.put(url, b"x" * CHUNK_ALIGN, 0, 4 * MIB)[0], 404)
        self.assertEqual(self.mock.validation_errors, [])

    def test_lost_send_answer_still_sent(self):
        mid = self.draft()
        self.mock.graph_script.append(("lose",))
        self.assertIsNone(self.graph("POST", "messages/%s/send" % urllib.parse.quote(mid)))
        self.assertEqual(self.graph("GET", "messages/" + urllib.parse.quote(mid))[0], 404)
        self.assertEqual(len(self.mock.mailbox.sent), 1)

    def test_delete_draft(self):
        mid = self.draft()
        url = self.session(mid, 4 * MIB)
        self.assertEqual(self.graph("DELETE", "messages/" + urllib.parse.quote(mid))[0], 204)
        self.assertEqual(self.graph("GET", "messages/" + urllib.parse.quote(mid))[0], 404)
        self.assertEqual(self.mock.mailbox.drafts, {})
        self.assertEqual(self.mock.mailbox.deleted, [mid])
        # Its upload sessions went with it.
        self.assertEqual(self.put(url, b"x" * CHUNK_ALIGN, 0, 4 * MIB)[0], 404)

    def test_limits(self):
        mid = self.draft()
        item = {"AttachmentItem": {"attachmentType": "file", "name": "big", "size": 150 * MIB + 1}}
        st, _, body = self.graph("POST", "messages/%s/attachments/createUploadSession"
                                 % urllib.parse.quote(mid), json.dumps(item).encode())
        self.assertEqual(st, 400)
        self.assertEqual(json.loads(body)["error"]["code"], "ErrorAttachmentSizeLimitExceeded")
        self.session(mid, 150 * MIB)
        # A create-message request over 4 MB is the client's mistake.
        st = self.graph("POST", "messages", base64.b64encode(b"x" * (3 * MIB + 1)),
                        "text/plain")[0]
        self.assertEqual(st, 413)
        self.assertTrue(any("4 MB" in e for e in self.mock.validation_errors))

    def test_requests_validated_against_graph_metadata(self):
        mid = self.draft()
        item = {"AttachmentItem": {"attachmentType": "file", "nmae": "typo", "size": 4 * MIB}}
        st, _, _ = self.graph("POST", "messages/%s/attachments/createUploadSession"
                              % urllib.parse.quote(mid), json.dumps(item).encode())
        self.assertEqual(st, 400)
        self.assertTrue(any("nmae" in e for e in self.mock.validation_errors),
                        self.mock.validation_errors)
        with self.mock.lock:
            self.mock.validation_errors = []
        # send takes no body parameters.
        st = self.graph("POST", "messages/%s/send" % urllib.parse.quote(mid), b'{"x": 1}')[0]
        self.assertEqual(st, 400)
        self.assertNotEqual(self.mock.validation_errors, [])
        self.assertEqual(len(self.mock.mailbox.sent), 0)


if __name__ == "__main__":
    main()
