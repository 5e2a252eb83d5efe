"""The reusable EWS client (proxy/submit/ews.c) against the mock EWS endpoint, one operation per run of
tests/rig/ews_probe.c: CreateItem SaveOnly (append), GetItem with MIME, CopyItem, UpdateItem
(message:IsRead), DeleteItem and DeleteFolder (HardDelete), a cancelled call, and a rejected
token. Every request is validated against Microsoft's schema by the mock."""
import os
import subprocess
import unittest

import rig as R
from rig.case import RigTestCase
from rig.mock_ews_graph import MockEwsGraph

MAILBOX = "ops@contoso.test"


def probe_bin():
    b = os.environ.get("XOAUTHD_BIN") or R.xoauthd_bin()
    return os.path.join(os.path.dirname(b), "tests", "ews_probe")


class EwsOpsTest(RigTestCase):
    RIG = {"mail_servers": False, "needs_xoauthd": False}   # ews_probe talks to the mock

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.mock = MockEwsGraph(cls.rig.certs, introspection_url=cls.rig.idp.introspection_url)
        cls.addClassCleanup(cls.mock.stop)
        cls.rig.idp.seed_user(MAILBOX)
        cls.token = cls.rig.idp.control("mint", username=MAILBOX)["access_token"]
        cls.dir = cls.rig.path("ews-ops")
        os.makedirs(cls.dir, exist_ok=True)

    def probe(self, *args, token=None):
        r = subprocess.run([probe_bin(), self.mock.ews_url, self.rig.ca_file, token or self.token,
                            MAILBOX] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        out = dict(l.split("=", 1) for l in r.stdout.decode().splitlines() if "=" in l)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.assertEqual(out.get("loop_close"), "0")
        return out

    def test_operations(self):
        if not os.path.exists(probe_bin()):
            self.skipTest("ews_probe not built")
        mime = b"From: a@contoso.test\r\nSubject: appended\r\n\r\nbody\r\n.dot\r\n"
        path = os.path.join(self.dir, "m.eml")
        with open(path, "wb") as f:
            f.write(mime)
        out = self.probe("save", "dist:inbox", path)
        self.assertEqual(out["outcome"], "ok", out)
        a = out["item_id"]
        self.assertTrue(a)
        self.assertEqual(self.mock.items[a]["folder"], "inbox")
        self.assertEqual(self.mock.items[a]["mime"], mime)
        save_req = self.mock.of_kind("ews")[-1]
        self.assertEqual(save_req["disposition"], "SaveOnly")
        self.assertIn(b'PropertyTag="3591"', save_req["body"], "appended, not a draft")

        got = os.path.join(self.dir, "got.eml")
        out = self.probe("get", a, got)
        self.assertEqual(out["outcome"], "ok", out)
        with open(got, "rb") as f:
            self.assertEqual(f.read(), mime)
        self.assertEqual(out["item_id"], a)

        out = self.probe("copy", a, "dist:drafts")
        self.assertEqual(out["outcome"], "ok", out)
        b = out["item_id"]
        self.assertNotEqual(a, b)
        self.assertEqual(self.mock.items[b]["folder"], "drafts")

        out = self.probe("set-read", b, self.mock.items[b]["change_key"], "1")
        self.assertEqual(out["outcome"], "ok", out)
        self.assertTrue(self.mock.items[b]["is_read"])

        out = self.probe("delete", a)
        self.assertEqual(out["outcome"], "ok", out)
        self.assertNotIn(a, self.mock.items)
        self.assertIn(b'DeleteType="HardDelete"', self.mock.of_kind("ews")[-1]["body"])
        out = self.probe("get", a, got)
        self.assertEqual((out["outcome"], out["code"]), ("error", "ErrorItemNotFound"))

        out = self.probe("delete-folder", "dist:drafts")
        self.assertEqual(out["outcome"], "ok", out)
        self.assertNotIn("drafts", self.mock.folders)

        n = len(self.mock.of_kind("ews"))
        out = self.probe("cancel", b)
        self.assertEqual(out["outcome"], "cancelled")
        self.assertNotIn("class", out, "no callback after a cancel")
        self.assertLessEqual(len(self.mock.of_kind("ews")), n + 1)

        out = self.probe("get", b, got, token="not-a-live-token")
        self.assertEqual((out["outcome"], out["http_status"]), ("http", "401"))
        self.assertEqual(self.mock.validation_errors, [])
        for r in self.mock.of_kind("ews"):
            self.assertEqual(r["headers"].get("X-AnchorMailbox"), MAILBOX)


if __name__ == "__main__":
    unittest.main(verbosity=2)
