"""xoauthd's SMTP front and upstream login against a fake upstream that misbehaves on purpose:
Gmail's error challenge, Microsoft's plain 535, an upstream that dies mid-DATA, a client that
dies mid-DATA, STARTTLS and implicit TLS towards the client, pipelining, over-long lines and
allowlisted networks. The real-server path is in test_smtp_submit.py."""
import base64
import smtplib
import socket
import ssl
import time

import rig as R
from rig import plain_ir, read_reply
from rig.fake_smtp import FakeSmtp
from rig.case import RigTestCase

USER = "scanner@example.com"
PASSWORD = "scan-pass;word"


class SmtpFrontTest(RigTestCase):
    LOCAL_PASSWORD = PASSWORD

    def setUp(self):
        self.rig.idp.seed_user(USER)
        self.rig.idp.set_client("cid", secret="client-secret-value")
        self.rig.idp.reset_stats()
        self.fakes = []

    def tearDown(self):
        for f in self.fakes:
            f.stop()

    def fake(self, **kw):
        f = FakeSmtp(**kw)
        self.fakes.append(f)
        return f

    def seed(self):
        return self.rig.idp.seed_user(USER)

    def start_seeded(self, fake, **kw):
        rt = self.seed()
        x = R.Xoauthd(self.rig)
        x.add_listen("smtp", tls="none")
        for name, opts in kw.pop("listen", {}).items():
            x.add_listen(name, **opts)
        x.add_provider("fake", token_url=self.rig.token_url,
                       smtp="127.0.0.1:%d none" % fake.port)
        acct = dict(local_user="scanner", local_password=self.hash, provider="fake",
                    username=USER, flow="refresh_token", client_id="cid",
                    client_secret="client-secret-value", refresh_token=rt,
                    mechanism=kw.pop("mechanism", "xoauth2"))
        acct.update(kw.pop("account_extra", {}))
        x.add_account("scanner", **acct)
        for name, opts in kw.pop("extra_sections", []):
            x.sections.append((name, opts))
        x.start()
        self.addCleanup(x.kill_if_running)
        return x, rt

    def send(self, port, body=b"hello\r\n", login=True):
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.ehlo("printer.local")
            if login:
                s.login("scanner", PASSWORD)
            return s.sendmail("scan@example.com", ["boss@example.com"],
                              b"Subject: t\r\n\r\n" + body)

    def assert_no_secrets(self, x, extra=()):
        log = x.log_text()
        st = self.rig.idp.user_stats(USER)
        secrets = list(st["access_tokens"]) + list(st["refresh_tokens_issued"]) + \
            ["client-secret-value", PASSWORD] + list(extra)
        for s in secrets:
            if s:
                self.assertNotIn(s, log, "a secret reached the log")

    # ---- upstream login ------------------------------------------------------------------

    def test_gmail_error_challenge_then_refresh(self):
        seen = []

        def accept(token):
            seen.append(token)
            return len(seen) > 1  # the first (cached) token is "expired"
        fake = self.fake(accept_token=accept, style="gmail")
        x, _ = self.start_seeded(fake)
        self.send(x.port("smtp"), b"first\r\n")
        self.assertEqual(fake.challenge_answers, [b""], "XOAUTH2 answers the challenge empty")
        self.assertEqual(len(seen), 2)
        self.assertNotEqual(seen[0], seen[1], "the retry used a refreshed token")
        self.assertEqual(self.rig.idp.user_stats(USER)["refreshes_ok"], 2)
        self.assertEqual(len(fake.messages), 1)
        self.assertEqual(fake.messages[0][2], b"Subject: t\r\n\r\nfirst\r\n")
        self.assertEqual(fake.auth_users, [USER, USER])
        x.stop()
        self.assert_no_secrets(x)

    def test_oauthbearer_challenge_answer(self):
        seen = []

        def accept(token):
            seen.append(token)
            return len(seen) > 1
        fake = self.fake(accept_token=accept, style="gmail")
        x, _ = self.start_seeded(fake, mechanism="oauthbearer")
        self.send(x.port("smtp"))
        self.assertEqual(fake.challenge_answers, [b"AQ=="])
        self.assertTrue(any(l == "AUTH OAUTHBEARER" for l in fake.lines))
        self.assertEqual(len(fake.messages), 1)
        x.stop()

    def test_rejected_twice_gives_454_and_log_names_account(self):
        fake = self.fake(accept_token=lambda t: False, style="microsoft")
        x, _ = self.start_seeded(fake)
        with smtplib.SMTP("127.0.0.1", x.port("smtp"), timeout=30) as s:
            s.ehlo()
            # One AUTH only: smtplib's login() would go on to try LOGIN after PLAIN.
            code, text = s.docmd("AUTH PLAIN " + plain_ir("scanner", PASSWORD))
            self.assertEqual(code, 454)
            self.assertIn(b"4.7.0", text)
        self.assertEqual(self.rig.idp.user_stats(USER)["refreshes_ok"], 2,
                         "one normal fetch, one forced refresh, no loop")
        self.assertEqual(sum(1 for l in fake.lines if l.startswith("AUTH")), 2)
        self.assertEqual(fake.messages, [])
        x.stop()
        log = x.log_text()
        self.assertIn("event=upstream_login_failed account=scanner", log)
        self.assertIn("535 5.7.3 Authentication unsuccessful", log)
        self.assert_no_secrets(x)

    def test_token_endpoint_500_gives_454(self):
        fake = self.fake()
        x, _ = self.start_seeded(fake)
        self.rig.idp.fail("500", count=5)
        try:
            with smtplib.SMTP("127.0.0.1", x.port("smtp"), timeout=30) as s:
                s.ehlo()
                with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
                    s.login("scanner", PASSWORD)
                self.assertEqual(cm.exception.smtp_code, 454)
        finally:
            self.rig.idp.clear_failures()
        self.assertEqual([l for l in fake.lines if l.startswith("AUTH")], [],
                         "no upstream login without a token")
        x.stop()

    # ---- never lose a message ------------------------------------------------------------

    def test_upstream_dies_mid_data_gives_451(self):
        fake = self.fake()
        fake.close_after_data_lines = 3
        x, _ = self.start_seeded(fake)
        with smtplib.SMTP("127.0.0.1", x.port("smtp"), timeout=30) as s:
            s.ehlo()
            s.login("scanner", PASSWORD)
            with self.assertRaises(smtplib.SMTPDataError) as cm:
                s.sendmail("scan@example.com", ["boss@example.com"],
                           b"Subject: t\r\n\r\n" + b"line\r\n" * 2000)
            self.assertEqual(cm.exception.smtp_code // 100, 4)
            # The session goes on: the next transaction logs in again and succeeds.
            fake.close_after_data_lines = None
            s.sendmail("scan@example.com", ["boss@example.com"], b"Subject: again\r\n\r\nok\r\n")
        self.assertEqual(len(fake.messages), 1)
        self.assertIn(b"ok", fake.messages[0][2])
        x.stop()

    def test_client_dies_mid_data_upstream_gets_no_final_dot(self):
        fake = self.fake()
        x, _ = self.start_seeded(fake)
        s = socket.create_connection(("127.0.0.1", x.port("smtp")), timeout=30)
        f = s.makefile("rb")
        read_reply(f)
        s.sendall(b"EHLO x\r\nAUTH PLAIN " + plain_ir("scanner", PASSWORD).encode() + b"\r\n")
        read_reply(f)
        self.assertTrue(read_reply(f).startswith("235"))
        s.sendall(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
        self.assertTrue(read_reply(f).startswith("250"))
        self.assertTrue(read_reply(f).startswith("250"))
        self.assertTrue(read_reply(f).startswith("354"))
        s.sendall(b"Subject: partial\r\n\r\nsome text\r\n.")  # no CRLF after the dot
        time.sleep(0.3)
        s.shutdown(socket.SHUT_RDWR)
        f.close()
        s.close()
        deadline = time.time() + 5
        while time.time() < deadline and "client_gone_during_data" not in x.log_text():
            time.sleep(0.05)
        self.assertIn("client_gone_during_data", x.log_text())
        time.sleep(0.3)
        self.assertEqual(fake.messages, [], "a partial message must never be accepted")
        x.stop()

    # ---- the client side -------------------------------------------------------------------

    def test_pipelining_and_line_limits(self):
        fake = self.fake()
        x, _ = self.start_seeded(fake)
        s = socket.create_connection(("127.0.0.1", x.port("smtp")), timeout=30)
        f = s.makefile("rb")
        self.assertTrue(read_reply(f).startswith("220"))
        s.sendall(b"EHLO x\r\n" + b"X" * 600 + b"\r\nNOOP\r\n")
        ehlo = read_reply(f)
        for cap in ("PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES", "AUTH PLAIN LOGIN"):
            self.assertIn(cap, ehlo)
        self.assertNotIn("STARTTLS", ehlo)
        self.assertTrue(read_reply(f).startswith("500 5.5.2"))
        self.assertTrue(read_reply(f).startswith("250"))
        # Everything in one write: the replies come back in order.
        s.sendall(b"AUTH PLAIN " + plain_ir("scanner", PASSWORD).encode() + b"\r\n"
                  b"MAIL FROM:<a@example.com> BODY=8BITMIME\r\nRCPT TO:<b@example.com>\r\n"
                  b"RCPT TO:<c@example.com>\r\nDATA\r\n")
        replies = [read_reply(f) for _ in range(5)]
        self.assertEqual([r[:3] for r in replies], ["235", "250", "250", "250", "354"])
        # A bare LF is relayed as CRLF; only CRLF . CRLF ends the data (test_smtp_data.py).
        s.sendall(b"Subject: p\r\n\r\n..dot\r\nbare lf\nend\r\n.\r\nVRFY x\r\nQUIT\r\n")
        self.assertTrue(read_reply(f).startswith("250"))
        self.assertTrue(read_reply(f).startswith("252"))
        self.assertTrue(read_reply(f).startswith("221"))
        s.close()
        self.assertEqual(len(fake.messages), 1)
        self.assertEqual(fake.messages[0][1], ["b@example.com", "c@example.com"])
        self.assertEqual(fake.messages[0][2], b"Subject: p\r\n\r\n.dot\r\nbare lf\r\nend\r\n")
        self.assertIn("MAIL FROM:<a@example.com> BODY=8BITMIME", fake.lines)
        x.stop()

    def test_wrong_password_and_unknown_user(self):
        fake = self.fake()
        x, _ = self.start_seeded(fake)
        for user, pw in (("scanner", "nope"), ("nobody", PASSWORD)):
            with smtplib.SMTP("127.0.0.1", x.port("smtp"), timeout=30) as s:
                s.ehlo()
                with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
                    s.login(user, pw)
                self.assertEqual(cm.exception.smtp_code, 535)
                self.assertIn(b"5.7.8", cm.exception.smtp_error)
        self.assertEqual(self.rig.idp.user_stats(USER)["token_requests"], 0)
        self.assertEqual(fake.lines, [])
        with smtplib.SMTP("127.0.0.1", x.port("smtp"), timeout=30) as s:
            s.ehlo()
            code, _ = s.docmd("MAIL FROM:<a@example.com>")
            self.assertEqual(code, 530, "no login, no allowlist: authentication required")
        x.stop()
        self.assert_no_secrets(x, ["nope"])

    def test_starttls_and_implicit_tls_fronts(self):
        fake = self.fake()
        x, _ = self.start_seeded(fake, listen={
            "tls": {"tls": "starttls", "allow_plaintext_auth": "never"},
            "smtps": {"tls": "implicit"}})
        ctx = self.rig.ssl_context()
        with smtplib.SMTP("127.0.0.1", x.port("tls"), timeout=30) as s:
            code, caps = s.ehlo()
            self.assertIn(b"STARTTLS", caps)
            self.assertNotIn(b"AUTH", caps, "no AUTH before TLS when plain text is never allowed")
            code, _ = s.docmd("AUTH PLAIN " + plain_ir("scanner", PASSWORD))
            self.assertEqual(code, 538)
            s.starttls(context=ctx)
            code, caps = s.ehlo()
            self.assertNotIn(b"STARTTLS", caps)
            self.assertIn(b"AUTH PLAIN LOGIN", caps)
            s.login("scanner", PASSWORD)
            s.sendmail("scan@example.com", ["boss@example.com"], b"Subject: tls\r\n\r\nx\r\n")
        with smtplib.SMTP_SSL("127.0.0.1", x.port("smtps"), context=ctx, timeout=30) as s:
            s.login("scanner", PASSWORD)
            s.sendmail("scan@example.com", ["boss@example.com"], b"Subject: smtps\r\n\r\ny\r\n")
        self.assertEqual([m[2].split(b"\r\n")[0] for m in fake.messages],
                         [b"Subject: tls", b"Subject: smtps"])
        x.stop()

    def test_starttls_discards_injected_commands(self):
        fake = self.fake()
        x, _ = self.start_seeded(fake, listen={"tls": {"tls": "starttls"}})
        raw = socket.create_connection(("127.0.0.1", x.port("tls")), timeout=30)
        f = raw.makefile("rb")
        read_reply(f)
        raw.sendall(b"EHLO x\r\n")
        read_reply(f)
        # A man in the middle appends a command after STARTTLS in the clear.
        raw.sendall(b"STARTTLS\r\nNOOP injected\r\n")
        self.assertTrue(read_reply(f).startswith("220"))
        tls = self.rig.ssl_context().wrap_socket(raw, server_hostname="localhost")
        tf = tls.makefile("rb")
        tls.sendall(b"NOOP\r\n")
        self.assertTrue(read_reply(tf).startswith("250"))
        tls.sendall(b"QUIT\r\n")
        self.assertTrue(read_reply(tf).startswith("221"),
                        "exactly one reply per command sent after the handshake")
        tls.close()
        x.stop()

    def test_allowlisted_network_sends_without_login(self):
        fake = self.fake()
        rt = self.seed()
        x = R.Xoauthd(self.rig)
        x.add_listen("smtp", tls="none", allow_networks="127.0.0.0/8 -> scanner")
        x.add_provider("fake", token_url=self.rig.token_url, smtp="127.0.0.1:%d none" % fake.port)
        x.add_account("scanner", provider="fake", username=USER, flow="refresh_token",
                      client_id="cid", client_secret="client-secret-value", refresh_token=rt)
        x.start()
        self.addCleanup(x.kill_if_running)
        self.send(x.port("smtp"), b"no login\r\n", login=False)
        self.assertEqual(len(fake.messages), 1)
        self.assertEqual(fake.auth_users, [USER])
        x.stop()
        self.assertIn("event=allowlisted", x.log_text())


if __name__ == "__main__":
    R.main()
