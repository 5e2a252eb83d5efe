#!/usr/bin/env python3
"""xoauthd's Graph upload-session client (proxy/submit/graph_upload.c) against the mock Graph
mailbox, one upload per run of tests/rig/graph_upload_probe.c. The mock keeps Microsoft's
rules (no Authorization header on the upload URL, Content-Range, 320 KiB alignment, at most
4 MiB per PUT; any breach is a validation error) and reassembles the attachment.

Proves: a 10 MB file arrives byte-equal (sha256) in ceil(size / chunk) PUTs; a connection reset
in the middle of a chunk resumes from the service's nextExpectedRanges instead of starting over;
429 with Retry-After is waited out; throttling longer than the budget fails; an expired session
fails (the caller deletes the draft)."""
import hashlib
import os
import subprocess
import time

import rig as R
from rig.case import RigTestCase, main
from rig.graph_test_client import GraphTestClient
from rig.mock_ews_graph import MockEwsGraph

USER = "scanner@contoso.test"
MIME = b"From: scanner@contoso.test\r\nTo: boss@contoso.test\r\nSubject: up\r\n\r\nx\r\n"
CHUNK = 12 * 320 * 1024


def probe_bin():
    b = os.environ.get("XOAUTHD_BIN") or R.xoauthd_bin()
    return os.path.join(os.path.dirname(b), "tests", "graph_upload_probe")


class GraphUploadTest(RigTestCase):
    RIG = {"mail_servers": False, "needs_xoauthd": False}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.mock = MockEwsGraph(cls.rig.certs)
        cls.addClassCleanup(cls.mock.stop)
        cls.client = GraphTestClient(cls.mock, cls.rig.ca_file, USER)
        cls.dir = cls.rig.path("graph-upload")
        os.makedirs(cls.dir, exist_ok=True)

    def setUp(self):
        if not os.path.exists(probe_bin()):
            self.skipTest("graph_upload_probe not built")
        self.mock.reset()

    def upload(self, data, budget=30, before=None):
        path = os.path.join(self.dir, "att.bin")
        with open(path, "wb") as f:
            f.write(data)
        mid = self.client.draft(MIME)
        st, s = self.client.session(mid, len(data))
        self.assertEqual(st, 201, s)
        if before:
            before()
        t0 = time.monotonic()
        r = subprocess.run([probe_bin(), s["uploadUrl"], self.rig.ca_file, path, str(budget)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        out = dict(l.split("=", 1) for l in r.stdout.decode().splitlines() if "=" in l)
        out["elapsed"] = time.monotonic() - t0
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        return mid, out

    def attachment_sha(self, mid):
        att = self.mock.mailbox.drafts[mid]["attachments"]
        self.assertEqual(len(att), 1)
        return att[0]["sha256"]

    def test_upload_byte_equal(self):
        data = os.urandom(10 * 1024 * 1024 + 17)
        mid, out = self.upload(data)
        self.assertEqual(out["ok"], "1", out)
        self.assertEqual(out["http_status"], "201")
        self.assertEqual(int(out["puts"]), -(-len(data) // CHUNK))
        self.assertEqual(self.attachment_sha(mid), hashlib.sha256(data).hexdigest())
        ups = self.mock.of_kind("upload")
        self.assertTrue(ups and all("Authorization" not in r["headers"] for r in ups))
        self.assertEqual(self.mock.validation_errors, [])

    def test_reset_mid_upload_resumes(self):
        data = os.urandom(3 * CHUNK + 5)
        mid, out = self.upload(data, before=lambda: self.mock.mailbox.upload_script.extend(
            [None, ("reset",)]))
        self.assertEqual(out["ok"], "1", out)
        self.assertEqual(out["resumes"], "1")
        # Resumed from the middle of chunk 2 (half of it was stored): 0-1C, 1C-reset,
        # 1.5C-2.5C, 2.5C-end. Starting over would have taken five.
        self.assertEqual(out["puts"], "4")
        puts = [r for r in self.mock.of_kind("upload") if r["headers"].get("Content-Range")]
        self.assertIn("bytes %d-" % (CHUNK + 6 * 320 * 1024), puts[2]["headers"]["Content-Range"])
        self.assertEqual(self.attachment_sha(mid), hashlib.sha256(data).hexdigest())
        self.assertEqual(self.mock.validation_errors, [])

    def test_429_waited_out(self):
        data = os.urandom(2 * CHUNK)
        mid, out = self.upload(data, before=lambda: self.mock.mailbox.upload_script.extend(
            [None, ("http", 429, 1)]))
        self.assertEqual(out["ok"], "1", out)
        self.assertEqual(out["waits"], "1")
        self.assertGreaterEqual(out["elapsed"], 1.0)
        self.assertEqual(self.attachment_sha(mid), hashlib.sha256(data).hexdigest())
        self.assertEqual(self.mock.validation_errors, [])

    def test_throttled_beyond_budget_fails(self):
        data = os.urandom(CHUNK)
        _, out = self.upload(data, budget=3, before=lambda: self.mock.mailbox.upload_script.append(
            ("http", 429, 60)))
        self.assertEqual(out["ok"], "0", out)
        self.assertEqual(out["http_status"], "429")
        self.assertIn("budget", out["error"])
        self.assertLess(out["elapsed"], 10)

    def test_expired_session_fails(self):
        self.mock.mailbox.session_lifetime = 0.2
        data = os.urandom(CHUNK)
        _, out = self.upload(data, before=lambda: time.sleep(0.4))
        self.assertEqual((out["ok"], out["http_status"]), ("0", "404"), out)


if __name__ == "__main__":
    main()
