"""EWS / Graph submission with large messages and broken clients: a 20 MB message goes through
EWS (spooled to disk on the way) and is refused by Graph (552) unless the account names a
fallback (graph, ews / graph, smtp), SIZE is enforced, and a client that drops in the middle of
DATA causes no request at all and leaves no spool file."""
import hashlib
import smtplib
import socket
import time

from ews_graph_base import EwsGraphCase, PASSWORD, message, plain_ir, read_reply
from rig.fake_smtp import FakeSmtp


def big_body(size):
    line = b"".join(bytes([65 + (i % 26)]) for i in range(76)) + b"\r\n"
    out = bytearray()
    i = 0
    while len(out) < size:
        # a few dot-leading lines so that stuffing is exercised in the large path too
        out += (b"." if i % 1000 == 0 else b"") + line
        i += 1
    return bytes(out)


class EwsGraphBigTest(EwsGraphCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.big = message("big scan", body=big_body(20 * 1024 * 1024))
        cls.fake = FakeSmtp()

    @classmethod
    def tearDownClass(cls):
        cls.fake.stop()
        super().tearDownClass()

    def test_20mb_through_ews(self):
        x = self.xoauthd("ews")
        t0 = time.monotonic()
        code, text = self.send(x, self.big)
        self.assertEqual(code, 250, text)
        reqs = self.mock.of_kind("ews")
        self.assertEqual(len(reqs), 1)
        self.assertEqual(hashlib.sha256(reqs[0]["mime"]).hexdigest(),
                         hashlib.sha256(self.big).hexdigest(), "20 MB arrived unchanged")
        self.assertEqual(self.mock.validation_errors, [])
        self.assertLess(time.monotonic() - t0, 40)
        self.assertIn("spool_start", x.log_text(), "the message went through the spool file")
        self.assert_no_spool(x)

    def test_20mb_refused_by_graph(self):
        x = self.xoauthd("graph")
        code, text = self.send(x, self.big)
        self.assertEqual(code, 552, text)
        self.assertIn("5.3.4", text)
        self.assertEqual(self.mock.of_kind("graph"), [], "nothing was sent to Graph")
        self.assertIn("add a fallback", x.log_text())
        self.assert_no_spool(x)
        # a small one still goes through Graph
        code, text = self.send(x, message("small after big"))
        self.assertEqual(code, 250, text)
        self.assertEqual(len(self.mock.of_kind("graph")), 1)

    def test_20mb_graph_falls_back_to_ews(self):
        x = self.xoauthd("graph, ews")
        code, text = self.send(x, self.big, rcpts=("boss@contoso.test", "bcc@contoso.test"))
        self.assertEqual(code, 250, text)
        self.assertEqual(self.mock.of_kind("graph"), [])
        reqs = self.mock.of_kind("ews")
        self.assertEqual(len(reqs), 1)
        self.assertEqual(reqs[0]["mime"], b"Bcc: bcc@contoso.test\r\n" + self.big)
        self.assertIn("event=submit_fallback from=graph to=ews", x.log_text())

    def test_graph_falls_back_to_smtp(self):
        x = self.xoauthd("graph, smtp",
                         provider_extra={"smtp": "127.0.0.1:%d none" % self.fake.port})
        n0 = len(self.fake.messages)
        msg = message("5mb", body=big_body(5 * 1024 * 1024))
        code, text = self.send(x, msg, rcpts=("boss@contoso.test", "hidden@contoso.test"))
        self.assertEqual(code, 250, text)
        self.assertEqual(self.mock.of_kind("graph"), [])
        self.assertEqual(len(self.fake.messages), n0 + 1)
        mail_from, rcpts, data = self.fake.messages[-1]
        self.assertEqual(rcpts, ["boss@contoso.test", "hidden@contoso.test"])
        # SMTP takes the envelope: no Bcc: line, the bytes as sent (dot-stuffed on the wire)
        self.assertEqual(data, msg)

    def test_graph_falls_back_to_ews_with_ews_scope(self):
        """graph, ews: Graph and EWS are different resources, so each path asks the IdP for a
        token of its own scope (scope for the first path, ews_scope for the fallback); with
        check_scope on, the mocks refuse a token issued for another resource."""
        graph_scope = "https://graph.microsoft.com/Mail.Send offline_access"
        ews_scope = "https://outlook.office365.com/EWS.AccessAsUser.All offline_access"
        x = self.xoauthd("graph, ews", extra={"scope": graph_scope, "ews_scope": ews_scope})
        self.mock.check_scope = True
        code, text = self.send(x, message("scoped small"))
        self.assertEqual(code, 250, text)
        msg = message("scoped 5mb", body=big_body(5 * 1024 * 1024))
        code, text = self.send(x, msg)
        self.assertEqual(code, 250, text)
        graph, ews = self.mock.of_kind("graph"), self.mock.of_kind("ews")
        self.assertEqual(len(graph), 1)
        self.assertEqual(len(ews), 1)
        self.assertEqual(graph[0]["token_scope"], graph_scope)
        self.assertEqual(ews[0]["token_scope"], ews_scope)
        self.assertFalse(ews[0].get("scope_refused"))
        self.assertEqual(ews[0]["mime"], msg)
        log = x.log_text()
        self.assertIn("event=submit_fallback from=graph to=ews", log)
        self.assertIn('scope="%s"' % ews_scope, log)

    def test_fallback_token_for_the_wrong_resource_is_refused(self):
        """The knob works: an EWS request with an SMTP-scoped token gets 401 (then 451)."""
        graph_scope = "https://graph.microsoft.com/.default"
        x = self.xoauthd("graph, ews", extra={
            "scope": graph_scope,
            "ews_scope": "https://outlook.office.com/SMTP.Send offline_access"})
        self.mock.check_scope = True
        code, text = self.send(x, message("wrong scope 5mb", body=big_body(5 * 1024 * 1024)))
        self.assertEqual(code, 451, text)
        ews = self.mock.of_kind("ews")
        self.assertTrue(ews and all(r.get("scope_refused") for r in ews))
        self.assertIn("ews_scope", x.log_text())

    def test_size_limit(self):
        x = self.xoauthd("ews", key="ews-small-limit")
        x2 = x
        with smtplib.SMTP("127.0.0.1", x2.port("smtp"), timeout=60) as s:
            s.ehlo("printer.local")
            s.login("scanner", PASSWORD)
            code, _ = s.mail(x.user, ["SIZE=%d" % (100 * 1024 * 1024)])
            self.assertEqual(code, 552)
        self.assertEqual(self.mock.of_kind("ews"), [])

    def drop_during_data(self, x, nbytes):
        s = socket.create_connection(("127.0.0.1", x.port("smtp")), timeout=30)
        f = s.makefile("rb")
        read_reply(f)
        s.sendall(b"EHLO printer.local\r\n")
        read_reply(f)
        s.sendall(b"AUTH PLAIN " + plain_ir("scanner", PASSWORD).encode() + b"\r\n")
        self.assertTrue(read_reply(f).startswith("235"))
        s.sendall(b"MAIL FROM:<%s>\r\n" % x.user.encode())
        self.assertTrue(read_reply(f).startswith("250"))
        s.sendall(b"RCPT TO:<boss@contoso.test>\r\n")
        self.assertTrue(read_reply(f).startswith("250"))
        s.sendall(b"DATA\r\n")
        self.assertTrue(read_reply(f).startswith("354"))
        s.sendall(message("dropped", body=big_body(nbytes)))
        time.sleep(0.3)
        f.close()
        s.close()
        deadline = time.monotonic() + 10
        while "client_gone_during_data" not in x.log_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn("client_gone_during_data", x.log_text())
        time.sleep(0.3)

    def test_client_drops_during_data(self):
        for submit in ("ews", "graph"):
            x = self.xoauthd(submit)
            self.mock.reset()
            self.drop_during_data(x, 1000)             # in memory
            self.drop_during_data(x, 3 * 1024 * 1024)  # spooled
            self.assertEqual(self.mock.requests, [], "a partial message reached the provider")
            self.assert_no_spool(x)


if __name__ == "__main__":
    import unittest
    unittest.main(verbosity=2)
