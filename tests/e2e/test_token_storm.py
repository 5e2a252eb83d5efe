#!/usr/bin/env python3
"""A token that many sessions hold dies at the provider (a revocation, a Continuous Access
Evaluation event): the mock IdP forgets it, Dovecot's introspection says "inactive", and every
session that sent it is rejected. Each rejection must not force a refresh of its own: the
sessions that are rejected while the refresh runs wait for it, and those rejected after it
(their token is no longer the current one) retry with the new token. The whole burst costs
exactly one request to the token endpoint, and every login succeeds."""
import socket
import threading

import rig as R
from rig import mail_clients as mc
from rig.mail_clients import Raw, USER, LOCAL_USER, PASSWORD
from rig.case import RigTestCase


def imap_login(port, results, i, start):
    try:
        start.wait(30)
        r = Raw(port, timeout=60)
        try:
            r.send("s1 LOGIN %s %s\r\n" % (LOCAL_USER, mc.imap_quote(PASSWORD)))
            tagged = r.until_tag("s1")[1]
            if tagged.startswith("s1 OK"):
                r.send("s2 SELECT INBOX\r\n")
                tagged = r.until_tag("s2")[1].replace("s2 ", "s1 ", 1)
            results[i] = tagged
        finally:
            r.close()
    except (OSError, EOFError) as e:
        results[i] = "error: %s" % e


class TokenStormTest(RigTestCase):
    # 200 sessions wait for the one refresh with their provider connections open: more than
    # Dovecot's defaults allow at once (imap-login process_limit 100, service_count 1; a
    # slow ASan build under load reached it and Dovecot dropped the connections beyond).
    RIG = {"load": True}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        lim = dict(max_connections=400, max_connections_per_ip=0)
        cls.x = mc.start_proxy(cls.rig, listens={
            "imap-many": dict(protocol="imap", tls="none", **lim)})
        cls.addClassCleanup(cls.x.stop)

    def refreshes(self):
        return self.rig.idp.stats()["token_requests"].get("refresh_token", 0)

    def burst(self, n):
        # One login first: the token is cached (and the local password verified once).
        m = Raw(self.x.port("imap"))
        m.send("w1 LOGIN %s %s\r\n" % (LOCAL_USER, mc.imap_quote(PASSWORD)))
        self.assertTrue(m.until_tag("w1")[1].startswith("w1 OK"))
        m.close()
        self.rig.idp.expire_access(USER)
        before = self.refreshes()
        results = [None] * n
        start = threading.Event()
        threads = [threading.Thread(target=imap_login,
                                    args=(self.x.port("imap-many"), results, i, start))
                   for i in range(n)]
        for t in threads:
            t.start()
        start.set()
        for t in threads:
            t.join(120)
        self.assertFalse(any(t.is_alive() for t in threads), "a login hung")
        bad = [r for r in results if r is None or not r.startswith("s1 OK")]
        self.assertEqual(bad, [], "%d of %d logins failed" % (len(bad), n))
        self.assertEqual(self.refreshes() - before, 1,
                         "one refresh for %d sessions rejected with the same token" % n)

    def test_50_concurrent_logins_one_refresh(self):
        self.burst(50)

    def test_200_concurrent_logins_one_refresh(self):
        self.burst(200)


if __name__ == "__main__":
    R.main()
