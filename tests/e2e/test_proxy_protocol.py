#!/usr/bin/env python3
"""xoauthd behind a load balancer: PROXY protocol v1 and v2 on a listener (proxy_protocol = yes,
proxy_trusted = ...). The address in the header - not the balancer's - decides allow_networks
(IPv4 and IPv6), and is what the logs show. A source outside proxy_trusted is refused, and on
an implicit-TLS listener the ClientHello that follows the header in the same segment reaches
the TLS handshake intact (the header is read without reading past it)."""
import socket
import ssl
import struct
import time

import rig as R
from rig.fake_case import FakeSmtpCase

USER = "proxied@example.com"
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(src, dst=None, sport=40000, dport=25):
    fam = "TCP6" if ":" in src else "TCP4"
    dst = dst or ("::1" if ":" in src else "127.0.0.1")
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


def v2(src, dst=None, sport=40000, dport=25, local=False):
    dst = dst or ("::1" if ":" in src else "127.0.0.1")
    if local:
        return V2_SIG + bytes([0x20, 0x00, 0, 0])
    if ":" in src:
        body = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
        fam = 0x21
    else:
        body = socket.inet_aton(src) + socket.inet_aton(dst)
        fam = 0x11
    body += struct.pack("!HH", sport, dport)
    body += bytes([0x04, 0x00, 0x03]) + b"abc"      # a TLV (PP2_TYPE_NOOP), ignored
    return V2_SIG + bytes([0x21, fam]) + struct.pack("!H", len(body)) + body


class ProxyProtocol(FakeSmtpCase):
    LIMIT = 3  # max_connections of the listener "limited"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        x = R.Xoauthd(cls.rig)
        nets = "192.0.2.0/24, 2001:db8::/32 -> scanner"
        x.add_listen("proxied", tls="none", proxy_protocol="yes",
                     proxy_trusted="10.9.9.9, 127.0.0.1", allow_networks=nets)
        x.add_listen("proxied_tls", tls="implicit", proxy_protocol="yes",
                     proxy_trusted="127.0.0.0/8", allow_networks=nets)
        x.add_listen("untrusted", tls="none", proxy_protocol="yes",
                     proxy_trusted="127.0.0.2", allow_networks=nets)
        x.add_listen("limited", tls="none", proxy_protocol="yes", proxy_trusted="127.0.0.1",
                     max_connections=str(cls.LIMIT))
        cls.add_fake_account(x, "scanner", USER)
        x.start()
        cls.addClassCleanup(x.stop)
        cls.x = x

    def mail_without_login(self, header, listener="proxied"):
        c = R.SmtpLines(self.x.port(listener), header)
        try:
            self.assertTrue(c.reply().startswith("220"))
            c.cmd("EHLO printer.local")
            return c.cmd("MAIL FROM:<scan@printer.local>")
        finally:
            c.close()

    def test_v1_allowlisted_and_not(self):
        self.assertTrue(self.mail_without_login(v1("192.0.2.7")).startswith("250"))
        self.assertTrue(self.mail_without_login(v1("198.51.100.9")).startswith("530"))
        self.assertTrue(self.mail_without_login(v1("2001:db8::7")).startswith("250"))
        log = self.x.log_text()
        self.assertIn("peer=192.0.2.7 listener=proxied", log)
        self.assertIn("peer=2001:db8::7 listener=proxied", log)

    def test_v2_allowlisted_and_not(self):
        self.assertTrue(self.mail_without_login(v2("192.0.2.8")).startswith("250"))
        self.assertTrue(self.mail_without_login(v2("2001:db8::8")).startswith("250"))
        self.assertTrue(self.mail_without_login(v2("2001:db9::8")).startswith("530"))
        # LOCAL (a health check): the balancer's own address, which is not allowlisted.
        self.assertTrue(self.mail_without_login(v2("", local=True)).startswith("530"))

    def test_v1_whole_message_through_fake_upstream(self):
        before = len(self.fake.messages)
        c = R.SmtpLines(self.x.port("proxied"), v1("192.0.2.9"))
        try:
            c.reply()
            c.cmd("EHLO printer.local")
            self.assertTrue(c.cmd("MAIL FROM:<scan@printer.local>").startswith("250"))
            self.assertTrue(c.cmd("RCPT TO:<boss@example.com>").startswith("250"))
            self.assertTrue(c.cmd("DATA").startswith("354"))
            self.assertTrue(c.cmd("Subject: proxied\r\n\r\nhello\r\n.").startswith("250"))
            c.cmd("QUIT")
        finally:
            c.close()
        self.assertEqual(len(self.fake.messages), before + 1)

    def test_max_connections_counts_each_proxied_connection_once(self):
        """max_connections = N admits N PROXY protocol connections (a connection still sending
        its header and the session it becomes are one connection), refuses the next, and a
        closed one makes room again."""
        open_ = R.closed_after(self)
        for i in range(self.LIMIT):
            c = R.SmtpLines(self.x.port("limited"), v1("192.0.2.%d" % (20 + i)))
            open_.append(c)
            self.assertTrue(c.reply().startswith("220"), "connection %d of %d refused"
                            % (i + 1, self.LIMIT))
        extra = R.SmtpLines(self.x.port("limited"), v1("192.0.2.30"))
        open_.append(extra)
        self.assertTrue(extra.reply().startswith("421"))
        extra.close()
        open_[0].cmd("QUIT")
        open_[0].close()
        # The closed session's place is released once its handles closed: retry briefly.
        deadline = time.monotonic() + 10
        while True:
            again = R.SmtpLines(self.x.port("limited"), v1("192.0.2.31"))
            open_.append(again)
            if again.reply().startswith("220"):
                break
            again.close()
            self.assertLess(time.monotonic(), deadline, "no room after a connection closed")
            time.sleep(0.1)

    def test_untrusted_source_refused(self):
        c = R.SmtpLines(self.x.port("untrusted"), v1("192.0.2.7"))
        try:
            with self.assertRaises((EOFError, ConnectionResetError)):
                c.reply()
        finally:
            c.close()
        self.assertIn("event=refused listener=untrusted peer=127.0.0.1", self.x.log_text())

    def test_garbage_header_closes(self):
        c = R.SmtpLines(self.x.port("proxied"), b"EHLO not-a-proxy\r\n")
        try:
            with self.assertRaises((EOFError, ConnectionResetError)):
                c.reply()
        finally:
            c.close()
        self.assertIn("event=proxy_header_invalid listener=proxied", self.x.log_text())

    def test_v2_then_clienthello_in_one_segment(self):
        """The TLS ClientHello is written together with the header: xoauthd must leave it in
        the socket for the handshake."""
        ctx = ssl.create_default_context(cafile=self.rig.ca_file)
        raw = socket.create_connection(("127.0.0.1", self.x.port("proxied_tls")), timeout=20)
        inbuf, outbuf = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(inbuf, outbuf, server_hostname="localhost")
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        raw.sendall(v2("192.0.2.10") + outbuf.read())    # one write: header + ClientHello
        try:
            greeting = b""
            while b"\r\n" not in greeting:
                data = raw.recv(65536)
                self.assertTrue(data, "closed during the handshake")
                inbuf.write(data)
                try:
                    if not tls.server_hostname or tls.version() is None:
                        tls.do_handshake()
                    greeting += tls.read(4096)
                except ssl.SSLWantReadError:
                    pass
                out = outbuf.read()
                if out:
                    raw.sendall(out)
            self.assertTrue(greeting.startswith(b"220"), greeting)
        finally:
            raw.close()
        # The same, through the ssl module end to end, as a second check of the path.
        s = socket.create_connection(("127.0.0.1", self.x.port("proxied_tls")), timeout=20)
        s.sendall(v1("192.0.2.11"))
        t = ctx.wrap_socket(s, server_hostname="localhost")
        try:
            f = t.makefile("rb")
            self.assertTrue(f.readline().startswith(b"220"))
            t.sendall(b"EHLO printer.local\r\n")
            while f.readline()[3:4] == b"-":
                pass
            t.sendall(b"MAIL FROM:<a@b.c>\r\n")
            self.assertTrue(f.readline().startswith(b"250"))
        finally:
            t.close()
        self.assertIn("peer=192.0.2.11 listener=proxied_tls", self.x.log_text())


if __name__ == "__main__":
    R.main()
