#!/usr/bin/env python3
"""Sender rules with a real upstream: a scanner on an allowlisted network (no login) sends as
scan@printer.local; xoauthd rewrites the envelope and the From: header to the mailbox (which
the provider demands: Microsoft's 554 5.2.252 SendAsDenied), keeps the display name, puts the
device's address in Reply-To:, and refuses senders outside allowed_senders with 550 5.7.1
before DATA.

    smtplib (no AUTH, from 127.0.0.1) -> xoauthd (allow_networks = 127.0.0.0/8 -> scanner)
        -> rig Postfix (XOAUTH2) -> Dovecot; the delivered copy is read back over IMAP.
"""
import os
import smtplib
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "rig"))
import rig as R  # noqa: E402

CLIENT_ID = "xoauthd-sender-rules"
MAILBOX = "scanner-rules@example.com"
DEVICE = "scan@printer.local"


class SenderRules(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rig = R.start_class_rig(cls)
        cls.rig.idp.set_client(CLIENT_ID, None)
        rt = cls.rig.idp.seed_user(MAILBOX)
        x = R.Xoauthd(cls.rig)
        x.add_listen("smtp", tls="none", allow_networks="127.0.0.0/8 -> scanner")
        x.add_provider("rig", **cls.rig.provider_settings())
        x.add_account("scanner", provider="rig", username=MAILBOX, flow="refresh_token",
                      client_id=CLIENT_ID, refresh_token=rt,
                      envelope_from="account", header_from="account-with-name",
                      allowed_senders="%s, *@example.com, <>" % DEVICE)
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
