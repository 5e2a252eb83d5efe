"""The SMTP fault matrix: every way the upstream, the token endpoint or the client can
fail, each checked on both sides: what the client heard and what the fake upstream received.
The rule under test: the client hears 250 to the final dot only when the upstream accepted the
message; every other outcome is a 4xx (retry) or the upstream's own 5xx, and the upstream never
gets a complete message the client did not finish. Cases already in test_smtp_front.py
(Gmail challenge, 535 twice, token 500, upstream dies mid-DATA after 3 lines, client dies
mid-DATA with a dangling dot) and test_token_failures.py (hanging endpoint) are not repeated.

Every log and reply is also searched for every secret the tests used (assert_no_secrets)."""
import base64
import socket
import time

import rig as R
from rig import plain_ir, free_port
from rig.fake_smtp import FakeSmtp
from rig.fake_case import FakeUpstreamCase

USER = "scanner@example.com"
PASSWORD = "fault-pass;word-7Q"
CLIENT_SECRET = "fault-client-secret-value"


class FaultBase(FakeUpstreamCase):
    LOCAL_PASSWORD = PASSWORD
    CLIENT_SECRET = CLIENT_SECRET

    def setUp(self):
        super().setUp()
        self.rig.idp.reset_stats()
        self.fakes, self.clients, self.xs = [], [], []

    def tearDown(self):
        for c in self.clients:
            c.close()
        for f in self.fakes:
            f.stop()
        # Every case of the matrix: no secret in any log line or any reply.
        for x in self.xs:
            if x.running():
                x.stop()
            self.assert_no_secrets(x)

    def fake(self, **kw):
        f = FakeSmtp(**kw)
        self.fakes.append(f)
        return f

    def client(self, port):
        c = R.SmtpLines(port, timeout=30)  # keeps every reply in c.replies
        self.clients.append(c)
        return c

    def start(self, smtp, global_opts=None, **acct_extra):
        x = self.start_xoauthd({"smtp": {"tls": "none"}}, {"smtp": smtp}, "scanner", USER,
                               global_opts, **acct_extra)
        self.xs.append(x)
        return x

    def login(self, c):
        self.assertTrue(c.reply().startswith("220"))
        self.assertTrue(c.cmd("EHLO printer.local").startswith("250"))
        return c.cmd("AUTH PLAIN " + plain_ir("scanner", PASSWORD))

    def assert_no_secrets(self, x):
        """No log line and no reply the client heard carries a secret."""
        st = self.rig.idp.user_stats(USER)
        secrets = [s for s in list(st["access_tokens"]) + list(st["refresh_tokens_issued"]) +
                   [CLIENT_SECRET, PASSWORD, plain_ir("scanner", PASSWORD)] if s]
        texts = [x.log_text()] + ["".join(c.replies) for c in self.clients]
        for text in texts:
            for s in secrets:
                self.assertNotIn(s, text, "a secret reached a log or a reply")


class UpstreamConnectFaults(FaultBase):
    def test_upstream_refuses_connection(self):
        x = self.start("127.0.0.1:%d none" % free_port())
        c = self.client(x.port("smtp"))
        r = self.login(c)
        self.assertTrue(r.startswith("454 4.7.0"), r)
        # The session goes on: a MAIL without login is refused, not crashed.
        self.assertTrue(c.cmd("MAIL FROM:<a@example.com>").startswith("530"))
        self.assertTrue(c.cmd("QUIT").startswith("221"))
        x.stop()
        self.assertIn("event=upstream_login_failed account=scanner", x.log_text())
        self.assert_no_secrets(x)

    def test_upstream_tls_handshake_fails(self):
        # Implicit TLS towards a plain-text server: the handshake cannot succeed.
        fake = self.fake()
        x = self.start("127.0.0.1:%d implicit" % fake.port)
        c = self.client(x.port("smtp"))
        r = self.login(c)
        self.assertTrue(r.startswith("454 4.7.0"), r)
        self.assertFalse([l for l in fake.lines if l[:4].upper() in ("EHLO", "AUTH", "MAIL")],
                         "no command in the clear after a failed handshake")
        self.assertEqual(fake.messages, [])
        x.stop()
        self.assertIn("event=upstream_login_failed", x.log_text())
        self.assert_no_secrets(x)

    def test_upstream_closes_after_ehlo(self):
        fake = self.fake()
        fake.close_at = {"EHLO"}
        x = self.start("127.0.0.1:%d none" % fake.port)
        c = self.client(x.port("smtp"))
        self.assertTrue(self.login(c).startswith("454 4.7.0"))
        self.assertEqual([l.split()[0] for l in fake.lines], ["EHLO"])
        x.stop()
        self.assert_no_secrets(x)

    def test_upstream_closes_after_auth(self):
        fake = self.fake()
        fake.close_at = {"AUTH"}
        x = self.start("127.0.0.1:%d none" % fake.port)
        c = self.client(x.port("smtp"))
        self.assertTrue(self.login(c).startswith("454 4.7.0"))
        self.assertEqual(fake.messages, [])
        x.stop()
        self.assert_no_secrets(x)


class TransactionFaults(FaultBase):
    def logged_in(self, fake, **kw):
        x = self.start("127.0.0.1:%d none" % fake.port, **kw)
        c = self.client(x.port("smtp"))
        r = self.login(c)
        self.assertTrue(r.startswith("235"), r)
        return x, c

    def send_body(self, c, body=b"Subject: f\r\n\r\nbody line\r\n"):
        c.sock.sendall(body + b".\r\n")
        return c.reply()

    def send_ok(self, c):
        """One whole transaction on c that the upstream accepts."""
        self.assertTrue(c.cmd("MAIL FROM:<a@example.com>").startswith("250"))
        self.assertTrue(c.cmd("RCPT TO:<b@example.com>").startswith("250"))
        self.assertTrue(c.cmd("DATA").startswith("354"))
        self.assertTrue(self.send_body(c).startswith("250"))

    def test_upstream_closes_after_mail(self):
        fake = self.fake()
        fake.close_at = {"MAIL"}
        x, c = self.logged_in(fake)
        r = c.cmd("MAIL FROM:<a@example.com>")
        self.assertEqual(r[0], "4", r)
        # The client may retry in the same session: the next login reaches a healthy upstream.
        fake.close_at = set()
        self.send_ok(c)
        self.assertEqual(len(fake.messages), 1)
        x.stop()
        self.assert_no_secrets(x)

    def test_upstream_closes_after_rcpt(self):
        fake = self.fake()
        fake.close_at = {"RCPT"}
        x, c = self.logged_in(fake)
        self.assertTrue(c.cmd("MAIL FROM:<a@example.com>").startswith("250"))
        r = c.cmd("RCPT TO:<b@example.com>")
        self.assertEqual(r[0], "4", r)
        r = c.cmd("DATA")
        self.assertIn(r[0], "45", "no DATA after the transaction was lost: %r" % r)
        self.assertEqual(fake.messages, [])
        x.stop()

    def test_upstream_closes_at_data_command(self):
        fake = self.fake()
        fake.close_at = {"DATA"}
        x, c = self.logged_in(fake)
        self.assertTrue(c.cmd("MAIL FROM:<a@example.com>").startswith("250"))
        self.assertTrue(c.cmd("RCPT TO:<b@example.com>").startswith("250"))
        r = c.cmd("DATA")
        self.assertEqual(r[0], "4", r)
        self.assertEqual(fake.messages, [])
        x.stop()

    def test_upstream_closes_in_middle_of_data_first_line(self):
        fake = self.fake()
        fake.close_after_data_lines = 1
        x, c = self.logged_in(fake)
        self.assertTrue(c.cmd("MAIL FROM:<a@example.com>").startswith("250"))
        self.assertTrue(c.cmd("RCPT TO:<b@example.com>").startswith("250"))
        self.assertTrue(c.cmd("DATA").startswith("354"))
        r = self.send_body(c, b"Subject: f\r\n\r\n" + b"x" * 900 + b"\r\n" * 3000)
        self.assertEqual(r[0], "4", r)
        self.assertEqual(fake.messages, [])
        self.assertEqual(fake.dotted, [])
        x.stop()

    def test_upstream_closes_after_final_dot(self):
        fake = self.fake()
        fake.close_at = {"DATA_END"}
        x, c = self.logged_in(fake)
        self.assertTrue(c.cmd("MAIL FROM:<a@example.com>").startswith("250"))
        self.assertTrue(c.cmd("RCPT TO:<b@example.com>").startswith("250"))
        self.assertTrue(c.cmd("DATA").startswith("354"))
        r = self.send_body(c)
        self.assertTrue(r.startswith("451"), "no verdict from upstream: retry, never 250: %r" % r)
        self.assertEqual(len(fake.dotted), 1, "the upstream had the whole message")
        self.assertEqual(fake.messages, [])
        x.stop()
        self.assertIn("client told 451", x.log_text())
        self.assert_no_secrets(x)

    def test_upstream_replies_passed_through_at_each_step(self):
        steps = [("MAIL", "451 4.3.0 mail busy"), ("MAIL", "550 5.7.1 sender refused"),
                 ("RCPT", "452 4.2.2 mailbox full"), ("RCPT", "550 5.1.1 no such user"),
                 ("DATA", "451 4.3.0 data busy"), ("DATA", "554 5.5.1 no valid recipients"),
                 ("DATA_END", "452 4.3.1 queue full"), ("DATA_END", "552 5.3.4 too big")]
        fake = self.fake()
        x, c = self.logged_in(fake)
        for step, reply in steps:
            fake.replies = {step: reply}
            got = None
            r = c.cmd("MAIL FROM:<a@example.com>")
            if step == "MAIL":
                got = r
            else:
                self.assertTrue(r.startswith("250"), r)
                r = c.cmd("RCPT TO:<b@example.com>")
                if step == "RCPT":
                    got = r
                else:
                    self.assertTrue(r.startswith("250"), r)
                    r = c.cmd("DATA")
                    if step == "DATA":
                        got = r
                    else:
                        self.assertTrue(r.startswith("354"), r)
                        got = self.send_body(c)
            self.assertEqual(got.strip(), reply, "step %s: the upstream's reply passes" % step)
            self.assertTrue(c.cmd("RSET").startswith("250"))
        self.assertEqual(fake.messages, [])
        # And afterwards a clean transaction still goes through the same session.
        fake.replies = {}
        self.send_ok(c)
        self.assertEqual(len(fake.messages), 1)
        x.stop()
        self.assert_no_secrets(x)

    def test_upstream_auth_4xx_and_5xx(self):
        for reply, want in (("454 4.7.0 try later", "454"), ("535 5.7.3 bad token", "454")):
            fake = self.fake()
            fake.replies = {"AUTH": reply}
            x = self.start("127.0.0.1:%d none" % fake.port)
            c = self.client(x.port("smtp"))
            r = self.login(c)
            self.assertTrue(r.startswith(want), "%s -> %r" % (reply, r))
            self.assertEqual(fake.messages, [])
            x.stop()
            self.assertIn(reply, x.log_text(), "the provider's words are in the log")
            self.assert_no_secrets(x)

    def test_client_disconnects_mid_data_large_body(self):
        fake = self.fake()
        x, c = self.logged_in(fake)
        self.assertTrue(c.cmd("MAIL FROM:<a@example.com>").startswith("250"))
        self.assertTrue(c.cmd("RCPT TO:<b@example.com>").startswith("250"))
        self.assertTrue(c.cmd("DATA").startswith("354"))
        c.sock.sendall(b"Subject: partial\r\n\r\n" + (b"y" * 998 + b"\r\n") * 500)
        time.sleep(0.3)
        c.sock.shutdown(socket.SHUT_RDWR)
        c.close()
        deadline = time.time() + 10
        while time.time() < deadline and not fake.partial_messages:
            time.sleep(0.05)
        self.assertEqual(len(fake.partial_messages), 1, "upstream connection closed mid-DATA")
        self.assertEqual(fake.messages, [])
        self.assertEqual(fake.dotted, [], "never a final dot for a message the client cut off")
        x.stop()


class TokenFaults(FaultBase):
    def test_token_endpoint_malformed_json(self):
        fake = self.fake()
        x = self.start("127.0.0.1:%d none" % fake.port)
        self.rig.idp.fail("malformed", count=5)
        try:
            c = self.client(x.port("smtp"))
            r = self.login(c)
        finally:
            self.rig.idp.clear_failures()
        self.assertTrue(r.startswith("454 4.7.0"), r)
        self.assertEqual([l for l in fake.lines if l.startswith("AUTH")], [])
        x.stop()
        self.assert_no_secrets(x)

    def test_token_endpoint_hangs_within_timeout(self):
        fake = self.fake()
        x = self.start("127.0.0.1:%d none" % fake.port, global_opts={"token_timeout": "2"})
        self.rig.idp.fail("hang", count=5, seconds=8)
        try:
            c = self.client(x.port("smtp"))
            t0 = time.time()
            r = self.login(c)
            took = time.time() - t0
        finally:
            self.rig.idp.clear_failures()
        self.assertTrue(r.startswith("454 4.7.0"), r)
        self.assertLess(took, 7, "token_timeout bounds the wait")
        self.assertEqual(fake.lines, [])
        x.stop()

    def test_token_rejected_by_server(self):
        fake = self.fake(accept_token=lambda t: False, style="gmail")
        x = self.start("127.0.0.1:%d none" % fake.port)
        c = self.client(x.port("smtp"))
        self.assertTrue(self.login(c).startswith("454 4.7.0"))
        self.assertEqual(fake.challenge_answers, [b"", b""], "each challenge answered empty")
        self.assertEqual(fake.messages, [])
        x.stop()
        self.assert_no_secrets(x)


class SlowReader(FaultBase):
    def test_slow_reader_memory_bounded(self):
        """A client that pipelines many commands and never reads its replies: xoauthd stops
        reading from it instead of buffering replies without end."""
        fake = self.fake()
        x = self.start("127.0.0.1:%d none" % fake.port)
        pid = x.proc.pid
        before = R.rss_kb(pid)
        s, sent = R.flood_without_reading(x.port("smtp"), b"NOOP\r\n", 8)
        after = R.rss_kb(pid)
        s.close()
        # 64 MiB of NOOPs would make ~300 MiB of replies; a bounded proxy stalls far earlier.
        self.assertLess(sent, 32 * 1024 * 1024, "xoauthd kept reading from a client that "
                        "does not read (sent %d bytes)" % sent)
        self.assertLess(after - before, 64 * 1024, "RSS grew %d kB" % (after - before))
        x.stop()


if __name__ == "__main__":
    R.main()
