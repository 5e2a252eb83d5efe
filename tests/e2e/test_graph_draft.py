#!/usr/bin/env python3
"""xoauthd's Graph draft client (proxy/submit/graph_draft.c) against the mock Graph mailbox,
one request per run of tests/rig/graph_draft_probe.c, the attachment bytes through
tests/rig/graph_upload_probe.c. The mock validates every Graph request against Microsoft's
metadata (../shared/graph-schema): validation_errors stays empty.

Proves: a draft is created from the MIME (streamed base64, text/plain) and keeps it byte for
byte; createUploadSession carries the attachment's name, type, Content-ID, inline flag and
size and returns an uploadUrl the upload client fills; send answers 202 and the mailbox holds
the sent message with the attachment reassembled (sha256) and no draft; a sent draft no longer
exists (404), which is how a lost send answer is resolved; delete removes a draft (204, then
404); a throttled request reports 429 and its Retry-After; a bad token is 401."""
import hashlib
import os
import subprocess

import rig as R
from rig.case import RigTestCase, main
from rig.mock_ews_graph import MockEwsGraph

USER = "scanner@contoso.test"
MIME = (b"From: Scanner <scanner@contoso.test>\r\nTo: boss@contoso.test\r\n"
        b"Subject: draft path\r\nMessage-ID: <draft-1@test>\r\nMIME-Version: 1.0\r\n\r\n"
        b"the scan follows\r\n")


def tool(name):
    b = os.environ.get("XOAUTHD_BIN") or R.xoauthd_bin()
    return os.path.join(os.path.dirname(b), "tests", name)


class GraphDraftTest(RigTestCase):
    RIG = {"mail_servers": False, "needs_xoauthd": False}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.mock = MockEwsGraph(cls.rig.certs, introspection_url=cls.rig.idp.introspection_url)
        cls.addClassCleanup(cls.mock.stop)
        cls.rig.idp.seed_user(USER)
        cls.token = cls.rig.idp.control("mint", username=USER)["access_token"]
        cls.dir = cls.rig.path("graph-draft")
        os.makedirs(cls.dir, exist_ok=True)

    def setUp(self):
        if not os.path.exists(tool("graph_draft_probe")):
            self.skipTest("graph_draft_probe not built")
        self.mock.reset()

    def run_tool(self, argv):
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        return dict(l.split("=", 1) for l in r.stdout.decode().splitlines() if "=" in l)

    def probe(self, *args, token=None):
        return self.run_tool([tool("graph_draft_probe"), self.mock.graph_url, self.rig.ca_file,
                              token or self.token, USER] + list(args))

    def create(self):
        path = os.path.join(self.dir, "m.eml")
        with open(path, "wb") as f:
            f.write(MIME)
        out = self.probe("create", path)
        self.assertEqual((out["ok"], out["http_status"]), ("1", "201"), out)
        return out["value"]

    def test_create_session_upload_send(self):
        mid = self.create()
        self.assertEqual(self.mock.mailbox.drafts[mid]["mime"], MIME)
        self.assertEqual(self.mock.of_kind("graph-mailbox")[-1]["content_type"], "text/plain")
        data = os.urandom(5 * 1024 * 1024 + 11)
        out = self.probe("session", mid, "scan.pdf", str(len(data)), "application/pdf",
                         "scan1@test", "0")
        self.assertEqual((out["ok"], out["http_status"]), ("1", "201"), out)
        item = self.mock.of_kind("graph-mailbox")[-1]
        self.assertIn(b'"contentId":"scan1@test"', item["body"])
        path = os.path.join(self.dir, "att.bin")
        with open(path, "wb") as f:
            f.write(data)
        up = self.run_tool([tool("graph_upload_probe"), out["value"], self.rig.ca_file, path,
                            "30"])
        self.assertEqual(up["ok"], "1", up)
        out = self.probe("send", mid)
        self.assertEqual((out["ok"], out["http_status"]), ("1", "202"), out)
        sent = self.mock.mailbox.sent
        self.assertEqual(len(sent), 1)
        self.assertEqual(sent[0]["mime"], MIME)
        att = sent[0]["attachments"][0]
        self.assertEqual((att["name"], att["contentType"], att["contentId"], att["isInline"],
                          att["sha256"]),
                         ("scan.pdf", "application/pdf", "scan1@test", False,
                          hashlib.sha256(data).hexdigest()))
        self.assertEqual(self.mock.mailbox.drafts, {})
        # A sent draft is gone from the mailbox: how a lost send answer is told apart.
        out = self.probe("exists", mid)
        self.assertEqual((out["ok"], out["http_status"]), ("0", "404"), out)
        self.assertEqual(self.mock.validation_errors, [])

    def test_exists_and_delete(self):
        mid = self.create()
        out = self.probe("exists", mid)
        self.assertEqual((out["ok"], out["http_status"]), ("1", "200"), out)
        out = self.probe("delete", mid)
        self.assertEqual((out["ok"], out["http_status"]), ("1", "204"), out)
        self.assertEqual(self.mock.mailbox.deleted, [mid])
        out = self.probe("exists", mid)
        self.assertEqual(out["http_status"], "404")
        self.assertEqual(self.mock.mailbox.sent, [])
        self.assertEqual(self.mock.validation_errors, [])

    def test_throttled_and_bad_token(self):
        mid = self.create()
        self.mock.graph_script.append(("http", 429, 7))
        out = self.probe("send", mid)
        self.assertEqual((out["ok"], out["http_status"], out["retry_after"]), ("0", "429", "7"))
        self.assertEqual(self.mock.mailbox.sent, [])
        out = self.probe("send", mid, token="not-a-token")
        self.assertEqual((out["ok"], out["http_status"]), ("0", "401"), out)
        self.assertEqual(out["code"], "InvalidAuthenticationToken")
        self.assertEqual(self.mock.validation_errors, [])


if __name__ == "__main__":
    main()
