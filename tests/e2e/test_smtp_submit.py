#!/usr/bin/env python3
"""End-to-end tests of xoauthd's SMTP submission path.

    legacy client (swaks / smtplib, AUTH PLAIN|LOGIN) -> xoauthd -> Postfix (STARTTLS, AUTH
    XOAUTH2 checked by Dovecot against the mock IdP) -> LMTP -> Dovecot mailbox

Every message is read back straight from Dovecot over IMAP (XOAUTH2) and its body must be
byte-identical to what the client sent. Each test runs its own xoauthd with its own account,
mailbox and refresh token, so tests do not see each other's tokens or mail. Every test ends
with finish(): xoauthd must exit 0 on SIGTERM, with no sanitizer report and no secret in its log.
"""
import base64
import os
import smtplib
import subprocess
import time
import urllib.parse

import rig as R
from rig.case import RigTestCase

CLIENT_ID = "xoauthd-e2e-client"
CLIENT_SECRET = "cl1ent;Secret~with.semicolon_Q7"   # a ';' must survive the INI reader
LOCAL_USER = "scanner"
LOCAL_PASSWORD = "Scan-Pass;w0rd#7731"
SCOPE = "https://outlook.office.com/SMTP.Send offline_access"


class SmtpSubmit(RigTestCase):
    CLIENT_ID = CLIENT_ID
    CLIENT_SECRET = CLIENT_SECRET
    LOCAL_PASSWORD = LOCAL_PASSWORD

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if LOCAL_PASSWORD in cls.hash:
            raise AssertionError("hash-password printed the password itself")

    def setUp(self):
        self.xs = []
        self.user = "t-%s@example.com" % self._testMethodName.replace("_", "-")

    def tearDown(self):
        for x in self.xs:          # only reached with a live process when the test failed
            x.kill_if_running()

    # ----- helpers ---------------------------------------------------------------------------
    def start_xoauthd(self, upstream="starttls", upstream_port=None, lifetime=None,
                      refresh_margin=0, mechanism="xoauth2", seed=True):
        """xoauthd with a plain listener ("plain", AUTH allowed on loopback) and a STARTTLS
        listener ("starttls", AUTH only after TLS), one account for self.user."""
        rig = self.rig
        self.seed_rt = rig.idp.seed_user(self.user, lifetime=lifetime) if seed else None
        x = R.Xoauthd(rig, log_level="debug")
        self.xs.append(x)
        x.add_listen("plain", protocol="smtp", tls="none", allow_plaintext_auth="loopback")
        x.add_listen("starttls", protocol="smtp", tls="starttls",
                     tls_cert=rig.certs["good_cert"], tls_key=rig.certs["good_key"],
                     allow_plaintext_auth="never")
        port = upstream_port or rig.smtp_submission_port
        x.add_provider("rig", token_url=rig.token_url,
                       smtp="127.0.0.1:%d %s" % (port, upstream), ca_file=rig.ca_file)
        x.add_account("scanner", local_user=LOCAL_USER, local_password=self.hash,
                      provider="rig", username=self.user, flow="refresh_token",
                      client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                      refresh_token=self.seed_rt, scope=SCOPE, mechanism=mechanism,
                      refresh_margin=refresh_margin)
        x.start()
        return x

    def message(self, tag):
        mid = R.make_message_id(tag)
        body = R.tricky_body()
        msg = R.build_message(self.user, self.user, mid, "xoauthd e2e " + tag, body)
        return mid, msg, body

    def smtplib_send(self, x, mech, msg, listener="plain", password=LOCAL_PASSWORD,
                     initial_response=True):
        """Sends msg through xoauthd with smtplib and AUTH PLAIN|LOGIN. Raises on failure."""
        s = smtplib.SMTP("127.0.0.1", x.port(listener), timeout=60)
        try:
            s.ehlo("e2e-client.test")
            if listener == "starttls":
                s.starttls(context=self.rig.ssl_context())
                s.ehlo("e2e-client.test")
            self.assertIn(mech, s.esmtp_features.get("auth", "").upper().split())
            s.user, s.password = LOCAL_USER, password
            authobj = s.auth_plain if mech == "PLAIN" else s.auth_login
            code, resp = s.auth(mech, authobj, initial_response_ok=initial_response)
            self.assertEqual(code, 235, resp)
            refused = s.sendmail(self.user, [self.user], msg)
            self.assertEqual(refused, {})
        finally:
            try:
                s.quit()
            except Exception:
                s.close()

    def attempt(self, x, msg, listener="plain", password=LOCAL_PASSWORD, mech="PLAIN",
                user=LOCAL_USER):
        """One full SMTP transaction; returns ("ok", 250, b"") or (stage, code, text) of the
        first failure (stage: auth | mail | rcpt | data | connection)."""
        s = smtplib.SMTP("127.0.0.1", x.port(listener), timeout=60)
        try:
            s.ehlo("e2e-client.test")
            s.user, s.password = user, password
            try:
                s.auth(mech, s.auth_plain if mech == "PLAIN" else s.auth_login)
            except smtplib.SMTPAuthenticationError as e:
                return ("auth", e.smtp_code, e.smtp_error)
            code, text = s.mail(self.user)
            if code != 250:
                return ("mail", code, text)
            code, text = s.rcpt(self.user)
            if code not in (250, 251):
                return ("rcpt", code, text)
            try:
                s.data(msg)
            except smtplib.SMTPDataError as e:
                return ("data", e.smtp_code, e.smtp_error)
            return ("ok", 250, b"")
        except smtplib.SMTPServerDisconnected as e:
            return ("connection", 0, str(e).encode())
        finally:
            try:
                s.quit()
            except Exception:
                s.close()

    def swaks(self, x, mech, msg, listener="plain", tls=False):
        path = os.path.join(x.dir, "swaks-%d.eml" % time.monotonic_ns())
        # swaks terminates DATA with "\r\n.\r\n" after the text as given: drop the
        # message's own last CRLF so that the body arrives unchanged.
        self.assertTrue(msg.endswith(b"\r\n"))
        with open(path, "wb") as f:
            f.write(msg[:-2])
        cmd = ["swaks", "--server", "127.0.0.1", "--port", str(x.port(listener)),
               "--ehlo", "swaks-client.test", "--from", self.user, "--to", self.user,
               "--auth", mech, "--auth-user", LOCAL_USER, "--auth-password", LOCAL_PASSWORD,
               "--data", "@" + path, "--timeout", "60"]
        if tls:
            cmd += ["-tls", "--tls-verify", "--tls-ca-path", self.rig.ca_file]
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=120)
        out = r.stdout.decode(errors="replace")
        self.assertEqual(r.returncode, 0, "swaks failed:\n" + out)
        return out

    def assert_arrived(self, mid, body):
        raw = self.rig.wait_for_message_id(self.user, mid)
        got = R.split_message(raw)[1]
        if got != body:
            self.fail("body changed on the way:\nsent %r\ngot  %r" % (body, got))
        return raw

    def secrets(self):
        st = self.rig.idp.user_stats(self.user)
        out = {CLIENT_SECRET, LOCAL_PASSWORD,
               urllib.parse.quote_plus(CLIENT_SECRET), urllib.parse.quote(CLIENT_SECRET),
               urllib.parse.quote_plus(LOCAL_PASSWORD),
               base64.b64encode(LOCAL_PASSWORD.encode()).decode(),
               base64.b64encode(("\0%s\0%s" % (LOCAL_USER, LOCAL_PASSWORD)).encode()).decode()}
        tokens = set(st["access_tokens"]) | set(st["refresh_tokens_issued"]) | \
            set(st["refresh_tokens_used"])
        if getattr(self, "seed_rt", None):
            tokens.add(self.seed_rt)
        for t in tokens:
            # the token, and pieces of it (a "redaction" that keeps a head or tail leaks too)
            out |= {t, t[:16], t[-16:], t[len(t) // 2:len(t) // 2 + 16]}
        for t in st["access_tokens"]:
            b64 = base64.b64encode(R.xoauth2_string(self.user, t).encode()).decode()
            out.add(b64[len(b64) // 2:len(b64) // 2 + 24])
        return out

    def assert_no_secrets_in_log(self, x):
        log = x.log_text()
        self.assertTrue(log.strip(), "xoauthd wrote no log at all")
        leaked = [s for s in self.secrets() if s and s in log]
        if leaked:
            lines = [l for l in log.splitlines() if any(s in l for s in leaked)]
            self.fail("secrets in xoauthd's log (%d), e.g.:\n%s"
                      % (len(leaked), "\n".join(lines[:5])))

    def finish(self, x):
        x.stop()                       # exit code 0, no sanitizer report
        self.assert_no_secrets_in_log(x)

    # ----- legacy clients --------------------------------------------------------------------
    def test_swaks_auth_plain(self):
        x = self.start_xoauthd()
        mid, msg, body = self.message("swaks-plain")
        self.swaks(x, "PLAIN", msg)
        self.assert_arrived(mid, body)
        self.finish(x)

    def test_swaks_auth_login_starttls(self):
        x = self.start_xoauthd()
        # allow_plaintext_auth = never: no AUTH before STARTTLS.
        s = smtplib.SMTP("127.0.0.1", x.port("starttls"), timeout=30)
        s.ehlo("e2e-client.test")
        self.assertTrue(s.has_extn("starttls"))
        s.user, s.password = LOCAL_USER, LOCAL_PASSWORD
        with self.assertRaises(smtplib.SMTPException) as cm:
            s.auth("PLAIN", s.auth_plain)
        if isinstance(cm.exception, smtplib.SMTPResponseException):
            self.assertGreaterEqual(cm.exception.smtp_code, 500)
        s.close()
        mid, msg, body = self.message("swaks-login-tls")
        out = self.swaks(x, "LOGIN", msg, listener="starttls", tls=True)
        self.assertIn("TLS started", out)
        self.assert_arrived(mid, body)
        self.finish(x)

    def test_smtplib_auth_plain(self):
        x = self.start_xoauthd()
        mid, msg, body = self.message("py-plain")
        self.smtplib_send(x, "PLAIN", msg)
        self.assert_arrived(mid, body)
        self.finish(x)

    def test_smtplib_auth_login(self):
        x = self.start_xoauthd()
        # smtplib's default: "AUTH LOGIN <user>" (initial response), then the password.
        mid, msg, body = self.message("py-login-ir")
        self.smtplib_send(x, "LOGIN", msg)
        self.assert_arrived(mid, body)
        # Classic exchange ("AUTH LOGIN", 334 Username:, 334 Password:) over STARTTLS.
        mid2, msg2, body2 = self.message("py-login-tls")
        self.smtplib_send(x, "LOGIN", msg2, listener="starttls", initial_response=False)
        self.assert_arrived(mid2, body2)
        # Two logins, one cached access token: one token request in all.
        self.assertEqual(self.rig.idp.user_stats(self.user)["refreshes_ok"], 1)
        self.finish(x)

    # ----- failures --------------------------------------------------------------------------
    def test_wrong_local_password(self):
        x = self.start_xoauthd()
        idp = self.rig.idp
        before = idp.user_stats(self.user)["token_requests"]
        mid, msg, _ = self.message("wrong-pw")
        for mech, user, pw in (("PLAIN", LOCAL_USER, "wrong-password"),
                               ("LOGIN", LOCAL_USER, LOCAL_PASSWORD + "x"),
                               ("PLAIN", "no-such-user", LOCAL_PASSWORD)):
            stage, code, text = self.attempt(x, msg, mech=mech, user=user, password=pw)
            self.assertEqual((stage, code), ("auth", 535), text)
            self.assertIn(b"5.7.8", text)
        # Unauthenticated mail is refused by xoauthd itself.
        s = smtplib.SMTP("127.0.0.1", x.port("plain"), timeout=30)
        s.ehlo("e2e-client.test")
        code, _ = s.mail(self.user)
        self.assertGreaterEqual(code, 500)
        s.close()
        self.assertEqual(idp.user_stats(self.user)["token_requests"], before,
                         "the IdP was asked for a token for a failed local login")
        self.assertEqual(self.rig.count_delivered(self.user), 0)
        self.assertFalse(self.rig.postfix_saw_login(self.user), "Postfix saw a login")
        # The account itself is fine: the right password works.
        mid2, msg2, body2 = self.message("right-pw")
        self.smtplib_send(x, "PLAIN", msg2)
        self.assert_arrived(mid2, body2)
        self.rig.assert_nothing_arrived(self.user, mid)
        self.finish(x)

    def test_wrong_host_upstream_refused(self):
        x = self.start_xoauthd(upstream_port=self.rig.smtp_wrong_host_port)
        mid, msg, _ = self.message("wrong-host")
        stage, code, text = self.attempt(x, msg)
        self.assertTrue(400 <= code < 500, "expected a 4xx, got %s %s %r" % (stage, code, text))
        self.assertFalse(self.rig.postfix_saw_login(self.user), "Postfix saw a login")
        self.rig.assert_nothing_arrived(self.user, mid)
        self.finish(x)

    def test_token_endpoint_500_gives_454(self):
        x = self.start_xoauthd()
        idp = self.rig.idp
        idp.fail("500", count=1000, username=self.user)
        try:
            mid, msg, _ = self.message("idp-500")
            stage, code, text = self.attempt(x, msg)
            self.assertEqual((stage, code), ("auth", 454), text)
            self.assertGreaterEqual(idp.user_stats(self.user)["failed_injected"], 1)
        finally:
            idp.clear_failures()
        self.rig.assert_nothing_arrived(self.user, mid)
        # The seed refresh token was not used up by the failures: once the IdP is back, the
        # same daemon logs in (allowing for a short back-off).
        mid2, msg2, body2 = self.message("idp-back")
        deadline = time.monotonic() + 20
        while True:
            result = self.attempt(x, msg2)
            if result[0] == "ok" or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        self.assertEqual(result[0], "ok", result)
        self.assert_arrived(mid2, body2)
        self.finish(x)

    # ----- tokens ----------------------------------------------------------------------------
    def test_access_token_expiry_refreshes(self):
        x = self.start_xoauthd(lifetime=2, refresh_margin=0)
        idp = self.rig.idp
        mid, msg, body = self.message("before-expiry")
        self.smtplib_send(x, "PLAIN", msg)
        self.assert_arrived(mid, body)
        self.assertGreaterEqual(idp.user_stats(self.user)["refreshes_ok"], 1)
        time.sleep(3)                   # the 2 s token is dead now
        mid2, msg2, body2 = self.message("after-expiry")
        self.smtplib_send(x, "PLAIN", msg2)
        self.assert_arrived(mid2, body2)
        st = idp.user_stats(self.user)
        self.assertGreaterEqual(st["refreshes_ok"], 2)
        self.assertEqual(st["invalid_grant"], 0)
        # Each refresh used the refresh token the previous one returned.
        self.assertEqual(st["refresh_tokens_used"][:2], st["refresh_tokens_issued"][:2])
        self.finish(x)

    def test_revoked_token_refreshed_once(self):
        x = self.start_xoauthd()             # lifetime 60 s: the cache would be trusted
        idp = self.rig.idp
        mid, msg, body = self.message("before-revoke")
        self.smtplib_send(x, "PLAIN", msg)
        self.assert_arrived(mid, body)
        st = idp.user_stats(self.user)
        self.assertEqual(st["refreshes_ok"], 1)
        inactive_before = st["introspections"] - st["introspections_active"]
        self.assertGreaterEqual(idp.expire_access(self.user), 1)
        mid2, msg2, body2 = self.message("after-revoke")
        self.smtplib_send(x, "PLAIN", msg2)
        self.assert_arrived(mid2, body2)
        st = idp.user_stats(self.user)
        self.assertEqual(st["refreshes_ok"], 2, "expected exactly one refresh after the "
                         "upstream refused the cached token")
        self.assertGreater(st["introspections"] - st["introspections_active"], inactive_before,
                           "the cached (revoked) token was never presented upstream")
        self.finish(x)

    def test_rotated_refresh_token_survives_restart(self):
        x = self.start_xoauthd()
        idp = self.rig.idp
        seed = self.seed_rt
        mid, msg, body = self.message("before-restart")
        self.smtplib_send(x, "PLAIN", msg)
        self.assert_arrived(mid, body)
        st = idp.user_stats(self.user)
        self.assertEqual(st["refresh_tokens_used"], [seed])   # the seed is dead now
        rotated = st["refresh_tokens_issued"][-1]
        self.assertNotEqual(rotated, seed)
        x.stop()
        self.assert_no_secrets_in_log(x)
        self.assert_state_files_private(x)
        # Cached access tokens (if persisted) are dead, so the restarted daemon must refresh,
        # and can only do so with the stored (rotated) refresh token, not the config's seed.
        idp.expire_access(self.user)
        x.start()
        mid2, msg2, body2 = self.message("after-restart")
        self.smtplib_send(x, "PLAIN", msg2)
        self.assert_arrived(mid2, body2)
        st = idp.user_stats(self.user)
        self.assertEqual(st["invalid_grant"], 0, "xoauthd used the dead seed refresh token")
        self.assertEqual(st["refresh_tokens_used"][:2], [seed, rotated])
        self.finish(x)

    def state_files(self, x):
        files = []
        for root, _, names in os.walk(x.state_dir):
            files += [os.path.join(root, n) for n in names]
        return files

    def assert_state_files_private(self, x):
        files = self.state_files(x)
        self.assertTrue(files, "state_dir is empty after a refresh token rotation")
        self.assertEqual(os.stat(x.state_dir).st_mode & 0o077, 0)
        for p in files:
            self.assertEqual(os.stat(p).st_mode & 0o077, 0, "%s is readable by others" % p)

    def test_refresh_token_encrypted_at_rest(self):
        """docs/protocol-notes.md, "Tokens at rest": a copied state_dir reveals no refresh token."""
        x = self.start_xoauthd()
        mid, msg, body = self.message("at-rest")
        self.smtplib_send(x, "PLAIN", msg)
        self.assert_arrived(mid, body)
        x.stop()
        st = self.rig.idp.user_stats(self.user)
        self.assert_state_files_private(x)
        files = self.state_files(x)
        plain, encrypted = [], []
        for p in files:
            with open(p, "rb") as f:
                data = f.read()
            if data.startswith(b"xoauthd-token v1 plain"):
                plain.append(p)
            elif data.startswith(b"xoauthd-token v2 aes-256-gcm\n"):
                encrypted.append(p)
            for t in st["refresh_tokens_issued"] + [self.seed_rt]:
                self.assertFalse(t.encode() in data or t[:32].encode() in data,
                                 "%s holds a refresh token in clear" % p)
        self.assert_no_secrets_in_log(x)
        # Encryption at rest is implemented: a store in the old plain format is a regression,
        # not something to skip.
        self.assertEqual(plain, [], "the token store wrote the 'v1 plain' format")
        self.assertTrue(encrypted, "no encrypted token store file in %s: %s"
                        % (x.state_dir, ", ".join(os.path.basename(p) for p in files)))

    def test_no_secrets_in_log(self):
        """A full run at log_level = debug through every path that touches a secret: both
        AUTH mechanisms, STARTTLS, a rejected password, refresh, rotation, revocation."""
        x = self.start_xoauthd()
        idp = self.rig.idp
        mid, msg, body = self.message("secrets-1")
        self.smtplib_send(x, "LOGIN", msg, listener="starttls", initial_response=False)
        self.assert_arrived(mid, body)
        self.attempt(x, msg, password="not-" + LOCAL_PASSWORD)
        idp.expire_access(self.user)
        mid2, msg2, body2 = self.message("secrets-2")
        self.smtplib_send(x, "PLAIN", msg2)
        self.assert_arrived(mid2, body2)
        idp.fail("invalid_grant", count=1, username=self.user)
        idp.expire_access(self.user)
        self.attempt(x, msg)                 # refresh refused: a failure path logs too
        idp.clear_failures()
        x.stop()
        st = idp.user_stats(self.user)
        self.assertGreaterEqual(len(st["access_tokens"]), 2)
        self.assertGreaterEqual(len(st["refresh_tokens_issued"]), 3)
        self.assert_no_secrets_in_log(x)
        # The log is not empty of useful facts either: the account is named.
        self.assertIn("scanner", x.log_text())


if __name__ == "__main__":
    R.main()
