#!/usr/bin/env python3
"""Postfix as a client of xoauthd (docs/protocol-notes.md, "Who is on the other end"):

    sendmail -C DIR -> smarthost Postfix (relayhost = [127.0.0.1]:PORT, SASL with xoauthd's
    local password from a hash: sasl_passwd map) -> xoauthd -> rig Postfix (XOAUTH2) -> Dovecot

The MTA wants exact SMTP semantics: 4xx = retry later, 250 = the provider has the message. So
a temporary failure behind xoauthd (token endpoint answering 500, or xoauthd not running)
must leave the message in the smarthost's deferred queue, and a later retry must deliver it.
"""
import time

import rig as R
from rig.smarthost import SmartHost
from rig.case import RigTestCase

CLIENT_ID = "xoauthd-smarthost-client"
CLIENT_SECRET = "smarthost;secret"
LOCAL_USER = "relay"
LOCAL_PASSWORD = "Relay-Pass;w0rd:with:colons"
MAILBOX = "smarthost@example.com"


class SmarthostPostfix(RigTestCase):
    CLIENT_ID = CLIENT_ID
    CLIENT_SECRET = CLIENT_SECRET
    LOCAL_PASSWORD = LOCAL_PASSWORD

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.x = cls.start_xoauthd()
        cls.addClassCleanup(cls.stop_xoauthd)
        cls.sh = SmartHost(cls.rig, cls.x.port("smtp"), LOCAL_USER, LOCAL_PASSWORD).start()
        cls.addClassCleanup(cls.sh.close)

    @classmethod
    def stop_xoauthd(cls):
        """The class's xoauthd, which a test may have replaced (restarted) meanwhile."""
        if cls.x.running():
            cls.x.stop()

    @classmethod
    def start_xoauthd(cls):
        rt = cls.rig.idp.seed_user(MAILBOX)
        x = R.Xoauthd(cls.rig, log_level="debug")
        x.add_listen("smtp", protocol="smtp", tls="none", allow_plaintext_auth="loopback")
        x.add_provider("rig", **cls.rig.provider_settings())
        x.add_account("relay", local_user=LOCAL_USER, local_password=cls.hash,
                      provider="rig", username=MAILBOX, flow="refresh_token",
                      client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=rt,
                      scope="https://outlook.office.com/SMTP.Send offline_access")
        x.start()
        return x

    def send(self, tag):
        mid = R.make_message_id(tag)
        msg = R.build_message(MAILBOX, MAILBOX, mid, "smarthost " + tag, R.tricky_body())
        self.sh.sendmail(MAILBOX, [MAILBOX], msg)
        return mid

    def setUp(self):
        self.assertEqual(self.sh.queue(), [], "queue not empty before the test")

    def retry_until_delivered(self, mid, timeout=30.0):
        """What an admin's `postqueue -f` (or Postfix's own backoff timer) does: retry until
        the message is gone from the queue; it must then be in the mailbox. xoauthd itself
        may hold back token requests for a few seconds after a failure (retry_in=), so one
        flush right away is not enough."""
        deadline = time.monotonic() + timeout
        while True:
            self.sh.flush()
            try:
                self.sh.wait_queue_empty(timeout=2)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
        self.rig.wait_for_message_id(MAILBOX, mid, timeout=30)

    def test_1_relays_to_mailbox(self):
        mid = self.send("plain")
        raw = self.rig.wait_for_message_id(MAILBOX, mid, timeout=30)
        self.assertEqual(R.split_message(raw)[1], R.tricky_body())
        self.sh.wait_queue_empty()
        self.assertIn("status=sent", self.sh.log_text())
        self.assertIn("relay=127.0.0.1[127.0.0.1]:%d" % self.x.port("smtp"), self.sh.log_text())
        log = self.x.log_text()
        self.assertIn("event=local_login", log)
        self.assertNotIn(LOCAL_PASSWORD, log)

    def test_2_token_endpoint_down_defers_then_retry_delivers(self):
        # A fresh xoauthd has no cached access token: its first token request must fail.
        self.x.stop()
        self.x.start()
        self.rig.idp.fail("500", count=1000)
        try:
            mid = self.send("idp-down")
            q = self.sh.wait_deferred(1)
            self.assertIn("454", q[0]["recipients"][0].get("delay_reason", ""), q)
        finally:
            self.rig.idp.clear_failures()
        self.assertNotIn(mid, " ".join(m.decode(errors="replace")
                                      for m in self.rig.fetch_messages(MAILBOX)))
        self.retry_until_delivered(mid)

    def test_3_xoauthd_stopped_defers_then_retry_delivers(self):
        self.x.stop()
        try:
            mid = self.send("xoauthd-down")
            q = self.sh.wait_deferred(1)
            self.assertIn("connect to 127.0.0.1", q[0]["recipients"][0].get("delay_reason", ""))
        finally:
            self.x.start()
        self.retry_until_delivered(mid)


if __name__ == "__main__":
    R.main()
