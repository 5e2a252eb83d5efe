#!/usr/bin/env python3
"""What the SMTP front does with the bytes of DATA and the envelope, against real servers:

  - SMTP smuggling: a fake end of data ("\\n.\\n", "\\n.\\r\\n", "\\r\\n.\\n", "\\r.\\r\\n",
    "\\r\\n.\\r") with a whole second transaction behind it is one message, refused with
    550 5.5.2; the smuggled MAIL/RCPT/DATA never becomes a transaction, neither through Postfix
    into Dovecot nor through submit = graph | ews into the mock;
  - a 100 KB single-line HTML body reaches Dovecot (and Graph) byte for byte;
  - MAIL FROM:addr / RCPT TO:addr without angle brackets are accepted and relayed with them;
  - the session summary says result=refused (or partial) when mail was refused.
"""
import os
import re
import smtplib
import time

HERE = os.path.dirname(os.path.abspath(__file__))
import rig as R
from rig import plain_ir
from rig.fake_smtp import FakeSmtp
from ews_graph_base import EwsGraphCase, message
import ews_graph_base
from tokentest import LOCAL_PASSWORD, TokenTestBase

FAKE_ENDS = [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r"]
LONG_BODY = b"<html><body>" + b"<p>row</p>" * 10240 + b"</body></html>\r\n"  # one 100 KB line


def smuggling_data(fake, tag, sender, victim):
    """DATA bytes: a carrier message, a fake end, a complete second transaction, the real end."""
    t = tag.encode()
    return (b"Subject: carrier " + t + b"\r\nMessage-ID: <carrier-" + t + b"@test>\r\n\r\n"
            b"first part" + fake +
            b"MAIL FROM:<" + sender.encode() + b">\r\nRCPT TO:<" + victim.encode() + b">\r\n"
            b"DATA\r\nSubject: smuggled " + t + b"\r\nMessage-ID: <smuggled-" + t +
            b"@test>\r\n\r\nevil\r\n.\r\n")


def logged_in_client(port, user, password):
    c = R.SmtpLines(port, greeting=True, timeout=30)
    c.cmd("EHLO printer.local")
    r = c.cmd("AUTH PLAIN " + plain_ir(user, password))
    if not r.startswith("235"):
        raise AssertionError("AUTH: " + r)
    return c


def smuggle(case, port, user, password, fake, tag, sender, rcpt, victim):
    """One session that tries to smuggle; asserts exactly one reply (550 5.5.2) to it all."""
    c = logged_in_client(port, user, password)
    try:
        case.assertTrue(c.cmd("MAIL FROM:<%s>" % sender).startswith("250"))
        case.assertTrue(c.cmd("RCPT TO:<%s>" % rcpt).startswith("250"))
        case.assertTrue(c.cmd("DATA").startswith("354"))
        c.sock.sendall(smuggling_data(fake, tag, sender, victim))
        r = c.reply()
        case.assertTrue(r.startswith("550 5.5.2"), "fake end %r: %r" % (fake, r))
        # The next reply belongs to QUIT: nothing ran behind the fake end.
        r = c.cmd("QUIT")
        case.assertTrue(r.startswith("221"), "fake end %r: then %r" % (fake, r))
    finally:
        c.close()


def session_lines(x, pattern, want, timeout=10.0):
    """event=session lines matching pattern; waits until there are at least want of them."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [l for l in x.log_text().splitlines()
                 if "event=session" in l and re.search(pattern, l)]
        if len(lines) >= want or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


class SmtpDataRelayed(TokenTestBase):
    """xoauthd -> Postfix (STARTTLS, XOAUTH2) -> Dovecot, and a fake upstream that records."""

    def setUp(self):
        super().setUp()
        self.fakes = []

    def tearDown(self):
        for f in self.fakes:
            f.stop()
        super().tearDown()

    def start(self, fake=None):
        """xoauthd with the account LOGIN (password LOCAL_PASSWORD) for self.user, relaying to
        the rig's Postfix or to fake."""
        acct = self.refresh_account()
        self.login = acct["local_user"]
        if fake is None:
            return self.make_x({"scanner": acct})
        x = self.make_x({"scanner": dict(acct, provider="fake")}, start=False)
        x.add_provider("fake", token_url=self.rig.token_url, smtp="127.0.0.1:%d none" % fake.port)
        x.start()
        return x

    def fake(self):
        f = FakeSmtp()
        self.fakes.append(f)
        return f

    def test_smuggling_never_becomes_a_transaction(self):
        x = self.start()
        for i, fake in enumerate(FAKE_ENDS):
            smuggle(self, x.port("smtp"), self.login, LOCAL_PASSWORD, fake, "r%d" % i,
                    self.user, self.user, self.user)
        # A good message afterwards arrives: by then anything smuggled would have too.
        mid = R.make_message_id("after")
        with smtplib.SMTP("127.0.0.1", x.port("smtp"), timeout=60) as s:
            s.login(self.login, LOCAL_PASSWORD)
            s.sendmail(self.user, [self.user],
                       R.build_message(self.user, self.user, mid, "after", b"fine\r\n"))
        self.rig.wait_for_message_id(self.user, mid)
        msgs = self.rig.fetch_messages(self.user)
        self.assertEqual(len(msgs), 1, "only the good message was delivered")
        for i in range(len(FAKE_ENDS)):
            for what in ("carrier", "smuggled"):
                self.assertFalse(self.rig.postfix_saw_message_id("%s-r%d@test" % (what, i)),
                                 "Postfix queued the %s message of fake end %r"
                                 % (what, FAKE_ENDS[i]))
        refused = session_lines(x, r'result=refused .*reply="550 5\.5\.2 ', len(FAKE_ENDS))
        self.assertEqual(len(refused), len(FAKE_ENDS), "each session logs result=refused")
        self.assertEqual(len(session_lines(x, r"result=ok messages=1 ", 1)), 1)
        x.stop()

    def test_smuggling_upstream_sees_no_fake_end(self):
        """The relayed bytes themselves: a fake upstream that reads lines on LF got no end
        of data before the real one and no second MAIL (the message was never finished)."""
        fake = self.fake()
        x = self.start(fake)
        for i, fe in enumerate(FAKE_ENDS):
            smuggle(self, x.port("smtp"), self.login, LOCAL_PASSWORD, fe, "f%d" % i,
                    self.user, self.user, "victim@example.com")
        x.stop()
        self.assertEqual(fake.messages, [])
        self.assertEqual(fake.dotted, [], "no end of data reached the upstream")
        self.assertFalse([l for l in fake.lines if "victim" in l and l.startswith("RCPT")])

    def test_100kb_single_line_body_arrives_byte_for_byte(self):
        x = self.start()
        mid = R.make_message_id("long")
        msg = R.build_message(self.user, self.user, mid, "one long line", LONG_BODY)
        with smtplib.SMTP("127.0.0.1", x.port("smtp"), timeout=60) as s:
            s.login(self.login, LOCAL_PASSWORD)
            self.assertEqual(s.sendmail(self.user, [self.user], msg), {})
        raw = self.rig.wait_for_message_id(self.user, mid)
        self.assertEqual(R.split_message(raw)[1], LONG_BODY)
        self.assertEqual(len(session_lines(x, r"result=ok messages=1 ", 1)), 1)
        x.stop()

    def test_paths_without_angle_brackets(self):
        x = self.start()
        mid = R.make_message_id("nobrackets")
        msg = R.build_message(self.user, self.user, mid, "no brackets", b"plain device\r\n")
        c = logged_in_client(x.port("smtp"), self.login, LOCAL_PASSWORD)
        try:
            r = c.cmd("MAIL FROM:%s SIZE=%d" % (self.user, len(msg)))
            self.assertTrue(r.startswith("250"), r)
            r = c.cmd("RCPT TO:%s" % self.user)
            self.assertTrue(r.startswith("250"), r)
            self.assertTrue(c.cmd("DATA").startswith("354"))
            c.sock.sendall(msg + b".\r\n")
            r = c.reply()
            self.assertTrue(r.startswith("250"), r)
            c.cmd("QUIT")
        finally:
            c.close()
        raw = self.rig.wait_for_message_id(self.user, mid)
        self.assertEqual(R.split_message(raw)[1], b"plain device\r\n")
        x.stop()

    def test_paths_without_angle_brackets_go_upstream_with_them(self):
        fake = self.fake()
        x = self.start(fake)
        c = logged_in_client(x.port("smtp"), self.login, LOCAL_PASSWORD)
        try:
            self.assertTrue(c.cmd("MAIL FROM: scan@example.com SIZE=10").startswith("250"))
            self.assertTrue(c.cmd("RCPT TO:boss@example.com").startswith("250"))
            self.assertTrue(c.cmd("RCPT TO:<cc@example.com>").startswith("250"))
            self.assertTrue(c.cmd("DATA").startswith("354"))
            c.sock.sendall(b"Subject: b\r\n\r\nx\r\n.\r\n")
            self.assertTrue(c.reply().startswith("250"))
            c.cmd("QUIT")
        finally:
            c.close()
        x.stop()
        self.assertIn("MAIL FROM:<scan@example.com> SIZE=10", fake.lines)
        self.assertIn("RCPT TO:<boss@example.com>", fake.lines)
        self.assertIn("RCPT TO:<cc@example.com>", fake.lines)
        self.assertEqual(fake.messages[0][1], ["boss@example.com", "cc@example.com"])

    def test_summary_partial_when_some_mail_was_refused(self):
        x = self.start()
        mid = R.make_message_id("partial")
        with smtplib.SMTP("127.0.0.1", x.port("smtp"), timeout=60) as s:
            s.ehlo("printer.local")
            s.login(self.login, LOCAL_PASSWORD)
            s.sendmail(self.user, [self.user],
                       R.build_message(self.user, self.user, mid, "partial", b"ok\r\n"))
            code, _ = s.docmd("MAIL FROM:<%s> SIZE=99999999999" % self.user)
            self.assertEqual(code, 552)
        with smtplib.SMTP("127.0.0.1", x.port("smtp"), timeout=60) as s:
            s.ehlo("printer.local")
            s.login(self.login, LOCAL_PASSWORD)
            code, _ = s.docmd("MAIL FROM:<%s> SIZE=99999999999" % self.user)
            self.assertEqual(code, 552)
        self.rig.wait_for_message_id(self.user, mid)
        partial = session_lines(x, r'result=partial messages=1 .*reply="552 5\.3\.4 ', 1)
        self.assertEqual(len(partial), 1, "one accepted, one refused: result=partial")
        refused = session_lines(x, r'result=refused messages=0 .*reply="552 5\.3\.4 ', 1)
        self.assertEqual(len(refused), 1, "all refused: result=refused")
        self.assertEqual(session_lines(x, r"result=ok ", 0, timeout=0), [])
        x.stop()


class SmtpDataCaptured(EwsGraphCase):
    """submit = graph | ews: the message is kept by xoauthd and sent over HTTP."""

    def test_smuggling_never_becomes_a_transaction(self):
        for submit in ("graph", "ews"):
            self.mock.reset()
            x = self.xoauthd(submit)
            for i, fake in enumerate(FAKE_ENDS):
                smuggle(self, x.port("smtp"), "scanner", ews_graph_base.PASSWORD, fake,
                        "%s%d" % (submit, i), ews_graph_base.USER, "boss@contoso.test",
                        "victim@contoso.test")
            good = message("after " + submit)
            code, text = self.send(x, good)
            self.assertEqual(code, 250, text)
            reqs = self.mock.of_kind(submit)
            self.assertEqual(len(reqs), 1, "%s: only the good message was sent" % submit)
            self.assertEqual(reqs[0]["mime"], good)
            refused = session_lines(x, r'result=refused .*reply="550 5\.5\.2 ', len(FAKE_ENDS))
            self.assertEqual(len(refused), len(FAKE_ENDS))

    def test_100kb_single_line_body_through_graph(self):
        x = self.xoauthd("graph")
        msg = message("long line", body=LONG_BODY)
        code, text = self.send(x, msg)
        self.assertEqual(code, 250, text)
        reqs = self.mock.of_kind("graph")
        self.assertEqual(len(reqs), 1)
        self.assertEqual(reqs[0]["mime"], msg)


if __name__ == "__main__":
    R.main()
