#!/usr/bin/env python3
"""Sender rules with a real upstream: a scanner on an allowlisted network (no login) sends as
scan@printer.local; xoauthd rewrites the envelope and the From: header to the mailbox (which
the provider demands: Microsoft's 554 5.2.252 SendAsDenied), keeps the display name, puts the
device's address in Reply-To:, and refuses senders outside allowed_senders with 550 5.7.1
before DATA. A second account (header_from = account) shows that every From: of the header
block is replaced, however it is spelt, so the device cannot keep an address of its choosing.

    smtplib (no AUTH, from 127.0.0.1) -> xoauthd (allow_networks = 127.0.0.0/8 -> scanner)
        -> rig Postfix (XOAUTH2) -> Dovecot; the delivered copy is read back over IMAP.
"""
import re
import smtplib

import rig as R
from rig.case import RigTestCase

CLIENT_ID = "xoauthd-sender-rules"
MAILBOX = "scanner-rules@example.com"
MAILBOX2 = "scanner-plain@example.com"
DEVICE = "scan@printer.local"


class SenderRules(RigTestCase):
    CLIENT_ID = CLIENT_ID

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        rt = cls.rig.idp.seed_user(MAILBOX)
        x = R.Xoauthd(cls.rig)
        x.add_listen("smtp", tls="none", allow_networks="127.0.0.0/8 -> scanner")
        x.add_provider("rig", **cls.rig.provider_settings())
        x.add_account("scanner", provider="rig", username=MAILBOX, flow="refresh_token",
                      client_id=CLIENT_ID, refresh_token=rt,
                      envelope_from="account", header_from="account-with-name",
                      allowed_senders="%s, *@example.com, <>" % DEVICE)
        rt2 = cls.rig.idp.seed_user(MAILBOX2)
        x.add_listen("plain", tls="none", allow_networks="127.0.0.0/8 -> plain")
        x.add_account("plain", provider="rig", username=MAILBOX2, flow="refresh_token",
                      client_id=CLIENT_ID, refresh_token=rt2,
                      envelope_from="account", header_from="account")
        x.start()
        cls.addClassCleanup(x.stop)
        cls.x = x

    def send(self, sender, msg):
        with smtplib.SMTP("127.0.0.1", self.x.port("smtp"), timeout=30) as s:
            s.ehlo("printer.local")
            return s.sendmail(sender, [MAILBOX], msg)

    def test_rewrites_envelope_and_from_header(self):
        mid = R.make_message_id("rules")
        body = R.tricky_body()
        msg = (("From: \"Scanner 3rd floor\" <%s>\r\nTo: <%s>\r\nSubject: scan\r\n"
                "Message-ID: <%s>\r\nMIME-Version: 1.0\r\n\r\n") % (DEVICE, MAILBOX, mid)).encode()
        self.assertEqual(self.send(DEVICE, msg + body), {})
        raw = self.rig.wait_for_message_id(MAILBOX, mid)
        self.assertEqual(R.header_value(raw, "From"), "\"Scanner 3rd floor\" <%s>" % MAILBOX)
        self.assertEqual(R.header_value(raw, "Reply-To"), "\"Scanner 3rd floor\" <%s>" % DEVICE)
        self.assertEqual(R.header_value(raw, "Return-Path"), "<%s>" % MAILBOX)
        self.assertEqual(R.split_message(raw)[1], body)
        log = self.x.log_text()
        self.assertIn("event=envelope_from_rewritten account=scanner from=<%s>" % DEVICE, log)
        self.assertIn("event=header_from_rewritten account=scanner", log)

    def check_one_from(self, from_lines, reply_to):
        """Sends a message with the header lines from_lines (CRLF lines) through the
        header_from = account listener; the copy Dovecot delivered has exactly one From:, the
        mailbox, and the Reply-To: reply_to."""
        mid = R.make_message_id("from")
        # Not on the first line: Postfix takes a first line "From " for an mbox separator
        # (X-Mailbox-Line:), which would hide what xoauthd relayed.
        msg = ("To: <%s>\r\n%sSubject: from spellings\r\nMessage-ID: <%s>\r\n\r\n"
               "From: a body line, not a header\r\n" % (MAILBOX2, from_lines, mid)).encode()
        with smtplib.SMTP("127.0.0.1", self.x.port("plain"), timeout=30) as s:
            s.ehlo("printer.local")
            self.assertEqual(s.sendmail(DEVICE, [MAILBOX2], msg), {})
        raw = self.rig.wait_for_message_id(MAILBOX2, mid)
        hdrs, body = R.split_message(raw)
        # Every field named From, in any case, with WSP before the colon (RFC 5322 4.5.2).
        froms = re.findall(rb"(?im)^from[ \t]*:[ \t]*(.*)$", hdrs)
        self.assertEqual(froms, [MAILBOX2.encode() + b"\r"], raw)
        self.assertEqual(R.header_value(raw, "Reply-To"), reply_to)
        self.assertEqual(body, b"From: a body line, not a header\r\n")

    def test_every_from_header_is_replaced(self):
        cases = [
            ("two From:", "From: first@printer.local\r\nFrom: ceo@example.com\r\n",
             "first@printer.local"),
            ("obsolete From :", "From : obs@printer.local\r\n", "obs@printer.local"),
            ("FROM:", "FROM: upper@printer.local\r\n", "upper@printer.local"),
            # smtplib dot-stuffs the line: "..X-Dot: y" on the wire, the field ".X-Dot" after.
            ("after a dot-stuffed line", "From: first@printer.local\r\n.X-Dot: y\r\n"
             "From: ceo@example.com\r\n", "first@printer.local"),
            ("folded", "From:\r\n \"Front desk\"\r\n <desk@printer.local>\r\n"
             "from\t:\r\n\tsecond@printer.local\r\n", "\"Front desk\" <desk@printer.local>"),
        ]
        for what, lines, reply_to in cases:
            with self.subTest(what):
                self.check_one_from(lines, reply_to)

    def test_display_name_cannot_add_an_address(self):
        # account-with-name keeps the name, quoted when it is no phrase: written as it came,
        # "boss@example.com," in front of <mailbox> would make the From: a list of two.
        mid = R.make_message_id("name")
        msg = ("From: boss@example.com, <%s>\r\nTo: <%s>\r\nSubject: name\r\n"
               "Message-ID: <%s>\r\n\r\nbody\r\n" % (DEVICE, MAILBOX, mid)).encode()
        self.assertEqual(self.send(DEVICE, msg), {})
        raw = self.rig.wait_for_message_id(MAILBOX, mid)
        self.assertEqual(R.header_value(raw, "From"), "\"boss@example.com,\" <%s>" % MAILBOX)

    def test_header_block_too_big_is_refused(self):
        # Over the filter's 256 KiB limit a From: could be anywhere: the message is refused
        # (552) rather than relayed with the device's From: in it; the session goes on.
        pad = "".join("X-Pad-%05d: %s\r\n" % (i, "p" * 60) for i in range(4000))
        mid = R.make_message_id("huge")
        msg = ("To: <%s>\r\nMessage-ID: <%s>\r\n%sFrom: ceo@example.com\r\n\r\nbody\r\n"
               % (MAILBOX2, mid, pad)).encode()
        self.assertGreater(len(msg), 256 * 1024)
        with smtplib.SMTP("127.0.0.1", self.x.port("plain"), timeout=30) as s:
            s.ehlo("printer.local")
            self.assertEqual(s.mail(DEVICE)[0], 250)
            self.assertEqual(s.rcpt(MAILBOX2)[0], 250)
            code, text = s.data(msg)
            self.assertEqual(code, 552, text)
            self.assertIn(b"5.3.4", text)
            self.assertEqual(s.noop()[0], 250)
        self.assertIn('reason="header too big for header_from"', self.x.log_text())

    def test_sender_not_allowed_is_550_before_data(self):
        with smtplib.SMTP("127.0.0.1", self.x.port("smtp"), timeout=30) as s:
            s.ehlo("printer.local")
            code, text = s.mail("intruder@evil.example")
            self.assertEqual(code, 550, text)
            self.assertIn(b"5.7.1", text)
            # The session goes on: an allowed sender works afterwards.
            code, _ = s.mail("someone@example.com")
            self.assertEqual(code, 250)
            s.rset()
        self.assertIn("event=sender_refused account=scanner", self.x.log_text())

    def test_null_sender_allowed_by_list(self):
        mid = R.make_message_id("bounce")
        msg = R.build_message(DEVICE, MAILBOX, mid, "null sender", b"x\r\n")
        self.assertEqual(self.send("<>", msg), {})
        raw = self.rig.wait_for_message_id(MAILBOX, mid)
        self.assertEqual(R.header_value(raw, "Return-Path"), "<%s>" % MAILBOX)


if __name__ == "__main__":
    R.main()
