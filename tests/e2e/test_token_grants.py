#!/usr/bin/env python3
"""Every way xoauthd gets a token, end to end: a legacy client logs in to xoauthd's SMTP
listener with its local password, xoauthd gets a token by the account's grant and logs in to
the rig's Postfix with XOAUTH2, Postfix checks the token through Dovecot's passdb oauth2 and the
mock IdP's introspection, and the message must arrive in the Dovecot mailbox.

Grants: client_credentials (secret, and certificate with a signed JWT assertion the mock
verifies), password (ROPC), static, command, device_code and authorization_code (browser and
paste mode) through `xoauthd auth` driven by the test as the human would; `xoauthd tokens`."""
import os
import re
import subprocess
import urllib.error
import urllib.request

import tokentest as T
from tokentest import R


class TokenGrants(T.TokenTestBase):

    def test_client_credentials_secret(self):
        idp = self.rig.idp
        idp.set_client("app-secret-client", secret="app;secret-1", username=self.user)
        self.extra_secrets.add("app;secret-1")
        x = self.make_x({"app": dict(local_user="app", local_password=self.hash,
                                     flow="client_credentials", client_id="app-secret-client",
                                     client_secret="app;secret-1")})
        before = self.grant_count("client_credentials")
        self.send(x, "app", tag="cc-secret")
        self.send(x, "app", tag="cc-secret-2")          # cached: no second request
        self.assertEqual(self.grant_count("client_credentials"), before + 1)
        self.assertNotIn("app.refresh", os.listdir(x.state_dir))  # nothing to store
        x.stop()
        self.assert_no_secrets(x)

    def test_client_credentials_certificate(self):
        idp = self.rig.idp
        cert, key = R.make_client_cert(self.rig.path("appcert"), "app")
        _, other_key = R.make_client_cert(self.rig.path("appcert"), "other")
        idp.set_client_cert("app-cert-client", cert, username=self.user)
        acct = dict(local_user="appc", local_password=self.hash, flow="client_credentials",
                    client_id="app-cert-client", client_certificate=cert, client_key=key)
        x = self.make_x({"appc": acct})
        ok_before = idp.stats()["assertions_ok"]
        self.send(x, "appc", tag="cc-cert")
        st = idp.stats()
        self.assertEqual(st["assertions_ok"], ok_before + 1, st["assertions_bad"])
        self.assertEqual(st["assertions_bad"], [])
        x.stop()
        self.assert_no_secrets(x)

        # `xoauthd check` loads the pair and names the line when the key is not the cert's.
        bad = dict(acct, client_key=other_key)
        y = self.make_x({"appc": bad}, start=False)
        rc, out = y.check_config()
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"xoauthd\.ini:\d+: \[account appc\]: client_key .* does not "
                              r"belong to client_certificate")
        # The daemon starts anyway and refuses the account clearly, without a request.
        y.start()
        before = self.grant_count("client_credentials")
        code, text = self.auth(y, "appc")
        self.assertEqual(code, 454, text)
        self.assertEqual(self.grant_count("client_credentials"), before)
        self.assertIn("does not belong to client_certificate", y.log_text())
        y.stop()

    def test_password_grant(self):
        self.rig.idp.seed_user(self.user, password="mailbox;pw")
        self.extra_secrets.add("mailbox;pw")
        x = self.make_x({"ropc": dict(local_user="ropc", local_password=self.hash,
                                      flow="password", client_id=T.CLIENT_ID,
                                      client_secret=T.CLIENT_SECRET,
                                      upstream_password="mailbox;pw",
                                      scope=T.SCOPE)})
        self.send(x, "ropc", tag="ropc")
        self.assertEqual(self.stats()["token_ok"], 1)
        # The endpoint sent a refresh token too (offline_access); it is not stored.
        self.assertNotIn("ropc.refresh", os.listdir(x.state_dir))
        x.stop()
        self.assert_no_secrets(x)

    def test_static_token(self):
        tok = self.rig.idp.mint(self.user, lifetime=600)
        self.extra_secrets.add(tok)
        x = self.make_x({"st": dict(local_user="st", local_password=self.hash,
                                    flow="static", access_token=tok)})
        self.send(x, "st", tag="static")
        x.stop()
        self.assert_no_secrets(x)

    def test_token_command(self):
        tok = self.rig.idp.mint(self.user, lifetime=600)
        self.extra_secrets.add(tok)
        path = self.rig.path("cmd-token")
        with open(path, "w") as f:
            f.write(tok + "\n")
        cmd = 'test "$XOAUTHD_ACCOUNT" = cmd && test "$XOAUTHD_USERNAME" = %s && cat %s' % (
            self.user, path)
        x = self.make_x({"cmd": dict(local_user="cmd", local_password=self.hash,
                                     flow="command", token_command=cmd)})
        self.send(x, "cmd", tag="command")
        x.stop()
        self.assertIn("grant=command", x.log_text())
        self.assert_no_secrets(x)

    def test_device_code_signin(self):
        acct = dict(local_user="dev", local_password=self.hash, flow="device_code",
                    client_id=T.CLIENT_ID, client_secret=T.CLIENT_SECRET, scope=T.SCOPE)
        x = self.make_x({"dev": acct})
        # Before the sign-in: a temporary failure, and the log says what to do.
        code, text = self.auth(x, "dev")
        self.assertEqual(code, 454, text)
        self.assertIn("run `xoauthd auth dev`", x.log_text())
        # A wrong local password is refused before anything happens at the provider.
        p = self.auth_cli(x, "dev", password="not-the-password")
        out = self.finish_cli(p, expect=1)
        self.assertIn("not the local password", out)
        self.assertNotIn("dev.refresh", os.listdir(x.state_dir))

        # The sign-in, with one slow_down on the way.
        idp = self.rig.idp
        p = self.auth_cli(x, "dev", password=T.LOCAL_PASSWORD)
        self.read_until(p, r"Open: https://microsoft\.test/devicelogin")
        ucode = self.read_until(p, r"Code: (\d{4}-\d{4})").group(1)
        idp.control("device_slow_down", user_code=ucode, count=1)
        self.read_until(p, r"poll more slowly: every 6 s")
        self.assertTrue(idp.device_approve(ucode, self.user)["found"])
        out = self.finish_cli(p)
        self.assertIn("Signed in.", out)
        self.assertIn("encrypted with its local password", out)
        polls = idp.stats()["device_polls"]
        self.assertGreaterEqual(polls.get("slow_down", 0), 1)
        self.assertEqual(polls.get("ok"), 1)

        # The running daemon uses the stored token at the next login, without a restart.
        self.send(x, "dev", tag="device")
        self.assertEqual(self.stats()["invalid_grant"], 0)
        self.assert_store_private(x)
        listing = self.tokens(x)
        block = self.account_block(listing, "dev")
        self.assertIn("encrypted with the local password", block)
        self.assertRegex(block, r"state:\s+ok")
        x.stop()
        self.assert_no_secrets(x, [("auth output", out), ("tokens output", listing)])

    def test_device_code_denied_and_expired(self):
        x = self.make_x({"devd": dict(flow="device_code", client_id=T.CLIENT_ID,
                                      client_secret=T.CLIENT_SECRET)}, start=False)
        # No local password: reachable only from an allowlisted network; uses store.key.
        x.sections[0][1]["allow_networks"] = "127.0.0.2/32 -> devd"
        x.start()
        idp = self.rig.idp
        for op, expect in (("device_deny", "declined"), ("device_expire", "expired")):
            p = self.auth_cli(x, "devd")
            ucode = self.read_until(p, r"Code: (\d{4}-\d{4})").group(1)
            self.assertTrue(idp.control(op, user_code=ucode)["found"])
            out = self.finish_cli(p, expect=1)
            self.assertIn(expect, out)
        self.assertNotIn("devd.refresh", os.listdir(x.state_dir))
        x.stop()

    def auth_code_account(self):
        return dict(local_user="ac", local_password=self.hash, flow="authorization_code",
                    client_id=T.CLIENT_ID, client_secret=T.CLIENT_SECRET, scope=T.SCOPE)

    def test_authorization_code_browser(self):
        x = self.make_x({"ac": self.auth_code_account()})
        p = self.auth_cli(x, "ac", password=T.LOCAL_PASSWORD)
        url = self.read_until(p, r"Open: (\S+)").group(1)
        redirect = self.read_until(p, r"Waiting for the browser on (http://127\.0\.0\.1:\d+/)")
        redirect = redirect.group(1)
        self.assertIn("code_challenge_method=S256", url)
        self.assertIn("login_hint=" + urllib.request.quote(self.user, safe=""), url)
        # A redirect with another state is refused, and the sign-in goes on waiting.
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen(redirect + "?code=forged&state=forged", timeout=10)
        self.assertEqual(cm.exception.code, 400)
        self.read_until(p, r"wrong state")
        # The "browser": the IdP approves and redirects to xoauthd's loopback listener.
        with urllib.request.urlopen(url, timeout=20) as r:
            page = r.read().decode()
        self.assertIn("Signed in", page)
        out = self.finish_cli(p)
        self.assertIn("Signed in.", out)
        self.assertEqual(self.grant_count("authorization_code"), 1)
        self.send(x, "ac", tag="authcode")
        x.stop()
        self.assert_no_secrets(x, [("auth output", out)])

    def test_authorization_code_paste(self):
        x = self.make_x({"ac": self.auth_code_account()})
        p = self.auth_cli(x, "ac", args=["--paste"], password=T.LOCAL_PASSWORD)
        url = self.read_until(p, r"Open: (\S+)").group(1)
        self.read_until(p, r"paste it here")
        # On "another machine": the browser ends on an address nothing answers here.
        opener = urllib.request.build_opener(T.NoRedirect)
        with self.assertRaises(urllib.error.HTTPError) as cm:
            opener.open(url, timeout=20)
        self.assertEqual(cm.exception.code, 302)
        location = cm.exception.headers["Location"]
        self.assertRegex(location, r"^http://127\.0\.0\.1/\?code=")
        p.stdin.write(location + "\n")
        p.stdin.flush()
        out = self.finish_cli(p)
        self.assertIn("Signed in.", out)
        self.send(x, "ac", tag="paste")
        x.stop()
        self.assert_no_secrets(x, [("auth output", out)])

    def test_tokens_listing(self):
        idp = self.rig.idp
        idp.set_client("app-list", secret="list-secret", username=self.user)
        self.extra_secrets.add("list-secret")
        x = self.make_x({"rt": self.refresh_account(),
                         "app": dict(local_user="app", local_password=self.hash,
                                     flow="client_credentials", client_id="app-list",
                                     client_secret="list-secret"),
                         "never": dict(local_user="never", local_password=self.hash,
                                       flow="device_code", client_id=T.CLIENT_ID)})
        before = self.tokens(x)
        self.assertIn("empty (the config's refresh_token seeds it", self.account_block(before, "rt"))
        self.assertIn("no token requested yet", self.account_block(before, "rt"))
        self.assertIn("run `xoauthd auth`", self.account_block(before, "never"))
        self.send(x, "u-" + self._testMethodName[:20], tag="list-rt")
        self.send(x, "app", tag="list-app")
        after = self.tokens(x)
        rt, app = self.account_block(after, "rt"), self.account_block(after, "app")
        self.assertIn("encrypted with the local password", rt)
        for block in (rt, app):
            self.assertRegex(block, r"state:\s+ok")
            self.assertRegex(block, r"valid until:\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")
            self.assertRegex(block, r"last error:\s+-")
        self.assertIn("stores nothing", app)
        x.stop()
        self.assert_no_secrets(x, [("tokens output", after)])


if __name__ == "__main__":
    T.main()
