"""Descriptors run out ("EMFILE back-off"): with a hard RLIMIT_NOFILE of 64, more
clients connect than xoauthd can hold. It must stop accepting for a back-off period instead of
spinning (CPU time over 2 s while saturated), leave the waiting connections in the kernel's
backlog instead of dropping them (they get their greeting later, none sees a close), keep
established sessions working, serve waiting and new clients once descriptors are free again,
and say so in one log line that names the listener and the fix."""
import os
import resource
import select
import socket
import subprocess
import time

import rig as R
from rig import read_reply
from rig.case import RigTestCase

NOFILE = 64
CLIENTS = 100  # well over what 64 descriptors hold, well under the listen backlog (511)


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


class EmfileTest(RigTestCase):
    RIG = {"mail_servers": False}
    LOCAL_PASSWORD = "emfile-pass"

    def start_limited(self):
        x = R.Xoauthd(self.rig, log_level="info")
        x.add_listen("smtp", tls="none")
        x.add_provider("p", token_url=self.rig.token_url, smtp="127.0.0.1:1 none")
        x.add_account("a", local_user="a", local_password=self.hash, provider="p",
                      username="a@example.com", flow="static", access_token="emfile-token")
        x.write_config()
        log = open(x.log_path, "ab")
        self.addCleanup(log.close)

        def limit():
            # xoauthd raises its soft limit to the hard one at start: the hard one counts.
            resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
            R._die_with_parent()
        proc = subprocess.Popen([x.bin, "run", "-c", x.config_path], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, preexec_fn=limit)

        def stop():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        self.addCleanup(stop)
        deadline = time.time() + 20
        while "event=started" not in x.log_text():
            self.assertIsNone(proc.poll(), "xoauthd exited:\n" + x.log_text())
            self.assertLess(time.time(), deadline, "xoauthd did not start:\n" + x.log_text())
            time.sleep(0.05)
        return x, proc

    def connect(self, port):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.addCleanup(s.close)
        return s

    def test_backoff_keeps_backlog_and_recovers(self):
        x, proc = self.start_limited()
        port = x.port("smtp")

        # An established session, before descriptors run out.
        first = self.connect(port)
        ff = first.makefile("rb")
        self.assertTrue(read_reply(ff).startswith("220"))

        # Saturate: every connect succeeds (the kernel completes the handshake), only some
        # are accepted by xoauthd and greeted.
        clients = [self.connect(port) for _ in range(CLIENTS)]
        greeted, closed = set(), set()
        deadline = time.time() + 3
        while time.time() < deadline:
            waiting = [s for s in clients if s not in greeted and s not in closed]
            r, _, _ = select.select(waiting, [], [], 0.2)
            for s in r:
                data = s.recv(512)
                if not data:
                    closed.add(s)
                else:
                    self.assertTrue(data.startswith(b"220"), data)
                    greeted.add(s)
        self.assertEqual(len(closed), 0, "waiting connections were dropped")
        waiting = [s for s in clients if s not in greeted]
        self.assertGreater(len(greeted), 10, "xoauthd served some clients")
        self.assertGreater(len(waiting), 10, "descriptors ran out (the test saturated)")

        # (a) No spinning while saturated.
        t0 = cpu_ticks(proc.pid)
        time.sleep(2)
        used = cpu_ticks(proc.pid) - t0
        hz = os.sysconf("SC_CLK_TCK")
        self.assertLess(used, hz // 5, "xoauthd used %d ticks in 2 s at EMFILE" % used)
        self.assertIsNone(proc.poll())

        # (b) The established session still works.
        first.sendall(b"EHLO printer.local\r\n")
        self.assertTrue(read_reply(ff).startswith("250"))
        first.sendall(b"NOOP\r\n")
        self.assertTrue(read_reply(ff).startswith("250"))

        # The waiting connections are still there: no EOF, no reset, no greeting yet.
        r, _, _ = select.select(waiting, [], [], 0.1)
        self.assertEqual(r, [], "a waiting connection was answered or closed while saturated")

        # (c) Once descriptors are free, every waiting client is served, in backlog order; each
        # is closed after its dialogue, which frees the descriptor for the next.
        first.sendall(b"QUIT\r\n")
        read_reply(ff)
        first.close()
        for s in greeted:
            s.close()
        t_start = time.time()
        for s in waiting:
            s.settimeout(10)
            f = s.makefile("rb")
            self.assertTrue(read_reply(f).startswith("220"), "a waiting client was served")
            s.sendall(b"EHLO printer.local\r\n")
            self.assertTrue(read_reply(f).startswith("250"))
            s.sendall(b"QUIT\r\n")
            self.assertTrue(read_reply(f).startswith("221"))
            s.close()
        self.assertLess(time.time() - t_start, 30)
        # A new client after the episode.
        s = self.connect(port)
        f = s.makefile("rb")
        self.assertTrue(read_reply(f).startswith("220"))
        s.sendall(b"EHLO printer.local\r\n")
        ehlo = read_reply(f)
        self.assertTrue(ehlo.startswith("250") and "AUTH" in ehlo, ehlo)
        s.sendall(b"QUIT\r\n")
        self.assertTrue(read_reply(f).startswith("221"))

        # (d) One log line per episode, naming the listener and the fix; rate-limited.
        log = x.log_text()
        paused = [l for l in log.splitlines() if "event=accept_paused" in l]
        self.assertGreaterEqual(len(paused), 1, log[-3000:])
        self.assertLessEqual(len(paused), 3, "\n".join(paused))
        self.assertIn("listener=smtp", paused[0])
        self.assertIn("Too many open files", paused[0])
        self.assertIn("LimitNOFILE", paused[0])
        self.assertIn("event=accept_resumed listener=smtp", log)
        self.assertEqual(log.count("event=connect "), CLIENTS + 2)  # + first and new

        proc.terminate()
        self.assertEqual(proc.wait(20), 0)
        bad = [l for l in x.log_text().splitlines()
               if any(p in l for p in R.SANITIZER_PATTERNS)]
        self.assertEqual(bad, [])


if __name__ == "__main__":
    R.main()
