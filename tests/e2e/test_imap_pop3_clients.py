#!/usr/bin/env python3
"""Real clients through xoauthd's IMAP and POP3 fronts to the rig's Dovecot: curl (imap://,
pop3:// with user and password), mbsync syncing the whole mailbox (compared with the server's
copy), IDLE seeing a delivery within a second, and a 30 MB message appended and fetched back
with an equal checksum (the relay's backpressure and literals of any size)."""
import hashlib
import imaplib
import os
import re
import sys
import tempfile
import time

import rig as R
from rig import mail_clients as mc
from rig.mail_clients import Raw, USER, LOCAL_USER, PASSWORD
from rig.case import RigTestCase


class MailClientsTest(RigTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.x = mc.start_proxy(cls.rig, upstream_tls="implicit", listens={
            "imaps": {"protocol": "imap", "tls": "implicit"}})
        cls.addClassCleanup(cls.x.stop)
        cls.first = mc.deliver(cls.rig, "first", R.tricky_body())

    def test_curl_imap_and_pop3(self):
        userpw = "%s:%s" % (LOCAL_USER, PASSWORD)
        rc, out, err = mc.curl(["-u", userpw, "imap://127.0.0.1:%d/" % self.x.port("imap")])
        self.assertEqual(rc, 0, err)
        self.assertIn(b"INBOX", out)
        rc, out, err = mc.curl(["-u", userpw,
                                "imap://127.0.0.1:%d/INBOX;UID=1" % self.x.port("imap")])
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, self.first, "curl got the message byte for byte")
        rc, out, err = mc.curl(["-u", userpw, "pop3://127.0.0.1:%d/" % self.x.port("pop3")])
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, rb"^1 \d+\r\n")
        rc, out, err = mc.curl(["-u", userpw, "pop3://127.0.0.1:%d/1" % self.x.port("pop3")])
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, self.first)
        rc, out, err = mc.curl(["-u", LOCAL_USER + ":nope",
                                "imap://127.0.0.1:%d/" % self.x.port("imap")])
        self.assertNotEqual(rc, 0, "a wrong password fails")

    def test_mbsync_whole_mailbox(self):
        # A second folder and a few more messages, put there directly (XOAUTH2, no xoauthd).
        m = self.rig.imap_login(USER)
        m.create("Archive")
        for i in range(12):
            box = "Archive" if i % 3 == 0 else "INBOX"
            msg = R.build_message(USER, USER, R.make_message_id("sync"),
                                       "sync %d" % i, b"line %d\r\n" % i * (i + 1))
            m.append(box, None, None, msg)
        m.logout()
        d = tempfile.mkdtemp(prefix="mbsync-", dir=self.rig.dir)
        rc, out = mc.mbsync(self.rig, self.x.port("imaps"), d)
        self.assertEqual(rc, 0, out)
        for box, sub in (("INBOX", "INBOX"), ("Archive", "Archive")):
            # mbsync adds its own "X-TUID:" tracking header to copies it may have to find again.
            local = sorted(re.sub(rb"(?m)^X-TUID: [^\n]*\n", b"", raw, count=1)
                           for raw in mc.maildir_messages(os.path.join(d, "mail", sub)))
            m = self.rig.imap_login(USER)
            m.select(box, readonly=True)
            typ, data = m.uid("SEARCH", None, "ALL")
            server = []
            for uid in data[0].split():
                typ, dd = m.uid("FETCH", uid, "(BODY.PEEK[])")
                server += [p[1] for p in dd if isinstance(p, tuple)]
            m.logout()
            self.assertGreater(len(server), 0)
            # mbsync writes Maildir files with LF line ends (its conversion for a local store);
            # everything else must be the server's bytes.
            server = sorted(s.replace(b"\r\n", b"\n") for s in server)
            self.assertEqual(local, server, "mbsync's copy of %s equals the server's" % box)

    def test_idle_sees_exists_within_a_second(self):
        r = Raw(self.x.port("imap"))
        self.addCleanup(r.close)
        r.send("i1 LOGIN %s %s\r\ni2 SELECT INBOX\r\n" % (LOCAL_USER, mc.imap_quote(PASSWORD)))
        r.until_tag("i1")
        r.until_tag("i2")
        r.send("i3 IDLE\r\n")
        self.assertTrue(r.line().startswith("+"))
        before = self.rig.count_delivered(USER)
        mid = R.make_message_id("idle")
        self.rig.send_direct_xoauth2(USER, R.build_message(USER, USER, mid, "idle", b"x\r\n"))
        self.assertTrue(mc.wait_for(lambda: self.rig.count_delivered(USER) > before, 20))
        delivered = time.monotonic()
        r.sock.settimeout(5)
        seen = None
        while seen is None and time.monotonic() - delivered < 5:
            ln = r.line()
            if ln.endswith(" EXISTS"):
                seen = time.monotonic()
        self.assertIsNotNone(seen, "no EXISTS during IDLE")
        self.assertLess(seen - delivered, 1.0, "EXISTS %.2fs after delivery" % (seen - delivered))
        r.send("DONE\r\n")
        self.assertTrue(r.until_tag("i3")[1].startswith("i3 OK"))

    def test_30mb_append_and_fetch(self):
        line = b"".join(b"%c" % (33 + (i * 7) % 90) for i in range(76)) + b"\r\n"
        body = line * (30 * 1024 * 1024 // len(line))
        msg = R.build_message(USER, USER, R.make_message_id("big"), "big", body)
        digest = hashlib.sha256(msg).hexdigest()
        m = imaplib.IMAP4("127.0.0.1", self.x.port("imap"), timeout=120)
        m.login(LOCAL_USER, PASSWORD)
        m.create("Big")
        t0 = time.monotonic()
        typ, data = m.append("Big", None, None, msg)
        self.assertEqual(typ, "OK", data)
        m.select("Big")
        typ, data = m.fetch("1", "(BODY.PEEK[])")
        got = [p[1] for p in data if isinstance(p, tuple)][0]
        elapsed = time.monotonic() - t0
        m.logout()
        self.assertEqual(len(got), len(msg))
        self.assertEqual(hashlib.sha256(got).hexdigest(), digest)
        sys.stderr.write("30 MB append + fetch through xoauthd: %.1fs\n" % elapsed)
        log = self.x.log_text()
        self.assertRegex(log, r"bytes_from_client=3\d{7}")


if __name__ == "__main__":
    R.main()
