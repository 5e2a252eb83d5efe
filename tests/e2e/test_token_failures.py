#!/usr/bin/env python3
"""The token endpoint misbehaving, end to end: HTTP 500, a hanging endpoint, 429 with
Retry-After, and a revoked refresh token (invalid_grant). Clients get temporary failures (SMTP
454 at AUTH) within token_timeout, the retry schedule is honoured (counted at the mock IdP), and
after invalid_grant nothing is retried against the provider until `xoauthd auth` stored a new
token, which the running daemon then picks up without a restart."""
import time

import tokentest as T


class TokenFailures(T.TokenTestBase):

    def requests(self):
        return self.stats()["token_requests"]

    def timed_auth(self, x, login):
        t0 = time.monotonic()
        code, text = self.auth(x, login)
        return code, text, time.monotonic() - t0

    def test_500_backoff(self):
        acct = self.refresh_account()
        login = acct["local_user"]
        x = self.make_x({"e500": acct}, token_timeout=2)
        self.rig.idp.fail("500", count=2, username=self.user)
        r0 = self.requests()
        code, text, took = self.timed_auth(x, login)
        t_fail = time.monotonic()
        self.assertEqual(code, 454, text)
        self.assertLess(took, 2.5)
        self.assertEqual(self.requests(), r0 + 1)
        # Within the 5 s window: failing fast, nothing sent.
        code, _, took = self.timed_auth(x, login)
        self.assertEqual(code, 454)
        self.assertLess(took, 1.0)
        self.assertEqual(self.requests(), r0 + 1)
        # After it: one more attempt (the second 500), and now the window is 10 s.
        time.sleep(max(0, t_fail + 5.2 - time.monotonic()))
        self.assertEqual(self.auth(x, login)[0], 454)
        self.assertEqual(self.requests(), r0 + 2)
        time.sleep(5.2)
        self.assertEqual(self.auth(x, login)[0], 454)
        self.assertEqual(self.requests(), r0 + 2)
        log = x.log_text()
        self.assertIn("retry_in=5s", log)
        self.assertIn("retry_in=10s", log)
        x.stop()
        self.assert_no_secrets(x)

    def test_hanging_endpoint_times_out(self):
        acct = self.refresh_account()
        login = acct["local_user"]
        x = self.make_x({"hang": acct}, token_timeout=2)
        self.rig.idp.fail("hang", seconds=8, count=1, username=self.user)
        r0 = self.requests()
        code, text, took = self.timed_auth(x, login)
        self.assertEqual(code, 454, text)
        self.assertGreater(took, 1.8)
        self.assertLess(took, 5.0, "the client waited past token_timeout")
        code, _, took = self.timed_auth(x, login)
        self.assertEqual(code, 454)
        self.assertLess(took, 1.0)
        self.assertEqual(self.requests(), r0 + 1)
        self.assertIn("no answer from the token endpoint within the timeout", x.log_text())
        x.stop()
        self.assert_no_secrets(x)

    def test_429_retry_after(self):
        acct = self.refresh_account()
        login = acct["local_user"]
        x = self.make_x({"rl": acct})
        self.rig.idp.fail("status", status=429, retry_after=2, count=1, username=self.user,
                          body={"error": "temporarily_unavailable"})
        r0 = self.requests()
        code, text = self.auth(x, login)
        t_fail = time.monotonic()
        self.assertEqual(code, 454, text)
        self.assertEqual(self.requests(), r0 + 1)
        time.sleep(1.0)
        self.assertEqual(self.auth(x, login)[0], 454)    # Retry-After not over yet
        self.assertEqual(self.requests(), r0 + 1)
        time.sleep(max(0, t_fail + 2.3 - time.monotonic()))
        self.send(x, login, tag="after-429")              # on schedule: works
        self.assertEqual(self.requests(), r0 + 2)
        self.assertIn("retry_in=2s", x.log_text())
        x.stop()
        self.assert_no_secrets(x)

    def test_invalid_grant_needs_signin(self):
        acct = self.refresh_account(client_secret=T.CLIENT_SECRET)
        login = acct["local_user"]
        idp = self.rig.idp
        idp.revoke_refresh(self.user)                     # the seed is dead at the provider
        x = self.make_x({"revoked": acct})
        r0 = self.requests()
        for _ in range(3):
            code, text = self.auth(x, login)
            self.assertEqual(code, 454, text)
            time.sleep(0.4)
        st = self.stats()
        self.assertEqual(self.requests(), r0 + 1, "one request, then no retry loop")
        self.assertEqual(st["invalid_grant"], 1)
        self.assertIn("run `xoauthd auth revoked`", x.log_text())
        block = self.account_block(self.tokens(x), "revoked")
        self.assertRegex(block, r"state:\s+needs_signin")
        # The admin signs in again; the running daemon uses the new token at the next login.
        self.device_signin(x, "revoked")
        time.sleep(1.1)                                   # the store is re-read once a second
        self.send(x, login, tag="after-signin")
        self.assertEqual(self.stats()["invalid_grant"], 1)
        x.stop()
        self.assert_no_secrets(x)


if __name__ == "__main__":
    T.main()
