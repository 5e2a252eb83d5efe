"""A Postfix smarthost (tests/rig/smarthost.py) relaying through xoauthd with submit = ews and
submit = graph: the message reaches the mock EWS / Graph endpoint with Postfix's envelope
recipients (a Bcc-only one as Bcc:), and a temporary failure at the provider leaves the
message in Postfix's deferred queue until a retry delivers it (never lost, never bounced)."""
import time
import unittest

from ews_graph_base import EwsGraphCase, PASSWORD, message
from rig.smarthost import SmartHost


class EwsGraphSmarthostTest(EwsGraphCase):
    def smarthost(self, x, name):
        sh = SmartHost(self.rig, x.port("smtp"), "scanner", PASSWORD, name=name).start()
        self.addCleanup(sh.close)
        return sh

    def wait_requests(self, kind, n, timeout=20):
        deadline = time.monotonic() + timeout
        while len(self.mock.of_kind(kind)) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.mock.of_kind(kind)

    def run_path(self, submit):
        x = self.xoauthd(submit)
        sh = self.smarthost(x, "sh-" + submit)
        msg = message("via postfix %s" % submit, body=b"scanned page\r\n.dot line\r\n")
        sh.sendmail(x.user, ["boss@contoso.test", "hidden@contoso.test"], msg)
        sh.wait_queue_empty()
        reqs = self.wait_requests(submit, 1)
        self.assertEqual(len(reqs), 1)
        mime = reqs[0]["mime"]
        self.assertTrue(mime.startswith(b"Bcc: hidden@contoso.test\r\n"), mime[:200])
        self.assertIn(b"Subject: via postfix %s\r\n" % submit.encode(), mime)
        self.assertIn(b"scanned page\r\n.dot line\r\n", mime)

        # a temporary failure: deferred, then delivered by the retry
        self.mock.reset()
        script = self.mock.ews_script if submit == "ews" else self.mock.graph_script
        script.append(("http", 503, 3600))
        sh.sendmail(x.user, ["boss@contoso.test"], message("deferred %s" % submit))
        sh.wait_deferred(1)
        self.assertEqual(len(self.mock.of_kind(submit)), 1)
        sh.flush()
        sh.wait_queue_empty()
        reqs = self.wait_requests(submit, 2)
        self.assertEqual(len(reqs), 2)
        self.assertIn(b"Subject: deferred %s\r\n" % submit.encode(), reqs[1]["mime"])
        self.assertEqual(self.mock.validation_errors, [])

    def test_smarthost_ews(self):
        self.run_path("ews")

    def test_smarthost_graph(self):
        self.run_path("graph")


if __name__ == "__main__":
    unittest.main(verbosity=2)
