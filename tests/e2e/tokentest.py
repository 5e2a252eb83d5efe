"""Helpers shared by the token e2e tests (test_token_*.py): an xoauthd with one SMTP listener in
front of the rig's Postfix (which checks every token through Dovecot's passdb oauth2 and the
mock IdP's introspection), SMTP logins and sends, `xoauthd auth` driven as a human would, and
`xoauthd tokens`.

Every test uses its own mailbox (derived from the test name), so counters at the mock IdP
belong to that test alone."""
import base64
import os
import queue
import re
import signal
import smtplib
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import rig as R
from rig.case import RigTestCase

CLIENT_ID = "xoauthd-token-tests"
CLIENT_SECRET = "tok;Secret~with.semicolon_42"
LOCAL_PASSWORD = "Local-Pass;w0rd#19"
SCOPE = "https://outlook.office.com/SMTP.Send offline_access"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """urllib that reports a redirect instead of following it (paste mode)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class TokenTestBase(RigTestCase):
    CLIENT_ID = CLIENT_ID
    CLIENT_SECRET = CLIENT_SECRET
    LOCAL_PASSWORD = LOCAL_PASSWORD

    def setUp(self):
        self.xs = []
        self.user = "t-%s@example.com" % self._testMethodName.replace("_", "-")
        self.extra_secrets = set()

    def tearDown(self):
        for x in self.xs:
            x.kill_if_running()

    # ----- xoauthd ---------------------------------------------------------------------------
    def make_x(self, accounts, start=True, **global_opts):
        """accounts: {name: {key: value}}; each gets provider "rig" unless it says otherwise."""
        x = R.Xoauthd(self.rig, log_level="debug", **global_opts)
        self.xs.append(x)
        x.add_listen("smtp", protocol="smtp", tls="none", allow_plaintext_auth="loopback")
        prov = self.rig.provider_settings()
        prov["device_code_url"] = self.rig.idp.device_code_url
        prov["authorize_url"] = self.rig.idp.authorize_url
        x.add_provider("rig", **prov)
        for name, opts in accounts.items():
            acct = {"provider": "rig", "username": self.user}
            acct.update(opts)
            x.add_account(name, **acct)
        if start:
            x.start()
        return x

    def refresh_account(self, seed=True, **extra):
        """A refresh_token account with a local password for self.user."""
        acct = dict(local_user="u-" + self._testMethodName[:20], local_password=self.hash,
                    flow="refresh_token", client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                    scope=SCOPE)
        if seed:
            self.seed_rt = self.rig.idp.seed_user(self.user)
            acct["refresh_token"] = self.seed_rt
        acct.update(extra)
        return acct

    # ----- SMTP ------------------------------------------------------------------------------
    def auth(self, x, login, password=LOCAL_PASSWORD, timeout=60):
        """One AUTH PLAIN; returns (code, text). Connection closed afterwards."""
        s = smtplib.SMTP("127.0.0.1", x.port("smtp"), timeout=timeout)
        try:
            s.ehlo("token-e2e.test")
            ir = base64.b64encode(("\0%s\0%s" % (login, password)).encode()).decode()
            return s.docmd("AUTH PLAIN " + ir)
        finally:
            try:
                s.quit()
            except Exception:
                s.close()

    def send(self, x, login, password=LOCAL_PASSWORD, tag="msg"):
        """Logs in and sends one message to self.user; waits until Dovecot has it."""
        mid = R.make_message_id(tag)
        body = ("token e2e %s\r\n" % tag).encode()
        msg = R.build_message(self.user, self.user, mid, "token e2e " + tag, body)
        s = smtplib.SMTP("127.0.0.1", x.port("smtp"), timeout=60)
        try:
            s.ehlo("token-e2e.test")
            if login is not None:
                s.user, s.password = login, password
                code, resp = s.auth("PLAIN", s.auth_plain, initial_response_ok=True)
                self.assertEqual(code, 235, resp)
            self.assertEqual(s.sendmail(self.user, [self.user], msg), {})
        finally:
            try:
                s.quit()
            except Exception:
                s.close()
        raw = self.rig.wait_for_message_id(self.user, mid)
        self.assertEqual(R.split_message(raw)[1], body)
        return mid

    # ----- the mock IdP ------------------------------------------------------------------------
    def stats(self):
        return self.rig.idp.user_stats(self.user)

    def grant_count(self, grant):
        return self.rig.idp.stats()["token_requests"].get(grant, 0)

    # ----- xoauthd auth / tokens ---------------------------------------------------------------
    def auth_cli(self, x, account, args=(), password=None, timeout=60):
        """Starts `xoauthd auth`; returns the Popen (stdin/stdout pipes, text mode)."""
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        p = subprocess.Popen([x.bin, "auth", account, "-c", x.config_path] + list(args),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, bufsize=1, env=env)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        if password is not None:
            p.stdin.write(password + "\n")
            p.stdin.flush()
        p.deadline = time.monotonic() + timeout
        p.seen = []
        # A reader thread: select() on a buffered pipe misses lines already in the buffer.
        p.lines = queue.Queue()

        def pump():
            for line in p.stdout:
                p.lines.put(line)
            p.lines.put(None)
        threading.Thread(target=pump, daemon=True).start()
        return p

    def read_until(self, p, pattern):
        """Reads the CLI's output until a line matches pattern; returns the match."""
        rx = re.compile(pattern)
        while True:
            left = p.deadline - time.monotonic()
            if left <= 0:
                self.fail("xoauthd auth printed no %r:\n%s" % (pattern, "".join(p.seen)))
            try:
                line = p.lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if line is None:
                p.lines.put(None)
                self.fail("xoauthd auth ended (%s) before %r:\n%s"
                          % (p.wait(), pattern, "".join(p.seen)))
            p.seen.append(line)
            m = rx.search(line)
            if m:
                return m

    def finish_cli(self, p, expect=0):
        try:
            p.stdin.close()
        except OSError:
            pass
        p.wait(timeout=max(1, p.deadline - time.monotonic()))
        while True:
            line = p.lines.get(timeout=10)
            if line is None:
                break
            p.seen.append(line)
        text = "".join(p.seen)
        R.secret_collect.collect_text(text, "auth-cli.out")   # for the whole-suite scan
        self.assertEqual(p.returncode, expect, text)
        self.assertNotIn("Sanitizer", text)
        self.assertNotIn("runtime error", text)
        return text

    def device_signin(self, x, account, password=LOCAL_PASSWORD, args=()):
        """`xoauthd auth` with the device flow, the test approving as the user."""
        p = self.auth_cli(x, account, args=args, password=password)
        self.read_until(p, r"Open: https://microsoft\.test/devicelogin")
        code = self.read_until(p, r"Code: (\d{4}-\d{4})").group(1)
        self.assertTrue(self.rig.idp.device_approve(code, self.user)["found"])
        text = self.finish_cli(p)
        self.assertIn("Signed in.", text)
        return text

    def tokens(self, x):
        r = subprocess.run([x.bin, "tokens", "-c", x.config_path], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=60)
        R.secret_collect.collect_text(r.stdout, "tokens-cli.out")  # for the whole-suite scan
        self.assertEqual(r.returncode, 0, r.stdout)
        return r.stdout

    def account_block(self, text, account):
        m = re.search(r"(?ms)^account %s\n(.*?)(?=^account |\Z)" % re.escape(account), text)
        self.assertIsNotNone(m, text)
        return m.group(1)

    # ----- secrets -----------------------------------------------------------------------------
    def secrets(self):
        st = self.stats()
        out = {CLIENT_SECRET, LOCAL_PASSWORD} | self.extra_secrets
        for t in set(st["access_tokens"]) | set(st["refresh_tokens_issued"]) | \
                set(st["refresh_tokens_used"]):
            out |= {t, t[:24], t[-24:]}
        return {s for s in out if s}

    def assert_no_secrets(self, x, texts=()):
        for where, text in [("log", x.log_text())] + list(texts):
            leaked = [s for s in self.secrets() if s in text]
            if leaked:
                lines = [l for l in text.splitlines() if any(s in l for s in leaked)]
                self.fail("a secret in the %s:\n%s" % (where, "\n".join(lines[:5])))

    def store_files(self, x):
        out = {}
        for n in os.listdir(x.state_dir):
            p = os.path.join(x.state_dir, n)
            if not os.path.isfile(p):
                continue  # the control socket (control.sock) lives here too: no data in it
            with open(p, "rb") as f:
                out[n] = f.read()
        return out

    def assert_store_private(self, x):
        """No file in state_dir holds a secret in clear, and none is readable by others."""
        self.assertEqual(os.stat(x.state_dir).st_mode & 0o077, 0)
        for n, data in self.store_files(x).items():
            self.assertEqual(os.stat(os.path.join(x.state_dir, n)).st_mode & 0o077, 0, n)
            for s in self.secrets():
                self.assertNotIn(s.encode(), data, "%s holds a secret in clear" % n)

    def kill9(self, x):
        x.proc.send_signal(signal.SIGKILL)
        x.proc.wait(10)
        x.proc = None
        if x._log:
            x._log.close()
            x._log = None


def main():
    R.main()
