#!/usr/bin/env python3
"""event=tls_failed says which listener the handshake failed on and which side gave up. A
client that does not accept xoauthd's certificate (it does not trust the CA, or the name it
connects to is not in the certificate) sends a fatal alert; the line names it, says the client
gave up, and hints at the usual cause. A handshake that xoauthd itself refuses gets no such
hint."""
import socket
import ssl
import time

import rig as R
from rig.case import RigTestCase

HINT = 'hint="the client rejected xoauthd\'s certificate'


class TlsFailedLog(RigTestCase):
    RIG = {"mail_servers": False}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        x = R.Xoauthd(cls.rig)
        x.add_listen("smtps", tls="implicit")
        x.add_listen("imap-starttls", protocol="imap", tls="starttls")
        x.start()
        cls.addClassCleanup(x.stop)
        cls.x = x

    def wait_log(self, pattern, since):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            lines = [l for l in self.x.log_text()[since:].splitlines() if pattern in l]
            if lines:
                return lines[-1]
            time.sleep(0.05)
        self.fail("no log line with %r:\n%s" % (pattern, self.x.log_text()[since:]))

    def refused_handshake(self, sock, ctx, name, since, where):
        """The client refuses xoauthd's certificate; returns the tls_failed line, which must
        name the listener (where: what precedes "listener=") and carry the hint."""
        with self.assertRaises(ssl.SSLCertVerificationError):
            ctx.wrap_socket(sock, server_hostname=name).close()
        sock.close()
        line = self.wait_log("event=tls_failed", since)
        self.assertIn(where, line)
        self.assertIn(HINT, line)
        return line

    def test_client_does_not_trust_the_ca(self):
        since = len(self.x.log_text())
        ctx = ssl.create_default_context()        # the system's CAs: not the rig's test CA
        s = socket.create_connection(("127.0.0.1", self.x.port("smtps")), timeout=10)
        line = self.refused_handshake(s, ctx, "localhost", since, "tls_failed listener=smtps ")
        self.assertIn('gave_up=client alert="unknown CA"', line)

    def test_client_connects_to_a_name_not_in_the_certificate_starttls(self):
        since = len(self.x.log_text())
        ctx = ssl.create_default_context(cafile=self.rig.ca_file)
        s = socket.create_connection(("127.0.0.1", self.x.port("imap-starttls")), timeout=10)
        f = s.makefile("rb")
        self.assertTrue(f.readline().startswith(b"* OK"))
        s.sendall(b"a STARTTLS\r\n")
        self.assertTrue(f.readline().startswith(b"a OK"))
        line = self.refused_handshake(s, ctx, "mail.elsewhere.example", since,
                                      "protocol=imap listener=imap-starttls ")
        self.assertIn('gave_up=client alert="bad certificate"', line)

    def test_handshake_refused_by_xoauthd_has_no_hint(self):
        since = len(self.x.log_text())
        s = socket.create_connection(("127.0.0.1", self.x.port("smtps")), timeout=10)
        s.sendall(b"EHLO not-tls.example\r\n" * 4)   # not a TLS record
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass
        s.close()
        line = self.wait_log("event=tls_failed", since)
        self.assertIn("listener=smtps ", line)
        self.assertIn("gave_up=xoauthd", line)
        self.assertNotIn(HINT, line)


if __name__ == "__main__":
    R.main()
