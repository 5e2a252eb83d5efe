#!/usr/bin/env python3
"""A provider host with several addresses: when the first one does not answer (a broken IPv6
route, one dead front end), xoauthd tries the next, so logins still work. The provider is
"localhost", resolving to ::1 first and 127.0.0.1 second as on a dual-stack Debian; the test
makes sure of that with nss_wrapper (libnss-wrapper, preloaded into xoauthd only, with a hosts
file of the test's own: the system's /etc/hosts is not touched). The rig's Dovecot listens on
127.0.0.1 only. Three cases: ::1 refuses (the next
address at once), ::1 is a black hole (a listener whose backlog is full drops the SYN: the
next address after the per-attempt timeout, well within the connect timeout), and both are
dead (the login fails once, naming both attempts)."""
import os
import socket
import sys
import time

import rig as R
from rig import mail_clients as mc
from rig.mail_clients import Raw, LOCAL_USER, PASSWORD
from rig.case import RigTestCase

HOST = "localhost"          # plain-text upstreams are allowed to loopback names only
NSS_WRAPPER = "/usr/lib/%s-linux-gnu/libnss_wrapper.so" % os.uname().machine
ATTEMPT_TIMEOUT_S = 5      # UPSTREAM_ATTEMPT_TIMEOUT_MS
LOGIN_BOUND_S = 25         # generous, and below the 30 s connect timeout of one address


class UpstreamAddressesTest(RigTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.hosts = cls.rig.path("hosts.nss_wrapper")
        with open(cls.hosts, "w") as f:
            f.write("::1 %s\n127.0.0.1 %s\n" % (HOST, HOST))

    def proxy(self, port, name):
        if not os.path.exists(NSS_WRAPPER):
            self.fail("%s missing: run tests/install-deps.sh (libnss-wrapper)" % NSS_WRAPPER)
        asan = os.environ.get("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env = {"LD_PRELOAD": NSS_WRAPPER, "NSS_WRAPPER_HOSTS": self.hosts,
               # For the sanitizer build: ASan wants to be first among the libraries (the
               # preload comes before it) and cannot live with RTLD_DEEPBIND.
               "NSS_WRAPPER_DISABLE_DEEPBIND": "1",
               "ASAN_OPTIONS": asan + ":verify_asan_link_order=0"}
        x = mc.start_proxy(self.rig, name=name, env=env,
                           provider_extra={"imap": "%s:%d none" % (HOST, port)})
        self.addCleanup(x.kill_if_running)
        return x

    def login(self, x):
        r = Raw(x.port("imap"), timeout=60)
        self.addCleanup(r.close)
        t0 = time.monotonic()
        r.send("a1 LOGIN %s %s\r\n" % (LOCAL_USER, mc.imap_quote(PASSWORD)))
        tagged = r.until_tag("a1")[1]
        return tagged, time.monotonic() - t0, r

    def ok_session(self, x):
        tagged, took, r = self.login(x)
        self.assertTrue(tagged.startswith("a1 OK"), tagged)
        r.send("a2 SELECT INBOX\r\n")
        self.assertTrue(r.until_tag("a2")[1].startswith("a2 OK"))
        r.send("a3 LOGOUT\r\n")
        r.until_tag("a3")
        return took

    def test_resolver_seam(self):
        # The premise of the other cases: the wrapped resolver answers ::1 first.
        import subprocess
        env = dict(os.environ, LD_PRELOAD=NSS_WRAPPER, NSS_WRAPPER_HOSTS=self.hosts)
        out = subprocess.run([sys.executable, "-c",
                              "import socket; print([a[4][0] for a in socket.getaddrinfo("
                              "%r, 1, 0, socket.SOCK_STREAM)])" % HOST],
                             env=env, stdout=subprocess.PIPE, check=True, timeout=30)
        self.assertEqual(out.stdout.decode().strip(), "['::1', '127.0.0.1']")

    def test_first_address_refuses(self):
        x = self.proxy(self.rig.ports["imap"], "addr-refused")
        self.ok_session(x)
        x.stop()
        log = x.log_text()
        self.assertRegex(log, r"event=upstream_connect_failed protocol=imap account=reader "
                              r"reason=\"connect to ::1: connection refused\" "
                              r"action=next_address")
        self.assertIn("event=relay_start protocol=imap account=reader server=127.0.0.1", log)

    def test_first_address_blackholed(self):
        port = self.rig.ports["imap"]
        hole = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        self.addCleanup(hole.close)
        hole.bind(("::1", port))
        hole.listen(0)
        filler = socket.create_connection(("::1", port), timeout=5)   # the queue is full now
        self.addCleanup(filler.close)
        x = self.proxy(port, "addr-blackhole")
        took = self.ok_session(x)
        self.assertLess(took, LOGIN_BOUND_S)
        self.assertGreaterEqual(took, ATTEMPT_TIMEOUT_S - 1, "the SYN was not dropped")
        x.stop()
        log = x.log_text()
        self.assertRegex(log, r"event=upstream_connect_failed protocol=imap account=reader "
                              r"reason=\"connect to ::1: timed out\" action=next_address")
        self.assertIn("event=relay_start protocol=imap account=reader server=127.0.0.1", log)
        print("blackholed first address: login took %.1f s" % took)

    def test_every_address_dead(self):
        dead = R.free_port(set(self.rig.ports.values()))
        x = self.proxy(dead, "addr-dead")
        tagged, took, _ = self.login(x)
        self.assertTrue(tagged.startswith("a1 NO [UNAVAILABLE]"), tagged)
        x.stop()
        log = x.log_text()
        self.assertEqual(log.count("event=upstream_connect_failed protocol=imap"), 1)
        self.assertRegex(log, r"event=upstream_login_failed protocol=imap account=reader "
                              r"class=connect reason=\"connect to 127\.0\.0\.1: connection "
                              r"refused \(every one of 2 addresses failed\)")


if __name__ == "__main__":
    R.main()
