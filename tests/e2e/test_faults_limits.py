"""Limits and defences: connections per client address, the invalid-command limits
of SMTP and POP3 (IMAP's is in test_imap_pop3.py), the lockout after repeated failed logins
with replies that stay generic, the fail2ban filter against the daemon's real log lines, and
the listener's TLS floor (TLS 1.1 refused by default, accepted with tls_min_version = 1.0) and
its cipher policy (no static RSA by default, the server's order enforced)."""
import base64
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time

import rig as R
from rig import read_reply
from rig.fake_case import FakeSmtpUpstreamCase

USER = "scanner@example.com"
PASSWORD = "limit-pass;word-3Z"
CLIENT_SECRET = "limits-client-secret"
SRCDIR = os.environ.get("XOAUTHD_SRCDIR",
                        os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
F2B_FILTER = os.path.join(SRCDIR, "contrib", "fail2ban", "xoauthd.conf")


class LimitsTest(FakeSmtpUpstreamCase):
    LOCAL_PASSWORD = PASSWORD
    CLIENT_SECRET = CLIENT_SECRET

    def start(self, listen=None):
        return self.start_smtp("scanner", USER, listen)

    def connect(self, port):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.socks.append(s)
        return s, s.makefile("rb")

    # ---- connections per client address ----------------------------------------------------

    def test_max_connections_per_ip(self):
        x = self.start({"smtp": {"tls": "none", "max_connections_per_ip": "3"},
                        "pop": {"protocol": "pop3", "tls": "none",
                                "max_connections_per_ip": "1"}})
        # The rig's readiness probes connected too: let xoauthd see them go first.
        deadline = time.time() + 5
        while time.time() < deadline and x.log_text().count("event=disconnect") < 2:
            time.sleep(0.05)
        held = []
        for _ in range(3):
            s, f = self.connect(x.port("smtp"))
            self.assertTrue(read_reply(f).startswith("220"))
            held.append((s, f))
        s, f = self.connect(x.port("smtp"))
        r = read_reply(f)
        self.assertTrue(r.startswith("421 4.7.0"), r)
        self.assertEqual(f.readline(), b"", "the refused connection is closed")
        # One leaves: a new one gets in (the count goes down at close).
        held[0][0].sendall(b"QUIT\r\n")
        self.assertTrue(read_reply(held[0][1]).startswith("221"))
        held[0][0].close()
        deadline, ok = time.time() + 5, False
        while time.time() < deadline and not ok:
            s, f = self.connect(x.port("smtp"))
            ok = read_reply(f).startswith("220")
            if not ok:
                time.sleep(0.1)
        self.assertTrue(ok, "a slot came free after QUIT")
        # POP3 with a limit of 1.
        p1, pf1 = self.connect(x.port("pop"))
        self.assertTrue(pf1.readline().startswith(b"+OK"))
        p2, pf2 = self.connect(x.port("pop"))
        self.assertTrue(pf2.readline().startswith(b"-ERR"))
        x.stop()
        self.assertIn("max_connections_per_ip", x.log_text())

    def test_limit_and_tls_key_validation(self):
        for key, value in (("max_connections_per_ip", "lots"),
                           ("max_connections_per_ip", "-1"),
                           ("tls_min_version", "1.4"),
                           ("tls_min_version", "TLSv1")):
            x = R.Xoauthd(self.rig)
            x.add_listen("smtp", tls="none", **{key: value})
            x.write_config()
            p = subprocess.run([x.bin, "check", "-c", x.config_path], capture_output=True,
                               text=True, timeout=30)
            self.assertNotEqual(p.returncode, 0, "%s = %s accepted" % (key, value))
            self.assertIn(key, p.stderr)
            self.assertRegex(p.stderr, r":\d+: ")
        # A cipher list OpenSSL does not know stops the start with a clear message.
        x = R.Xoauthd(self.rig)
        x.add_listen("smtps", tls="implicit", tls_ciphers="NO-SUCH-CIPHER")
        x.write_config()
        p = subprocess.run([x.bin, "run", "-c", x.config_path], capture_output=True,
                           text=True, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("tls_ciphers", p.stderr)

    # ---- descriptors run out (EMFILE) ----------------------------------------------------

    def cpu_ticks(self, pid):
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime

    def test_emfile_no_spin_and_recovery(self):
        """With a hard descriptor limit of 64 and 100 clients, accept fails with EMFILE: xoauthd
        must neither spin nor flood the log, and must serve again once clients leave."""
        import resource
        x = R.Xoauthd(self.rig, log_level="info")
        x.add_listen("smtp", tls="none")
        x.write_config()
        log = open(x.log_path, "ab")
        self.addCleanup(log.close)

        def limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        proc = subprocess.Popen([x.bin, "run", "-c", x.config_path], stdout=log, stderr=log,
                                preexec_fn=limit)

        def stop():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        self.addCleanup(stop)
        port = x.port("smtp")
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        held = []
        for _ in range(100):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
            except OSError:
                continue
            self.socks.append(s)
            held.append(s)
        time.sleep(0.5)
        t0 = self.cpu_ticks(proc.pid)
        time.sleep(2)
        used = self.cpu_ticks(proc.pid) - t0
        hz = os.sysconf("SC_CLK_TCK")
        self.assertLess(used, hz // 2, "xoauthd spun at EMFILE (%d ticks in 2 s)" % used)
        self.assertIsNone(proc.poll(), "xoauthd survived EMFILE")
        for s in held:
            s.close()
        # Served again once descriptors are free.
        deadline, ok = time.time() + 10, False
        while time.time() < deadline and not ok:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                self.socks.append(s)
                ok = s.makefile("rb").readline().startswith(b"220")
            except OSError:
                time.sleep(0.2)
        self.assertTrue(ok, "accepting again after EMFILE")
        self.assertGreater(x.log_text().count("event=connect "), 20)
        # The listener backs off instead (tests/e2e/test_emfile.py checks the backlog): one
        # accept_paused line per episode, rate-limited; nothing else is logged per failure.
        text = x.log_text()
        self.assertLess(text.count("event=accept_failed"), 10, "EMFILE log lines rate-limited")
        self.assertLess(text.count("event=accept_paused"), 10, "EMFILE log lines rate-limited")

    def test_start_raises_nofile_and_disables_core_dumps(self):
        import resource
        x = R.Xoauthd(self.rig, log_level="info")
        x.add_listen("smtp", tls="none")
        x.write_config()
        log = open(x.log_path, "ab")
        self.addCleanup(log.close)

        def limits():
            resource.setrlimit(resource.RLIMIT_NOFILE, (256, 4096))
            resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY,
                                                      resource.RLIM_INFINITY))
        proc = subprocess.Popen([x.bin, "run", "-c", x.config_path], stdout=log, stderr=log,
                                preexec_fn=limits)
        self.addCleanup(lambda: (proc.poll() is None and proc.kill(), proc.wait(10)))
        deadline = time.time() + 20
        while time.time() < deadline and "event=started" not in x.log_text():
            time.sleep(0.05)
        with open("/proc/%d/limits" % proc.pid) as f:
            lim = {l[:26].strip(): l[26:].split() for l in f.read().splitlines()[1:]}
        self.assertEqual(lim["Max open files"][:2], ["4096", "4096"], "soft raised to hard")
        self.assertEqual(lim["Max core file size"][0], "0", "no core dumps")
        proc.terminate()
        proc.wait(20)

    # ---- invalid commands ------------------------------------------------------------------

    def test_smtp_too_many_invalid_commands(self):
        x = self.start()
        s, f = self.connect(x.port("smtp"))
        read_reply(f)
        s.sendall(b"".join(b"FROB %d\r\n" % i for i in range(12)))
        replies = []
        while True:
            try:
                replies.append(read_reply(f))
            except (EOFError, ConnectionResetError):
                break
        self.assertEqual(sum(1 for r in replies if r.startswith("500")), 10, replies)
        self.assertTrue(replies[-1].startswith("421"), replies)
        x.stop()

    def test_pop3_too_many_invalid_commands(self):
        x = self.start({"pop": {"protocol": "pop3", "tls": "none"}})
        s, f = self.connect(x.port("pop"))
        self.assertTrue(f.readline().startswith(b"+OK"))
        s.sendall(b"".join(b"FROB %d\r\n" % i for i in range(12)))
        lines = []
        while True:
            try:
                line = f.readline()
            except ConnectionResetError:
                break
            if not line:
                break
            lines.append(line)
        self.assertTrue(all(l.startswith(b"-ERR") for l in lines), lines)
        self.assertEqual(len(lines), 11, "closed at the 10th error (+ the closing line)")
        self.assertIn(b"Too many errors", lines[-1])
        x.stop()

    # ---- failed-login lockout --------------------------------------------------------------

    def test_lockout_after_repeated_failures(self):
        x = self.start({"smtp": {"tls": "none"}, "pop": {"protocol": "pop3", "tls": "none"}})
        port = x.port("smtp")
        self.assertTrue(self.smtp_auth(port, "scanner", PASSWORD).startswith("235"))
        # Ten failures (wrong password and unknown users), in parallel to save time.
        results = []

        def bad(i):
            user = "scanner" if i % 2 else "nobody%d" % i
            results.append(self.smtp_auth(port, user, "wrong-pw-%d" % i))
        threads = [threading.Thread(target=bad, args=(i,)) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(len(results), 10)
        generic = results[0].strip()
        self.assertTrue(generic.startswith("535 5.7.8"), generic)
        self.assertTrue(all(r.strip() == generic for r in results),
                        "unknown user and wrong password answer the same: %r" % results)
        # Locked: the right password fails now, with the very same reply, and no token is
        # fetched; POP3 from the same address is locked too.
        before = self.rig.idp.user_stats(USER)["token_requests"]
        t0 = time.time()
        r = self.smtp_auth(port, "scanner", PASSWORD)
        self.assertEqual(r.strip(), generic, "a locked login looks like any failure")
        self.assertGreater(time.time() - t0, 0.5, "and is delayed like one")
        self.assertEqual(self.rig.idp.user_stats(USER)["token_requests"], before)
        s, f = self.connect(x.port("pop"))
        f.readline()
        s.sendall(b"USER scanner\r\nPASS " + PASSWORD.encode() + b"\r\n")
        f.readline()
        self.assertTrue(f.readline().startswith(b"-ERR [AUTH]"))
        x.stop()
        log = x.log_text()
        self.assertIn("event=auth_lockout peer=127.0.0.1", log)
        self.assertGreaterEqual(log.count("event=auth_failed"), 12)
        self.assertNotIn(PASSWORD, log)
        # The fail2ban filter finds the address in these very lines.
        self.check_fail2ban(log)

    def check_fail2ban(self, log):
        lines = [l for l in log.splitlines() if "level=" in l]
        path = os.path.join(self.rig.dir, "f2b-sample.log")
        with open(path, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        if shutil.which("fail2ban-regex"):
            p = subprocess.run(["fail2ban-regex", path, F2B_FILTER], capture_output=True,
                               text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            import re
            m = re.search(r"Lines: \d+ lines, \d+ ignored, (\d+) matched", p.stdout)
            self.assertIsNotNone(m, p.stdout)
            want = sum(1 for l in lines if "event=auth_failed" in l) + \
                sum(1 for l in lines if "event=auth_lockout" in l and " address=" in l)
            self.assertEqual(int(m.group(1)), want, p.stdout)
        else:  # the same expressions, by hand
            import configparser
            import re
            cp = configparser.RawConfigParser()
            cp.read(F2B_FILTER)
            pref = cp.get("Definition", "_pref")
            regs = [re.compile(r.replace("%(_pref)s", pref).replace(
                "<HOST>", r"(?P<host>[0-9a-fA-F:.]+)"))
                for r in cp.get("Definition", "failregex").split("\n") if r.strip()]
            hits = 0
            for l in lines:
                rest = l.split(" ", 1)[1]
                if any(r.search(rest) and r.search(rest).group("host") == "127.0.0.1"
                       for r in regs):
                    hits += 1
            self.assertGreater(hits, 10)

    # ---- TLS floor for old printers --------------------------------------------------------

    def tls11_client_ctx(self):
        import warnings
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # TLSv1_1 itself
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(self.rig.ca_file)
        try:
            ctx.minimum_version = ssl.TLSVersion.TLSv1_1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        except (ValueError, ssl.SSLError) as e:
            self.skipTest("local OpenSSL cannot speak TLS 1.1: %s" % e)
        return ctx

    def tls11_handshake(self, port):
        ctx = self.tls11_client_ctx()
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.socks.append(raw)
        try:
            tls = ctx.wrap_socket(raw, server_hostname="localhost")
        except (ssl.SSLError, ConnectionResetError, OSError) as e:
            return None, e
        self.socks.append(tls)
        return tls, None

    def test_tls_min_version(self):
        x = self.start({"old": {"tls": "implicit", "tls_min_version": "1.0"},
                        "new": {"tls": "implicit"}})
        tls, err = self.tls11_handshake(x.port("old"))
        if tls is None and "no protocols available" in str(err):
            self.skipTest("local OpenSSL forbids TLS 1.1 at every level: %s" % err)
        self.assertIsNotNone(tls, "TLS 1.1 accepted with tls_min_version = 1.0: %s" % err)
        self.assertEqual(tls.version(), "TLSv1.1")
        f = tls.makefile("rb")
        self.assertTrue(read_reply(f).startswith("220"))
        tls2, err = self.tls11_handshake(x.port("new"))
        self.assertIsNone(tls2, "TLS 1.1 refused by default")
        x.stop()
        log = x.log_text()
        self.assertIn("event=weak_tls listener=old tls_min_version=1.0", log)
        self.assertNotIn("event=weak_tls listener=new", log)

    def s_client_cipher(self, port, ciphers):
        """The TLS 1.2 suite openssl s_client negotiates offering ciphers (in that order), or
        None when the handshake fails."""
        r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-tls1_2",
                            "-cipher", ciphers, "-servername", "localhost"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
        out = r.stdout.decode(errors="replace")
        for line in out.splitlines():
            if ", Cipher is " in line:
                name = line.split(", Cipher is ")[1].strip()
                return None if name == "(NONE)" else name
        return None

    def test_tls_cipher_policy(self):
        # an RSA certificate, as most devices see: static-RSA key exchange needs one
        cert, key = R.make_client_cert(os.path.join(self.rig.dir, "rsa-listener"),
                                            "listener")
        rsa = {"tls": "implicit", "tls_cert": cert, "tls_key": key}
        x = self.start({"new": dict(rsa),
                        "printer": dict(rsa, tls_ciphers="AES128-SHA:ECDHE-RSA-AES128-GCM-SHA256")})
        new = x.port("new")
        # static-RSA key exchange (no forward secrecy) is not offered by default
        self.assertIsNone(self.s_client_cipher(new, "AES128-SHA"))
        # the ECDHE CBC suites old TLS 1.2 printers know are, last in the server's order
        self.assertEqual(self.s_client_cipher(new, "ECDHE-RSA-AES128-SHA"), "ECDHE-RSA-AES128-SHA")
        # the server's order wins: a client listing CBC first gets GCM
        self.assertEqual(self.s_client_cipher(new, "ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES128-GCM-SHA256"),
                         "ECDHE-RSA-AES128-GCM-SHA256")
        # anything weaker only through tls_ciphers, with a warning; its order is enforced too
        self.assertEqual(self.s_client_cipher(x.port("printer"), "AES128-SHA"), "AES128-SHA")
        self.assertEqual(self.s_client_cipher(x.port("printer"),
                                              "ECDHE-RSA-AES128-GCM-SHA256:AES128-SHA"),
                         "AES128-SHA")
        x.stop()
        log = x.log_text()
        self.assertIn("event=weak_tls listener=printer cipher=AES128-SHA", log)
        self.assertNotIn("event=weak_tls listener=new", log)


if __name__ == "__main__":
    R.main()
