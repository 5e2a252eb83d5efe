#!/usr/bin/env python3
"""Load: many concurrent SMTP sessions and idle IMAP sessions through one xoauthd
against the rig's real Postfix and Dovecot (Rig(load=True) raises their limits), all held
open at the same time:

  1. every IMAP session logs in (LOGIN with the local password) and stays idle;
  2. every SMTP session authenticates (AUTH PLAIN; xoauthd logs in to Postfix with XOAUTH2);
     once all have, all send one message each (a unique Message-ID), then all QUIT;
  3. every IMAP session sends NOOP, then LOGOUT, and sees the server close.

Checks: every SMTP session got 235/250/221 and every IMAP session its OKs and BYE (no other
reply, no reset, no timeout); at the peak xoauthd held two descriptors per session; every
message is in the Dovecot Maildir exactly once; xoauthd's descriptor count returns to its
value before the load; xoauthd logged no warning or error, one `ok` line per session, used
its cached tokens (a few refreshes, no invalid_grant) and exits 0 (no sanitizer report).
xoauthd's RSS before / at the peak / after and the durations are printed, not asserted.

Sizes (SMTP sessions x IMAP sessions):
  default (ctest, CI)                                    200 x 1,000
  xoauthd built with ASan (tests/run.sh --sanitize)      100 x   500
  --full, or XOAUTHD_LOAD_SCALE=full                   1,000 x 5,000  (SECURITY.md)
  XOAUTHD_LOAD_SCALE=S,I                               any other size

By hand: `python3 tests/e2e/test_load.py --full` (XOAUTHD_BIN defaults to build/xoauthd, as in
the rig). Needs RLIMIT_NOFILE hard >= 2 x (S + I) + 200 (xoauthd: two per session)."""
import asyncio
import os
import resource
import sys
import time
import unittest

import rig as R

SCALES = {"ci": (200, 1000), "sanitize": (100, 500), "full": (1000, 5000)}
SMTP_USER = "load-sender@example.com"
IMAP_USER = "load-reader@example.com"
SMTP_LOCAL, IMAP_LOCAL = "loadsender", "loadreader"
PASSWORD = "Load-Test;pass 42"
CLIENT_ID, CLIENT_SECRET = "load-client", "load-client-secret"
RAMP = 100            # sessions connecting / logging in at the same moment (the rest are held)
# Access tokens live 10 s here (the IdP's default is 60 s): xoauthd refreshes them (half the
# lifetime before expiry) several times while the sessions log in, rotating the refresh token.
TOKEN_LIFETIME = 10
STEP_TIMEOUT = 60.0   # one reply, at most; 180 s at the full scale (thousands queue up)


def sanitized_binary(path):
    """True if xoauthd was built with ASan (tests/run.sh --sanitize): it runs several times
    slower, so the test uses its smallest size."""
    try:
        with open(path, "rb") as f:
            prev = b""
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    return False
                if b"__asan_init" in prev[-16:] + chunk:
                    return True
                prev = chunk
    except OSError:
        return False


def pick_scale():
    env = os.environ.get("XOAUTHD_LOAD_SCALE", "")
    if env in SCALES:
        return env, SCALES[env]
    if "," in env:
        s, i = env.split(",", 1)
        return "custom", (int(s), int(i))
    if env:
        raise SystemExit("XOAUTHD_LOAD_SCALE: ci, sanitize, full or SMTP,IMAP (got %r)" % env)
    if sanitized_binary(R.xoauthd_bin()):
        return "sanitize", SCALES["sanitize"]
    return "ci", SCALES["ci"]


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def message_ids_in(maildir):
    """{Message-ID: number of files with it} over new/ and cur/ of a Maildir."""
    seen = {}
    for sub in ("new", "cur"):
        d = os.path.join(maildir, sub)
        if not os.path.isdir(d):
            continue
        for n in os.listdir(d):
            try:
                with open(os.path.join(d, n), "rb") as f:
                    raw = f.read(65536)
            except FileNotFoundError:       # moved from new/ to cur/ meanwhile
                continue
            mid = (R.header_value(raw, "Message-ID") or "").strip("<>")
            seen[mid] = seen.get(mid, 0) + 1
    return seen


class SessionError(Exception):
    pass


class Barrier:
    """Wakes everyone when `total` sessions arrived (succeeded or failed: a failed session
    must not hold the others forever)."""

    def __init__(self, total):
        self.total, self.n, self.ev = total, 0, asyncio.Event()

    def arrive(self):
        self.n += 1
        if self.n >= self.total:
            self.ev.set()

    async def wait(self):
        await asyncio.wait_for(self.ev.wait(), STEP_TIMEOUT * 3)


class Load:
    """The clients of one run; errors are collected per session, not raised."""

    def __init__(self, smtp_port, imap_port, n_smtp, n_imap):
        self.smtp_port, self.imap_port = smtp_port, imap_port
        self.n_smtp, self.n_imap = n_smtp, n_imap
        self.errors = []               # (protocol, session number, what)
        self.sent = []                 # Message-IDs that got 250
        self.imap_done = 0
        self.smtp_done = 0
        self.open = 0                  # client sockets open right now
        self.peak_open = 0
        self.times = {}
        self.auth_plain = b"AUTH PLAIN " + R.plain_ir(SMTP_LOCAL, PASSWORD).encode() + b"\r\n"

    async def _connect(self, port):
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), STEP_TIMEOUT)
        self.open += 1
        self.peak_open = max(self.peak_open, self.open)
        return r, w

    def _close(self, w):
        if w is not None:
            w.close()
            self.open -= 1

    @staticmethod
    async def _line(r):
        line = await asyncio.wait_for(r.readline(), STEP_TIMEOUT)
        if not line:
            raise SessionError("connection closed")
        return line

    async def _smtp_reply(self, r, want):
        lines = []
        while True:
            line = await self._line(r)
            lines.append(line)
            if line[3:4] != b"-":
                break
        if not lines[-1].startswith(want.encode()):
            raise SessionError("wanted %s, got %r" % (want, b"".join(lines)[:300]))

    async def _imap_until(self, r, tag, want=b"OK"):
        untagged = []
        while True:
            line = await self._line(r)
            if line.startswith(tag + b" "):
                if not line[len(tag) + 1:].startswith(want):
                    raise SessionError("wanted %s %s, got %r (after %r)"
                                       % (tag, want, line[:200], untagged[-3:]))
                return untagged
            untagged.append(line)

    async def _eof(self, r):
        """The server closes after QUIT/LOGOUT: nothing more than the close must come."""
        rest = await asyncio.wait_for(r.read(), STEP_TIMEOUT)
        if rest:
            raise SessionError("data after the final reply: %r" % rest[:200])

    async def imap_session(self, i, ramp, logged_in, release):
        w = None
        arrived = False
        try:
            async with ramp:
                r, w = await self._connect(self.imap_port)
                if not (await self._line(r)).startswith(b"* OK"):
                    raise SessionError("no greeting")
                w.write(b"a LOGIN %s \"%s\"\r\n" % (IMAP_LOCAL.encode(), PASSWORD.encode()))
                await self._imap_until(r, b"a")
            logged_in.arrive()
            arrived = True
            await release.wait()          # idle while the SMTP load runs
            w.write(b"b NOOP\r\n")
            await self._imap_until(r, b"b")
            w.write(b"c LOGOUT\r\n")
            untagged = await self._imap_until(r, b"c")
            if not any(u.startswith(b"* BYE") for u in untagged):
                raise SessionError("LOGOUT without BYE: %r" % untagged)
            await self._eof(r)
            self.imap_done += 1
        except (SessionError, OSError, ValueError, asyncio.TimeoutError,
                asyncio.IncompleteReadError) as e:
            self.errors.append(("imap", i, "%s: %s" % (type(e).__name__, e)))
        finally:
            if not arrived:
                logged_in.arrive()
            self._close(w)

    async def smtp_session(self, i, ramp, authed, sent):
        w = None
        stage = [False, False]
        try:
            async with ramp:
                r, w = await self._connect(self.smtp_port)
                await self._smtp_reply(r, "220")
                w.write(b"EHLO load-%d.test\r\n" % i)
                await self._smtp_reply(r, "250")
                w.write(self.auth_plain)
                await self._smtp_reply(r, "235")
            authed.arrive()
            stage[0] = True
            await authed.wait()           # every session authenticated: all send at once
            mid = R.make_message_id("load%d" % i)
            msg = R.build_message(SMTP_USER, SMTP_USER, mid, "load %d" % i,
                                  b"load test message %d\r\n" % i)
            w.write(b"MAIL FROM:<%s>\r\n" % SMTP_USER.encode())
            await self._smtp_reply(r, "250")
            w.write(b"RCPT TO:<%s>\r\n" % SMTP_USER.encode())
            await self._smtp_reply(r, "250")
            w.write(b"DATA\r\n")
            await self._smtp_reply(r, "354")
            w.write(msg + b".\r\n")
            await self._smtp_reply(r, "250")
            self.sent.append(mid)
            sent.arrive()
            stage[1] = True
            await sent.wait()             # every message sent: all QUIT at once
            w.write(b"QUIT\r\n")
            await self._smtp_reply(r, "221")
            await self._eof(r)
            self.smtp_done += 1
        except (SessionError, OSError, ValueError, asyncio.TimeoutError,
                asyncio.IncompleteReadError) as e:
            self.errors.append(("smtp", i, "%s: %s" % (type(e).__name__, e)))
        finally:
            if not stage[0]:
                authed.arrive()
            if not stage[1]:
                sent.arrive()
            self._close(w)

    async def run(self, on_peak):
        ramp = asyncio.Semaphore(RAMP)
        imap_in, release = Barrier(self.n_imap), asyncio.Event()
        smtp_authed, smtp_sent = Barrier(self.n_smtp), Barrier(self.n_smtp)
        t0 = time.monotonic()
        imap = [asyncio.ensure_future(self.imap_session(i, ramp, imap_in, release))
                for i in range(self.n_imap)]
        await imap_in.wait()
        self.times["imap_login"] = time.monotonic() - t0
        t1 = time.monotonic()
        smtp = [asyncio.ensure_future(self.smtp_session(i, ramp, smtp_authed, smtp_sent))
                for i in range(self.n_smtp)]
        await smtp_authed.wait()
        self.times["smtp_auth"] = time.monotonic() - t1
        # The peak: every IMAP session idle and every SMTP session authenticated, all open.
        on_peak(self.open)
        t2 = time.monotonic()
        await smtp_sent.wait()
        self.times["smtp_send"] = time.monotonic() - t2
        await asyncio.gather(*smtp)
        self.times["smtp_total"] = time.monotonic() - t1
        t3 = time.monotonic()
        release.set()
        await asyncio.gather(*imap)
        self.times["imap_logout"] = time.monotonic() - t3
        self.times["total"] = time.monotonic() - t0


class LoadTest(unittest.TestCase):
    def test_concurrent_smtp_and_idle_imap(self):
        global STEP_TIMEOUT
        scale, (n_smtp, n_imap) = pick_scale()
        if n_smtp + n_imap > 2000:
            STEP_TIMEOUT = 180.0
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        need_xo = 2 * (n_smtp + n_imap) + 200      # the test itself needs half of it
        if hard < need_xo:
            self.fail("RLIMIT_NOFILE hard limit %d < %d needed by xoauthd for %d+%d sessions"
                      % (hard, need_xo, n_smtp, n_imap))
        # The test's own sockets; Dovecot, Postfix and xoauthd inherit the limit too.
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        sys.stderr.write("\nload scale %s: %d SMTP sessions, %d IMAP sessions "
                         "(RLIMIT_NOFILE %d)\n" % (scale, n_smtp, n_imap, hard))

        rig = R.Rig(load=True).start()
        self.addCleanup(rig.close)
        rig.idp.set_client(CLIENT_ID, secret=CLIENT_SECRET)
        pw_hash = R.hash_password(PASSWORD)
        x = R.Xoauthd(rig, log_level="info")
        self.addCleanup(x.kill_if_running)
        lim = dict(max_connections=need_xo, max_connections_per_ip=0)
        x.add_listen("smtp", protocol="smtp", tls="none", allow_plaintext_auth="loopback", **lim)
        x.add_listen("imap", protocol="imap", tls="none", allow_plaintext_auth="loopback", **lim)
        x.add_provider("rig", **rig.provider_settings())
        for name, local, user in (("sender", SMTP_LOCAL, SMTP_USER),
                                  ("reader", IMAP_LOCAL, IMAP_USER)):
            x.add_account(name, local_user=local, local_password=pw_hash, provider="rig",
                          username=user, flow="refresh_token", client_id=CLIENT_ID,
                          client_secret=CLIENT_SECRET,
                          refresh_token=rig.idp.seed_user(user, lifetime=TOKEN_LIFETIME))
        x.start()
        pid = x.proc.pid

        # Warm-up, one session each: the tokens, the password's fast path, libcurl's
        # connection to the IdP; the descriptor count after it is the one to come back to.
        warm = Load(x.port("smtp"), x.port("imap"), 1, 1)
        asyncio.run(warm.run(lambda n: None))
        self.assertEqual(warm.errors, [], "warm-up")
        time.sleep(1.0)
        fds_before, rss_before = fd_count(pid), R.rss_kb(pid)
        log_mark = len(x.log_text())     # start-up notes are not the load's business
        idp_before = {u: rig.idp.user_stats(u) for u in (SMTP_USER, IMAP_USER)}

        load = Load(x.port("smtp"), x.port("imap"), n_smtp, n_imap)
        peak = {"fds": 0, "rss": rss_before, "fds_at_barrier": 0, "client_open": 0}

        def on_peak(client_open):
            peak["fds_at_barrier"] = fd_count(pid)
            peak["client_open"] = client_open

        async def sample(stop):
            while not stop.is_set():
                try:
                    peak["fds"] = max(peak["fds"], fd_count(pid))
                    peak["rss"] = max(peak["rss"], R.rss_kb(pid))
                except OSError:
                    return               # xoauthd died: the sessions will say so
                try:
                    await asyncio.wait_for(stop.wait(), 0.5)
                except asyncio.TimeoutError:
                    pass

        async def main():
            stop = asyncio.Event()
            sampler = asyncio.ensure_future(sample(stop))
            try:
                await load.run(on_peak)
            finally:
                stop.set()
                await sampler

        asyncio.run(main())

        # Every session worked, and every one was open at the peak.
        self.assertTrue(x.running(), "xoauthd exited under load:\n" + R._tail(x.log_path))
        errs = load.errors
        if errs:
            self.fail("%d sessions failed, first ones:\n  %s"
                      % (len(errs), "\n  ".join("%s #%d: %s" % e for e in errs[:10])))
        self.assertEqual(load.smtp_done, n_smtp)
        self.assertEqual(load.imap_done, n_imap)
        self.assertEqual(peak["client_open"], n_smtp + n_imap)
        self.assertGreaterEqual(peak["fds_at_barrier"], fds_before + 2 * (n_smtp + n_imap),
                                "xoauthd did not hold a client and an upstream descriptor "
                                "per session at the peak")

        # Upstream logins: Dovecot checked a token for every session (Postfix's SASL goes
        # through Dovecot too), and xoauthd got those tokens from its cache, not with one
        # refresh per session (refresh tokens rotate: concurrent refreshes would fail).
        idp = {}
        for u, n in ((SMTP_USER, n_smtp), (IMAP_USER, n_imap)):
            st = rig.idp.user_stats(u)
            idp[u] = {k: st[k] - idp_before[u][k]
                      for k in ("token_requests", "invalid_grant", "introspections")}
            self.assertGreaterEqual(idp[u]["introspections"], n, u)
            self.assertEqual(idp[u]["invalid_grant"], 0, u)
            self.assertLessEqual(idp[u]["token_requests"],
                                 3 + 2 * load.times["total"] / TOKEN_LIFETIME, u)

        # Every message arrived, once.
        self.assertEqual(len(set(load.sent)), n_smtp)
        maildir = rig.mailbox_path(SMTP_USER)
        want = set(load.sent)
        deadline = time.monotonic() + 60 + n_smtp * 0.2
        t_deliver = time.monotonic()
        while True:
            seen = message_ids_in(maildir)
            if want <= set(seen) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        t_deliver = time.monotonic() - t_deliver
        missing = want - set(seen)
        self.assertEqual(missing, set(), "%d of %d messages not delivered, e.g. %r"
                         % (len(missing), n_smtp, sorted(missing)[:5]))
        dups = {m: n for m, n in seen.items() if n != 1}
        self.assertEqual(dups, {}, "messages delivered more than once")

        # Every descriptor of the sessions is closed again (exact: nothing else is going on).
        deadline = time.monotonic() + 30
        while fd_count(pid) != fds_before and time.monotonic() < deadline:
            time.sleep(0.2)
        fds_after, rss_after = fd_count(pid), R.rss_kb(pid)
        self.assertEqual(fds_after, fds_before, "xoauthd's descriptors before and after: %s"
                         % sorted(os.listdir("/proc/%d/fd" % pid), key=int)[-20:])

        log = x.log_text()
        bad = [l for l in log[log_mark:].splitlines()
               if " level=error " in l or " level=warn " in l]
        self.assertEqual(bad, [], "xoauthd logged errors or warnings under load")
        # xoauthd's own account of every session (one line each when it ends): the load and
        # the warm-up sessions, each ok (SMTP: one message); besides them only start()'s
        # connect probes (no login).
        ends = {}
        for line in log.splitlines():
            if " event=session " not in line:
                continue
            f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
            key = (f.get("account"), f.get("protocol"), f.get("result"),
                   f.get("messages") if f.get("protocol") == "smtp" else "-")
            ends[key] = ends.get(key, 0) + 1
        probes = {k: n for k, n in ends.items() if k[0] == "-" and k[2] == "no_login"}
        self.assertEqual({k: n for k, n in ends.items() if k not in probes},
                         {("sender", "smtp", "ok", "1"): n_smtp + 1,
                          ("reader", "imap", "ok", "-"): n_imap + 1})
        x.stop()               # exit 0 and no sanitizer report

        t = load.times
        rows = [
            ("sessions (SMTP + IMAP)", "%d + %d" % (n_smtp, n_imap)),
            ("IMAP logins (all held)", "%.1f s" % t["imap_login"]),
            ("SMTP AUTH (all held, with the IMAP ones)", "%.1f s" % t["smtp_auth"]),
            ("SMTP send (all at once)", "%.1f s" % t["smtp_send"]),
            ("SMTP total incl. QUIT", "%.1f s" % t["smtp_total"]),
            ("IMAP NOOP + LOGOUT", "%.1f s" % t["imap_logout"]),
            ("client total", "%.1f s" % t["total"]),
            ("delivery to the Maildir after the last 250", "%.1f s" % t_deliver),
            ("token requests SMTP / IMAP account", "%d / %d" % (
                idp[SMTP_USER]["token_requests"], idp[IMAP_USER]["token_requests"])),
            ("token introspections by Dovecot SMTP / IMAP", "%d / %d" % (
                idp[SMTP_USER]["introspections"], idp[IMAP_USER]["introspections"])),
            ("xoauthd fds before / at the peak / max / after",
             "%d / %d / %d / %d" % (fds_before, peak["fds_at_barrier"], peak["fds"], fds_after)),
            ("xoauthd RSS before / peak / after",
             "%.1f / %.1f / %.1f MiB" % (rss_before / 1024, peak["rss"] / 1024,
                                         rss_after / 1024)),
        ]
        w = max(len(k) for k, _ in rows)
        sys.stderr.write("\n".join("  %-*s  %s" % (w, k, v) for k, v in rows) + "\n")


if __name__ == "__main__":
    if "--full" in sys.argv:
        sys.argv.remove("--full")
        os.environ["XOAUTHD_LOAD_SCALE"] = "full"
    R.main()
