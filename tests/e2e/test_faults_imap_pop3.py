"""Faults on the IMAP and POP3 fronts: the provider refuses the connection or hangs
up right after its greeting (temporary failure to the client: IMAP NO [UNAVAILABLE], POP3
-ERR [SYS/TEMP]); a client that pipelines commands and never reads the replies (xoauthd's
memory stays bounded). The token endpoint cases are in test_imap_pop3.py."""
import socket
import threading

import rig as R
from rig import free_port
from rig.fake_case import FakeUpstreamCase

USER = "reader@example.com"
PASSWORD = "imap-fault-pass;7"
CLIENT_SECRET = "imap-fault-client-secret"


class HangUpServer:
    """Accepts, sends a greeting line, reads one line and closes: a provider that dies."""

    def __init__(self, greeting):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.greeting = greeting
        self.received = []
        self.stopped = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                c.settimeout(5)
                c.sendall(self.greeting)
                self.received.append(c.recv(4096))
            except OSError:
                pass
            c.close()

    def stop(self):
        self.stopped = True
        self.sock.close()


class ImapPop3Faults(FakeUpstreamCase):
    LOCAL_PASSWORD = PASSWORD
    CLIENT_SECRET = CLIENT_SECRET

    def setUp(self):
        super().setUp()
        self.socks = R.closed_after(self)

    def start(self, imap, pop3):
        return self.start_xoauthd({"imap": {"protocol": "imap", "tls": "none"},
                                   "pop": {"protocol": "pop3", "tls": "none"}},
                                  {"imap": imap, "pop3": pop3}, "reader", USER)

    def connect(self, port):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.socks.append(s)
        return s, s.makefile("rb")

    def imap_login(self, x):
        s, f = self.connect(x.port("imap"))
        self.assertTrue(f.readline().startswith(b"* OK"))
        s.sendall(b'a1 LOGIN reader "%s"\r\n' % PASSWORD.encode())
        while True:
            line = f.readline()
            if not line or line.startswith(b"a1 "):
                return line

    def pop3_login(self, x):
        s, f = self.connect(x.port("pop"))
        self.assertTrue(f.readline().startswith(b"+OK"))
        s.sendall(b"USER reader\r\nPASS " + PASSWORD.encode() + b"\r\n")
        self.assertTrue(f.readline().startswith(b"+OK"))
        return f.readline()

    def assert_no_secrets(self, x, replies):
        st = self.rig.idp.user_stats(USER)
        secrets = [s for s in list(st["access_tokens"]) + list(st["refresh_tokens_issued"]) +
                   [CLIENT_SECRET, PASSWORD] if s]
        for text in [x.log_text()] + [r.decode("latin-1") for r in replies]:
            for s in secrets:
                self.assertNotIn(s, text, "a secret reached a log or a reply")

    def test_provider_refuses_connection(self):
        x = self.start("127.0.0.1:%d none" % free_port(), "127.0.0.1:%d none" % free_port())
        r1 = self.imap_login(x)
        self.assertTrue(r1.startswith(b"a1 NO [UNAVAILABLE]"), r1)
        r2 = self.pop3_login(x)
        self.assertTrue(r2.startswith(b"-ERR [SYS/TEMP]"), r2)
        x.stop()
        self.assert_no_secrets(x, [r1, r2])

    def test_provider_hangs_up_after_greeting(self):
        imap = HangUpServer(b"* OK fake IMAP ready\r\n")
        pop = HangUpServer(b"+OK fake POP3 ready\r\n")
        self.addCleanup(imap.stop)
        self.addCleanup(pop.stop)
        x = self.start("127.0.0.1:%d none" % imap.port, "127.0.0.1:%d none" % pop.port)
        r1 = self.imap_login(x)
        self.assertTrue(r1.startswith(b"a1 NO [UNAVAILABLE]"), r1)
        r2 = self.pop3_login(x)
        self.assertTrue(r2.startswith(b"-ERR [SYS/TEMP]"), r2)
        x.stop()
        self.assertTrue(imap.received and pop.received, "xoauthd did reach both fakes")
        self.assert_no_secrets(x, [r1, r2])

    def test_slow_reader_before_login_memory_bounded(self):
        x = self.start("127.0.0.1:%d none" % free_port(), "127.0.0.1:%d none" % free_port())
        before = R.rss_kb(x.proc.pid)
        for name, cmd in (("imap", b"a NOOP\r\n"), ("pop", b"NOOP\r\n")):
            # (Closed for too many errors is fine too: POP3 NOOP before login.)
            s, sent = R.flood_without_reading(x.port(name), cmd, 6)
            self.socks.append(s)
            self.assertLess(sent, 32 * 1024 * 1024, "%s: xoauthd kept reading (%d bytes)"
                            % (name, sent))
        after = R.rss_kb(x.proc.pid)
        self.assertLess(after - before, 64 * 1024, "RSS grew %d kB" % (after - before))
        self.assertTrue(x.running())
        # (Close first: a graceful stop waits up to shutdown_timeout for replies to flush.)
        for s in self.socks:
            s.close()
        x.stop()


if __name__ == "__main__":
    R.main()
