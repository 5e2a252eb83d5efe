"""The failed-login lockout as the field needs it, against the real daemon (SMTP front, a fake
upstream), with clients on distinct loopback addresses (127.0.0.x) standing for distinct hosts:

  * an address that logged in with a name recently is not locked by that name's failures
    elsewhere, also after a restart (STATE_DIR/known_clients); a new address is, and the log
    says reason="locked" with when it ends;
  * attempts while locked neither extend nor count toward the lock;
  * checks in flight count toward the lock: 40 concurrent wrong passwords for one name from
    40 addresses get at most the limit of real checks, and the right password sent among
    them from a new address is refused as locked;
  * auth_lockout and auth_lockout_exempt are configurable and validated with FILE:LINE;
  * `xoauthd unlock NAME|ADDRESS` and a reload clear entries;
  * 500 concurrent wrong-password logins: checks beyond the cap get 454 4.7.0 (IMAP
    NO [UNAVAILABLE], POP3 -ERR [SYS/TEMP]) without a hash, and a legitimate login meanwhile
    (a known address, after a restart: a full check) succeeds within 2 s (the time is
    printed)."""
import asyncio
import os
import re
import signal
import subprocess
import threading
import time

import rig as R
from rig import plain_ir
from rig.fake_case import FakeSmtpUpstreamCase

USER = "lockout@example.com"
PASSWORD = "lockout-pass;word-7Q"
CLIENT_SECRET = "lockout-client-secret"
FLOOD = 500


class AuthLockoutTest(FakeSmtpUpstreamCase):
    LOCAL_PASSWORD = PASSWORD
    CLIENT_SECRET = CLIENT_SECRET

    def start(self, **global_opts):
        return self.start_smtp("scanner", USER, global_opts=global_opts)

    def auth(self, x, source, user="scanner", password=PASSWORD):
        return self.smtp_auth(x.port("smtp"), user, password, source)

    def cli(self, x, *args):
        return subprocess.run([x.bin] + list(args) + ["-c", x.config_path], capture_output=True,
                              text=True, timeout=30)

    def wait_log(self, x, text, count=1, timeout=10):
        deadline = time.monotonic() + timeout
        while x.log_text().count(text) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertGreaterEqual(x.log_text().count(text), count, text)

    # ---- the name lock spares known addresses; the memory survives a restart -------------

    def test_known_address_keeps_logging_in(self):
        x = self.start(auth_lockout="3/10m/15m")
        self.assertTrue(self.auth(x, "127.0.0.2").startswith("235"))
        # A guesser on three other hosts: the name is locked (for new addresses).
        for src in ("127.0.0.3", "127.0.0.4", "127.0.0.5"):
            self.assertTrue(self.auth(x, src, password="wrong").startswith("535"))
        self.wait_log(x, 'event=auth_lockout peer=127.0.0.5 user="scanner"')
        r = self.auth(x, "127.0.0.6")
        self.assertTrue(r.startswith("535 5.7.8"), "a new address is locked: %r" % r)
        self.assertTrue(self.auth(x, "127.0.0.2").startswith("235"),
                        "the address that logged in before is not locked by others' failures")
        log = x.log_text()
        m = re.search(r'event=auth_failed peer=127\.0\.0\.6 user="scanner" reason="locked" '
                      r'until=(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) seconds_left=(\d+)', log)
        self.assertIsNotNone(m, "the refused right password is logged as locked")
        self.assertTrue(880 <= int(m.group(2)) <= 900, m.group(0))
        self.assertNotIn('peer=127.0.0.6 user="scanner" reason="unknown user"', log)
        with open(os.path.join(x.state_dir, "known_clients")) as fh:
            self.assertRegex(fh.read(), r"(?m)^127\.0\.0\.2 scanner \d+$")
        self.assertEqual(os.stat(os.path.join(x.state_dir, "known_clients")).st_mode & 0o077, 0)
        # After a restart the failures are gone, the memory is not.
        x.restart()
        for src in ("127.0.0.3", "127.0.0.4", "127.0.0.5"):
            self.auth(x, src, password="wrong")
        self.wait_log(x, 'event=auth_lockout peer=127.0.0.5 user="scanner"', 2)
        self.assertTrue(self.auth(x, "127.0.0.6").startswith("535"))
        self.assertTrue(self.auth(x, "127.0.0.2").startswith("235"))
        self.assertIn("event=known_clients path=", x.log_text())
        x.stop()

    # ---- attempts while locked neither count nor extend ----------------------------------

    def test_locked_retries_do_not_keep_the_lock(self):
        x = self.start(auth_lockout="2/10m/3s")
        for _ in range(2):
            self.assertTrue(self.auth(x, "127.0.0.7", password="wrong").startswith("535"))
        self.wait_log(x, "event=auth_lockout peer=127.0.0.7 address=")
        locked_at = time.monotonic()
        # A client that retries with the right password throughout the lock (a queue).
        tries = 0
        while time.monotonic() - locked_at < 2.0:
            self.assertTrue(self.auth(x, "127.0.0.7").startswith("535"))
            tries += 1
        self.assertGreaterEqual(tries, 1)
        while time.monotonic() - locked_at < 3.5:
            time.sleep(0.1)
        # Over: neither extended by the retries nor re-locked by one more failure (the retries
        # were not counted, and the lock forgot the failures that set it).
        self.assertTrue(self.auth(x, "127.0.0.7", password="wrong").startswith("535"))
        r = self.auth(x, "127.0.0.7")
        self.assertTrue(r.startswith("235"), r)
        x.stop()
        log = x.log_text()
        self.assertEqual(log.count("event=auth_lockout peer=127.0.0.7 address="), 1, log)
        self.assertEqual(log.count('peer=127.0.0.7 user="scanner" reason="locked"'), tries)

    # ---- configuration ----------------------------------------------------------------------

    def test_exempt_networks_and_validation(self):
        x = self.start(auth_lockout="2/10m/15m", auth_lockout_exempt="127.0.0.12/32, ::1")
        for _ in range(4):
            self.assertTrue(self.auth(x, "127.0.0.12", password="wrong").startswith("535"))
        self.assertTrue(self.auth(x, "127.0.0.12").startswith("235"), "exempt: never locked")
        self.assertNotIn("event=auth_lockout", x.log_text())
        x.stop()
        for key, value in (("auth_lockout", "10/10x/15m"), ("auth_lockout", "0/10m/15m"),
                           ("auth_lockout", "33/10m/15m"), ("auth_lockout", "10/10m"),
                           ("auth_lockout", "10/8d/15m"), ("auth_lockout", "10/10m/0"),
                           ("auth_lockout", "ten/10m/15m"),
                           ("auth_lockout_exempt", "10.0.0.1/33"),
                           ("auth_lockout_exempt", "10.0.0.1/8"),
                           ("auth_lockout_exempt", "127.0.0.1,")):
            y = R.Xoauthd(self.rig, **{key: value})
            y.add_listen("smtp", tls="none")
            y.write_config()
            p = subprocess.run([y.bin, "check", "-c", y.config_path], capture_output=True,
                               text=True, timeout=30)
            self.assertNotEqual(p.returncode, 0, "%s = %s accepted" % (key, value))
            self.assertRegex(p.stderr, re.escape(y.config_path) + r":\d+: .*" + key)

    # ---- unlock and reload -----------------------------------------------------------------

    def lock_name(self, x, nth, new_address):
        """Two wrong passwords for scanner from two addresses lock the name (the nth time):
        new_address is refused then."""
        self.auth(x, "127.0.0.9", password="wrong")
        self.auth(x, "127.0.0.10", password="wrong")
        self.wait_log(x, 'event=auth_lockout peer=127.0.0.10 user="scanner"', nth)
        self.assertTrue(self.auth(x, new_address).startswith("535"))

    def test_unlock_and_reload_clear_entries(self):
        x = self.start(auth_lockout="2/10m/15m")
        for i in range(2):  # two names: only the address is locked
            self.auth(x, "127.0.0.8", user="nobody%d" % i, password="wrong")
        self.wait_log(x, "event=auth_lockout peer=127.0.0.8 address=")
        self.assertTrue(self.auth(x, "127.0.0.8").startswith("535"))
        p = self.cli(x, "unlock", "127.0.0.8")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn('unlocked "127.0.0.8" entries=1', p.stdout)
        self.assertTrue(self.auth(x, "127.0.0.8").startswith("235"), "unlocked by address")
        # The name, locked by two new addresses; unlocked by name.
        self.lock_name(x, 1, "127.0.0.11")
        p = self.cli(x, "unlock", "scanner")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("entries=1", p.stdout)
        self.assertTrue(self.auth(x, "127.0.0.11").startswith("235"), "unlocked by name")
        # Locked again; a reload clears everything.
        self.lock_name(x, 2, "127.0.0.13")
        x.proc.send_signal(signal.SIGHUP)
        self.wait_log(x, "event=reloaded")
        self.assertTrue(self.auth(x, "127.0.0.13").startswith("235"), "a reload clears locks")
        # Usage errors, and the status request still works beside unlock.
        self.assertEqual(self.cli(x, "unlock").returncode, 2)
        p = self.cli(x, "status")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("listeners:", p.stdout)
        x.stop()
        self.assertIn('event=auth_unlock name="scanner" entries=1', x.log_text())

    # ---- concurrent checks in flight count toward the lock ---------------------------------

    async def burst_one_name(self, port, n, results, right):
        """n concurrent wrong passwords for scanner from 127.0.5.1..n; once all are sent, the
        right password from a new address (127.0.5.(n+1)): right gets its reply."""
        sent = asyncio.Event()
        count = [0]

        async def one(src, password):
            r, w = await asyncio.wait_for(asyncio.open_connection(
                "127.0.0.1", port, local_addr=(src, 0)), 30)
            await asyncio.wait_for(r.readline(), 30)
            w.write(b"EHLO x\r\nAUTH PLAIN " + plain_ir("scanner", password).encode() + b"\r\n")
            await w.drain()
            if password != PASSWORD:
                count[0] += 1
                if count[0] == n:
                    sent.set()
            while True:  # the EHLO reply, then the AUTH reply
                line = await asyncio.wait_for(r.readline(), 60)
                if not line or line[3:4] == b" " and not line.startswith(b"250"):
                    break
            w.close()
            return line.decode(errors="replace").strip()

        async def the_right_one():
            await asyncio.wait_for(sent.wait(), 30)
            right.append(await one("127.0.5.%d" % (n + 1), PASSWORD))

        got = await asyncio.gather(the_right_one(),
                                   *(one("127.0.5.%d" % (1 + i), "wrong-%d" % i)
                                     for i in range(n)))
        results.extend(got[1:])

    def test_checks_in_flight_count_toward_the_lock(self):
        x = self.start(auth_lockout="5/10m/15m")
        results, right = [], []
        asyncio.run(self.burst_one_name(x.port("smtp"), 40, results, right))
        self.assertEqual(len(results), 40)
        self.assertTrue(all(v.startswith("535 5.7.8") for v in results), sorted(set(results)))
        self.assertEqual(len(right), 1)
        self.assertTrue(right[0].startswith("535 5.7.8"),
                        "the right password from a new address, once the name is locked: %r"
                        % right[0])
        x.stop()
        log = x.log_text()
        failed = re.findall(r'event=auth_failed peer=127\.0\.5\.\d+ user="scanner" '
                            r'reason="([^"]*)"', log)
        checked = [v for v in failed if v != "locked"]
        print("\n40 concurrent wrong passwords, limit 5: %d checked, %d locked"
              % (len(checked), len(failed) - len(checked)))
        self.assertEqual(len(failed), 41, failed)
        self.assertLessEqual(len(checked), 5, checked)
        self.assertIn('peer=127.0.5.41 user="scanner" reason="locked"', log)
        self.assertNotRegex(log, r"event=local_login.* peer=127\.0\.5\.41 ")

    # ---- 500 concurrent wrong passwords ------------------------------------------------------

    async def flood(self, port, results, started):
        async def one(i):
            src = "127.0.%d.%d" % (1 + i // 250, 1 + i % 250)
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection(
                    "127.0.0.1", port, local_addr=(src, 0)), 30)
                await asyncio.wait_for(r.readline(), 30)
                w.write(b"EHLO x\r\nAUTH PLAIN " +
                        plain_ir("guess%d" % i, "wrong-%d" % i).encode() + b"\r\n")
                started.append(1)
                while True:  # the EHLO reply, then the AUTH reply
                    line = await asyncio.wait_for(r.readline(), 60)
                    if not line or line[3:4] == b" " and not line.startswith(b"250"):
                        break
                results.append(line.decode(errors="replace").strip())
                w.close()
            except (OSError, asyncio.TimeoutError) as e:
                results.append("error %r" % e)
        await asyncio.gather(*(one(i) for i in range(FLOOD)))

    async def flood_lines(self, port, n, subnet, request, skip, results):
        """n concurrent connections from 127.0.SUBNET.x, each sending request after the
        greeting (request % i: distinct names, or the name lock would answer without a
        hash), skipping skip reply lines; results gets the next line of each."""
        async def one(i):
            r, w = await asyncio.wait_for(asyncio.open_connection(
                "127.0.0.1", port, local_addr=("127.0.%d.%d" % (subnet, 1 + i), 0)), 30)
            await asyncio.wait_for(r.readline(), 30)
            w.write(request % i)
            for _ in range(skip):
                await asyncio.wait_for(r.readline(), 30)
            results.append((await asyncio.wait_for(r.readline(), 60)).decode().strip())
            w.close()
        await asyncio.gather(*(one(i) for i in range(n)))

    def test_imap_pop3_temporary_failure_beyond_the_cap(self):
        x = self.start_xoauthd({"imap": {"protocol": "imap", "tls": "none"},
                                "pop": {"protocol": "pop3", "tls": "none"}},
                               {"smtp": "127.0.0.1:%d none" % self.fake.port}, "scanner", USER)
        imap, pop = [], []
        asyncio.run(self.flood_lines(x.port("imap"), 60, 3, b'a LOGIN guess%d "wrong"\r\n', 0,
                                     imap))
        asyncio.run(self.flood_lines(x.port("pop"), 60, 4, b"USER guess%d\r\nPASS wrong\r\n", 1,
                                     pop))
        print("\nIMAP: %s\nPOP3: %s" % (sorted(set(imap)), sorted(set(pop))))
        self.assertTrue(all(v.startswith("a NO [AUTHENTICATIONFAILED]") or
                            v.startswith("a NO [UNAVAILABLE]") for v in imap), imap)
        self.assertTrue(any(v.startswith("a NO [UNAVAILABLE]") for v in imap), imap)
        self.assertTrue(all(v.startswith("-ERR [AUTH]") or v.startswith("-ERR [SYS/TEMP]")
                            for v in pop), pop)
        self.assertTrue(any(v.startswith("-ERR [SYS/TEMP]") for v in pop), pop)
        x.stop()
        self.assertIn("event=auth_deferred protocol=imap", x.log_text())
        self.assertIn("event=auth_deferred protocol=pop3", x.log_text())

    def test_500_wrong_passwords_leave_room_for_a_login(self):
        x = self.start()
        port = x.port("smtp")
        # The smarthost logged in before (a known address), then the daemon restarted: its
        # password is not in the fast path, so its check queues with the flood's (ahead of it).
        self.assertTrue(self.auth(x, "127.0.0.20").startswith("235"))
        x.restart()
        results, started = [], []
        t = threading.Thread(target=lambda: asyncio.run(self.flood(port, results, started)))
        t.start()
        deadline = time.monotonic() + 30
        while len(started) < FLOOD and time.monotonic() < deadline:
            time.sleep(0.01)
        t0 = time.monotonic()
        r = self.auth(x, "127.0.0.20")
        took = time.monotonic() - t0
        print("\nlegitimate login during %d concurrent wrong-password logins (%d sent): %s "
              "in %.3f s" % (FLOOD, len(started), r.split()[0], took))
        t.join(120)
        self.assertFalse(t.is_alive())
        self.assertTrue(r.startswith("235"), r)
        # The 2 s of the README is a measurement (printed above); asserted here is only what
        # a machine under load cannot blur: before the bound on password checks the login
        # queued behind every hash and timed out.
        self.assertLess(took, 10.0)
        self.assertEqual(len(results), FLOOD)
        refused = sum(1 for v in results if v.startswith("535 5.7.8"))
        busy = sum(1 for v in results if v.startswith("454 4.7.0"))
        print("flood answers: %d x 535, %d x 454, %d other" % (refused, busy,
                                                               FLOOD - refused - busy))
        self.assertEqual(refused + busy, FLOOD, [v for v in results if v[:3] not in
                                                 ("535", "454")][:5])
        self.assertGreater(busy, 0, "checks beyond the cap are refused for now, not queued")
        self.assertGreater(refused, 0)
        x.stop()
        log = x.log_text()
        self.assertIn('event=auth_deferred peer=127.0.', log)
        m = re.search(r"event=started .* hash_threads=(\d+) thread_pool=(\d+)", log)
        self.assertIsNotNone(m)
        self.assertEqual(int(m.group(2)), int(m.group(1)) + 4)


if __name__ == "__main__":
    R.main()
