#!/usr/bin/env python3
"""The token store and the token manager under pressure, end to end (xoauthd in front of the
rig's Postfix, tokens checked by Dovecot through the mock IdP):

  * 100 clients log in at once for one account whose access token has expired: exactly one
    token request reaches the IdP, and all 100 logins succeed;
  * a rotated refresh token is on disk before the next request: kill -9 right after a refresh,
    and the restarted daemon refreshes with the rotated token;
  * kill -9 during a refresh leaves a usable token in the store;
  * the store holds no token in clear text; a wrong local password gets 535 and leaves the
    store alone, and the right one still works after a restart;
  * an old unencrypted (v1) store file is read and written again encrypted."""
import os
import threading
import time

import tokentest as T


class TokenLifecycle(T.TokenTestBase):

    def test_hundred_clients_one_request(self):
        acct = self.refresh_account(refresh_margin=0)
        login = acct["local_user"]
        self.rig.idp.set_lifetime(3, username=self.user)
        x = self.make_x({"busy": acct})
        self.send(x, login, tag="warm-up")         # a token that lives 3 s is cached
        time.sleep(3.3)                            # ... and has expired now
        before = self.stats()["token_requests"]
        barrier = threading.Barrier(100)
        results = [None] * 100

        def client(i):
            try:
                barrier.wait(30)
                results[i] = self.auth(x, login, timeout=90)[0]
            except Exception as e:  # noqa: BLE001 - reported below
                results[i] = repr(e)
        threads = [threading.Thread(target=client, args=(i,)) for i in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(results, [235] * 100)
        self.assertEqual(self.stats()["token_requests"], before + 1,
                         "one token request for 100 logins")
        self.send(x, login, tag="after-crowd")
        x.stop()
        self.assert_no_secrets(x)

    def test_rotated_token_on_disk_before_next_request(self):
        acct = self.refresh_account()
        login = acct["local_user"]
        x = self.make_x({"rot": acct})
        self.send(x, login, tag="first")
        st = self.stats()
        self.assertEqual(st["refresh_tokens_used"], [self.seed_rt])
        rotated = st["refresh_tokens_issued"][-1]
        # No goodbye: whatever is on disk now is all the next process gets.
        self.kill9(x)
        self.assert_store_private(x)
        x.start()
        self.send(x, login, tag="after-kill")
        st = self.stats()
        self.assertEqual(st["refresh_tokens_used"], [self.seed_rt, rotated])
        self.assertEqual(st["invalid_grant"], 0)
        x.stop()
        self.assert_no_secrets(x)

    def test_kill9_during_refresh(self):
        acct = self.refresh_account()
        login = acct["local_user"]
        idp = self.rig.idp
        x = self.make_x({"crash": acct})
        self.send(x, login, tag="first")
        stored = self.stats()["refresh_tokens_issued"][-1]
        self.kill9(x)
        x.start()                                  # no access token cached any more
        idp.fail("hang", seconds=4, count=1, username=self.user, grant_type="refresh_token")
        before = self.stats()["token_requests"]
        t = threading.Thread(target=lambda: self._auth_ignoring_errors(x, login))
        t.start()
        deadline = time.monotonic() + 20
        while self.stats()["token_requests"] == before:
            self.assertLess(time.monotonic(), deadline, "the refresh never reached the IdP")
            time.sleep(0.05)
        self.kill9(x)                              # in the middle of the refresh
        t.join(30)
        x.start()
        self.send(x, login, tag="after-crash")
        st = self.stats()
        self.assertEqual(st["invalid_grant"], 0)
        self.assertEqual(st["refresh_tokens_used"][-1], stored)
        x.stop()
        self.assert_no_secrets(x)

    def _auth_ignoring_errors(self, x, login):
        try:
            self.auth(x, login)
        except Exception:  # noqa: BLE001 - the daemon is killed under this client
            pass

    def test_wrong_local_password_keeps_store(self):
        acct = self.refresh_account()
        login = acct["local_user"]
        x = self.make_x({"pw": acct})
        self.send(x, login, tag="first")
        x.stop()
        self.assert_store_private(x)
        files = self.store_files(x)
        self.assertTrue(files["pw.refresh"].startswith(b"xoauthd-token v2 aes-256-gcm\n"))
        stored = self.stats()["refresh_tokens_issued"][-1]
        x.start()
        for wrong in ("wrong", T.LOCAL_PASSWORD + "x", T.LOCAL_PASSWORD[:-1]):
            code, text = self.auth(x, login, password=wrong)
            self.assertEqual(code, 535, text)
        self.assertEqual(self.store_files(x)["pw.refresh"], files["pw.refresh"])
        self.send(x, login, tag="right-password")
        st = self.stats()
        self.assertEqual(st["refresh_tokens_used"][-1], stored)
        self.assertEqual(st["invalid_grant"], 0)
        x.stop()
        self.assert_store_private(x)
        self.assert_no_secrets(x)

    def test_plain_store_is_migrated(self):
        acct = self.refresh_account(seed=False)
        login = acct["local_user"]
        rt = self.rig.idp.seed_user(self.user)
        x = self.make_x({"old": acct}, start=False)
        with open(os.path.join(x.state_dir, "old.refresh"), "w") as f:
            f.write("xoauthd-token v1 plain\n%s\n" % rt)
        os.chmod(os.path.join(x.state_dir, "old.refresh"), 0o600)
        x.start()
        self.send(x, login, tag="migrate")
        self.assertEqual(self.stats()["refresh_tokens_used"], [rt])
        x.stop()
        data = self.store_files(x)["old.refresh"]
        self.assertTrue(data.startswith(b"xoauthd-token v2 aes-256-gcm\n"))
        self.assert_store_private(x)


if __name__ == "__main__":
    T.main()
