"""Faults after an IMAP or POP3 login, inside the relay. xoauthd logs in to a fake
upstream (tests/rig/fake_imap_pop3.py) that accepts any token and then misbehaves:

  * the provider closes in the middle of a FETCH literal / a RETR: the client's connection is
    closed at once (no hang), xoauthd logs event=relay_end with the reason, stays up, and its
    descriptor count returns to where it was;
  * the client disconnects in the middle of a big FETCH / RETR, or during IDLE: xoauthd closes
    the provider's side at once (the fake sees EOF or a reset);
  * a slow reader after login: the provider streams 200 MB in one FETCH while the client does
    not read; xoauthd's RSS stays bounded, and once the client reads, every byte arrives intact
    (SHA-256);
  * the provider stalls after login and the client waits for its NOOP: the listener's
    idle_timeout ends the session (both sides closed);
  * a client that reads a FETCH for longer than idle_timeout without sending anything is not
    cut off (bytes towards the client count as activity: the fix in proxy/front/relay.c).
"""
import hashlib
import os
import socket
import sys
import time

import rig as R
from rig.fake_imap_pop3 import LOGIN_CAPS, FakeMailUpstream
from rig.case import RigTestCase

USER = "relayfault@example.com"
PASSWORD = "relay-fault-pass;9"
CLIENT_SECRET = "relay-fault-client-secret"
LINE = 78                      # the fake's message is made of 78-byte lines
PROMPT = 5.0                   # seconds within which a close must propagate
SANITIZED = "ASAN_OPTIONS" in os.environ or "UBSAN_OPTIONS" in os.environ


def fd_list(pid, ignore_port):
    """xoauthd's descriptors, without its HTTP connections to the token endpoint (libcurl
    keeps them and opens new ones for background refreshes, whatever the relay does)."""
    ignore = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if int(fields[2].rsplit(":", 1)[1], 16) == ignore_port:
                        ignore.add("socket:[%s]" % fields[9])
        except OSError:
            pass
    out = []
    for n in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, n))
        except OSError:
            continue
        if target not in ignore:
            out.append(target)
    return sorted(out)


def hang_up(s, f):
    """Closes the client's socket for real (a makefile() keeps the descriptor open)."""
    f.close()
    s.close()


class RelayFaults(RigTestCase):
    RIG = {"mail_servers": False}
    CLIENT_ID = "cid"
    CLIENT_SECRET = CLIENT_SECRET
    LOCAL_PASSWORD = PASSWORD

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.imap = FakeMailUpstream("imap")
        cls.addClassCleanup(cls.imap.stop)
        cls.pop = FakeMailUpstream("pop3")
        cls.addClassCleanup(cls.pop.stop)
        x = R.Xoauthd(cls.rig)
        x.add_listen("imap", protocol="imap", tls="none", idle_timeout=3)
        x.add_listen("pop", protocol="pop3", tls="none", idle_timeout=3)
        x.add_listen("imap-default", protocol="imap", tls="none")   # 30 minutes
        x.add_provider("fake", token_url=cls.rig.token_url, imap=cls.imap.endpoint,
                       pop3=cls.pop.endpoint)
        x.add_account("reader", local_user="reader", local_password=cls.hash, provider="fake",
                      username=USER, flow="refresh_token", client_id="cid",
                      client_secret=CLIENT_SECRET, refresh_token=cls.rig.idp.seed_user(USER))
        x.start()
        cls.addClassCleanup(x.stop)
        cls.x = x

    def setUp(self):
        self.assertTrue(self.x.running(), "xoauthd died in an earlier test")
        self.pid = self.x.proc.pid
        self.fds = len(self.fd_list())
        self.log_mark = len(self.x.log_text())
        for fake in (self.imap, self.pop):
            fake.fetch_size, fake.close_after, fake.stall = 1 << 20, None, False
            fake.login_caps = LOGIN_CAPS

    # ----- helpers -----------------------------------------------------------------------------
    def new_log(self):
        return self.x.log_text()[self.log_mark:]

    def wait_log(self, needle, timeout=PROMPT):
        deadline = time.monotonic() + timeout
        while needle not in self.new_log():
            if time.monotonic() > deadline:
                self.fail("no %r in xoauthd's log:\n%s" % (needle, self.new_log()[-3000:]))
            time.sleep(0.05)

    def fd_list(self):
        return fd_list(self.pid, self.rig.ports["idp"])

    def assert_back_to_normal(self):
        """xoauthd is up, and its descriptors return to the count before the test."""
        self.assertTrue(self.x.running(), "xoauthd died")
        deadline = time.monotonic() + PROMPT
        while len(self.fd_list()) > self.fds and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertLessEqual(len(self.fd_list()), self.fds, "descriptors leaked: %s"
                             % self.fd_list())

    def connect(self, name):
        s = socket.create_connection(("127.0.0.1", self.x.port(name)), timeout=30)
        self.addCleanup(s.close)
        return s, s.makefile("rb")

    def login(self, proto, listener=None):
        """Logs in through xoauthd; returns (socket, file, fake's connection record)."""
        fake = self.imap if proto == "imap" else self.pop
        n = len(fake.conns)
        if proto == "imap":
            s, f = self.connect(listener or "imap")
            self.assertTrue(f.readline().startswith(b"* OK"))
            s.sendall(b'a1 LOGIN reader "%s"\r\n' % PASSWORD.encode())
            line = f.readline()
            self.assertTrue(line.startswith(b"a1 OK"), line)
        else:
            s, f = self.connect("pop")
            self.assertTrue(f.readline().startswith(b"+OK"))
            s.sendall(b"USER reader\r\nPASS " + PASSWORD.encode() + b"\r\n")
            self.assertTrue(f.readline().startswith(b"+OK"))
            line = f.readline()
            self.assertTrue(line.startswith(b"+OK"), line)
        self.assertEqual(len(fake.conns), n + 1)
        st = fake.conns[n]
        self.assertTrue(st["logged_in"])
        self.wait_log("event=relay_start")
        return s, f, st

    def read_to_eof(self, s, f, timeout=PROMPT):
        """Reads until EOF; fails if the connection stays open longer than timeout."""
        s.settimeout(timeout)
        got = 0
        t0 = time.monotonic()
        try:
            while True:
                b = f.read1(1 << 16)
                if not b:
                    return got, time.monotonic() - t0
                got += len(b)
        except socket.timeout:
            self.fail("the client's connection was not closed within %.0fs (%d bytes read)"
                      % (timeout, got))
        except ConnectionResetError:
            return got, time.monotonic() - t0

    def wait_peer_gone(self, fake, st, what):
        ok = fake.wait_for(lambda conns: st["peer_gone"] is not None, PROMPT)
        self.assertTrue(ok, "%s: xoauthd did not close the provider's side within %.0fs "
                        "(fake sent %d bytes)" % (what, PROMPT, st["sent"]))

    # ----- a long capability list in the OK of the login -----------------------------------------
    def test_imap_login_ok_carries_a_capability_list_over_4k(self):
        """The provider's list after login (here about 6 KB) reaches the client whole in the
        tagged OK of LOGIN, not cut at a fixed line buffer."""
        caps = [b"X-FAKE-EXTENSION-%04d" % i for i in range(300)]
        self.imap.login_caps = b"IMAP4rev1 IDLE " + b" ".join(caps)
        s, f = self.connect("imap")
        self.assertTrue(f.readline().startswith(b"* OK"))
        s.sendall(b'a1 LOGIN reader "%s"\r\n' % PASSWORD.encode())
        line = f.readline()
        self.assertTrue(line.startswith(b"a1 OK [CAPABILITY IMAP4rev1 IDLE "), line[:80])
        self.assertTrue(line.endswith(b"] fake: logged in\r\n"), line[-80:])
        got = line[len(b"a1 OK [CAPABILITY "):line.index(b"]")].split(b" ")
        self.assertEqual(got, [b"IMAP4rev1", b"IDLE"] + caps)
        self.assertGreater(len(line), 4096)
        s.sendall(b"a2 LOGOUT\r\n")
        self.assertTrue(f.readline().startswith(b"* BYE"))

    # ----- (1) and (5a): the provider closes in the middle of a message ------------------------
    def test_imap_upstream_closes_mid_fetch_literal(self):
        self.imap.fetch_size, self.imap.close_after = 4 << 20, 300 * 1000
        s, f, st = self.login("imap")
        s.sendall(b"a2 FETCH 1 BODY[]\r\n")
        got, _ = self.read_to_eof(s, f)
        self.assertTrue(st.get("cut"))
        # The client gets what the provider sent (the literal header and 300 kB), then EOF.
        self.assertGreaterEqual(got, 300 * 1000)
        self.assertLess(got, 4 << 20)
        self.wait_log('event=relay_end protocol=imap account=reader reason="server closed '
                      'the connection"')
        self.assert_back_to_normal()

    def test_pop3_upstream_closes_mid_retr(self):
        self.pop.fetch_size, self.pop.close_after = 2000 * LINE, 500 * LINE
        s, f, st = self.login("pop3")
        s.sendall(b"RETR 1\r\n")
        got, _ = self.read_to_eof(s, f)
        self.assertTrue(st.get("cut"))
        self.assertGreaterEqual(got, 500 * LINE)
        self.wait_log('event=relay_end protocol=pop3 account=reader reason="server closed '
                      'the connection"')
        self.assert_back_to_normal()

    # ----- (2) and (5b): the client goes away mid-message or during IDLE -----------------------
    def client_gone_mid_message(self, proto, command):
        fake = self.imap if proto == "imap" else self.pop
        fake.fetch_size = 50 * (1 << 20) // LINE * LINE
        s, f, st = self.login(proto)
        s.sendall(command)
        s.settimeout(10)
        got = 0
        while got < 1 << 20:
            b = f.read1(1 << 16)
            self.assertTrue(b, "EOF after %d bytes" % got)
            got += len(b)
        hang_up(s, f)                    # unread data in the buffer: the kernel sends RST
        self.wait_peer_gone(fake, st, "client gone mid-message")
        self.assertLess(st["sent"], fake.fetch_size, "the whole message went out anyway")
        self.wait_log('event=relay_end protocol=%s account=reader reason="client'
                      % ("imap" if proto == "imap" else "pop3"))
        self.assert_back_to_normal()

    def test_imap_client_gone_mid_fetch(self):
        self.client_gone_mid_message("imap", b"a2 FETCH 1 BODY[]\r\n")

    def test_pop3_client_gone_mid_retr(self):
        self.client_gone_mid_message("pop3", b"RETR 1\r\n")

    def test_imap_client_gone_during_idle(self):
        s, f, st = self.login("imap")
        s.sendall(b"a2 IDLE\r\n")
        self.assertEqual(f.readline(), b"+ idling\r\n")
        hang_up(s, f)
        self.wait_peer_gone(self.imap, st, "client gone during IDLE")
        self.wait_log('event=relay_end protocol=imap account=reader reason="client closed '
                      'the connection"')
        self.assert_back_to_normal()

    # ----- (3): slow reader after login -------------------------------------------------------
    def test_imap_slow_reader_big_fetch_bounded_and_intact(self):
        size = int(os.environ.get("XOAUTHD_TEST_RELAY_MB", "200")) * (1 << 20)
        self.imap.fetch_size = size
        # (On a listener with the default idle timeout: this client is silent for seconds.)
        s, f, st = self.login("imap", "imap-default")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        before = R.rss_kb(self.pid)
        s.sendall(b"a2 FETCH 1 BODY[]\r\n")
        # The client reads nothing: the fake must come to a stop (backpressure through
        # xoauthd), with xoauthd holding no more than its buffers.
        last, still, peak = -1, 0, before
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and still < 10:
            time.sleep(0.1)
            peak = max(peak, R.rss_kb(self.pid))
            still = still + 1 if st["sent"] == last else 0
            last = st["sent"]
        self.assertEqual(still, 10, "the provider kept sending to a client that does not read "
                         "(%d bytes sent)" % st["sent"])
        self.assertLess(st["sent"], 64 << 20, "xoauthd read %d bytes ahead of the client"
                        % st["sent"])
        self.assertLess(peak - before, 20 * 1024, "RSS grew %d kB while the client did not read"
                        % (peak - before))
        # Now the client reads: every byte arrives, in order.
        s.settimeout(60)
        header = f.readline()
        self.assertEqual(header, b"* 1 FETCH (BODY[] {%d}\r\n" % size)
        h, left = hashlib.sha256(), size
        t0 = time.monotonic()
        while left:
            b = f.read1(min(left, 1 << 20))
            self.assertTrue(b, "EOF with %d bytes of the literal left" % left)
            h.update(b)
            left -= len(b)
            if left % (16 << 20) < len(b):
                peak = max(peak, R.rss_kb(self.pid))
        elapsed = time.monotonic() - t0
        self.assertEqual(f.readline(), b")\r\n")
        self.assertEqual(f.readline(), b"a2 OK FETCH completed\r\n")
        self.assertEqual(h.hexdigest(), st["sha256"], "the literal changed on the way")
        # Under ASan freed buffers sit in its quarantine for a while: only the stalled phase
        # (above) is a fair measure there.
        if not SANITIZED:
            self.assertLess(peak - before, 20 * 1024, "RSS grew %d kB while relaying"
                            % (peak - before))
        sys.stderr.write("relayed %d MB in %.1fs, RSS +%d kB at most\n"
                         % (size >> 20, elapsed, peak - before))
        s.sendall(b"a3 LOGOUT\r\n")
        self.assertTrue(f.readline().startswith(b"* BYE"))
        self.read_to_eof(s, f)
        self.assert_back_to_normal()

    def test_imap_long_download_outlives_idle_timeout(self):
        """A client that reads a FETCH for longer than idle_timeout (3 s) without sending
        anything is not idle: the literal arrives whole. (Before the fix in relay.c the
        client's timer cut it off, as it counted only the client's input.)"""
        size = 16 * (1 << 20) // LINE * LINE
        self.imap.fetch_size = size
        s, f, st = self.login("imap")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(b"a2 FETCH 1 BODY[]\r\n")
        s.settimeout(10)
        self.assertEqual(f.readline(), b"* 1 FETCH (BODY[] {%d}\r\n" % size)
        h, left, t0 = hashlib.sha256(), size, time.monotonic()
        while left:
            b = f.read(min(left, 256 * 1024))
            self.assertTrue(b, "EOF with %d bytes of the literal left after %.1fs"
                            % (left, time.monotonic() - t0))
            h.update(b)
            left -= len(b)
            time.sleep(0.06)         # 64 reads: about 4 s, longer than idle_timeout
        self.assertGreater(time.monotonic() - t0, 3.5)
        self.assertEqual(f.readline(), b")\r\n")
        self.assertEqual(f.readline(), b"a2 OK FETCH completed\r\n")
        self.assertEqual(h.hexdigest(), st["sha256"])
        s.sendall(b"a3 LOGOUT\r\n")
        self.assertTrue(f.readline().startswith(b"* BYE"))
        self.read_to_eof(s, f)
        self.assert_back_to_normal()

    # ----- (4): the provider stalls after login ----------------------------------------------
    def stalled(self, proto, command):
        fake = self.imap if proto == "imap" else self.pop
        fake.stall = True
        s, f, st = self.login(proto)
        t0 = time.monotonic()
        s.sendall(command)
        got, _ = self.read_to_eof(s, f, timeout=3 + PROMPT)
        waited = time.monotonic() - t0
        self.assertEqual(got, 0, "the stalled provider answered?")
        self.assertGreater(waited, 2.5, "closed before idle_timeout (3 s)")
        self.wait_peer_gone(fake, st, "idle timeout")
        self.wait_log('event=relay_end protocol=%s account=reader reason="client idle for 3 s"'
                      % proto)
        self.assert_back_to_normal()

    def test_imap_upstream_stalls_idle_timeout_ends_it(self):
        self.stalled("imap", b"a2 NOOP\r\n")

    def test_pop3_upstream_stalls_idle_timeout_ends_it(self):
        self.stalled("pop3", b"NOOP\r\n")


if __name__ == "__main__":
    R.main()
