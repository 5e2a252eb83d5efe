#!/usr/bin/env python3
"""Secrets do not outlive their use, and reloads do not grow the daemon:

  * a configuration a reload (SIGHUP) replaced is freed - and its secrets cleansed - once the
    last session that started under it ended: a client secret of the old file is in xoauthd's
    memory before the reload, still there while a session from before the reload is open, and
    gone once that session ended (read from /proc/PID/mem; the test runs as root);
  * 1,000 reloads, with sessions open across some of them, leave resident memory flat: RSS
    after 1,000 reloads is within a generous bound of RSS after 100 (a configuration kept per
    reload, as before, grows it by tens of MB here);
  * a password a client sent (IMAP LOGIN) is not left in xoauthd's read buffers once the login
    is done and the session relays.

Under ASan the daemon's exit also proves no configuration generation leaked (LeakSanitizer);
the quarantine is turned off so that freed memory is reused as in the plain build."""
import os
import secrets
import signal
import socket
import ssl
import time

from rig import procmem
import rig as R
from rig.fake_imap_pop3 import FakeMailUpstream
from rig.case import RigTestCase
from test_reload_shutdown import start_notified

PASSWORD = "pw-reload-memory-" + secrets.token_hex(8)
CLIENT_SECRET = "s3cret-reload-memory"
USER = "reload-memory@example.com"
N_SPARE = 20          # accounts that make each configuration generation weigh something
RELOADS = 1000
RSS_GROWTH_BOUND_KB = 4096


def fresh_secret(tag):
    return "cs-%s-%s" % (tag, secrets.token_hex(12))


class ReloadMemory(RigTestCase):
    RIG = {"mail_servers": False}
    CLIENT_ID = "cid"
    CLIENT_SECRET = CLIENT_SECRET
    LOCAL_PASSWORD = PASSWORD

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.imap = FakeMailUpstream("imap")
        cls.addClassCleanup(cls.imap.stop)
        asan = os.environ.get("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        os.environ["ASAN_OPTIONS"] = asan + ":quarantine_size_mb=0"

    def start(self):
        x = R.Xoauthd(self.rig, log_level="info")
        x.add_listen("imap", protocol="imap", tls="none")
        x.add_listen("imaps", protocol="imap", tls="implicit")
        x.add_listen("smtp", tls="none", allow_networks="127.0.0.0/8 -> reader")
        x.add_provider("fake", token_url=self.rig.token_url, imap=self.imap.endpoint)
        x.add_account("reader", local_user="reader", local_password=self.hash,
                      provider="fake", username=USER, flow="refresh_token", client_id="cid",
                      client_secret=CLIENT_SECRET, refresh_token=self.rig.idp.seed_user(USER))
        for i in range(N_SPARE):
            x.add_account("spare%d" % i, local_user="spare%d" % i, local_password=self.hash,
                          provider="fake", username="spare%d@example.com" % i,
                          flow="refresh_token", client_id="cid",
                          client_secret=fresh_secret("spare%d" % i),
                          refresh_token="rt-" + secrets.token_hex(512))
        self.notify = start_notified(self, x)
        return x

    def set_secret(self, x, account, value):
        for h, o in x.sections:
            if h == "account " + account:
                o["client_secret"] = value

    def reload(self, x):
        """SIGHUP, and wait until the new configuration is in use (READY=1 after it)."""
        x.write_config()
        x.proc.send_signal(signal.SIGHUP)
        self.notify.expect("READY=1")

    def session(self):
        """An SMTP session (allowlisted: no login) that stays open until closed."""
        c = R.SmtpLines(self.x.port("smtp"), greeting=True)
        self.assertTrue(c.cmd("EHLO printer.local").startswith("250"))
        return c

    def end_session(self, c):
        before = self.x.log_text().count("event=disconnect")
        c.cmd("QUIT")
        c.close()
        deadline = time.monotonic() + 10
        while self.x.log_text().count("event=disconnect") <= before:
            self.assertLess(time.monotonic(), deadline, "the session did not end")
            time.sleep(0.02)

    def in_memory(self, s):
        ctx = []
        hit = procmem.contains(self.x.proc.pid, s.encode(), ctx)
        if hit and os.environ.get("PROCMEM_DEBUG"):
            print("\nfound %s in: %r" % (s[:8], ctx[0]))
        return hit

    def test_old_secret_gone_after_its_last_session(self):
        self.x = x = self.start()
        old, new = fresh_secret("old"), fresh_secret("new")
        self.set_secret(x, "spare0", old)
        self.reload(x)
        self.assertTrue(self.in_memory(old), "the scan does not find a secret in use")
        c = self.session()                     # starts under the configuration with old
        self.set_secret(x, "spare0", new)
        self.reload(x)
        self.assertTrue(self.in_memory(new))
        self.assertTrue(self.in_memory(old),
                        "the configuration of an open session was freed under it")
        self.end_session(c)
        self.assertFalse(self.in_memory(old),
                         "a client secret of a replaced configuration is still in memory "
                         "after its last session ended")
        x.stop()

    def test_removed_account_secret_gone(self):
        """A token entry outlives its sessions; an account removed by a reload must not keep
        its configuration (and its client secret) alive through it."""
        self.x = x = self.start()
        gone = fresh_secret("gone")
        x.add_account("leaving", local_user="leaving", local_password=self.hash,
                      provider="fake", username=USER, flow="refresh_token", client_id="cid",
                      client_secret=gone, refresh_token=self.rig.idp.seed_user(USER))
        self.rig.idp.set_client("cid", secret=gone)
        self.addCleanup(self.rig.idp.set_client, "cid", secret=CLIENT_SECRET)
        self.reload(x)
        s = socket.create_connection(("127.0.0.1", x.port("imap")), timeout=20)
        self.addCleanup(s.close)
        f = s.makefile("rb")
        self.assertTrue(f.readline().startswith(b"* OK"))
        s.sendall(b'a1 LOGIN leaving "%s"\r\n' % PASSWORD.encode())
        self.assertTrue(f.readline().startswith(b"a1 OK"))
        s.sendall(b"a2 LOGOUT\r\n")
        self.assertTrue(f.readline().startswith(b"* BYE"))
        f.close()
        s.close()
        x.sections = [(h, o) for h, o in x.sections if h != "account leaving"]
        self.reload(x)
        deadline = time.monotonic() + 10
        while self.x.log_text().count("event=disconnect") < 1:
            self.assertLess(time.monotonic(), deadline, "the session did not end")
            time.sleep(0.02)
        self.assertFalse(self.in_memory(gone), "the secret of a removed account is still in "
                         "memory")
        x.stop()

    def test_thousand_reloads_keep_memory_flat(self):
        self.x = x = self.start()
        open_across = None
        rss = {}
        t0 = time.monotonic()
        for i in range(1, RELOADS + 1):
            self.set_secret(x, "spare1", fresh_secret("r%d" % i))
            if i % 100 == 50:
                open_across = self.session()   # open across the next 25 reloads
            if i % 100 == 75 and open_across is not None:
                self.end_session(open_across)
                open_across = None
            self.reload(x)
            if i in (100, RELOADS):
                rss[i] = R.rss_kb(x.proc.pid)
        took = time.monotonic() - t0
        growth = rss[RELOADS] - rss[100]
        print("\nreloads: %d in %.1fs; RSS after 100: %d kB, after %d: %d kB (%+d kB)"
              % (RELOADS, took, rss[100], RELOADS, rss[RELOADS], growth))
        self.assertLess(growth, RSS_GROWTH_BOUND_KB,
                        "RSS grew by %d kB from reload 100 to %d" % (growth, RELOADS))
        self.assertEqual(x.log_text().count("event=reloaded"), RELOADS)
        # Still serving.
        self.end_session(self.session())
        x.stop()

    def test_password_not_left_in_read_buffers(self):
        self.x = self.start()
        self.login_and_scan(socket.create_connection(("127.0.0.1", self.x.port("imap")),
                                                     timeout=20))

    def test_password_not_left_in_tls_buffers(self):
        """Over TLS the password is decrypted in OpenSSL's record buffer first."""
        self.x = self.start()
        ctx = ssl.create_default_context(cafile=self.rig.ca_file)
        raw = socket.create_connection(("127.0.0.1", self.x.port("imaps")), timeout=20)
        self.login_and_scan(ctx.wrap_socket(raw, server_hostname="localhost"))

    def login_and_scan(self, s):
        """Logs in with PASSWORD over s, then looks for it in xoauthd's memory while the
        session relays; logs out and stops xoauthd."""
        x = self.x
        self.addCleanup(s.close)
        f = s.makefile("rb")
        self.assertTrue(f.readline().startswith(b"* OK"))
        s.sendall(b'a1 LOGIN reader "%s"\r\n' % PASSWORD.encode())
        line = f.readline()
        self.assertTrue(line.startswith(b"a1 OK"), line)
        deadline = time.monotonic() + 10
        while "event=relay_start" not in x.log_text():
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.02)
        self.assertFalse(self.in_memory(PASSWORD),
                         "the client's password is still in xoauthd's memory during the relay")
        s.sendall(b"a2 LOGOUT\r\n")
        self.assertTrue(f.readline().startswith(b"* BYE"))
        f.close()
        s.close()
        x.stop()


if __name__ == "__main__":
    R.main()
