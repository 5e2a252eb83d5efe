#!/usr/bin/env python3
"""Reload (SIGHUP), orderly shutdown (SIGTERM) and systemd readiness (sd_notify over
$NOTIFY_SOCKET), against a fake upstream:

  * READY=1 arrives once the listeners accept connections; RELOADING=1 then READY=1 bracket a
    reload; STOPPING=1 starts the shutdown;
  * a reload opens new listeners, closes removed ones, and new sessions see the new accounts
    (allowed_senders), while a transaction that started before it finishes on the old settings;
  * an invalid new file is refused with its FILE:LINE errors logged and the old one kept;
  * SIGTERM stops accepting, lets a DATA in flight finish with 250, then exits 0.
"""
import os
import signal
import socket
import subprocess
import time

import rig as R
from rig.fake_case import CLIENT_SECRET, FakeSmtpCase

USER = "reload@example.com"


class Notify:
    """A datagram socket standing in for systemd's notification socket."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(15)

    def expect(self, key):
        """Waits for a datagram with line key (e.g. "READY=1"); returns all lines seen."""
        seen = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            msg = self.sock.recv(4096).decode()
            seen.append(msg)
            if key in msg.split("\n"):
                return seen
        raise AssertionError("no %s; got %r" % (key, seen))

    def close(self):
        self.sock.close()


def start_notified(test, x):
    """Starts x with $NOTIFY_SOCKET on a Notify of its own (closed after the test), waits for
    READY=1 and returns the Notify."""
    npath = os.path.join(x.dir, "notify.sock")
    if os.path.exists(npath):
        os.unlink(npath)
    notify = Notify(npath)
    test.addCleanup(notify.close)
    os.environ["NOTIFY_SOCKET"] = npath
    try:
        x.start()
    finally:
        del os.environ["NOTIFY_SOCKET"]
    test.addCleanup(x.kill_if_running)
    notify.expect("READY=1")
    return notify


def smtp(port):
    return R.SmtpLines(port, greeting=True)


class ReloadShutdown(FakeSmtpCase):
    def start(self):
        x = R.Xoauthd(self.rig)
        x.add_listen("first", tls="none", allow_networks="127.0.0.0/8 -> dev")
        self.add_fake_account(x, "dev", USER)
        self.notify = start_notified(self, x)
        return x

    def open_transaction(self, port):
        c = smtp(port)
        c.cmd("EHLO printer.local")
        self.assertTrue(c.cmd("MAIL FROM:<scan@printer.local>").startswith("250"))
        self.assertTrue(c.cmd("RCPT TO:<boss@example.com>").startswith("250"))
        self.assertTrue(c.cmd("DATA").startswith("354"))
        c.sock.sendall(b"Subject: in flight\r\n\r\nfirst half\r\n")
        return c

    def test_reload_switches_listeners_and_accounts(self):
        x = self.start()
        old_port = x.port("first")
        inflight = self.open_transaction(old_port)
        # New file: "first" goes, "second" comes, the account gets a sender list.
        x.sections = [(h, o) for h, o in x.sections if h != "listen first"]
        x.add_listen("second", tls="none", allow_networks="127.0.0.0/8 -> dev")
        for h, o in x.sections:
            if h == "account dev":
                o["allowed_senders"] = "*@printer.local"
        x.write_config()
        x.proc.send_signal(signal.SIGHUP)
        seen = self.notify.expect("READY=1")
        self.assertIn("RELOADING=1", "\n".join(seen))
        R.wait_port(x.port("second"), 10, x.proc, "xoauthd")
        # The old listener is closed...
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", old_port), timeout=5).close()
        # ...but its transaction finishes.
        inflight.sock.sendall(b"second half\r\n.\r\n")
        self.assertTrue(inflight.reply().startswith("250"))
        inflight.cmd("QUIT")
        inflight.close()
        # New sessions follow the new account settings.
        c = smtp(x.port("second"))
        c.cmd("EHLO printer.local")
        self.assertTrue(c.cmd("MAIL FROM:<x@elsewhere.example>").startswith("550"))
        self.assertTrue(c.cmd("MAIL FROM:<scan@printer.local>").startswith("250"))
        c.cmd("RSET")
        c.close()
        log = x.log_text()
        self.assertIn("event=reloaded", log)
        self.assertIn("event=listener_closed listener=first", log)

        # An invalid file is refused; the running configuration stays.
        for h, o in x.sections:
            if h == "account dev":
                o["envelope_from"] = "sometimes"
        x.write_config()
        x.proc.send_signal(signal.SIGHUP)
        self.notify.expect("READY=1")
        deadline = time.monotonic() + 10
        while "event=reload_refused" not in x.log_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        log = x.log_text()
        self.assertIn("event=reload_refused", log)
        self.assertRegex(log, r"event=reload_error message=\".*xoauthd.ini:\d+: ")
        c = smtp(x.port("second"))
        c.cmd("EHLO printer.local")
        self.assertTrue(c.cmd("MAIL FROM:<scan@printer.local>").startswith("250"))
        c.close()
        x.stop()

    def test_reload_changes_token_requests(self):
        """A changed account setting (the client credentials) is what the next token request
        of a new session sends: the token manager follows the reload."""
        x = self.start()
        for h, o in x.sections:
            if h == "account dev":
                o["client_id"] = "cid-reloaded"
                o["client_secret"] = "s3cret-reloaded"
        x.write_config()
        self.rig.idp.set_client("cid-reloaded", secret="s3cret-reloaded")
        # The old credentials stop working: only the reloaded ones can get a token.
        self.rig.idp.set_client("cid", secret="revoked-secret")
        self.addCleanup(self.rig.idp.set_client, "cid", secret=CLIENT_SECRET)
        before = len(self.fake.messages)
        x.proc.send_signal(signal.SIGHUP)
        self.notify.expect("READY=1")
        c = smtp(x.port("first"))
        c.cmd("EHLO printer.local")
        self.assertTrue(c.cmd("MAIL FROM:<scan@printer.local>").startswith("250"))
        self.assertTrue(c.cmd("RCPT TO:<boss@example.com>").startswith("250"))
        self.assertTrue(c.cmd("DATA").startswith("354"))
        self.assertTrue(c.cmd("Subject: after reload\r\n\r\nbody\r\n.").startswith("250"))
        c.cmd("QUIT")
        c.close()
        self.assertEqual(len(self.fake.messages), before + 1)
        log = x.log_text()
        self.assertIn("event=token_refreshed account=dev", log)
        self.assertNotIn("event=token_error", log)
        x.stop()

    def test_sigterm_lets_data_finish(self):
        x = self.start()
        before = len(self.fake.messages)
        inflight = self.open_transaction(x.port("first"))
        idle = smtp(x.port("first"))
        x.proc.send_signal(signal.SIGTERM)
        self.notify.expect("STOPPING=1")
        # The idle session is told 421; new connections are refused.
        self.assertTrue(idle.reply().startswith("421"))
        idle.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", x.port("first")), timeout=2).close()
                time.sleep(0.05)
            except OSError:
                break
        else:
            self.fail("still accepting after SIGTERM")
        inflight.sock.sendall(b"second half\r\n.\r\n")
        self.assertTrue(inflight.reply().startswith("250"))
        self.assertTrue(inflight.reply().startswith("421"))
        inflight.close()
        self.assertEqual(x.proc.wait(15), 0)
        self.assertEqual(len(self.fake.messages), before + 1)
        self.assertEqual(x.stop(), 0)

    def test_sigterm_ends_a_goodbye_nobody_reads(self):
        """A client that stopped reading has replies queued when SIGTERM comes; its 421 can never
        be written. Once shutdown_timeout is over the session is dropped and xoauthd exits,
        instead of waiting for that flush for ever."""
        x = self.new_xoauthd(shutdown_timeout="1")
        x.add_listen("first", tls="none")
        x.start()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(s.close)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", x.port("first")))
        s.setblocking(False)
        # EHLO replies are ~25 times longer than the command: the client's window and xoauthd's
        # socket buffer fill, then its write queue, then it stops reading (backpressure).
        chunk = b"EHLO stuck.example\r\n" * 500
        deadline = time.monotonic() + 20
        blocked_since = None
        while time.monotonic() < deadline:
            try:
                s.send(chunk)
                blocked_since = None
            except BlockingIOError:
                blocked_since = blocked_since or time.monotonic()
                if time.monotonic() - blocked_since > 1.0:
                    break
                time.sleep(0.02)
        else:
            self.fail("xoauthd kept reading from a client that does not read")
        x.proc.send_signal(signal.SIGTERM)
        try:
            rc = x.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.fail("xoauthd still runs 15 s after SIGTERM (shutdown_timeout = 1):\n"
                      + x.log_text()[-2000:])
        self.assertEqual(rc, 0)
        self.assertIn("event=shutdown_grace_over sessions=1", x.log_text())


if __name__ == "__main__":
    R.main()
