#!/usr/bin/env python3
"""Self-check of the e2e rig, WITHOUT xoauthd: if this fails, the other e2e tests prove nothing.

Proves: the mock IdP issues and rotates tokens; Postfix accepts XOAUTH2 (and OAUTHBEARER) after
STARTTLS, verified against the test CA, and on implicit TLS; a message sent that way reaches the
Dovecot mailbox with a byte-identical body; so does one sent through Dovecot's submission service; bad and expired tokens are refused by Postfix (535),
Dovecot IMAP and POP3; unauthenticated mail is refused; the wrong-host-name listener's
certificate is signed by the test CA but fails host-name verification for 127.0.0.1.
"""
import base64
import imaplib
import poplib
import smtplib
import ssl
import time

import rig as R
from rig.case import RigTestCase

CLIENT_ID = "rig-selfcheck-client"
CLIENT_SECRET = "s3cret;with~semicolon"


class RigSelfCheck(RigTestCase):
    RIG = {"needs_xoauthd": False}
    CLIENT_ID = CLIENT_ID
    CLIENT_SECRET = CLIENT_SECRET

    def refresh(self, rt):
        status, body = self.rig.idp.refresh(CLIENT_ID, rt, CLIENT_SECRET,
                                            "https://outlook.office.com/SMTP.Send offline_access")
        return status, body

    # --------------------------------------------------------------------------------------
    def test_idp_rotation_and_errors(self):
        idp = self.rig.idp
        user = "idp-check@example.com"
        rt0 = idp.seed_user(user)
        status, body = self.refresh(rt0)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["token_type"], "Bearer")
        self.assertEqual(body["expires_in"], 60)
        rt1 = body["refresh_token"]
        self.assertNotEqual(rt1, rt0)
        # The old refresh token died on use, like Microsoft's.
        status, body2 = self.refresh(rt0)
        self.assertEqual(status, 400)
        self.assertEqual(body2["error"], "invalid_grant")
        self.assertIn("AADSTS70008", body2["error_description"])
        # Bad client secret / unknown client.
        status, body3 = idp.refresh(CLIENT_ID, rt1, "wrong-secret")
        self.assertEqual((status, body3["error"]), (401, "invalid_client"))
        status, body3 = idp.refresh("nobody", rt1, CLIENT_SECRET)
        self.assertEqual((status, body3["error"]), (401, "invalid_client"))
        # Injected failures hit only the next matching request.
        idp.fail("500", username=user)
        self.assertEqual(self.refresh(rt1)[0], 500)
        idp.fail("malformed", username=user)
        status, raw = self.refresh(rt1)
        self.assertEqual(status, 200)
        self.assertIsInstance(raw, str)       # not JSON
        idp.fail("invalid_grant", username=user)
        self.assertEqual(self.refresh(rt1)[1]["error"], "invalid_grant")
        status, body4 = self.refresh(rt1)     # rt1 survived the injected failures
        self.assertEqual(status, 200, body4)
        st = idp.user_stats(user)
        self.assertEqual(st["refreshes_ok"], 2)
        self.assertEqual(st["failed_injected"], 3)
        self.assertEqual(st["refresh_tokens_used"], [rt0, rt1])
        self.assertEqual(idp.stats()["current_refresh"][user], body4["refresh_token"])
        # client_credentials: no refresh token; password grant.
        idp.set_client("app-client", "app-secret", username="app@example.com")
        status, cc = idp.token_request({"grant_type": "client_credentials",
                                        "client_id": "app-client", "client_secret": "app-secret",
                                        "scope": "https://outlook.office365.com/.default"})
        self.assertEqual(status, 200, cc)
        self.assertNotIn("refresh_token", cc)
        idp.seed_user("ropc@example.com", password="ropc-pw-1")
        status, pw = idp.token_request({"grant_type": "password", "client_id": CLIENT_ID,
                                        "client_secret": CLIENT_SECRET,
                                        "username": "ropc@example.com", "password": "ropc-pw-1",
                                        "scope": "offline_access"})
        self.assertEqual(status, 200, pw)
        self.assertIn("refresh_token", pw)
        status, pw = idp.token_request({"grant_type": "password", "client_id": CLIENT_ID,
                                        "client_secret": CLIENT_SECRET,
                                        "username": "ropc@example.com", "password": "bad-ropc-pw"})
        self.assertEqual((status, pw["error"]), (400, "invalid_grant"))

    def test_submit_starttls_xoauth2_roundtrip(self):
        """Token from the IdP -> STARTTLS + AUTH XOAUTH2 to Postfix -> mailbox, byte-identical."""
        rig = self.rig
        user = "selfcheck@example.com"
        rt = rig.idp.seed_user(user)
        status, body = self.refresh(rt)
        self.assertEqual(status, 200, body)
        token = body["access_token"]
        self.assertGreater(len(R.xoauth2_string(user, token)) * 4 // 3, 512,
                           "tokens should be long enough to exercise the 512-octet line limit")
        mid = R.make_message_id("selfcheck")
        msg_body = R.tricky_body()
        msg = R.build_message(user, user, mid, "rig self-check", msg_body)
        s = rig.smtp_connect(starttls=False)
        try:
            self.assertTrue(s.has_extn("starttls"))
            s.starttls(context=rig.ssl_context())    # verifies chain + 127.0.0.1
            s.ehlo("selfcheck")
            self.assertIn("XOAUTH2", s.esmtp_features.get("auth", "").upper())
            self.assertNotIn("PLAIN", s.esmtp_features.get("auth", "").upper().split())
            code, resp = R.smtp_auth_xoauth2(s, user, token)
            self.assertEqual(code, 235, resp)
            self.assertEqual(s.sendmail(user, [user], msg), {})
        finally:
            s.quit()
        raw = rig.wait_for_message_id(user, mid)
        self.assertEqual(R.split_message(raw)[1], msg_body)
        self.assertEqual(R.header_value(raw, "Subject"), "rig self-check")
        self.assertTrue(rig.postfix_saw_message_id(mid))
        # The maildir on disk has it too.
        self.assertGreaterEqual(rig.count_delivered(user), 1)

    def test_submit_oauthbearer_and_implicit_tls(self):
        rig = self.rig
        user = "bearer@example.com"
        rig.idp.seed_user(user)
        token = rig.idp.mint(user)
        mid = R.make_message_id("smtps")
        s = rig.smtp_connect(implicit=True)
        try:
            raw_resp = R.oauthbearer_string(user, token, "127.0.0.1", rig.smtps_port)
            code, resp = s.auth("OAUTHBEARER", lambda c=None: raw_resp if not c else "\x01",
                                initial_response_ok=False)
            self.assertEqual(code, 235, resp)
            s.sendmail(user, [user], R.build_message(user, user, mid, "smtps", b"hello\r\n"))
        finally:
            s.quit()
        raw = rig.wait_for_message_id(user, mid)
        self.assertEqual(R.split_message(raw)[1], b"hello\r\n")
        # IMAPS with the same kind of token.
        m = rig.imap_login(user, ssl_implicit=True)
        self.assertEqual(m.select("INBOX")[0], "OK")
        m.logout()

    def test_dovecot_submission(self):
        """Dovecot's submission service: a second XOAUTH2 upstream, relaying through Postfix."""
        rig = self.rig
        user = "dsub@example.com"
        rig.idp.seed_user(user)
        mid = R.make_message_id("dsub")
        rig.send_direct_xoauth2(user, R.build_message(user, user, mid, "dsub", R.tricky_body()),
                                port=rig.dovecot_submission_port)
        raw = rig.wait_for_message_id(user, mid)
        self.assertEqual(R.split_message(raw)[1], R.tricky_body())
        s = rig.smtp_connect(port=rig.dovecot_submission_port)
        try:
            with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
                R.smtp_auth_xoauth2(s, user, "garbage-token")
            self.assertEqual(cm.exception.smtp_code, 535)
        finally:
            s.close()
        # A token check that fails temporarily (introspection endpoint down): Dovecot's
        # submission says 454, Postfix (same Dovecot auth underneath) says 535.
        for port, want in ((rig.dovecot_submission_port, 454), (rig.smtp_submission_port, 535)):
            rig.idp.fail_introspection("500", count=1)
            s = rig.smtp_connect(port=port)
            try:
                with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
                    R.smtp_auth_xoauth2(s, user, rig.idp.mint(user))
                self.assertEqual(cm.exception.smtp_code, want, cm.exception.smtp_error)
            finally:
                s.close()
                rig.idp.clear_failures()

    def test_plaintext_auth_without_tls_on_loopback(self):
        """xoauthd configured with `smtp = 127.0.0.1:PORT none` needs AUTH without TLS."""
        rig = self.rig
        user = "plainwire@example.com"
        rig.idp.seed_user(user)
        mid = R.make_message_id("plain")
        rig.send_direct_xoauth2(user, R.build_message(user, user, mid, "plain", b"p\r\n"),
                                starttls=False)
        rig.wait_for_message_id(user, mid)

    def test_bad_and_expired_tokens_refused_by_postfix(self):
        rig = self.rig
        user = "refused@example.com"
        rig.idp.seed_user(user)
        for token in ("not-a-token", None):
            if token is None:             # a real token, then revoked at the IdP
                token = rig.idp.mint(user)
                self.assertGreaterEqual(rig.idp.expire_access(user), 1)
            s = rig.smtp_connect()
            try:
                with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
                    R.smtp_auth_xoauth2(s, user, token)
                self.assertEqual(cm.exception.smtp_code, 535)
                # Without AUTH, mail for example.com is refused: arrivals prove authentication.
                s.rset()
                s.mail(user)
                code, _ = s.rcpt(user)
                self.assertGreaterEqual(code, 500)
            finally:
                s.quit()
        # A token of another user is refused too (username must match the token's).
        other = rig.idp.mint("someone-else@example.com")
        s = rig.smtp_connect()
        try:
            with self.assertRaises(smtplib.SMTPAuthenticationError):
                R.smtp_auth_xoauth2(s, user, other)
        finally:
            s.quit()

    def test_expiry_by_lifetime(self):
        rig = self.rig
        user = "short@example.com"
        rig.idp.seed_user(user)
        token = rig.idp.mint(user, lifetime=1)
        m = rig.imap_login(user, token)      # live now
        m.logout()
        time.sleep(1.2)
        with self.assertRaises(imaplib.IMAP4.error):
            rig.imap_login(user, token)

    def test_bad_token_refused_by_imap_and_pop3(self):
        rig = self.rig
        user = "imapbad@example.com"
        rig.idp.seed_user(user)
        with self.assertRaises(imaplib.IMAP4.error) as cm:
            rig.imap_login(user, "garbage-token")
        self.assertIn("AUTHENTICATIONFAILED", str(cm.exception).upper())
        # POP3 AUTH XOAUTH2: good token works, bad one fails.
        for token, ok in ((rig.idp.mint(user), True), ("garbage-token", False)):
            p = poplib.POP3("127.0.0.1", rig.ports["pop3"], timeout=20)
            try:
                p._putcmd("AUTH XOAUTH2")
                line, _ = p._getline()
                self.assertTrue(line.startswith(b"+"), line)
                p._putline(base64.b64encode(R.xoauth2_string(user, token).encode()))
                line, _ = p._getline()
                if line.startswith(b"+ ") or line == b"+":   # error challenge: answer empty
                    p._putline(b"")
                    line, _ = p._getline()
                self.assertEqual(line.startswith(b"+OK"), ok, line)
            finally:
                try:
                    p.quit()
                except Exception:
                    p.sock.close()

    def test_wrong_host_certificate(self):
        rig = self.rig
        # Host-name verification for 127.0.0.1 fails...
        s = smtplib.SMTP("127.0.0.1", rig.smtp_wrong_host_port, timeout=20)
        try:
            with self.assertRaises(ssl.SSLCertVerificationError) as cm:
                s.starttls(context=rig.ssl_context())
            self.assertIn("mismatch", str(cm.exception).lower())
        finally:
            s.close()
        # ... although the chain is good: the name is the only problem.
        ctx = rig.ssl_context()
        ctx.check_hostname = False
        s = smtplib.SMTP("127.0.0.1", rig.smtp_wrong_host_port, timeout=20)
        try:
            s.starttls(context=ctx)
            cert = s.sock.getpeercert()
            self.assertIn(("DNS", "wrong.example"), cert["subjectAltName"])
        finally:
            s.quit()
        # And the good listener passes full verification (name 127.0.0.1 is in its SAN).
        s = rig.smtp_connect()
        self.assertIn(("IP Address", "127.0.0.1"), s.sock.getpeercert()["subjectAltName"])
        s.quit()


if __name__ == "__main__":
    R.main()
