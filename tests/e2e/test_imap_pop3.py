#!/usr/bin/env python3
"""xoauthd's IMAP and POP3 fronts against the rig's real Dovecot (passdb oauth2): password
logins in every form the grammar allows, the capability lists a client sees before and after
login, pipelining, STARTTLS/STLS, invalid input, the failure replies (wrong password, token
endpoint down) and upstream implicit TLS. Real clients (curl, mbsync), IDLE and a 30 MB
message are in test_imap_pop3_clients.py."""
import imaplib
import poplib

import rig as R
from rig import mail_clients as mc
from rig.mail_clients import Raw, USER, LOCAL_USER, PASSWORD
from rig.case import RigTestCase


class ImapPop3Test(RigTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.x = mc.start_proxy(cls.rig, listens={
            "imaps": {"protocol": "imap", "tls": "implicit"},
            "imap-tls": {"protocol": "imap", "tls": "starttls", "allow_plaintext_auth": "never"},
            "pop3-tls": {"protocol": "pop3", "tls": "starttls", "allow_plaintext_auth": "never"},
        })
        cls.addClassCleanup(cls.x.stop)
        cls.msg = mc.deliver(cls.rig, "through-smtp", R.tricky_body())

    def imap(self, name="imap", **kw):
        r = Raw(self.x.port(name), **kw)
        self.addCleanup(r.close)
        return r

    # ---- IMAP ------------------------------------------------------------------------------

    def test_imaplib_list_select_fetch_byte_for_byte(self):
        m = imaplib.IMAP4("127.0.0.1", self.x.port("imap"), timeout=20)
        self.assertIn("AUTH=PLAIN", m.capabilities)
        self.assertNotIn("LOGINDISABLED", m.capabilities)
        typ, data = m.login(LOCAL_USER, PASSWORD)   # imaplib quotes '"' and '\'
        self.assertEqual(typ, "OK")
        caps = data[0].decode()
        self.assertTrue(caps.startswith("[CAPABILITY IMAP4rev1 "), caps)
        for gone in ("AUTH=", "SASL-IR", "LOGINDISABLED", "STARTTLS", "COMPRESS="):
            self.assertNotIn(gone, caps)
        self.assertIn("IDLE", caps)
        typ, boxes = m.list()
        self.assertEqual(typ, "OK")
        self.assertTrue(any(b"INBOX" in b for b in boxes))
        typ, _ = m.select("INBOX", readonly=True)
        self.assertEqual(typ, "OK")
        typ, data = m.uid("SEARCH", None, "ALL")
        uids = data[0].split()
        fetched = []
        for uid in uids:
            typ, d = m.uid("FETCH", uid, "(BODY.PEEK[])")
            fetched += [p[1] for p in d if isinstance(p, tuple)]
        self.assertIn(self.msg, fetched, "the delivered message, byte for byte")
        m.logout()

    def test_login_with_literals_and_quoted_escapes(self):
        pw = PASSWORD.encode()
        # synchronising literal: the server asks for the octets with "+"
        r = self.imap()
        r.send("a1 LOGIN %s {%d}\r\n" % (LOCAL_USER, len(pw)))
        self.assertTrue(r.line().startswith("+"))
        r.send(pw + b"\r\n")
        _, tagged = r.until_tag("a1")
        self.assertTrue(tagged.startswith("a1 OK [CAPABILITY "), tagged)
        r.send("a2 LOGOUT\r\n")
        _, tagged = r.until_tag("a2")
        self.assertTrue(tagged.startswith("a2 OK"), tagged)
        # non-synchronising literal (LITERAL+) for the user, quoted password with " and \
        r = self.imap()
        self.assertIn("LITERAL+", r.greeting)
        r.send("A.b-3 LOGIN {%d+}\r\n%s %s\r\n" % (len(LOCAL_USER), LOCAL_USER,
                                                   mc.imap_quote(PASSWORD)))
        _, tagged = r.until_tag("A.b-3")
        self.assertTrue(tagged.startswith("A.b-3 OK "), tagged)
        r.send("z NOOP\r\n")
        self.assertTrue(r.until_tag("z")[1].startswith("z OK"))

    def test_authenticate_plain_ir_and_continuation(self):
        r = self.imap()
        r.send("p1 AUTHENTICATE PLAIN %s\r\n" % mc.plain_b64(LOCAL_USER, PASSWORD))
        self.assertTrue(r.until_tag("p1")[1].startswith("p1 OK [CAPABILITY "))
        r = self.imap()
        r.send("p2 AUTHENTICATE PLAIN\r\n")
        self.assertEqual(r.line().rstrip(), "+")
        r.send(mc.plain_b64(LOCAL_USER, PASSWORD, authzid=LOCAL_USER) + "\r\n")
        self.assertTrue(r.until_tag("p2")[1].startswith("p2 OK "))
        # cancelled, then garbage base64: both BAD, the session goes on
        r = self.imap()
        r.send("c1 AUTHENTICATE PLAIN\r\n")
        r.line()
        r.send("*\r\n")
        self.assertTrue(r.until_tag("c1")[1].startswith("c1 BAD"))
        r.send("c2 AUTHENTICATE PLAIN !!!notbase64\r\nc3 AUTHENTICATE CRAM-MD5\r\nc4 NOOP\r\n")
        self.assertTrue(r.until_tag("c2")[1].startswith("c2 BAD"))
        self.assertTrue(r.until_tag("c3")[1].startswith("c3 NO"))
        self.assertTrue(r.until_tag("c4")[1].startswith("c4 OK"))

    def test_pipelining_and_writing_before_the_greeting(self):
        r = self.imap(read_greeting=False)
        # Everything in one write, before the greeting was read: answered in order, and the
        # commands behind LOGIN reach the provider through the relay.
        r.send("t1 CAPABILITY\r\nt2 ID (\"name\" \"test\")\r\nt3 LOGIN %s %s\r\n"
               "t4 SELECT INBOX\r\nt5 LOGOUT\r\n" % (LOCAL_USER, mc.imap_quote(PASSWORD)))
        self.assertTrue(r.line().startswith("* OK [CAPABILITY IMAP4rev1"))
        un, tagged = r.until_tag("t1")
        self.assertTrue(un[0].startswith("* CAPABILITY IMAP4rev1"))
        self.assertTrue(tagged.startswith("t1 OK"))
        un, tagged = r.until_tag("t2")
        self.assertEqual(un, ['* ID ("name" "xoauthd")'])
        self.assertTrue(r.until_tag("t3")[1].startswith("t3 OK [CAPABILITY"))
        un, tagged = r.until_tag("t4")
        self.assertTrue(tagged.startswith("t4 OK [READ-WRITE]"), tagged)
        self.assertTrue(any(l.endswith("EXISTS") for l in un))
        un, tagged = r.until_tag("t5")
        self.assertTrue(tagged.startswith("t5 OK"))
        self.assertTrue(r.closed_by_peer())

    def test_invalid_commands_get_bad_then_close(self):
        r = self.imap()
        r.send("x1 SELECT INBOX\r\nx2 LOGIN onlyuser\r\n\"bad tag\r\nx3 LOGIN {99999999999999999999}\r\n")
        self.assertTrue(r.until_tag("x1")[1].startswith("x1 BAD"))
        self.assertTrue(r.until_tag("x2")[1].startswith("x2 BAD"))
        self.assertTrue(r.line().startswith("* BAD"))
        self.assertTrue(r.until_tag("x3")[1].startswith("x3 BAD"))
        r.send("".join("y%d FROB\r\n" % i for i in range(10)))
        lines = []
        while True:
            try:
                lines.append(r.line())
            except EOFError:
                break
        self.assertTrue(lines[-1].startswith("* BYE"), lines)
        self.assertEqual(sum(1 for l in lines if " BAD " in l), 6, "closed at the 10th BAD")

    def test_logindisabled_and_starttls(self):
        ctx = mc.client_tls_context(self.rig)
        r = self.imap("imap-tls")
        self.assertIn("STARTTLS", r.greeting)
        self.assertIn("LOGINDISABLED", r.greeting)
        self.assertNotIn("AUTH=PLAIN", r.greeting)
        r.send("s1 LOGIN %s x\r\n" % LOCAL_USER)
        self.assertTrue(r.until_tag("s1")[1].startswith("s1 NO [PRIVACYREQUIRED]"))
        # A man in the middle appends a command in clear behind STARTTLS: it is dropped.
        r.send("s2 STARTTLS\r\ninjected NOOP\r\n")
        self.assertTrue(r.until_tag("s2")[1].startswith("s2 OK"))
        r.starttls(ctx)
        r.send("s3 CAPABILITY\r\n")
        un, tagged = r.until_tag("s3")
        self.assertEqual(len(un), 1, "no answer to the injected command")
        self.assertIn("AUTH=PLAIN", un[0])
        self.assertNotIn("STARTTLS", un[0])
        self.assertNotIn("LOGINDISABLED", un[0])
        r.send("s4 LOGIN %s %s\r\n" % (LOCAL_USER, mc.imap_quote(PASSWORD)))
        self.assertTrue(r.until_tag("s4")[1].startswith("s4 OK [CAPABILITY"))
        # implicit TLS front
        m = imaplib.IMAP4_SSL("127.0.0.1", self.x.port("imaps"), ssl_context=ctx, timeout=20)
        self.assertNotIn("STARTTLS", m.capabilities)
        m.login(LOCAL_USER, PASSWORD)
        self.assertEqual(m.select("INBOX")[0], "OK")
        m.logout()

    def test_wrong_password_no_token_request(self):
        self.rig.idp.reset_stats()
        r = self.imap()
        r.send("w1 LOGIN %s Wr0ngPw-1\r\n" % LOCAL_USER)
        self.assertEqual(r.until_tag("w1")[1], "w1 NO [AUTHENTICATIONFAILED] Authentication failed.")
        r.send("w2 LOGIN nobody %s\r\n" % mc.imap_quote(PASSWORD))
        self.assertTrue(r.until_tag("w2")[1].startswith("w2 NO [AUTHENTICATIONFAILED]"))
        p = poplib.POP3("127.0.0.1", self.x.port("pop3"), timeout=20)
        p.user(LOCAL_USER)
        with self.assertRaises(poplib.error_proto) as cm:
            p.pass_("Wr0ngPw-2")
        self.assertTrue(cm.exception.args[0].startswith(b"-ERR [AUTH]"), cm.exception)
        p.quit()
        self.assertEqual(self.rig.idp.user_stats(USER)["token_requests"], 0)
        log = self.x.log_text()
        self.assertIn("event=auth_failed protocol=imap", log)
        self.assertIn("event=auth_failed protocol=pop3", log)
        self.assertNotIn("Wr0ngPw", log, "a password reached the log")

    def test_id_at_rfc2971_maximum(self):
        """RFC 2971 section 3.3's largest ID (30 pairs, 30-octet fields, 1024-octet values, a
        31.8 KB line) is answered OK before login, as Dovecot does; the login behind it works,
        and beyond the limits (or for any other command that long) it is BAD."""
        pairs = " ".join('"%s" "%s"' % (("f%02d" % k).ljust(30, "x"), chr(97 + k % 26) * 1024)
                         for k in range(30))
        line = "i1 ID (%s)\r\n" % pairs
        self.assertGreater(len(line), 31000)
        r = self.imap()
        r.send(line + "i2 LOGIN %s %s\r\n" % (LOCAL_USER, mc.imap_quote(PASSWORD)))
        un, tagged = r.until_tag("i1")
        self.assertEqual(tagged, "i1 OK ID completed.")
        self.assertEqual(un, ['* ID ("name" "xoauthd")'])
        self.assertTrue(r.until_tag("i2")[1].startswith("i2 OK [CAPABILITY "))
        r = self.imap()
        r.send(line.replace("(", '("one" "more" ', 1) + "i3 NOOP\r\n")
        self.assertEqual(r.until_tag("i1")[1], "i1 BAD Too many ID field/value pairs")
        r.send(line.replace("i1 ID", "i4 XD", 1))
        self.assertEqual(r.until_tag("i3")[1], "i3 OK NOOP completed.")
        self.assertEqual(r.until_tag("i4")[1], "i4 BAD Command line too long")

    def test_imap_authenticate_login(self):
        """AUTHENTICATE LOGIN (draft-murchison-sasl-login, as Dovecot offers it): imaplib's
        callback, SASL-IR, cancel, undecodable input, curl, and LOGINDISABLED."""
        def login_cb(challenge):
            return {b"Username:": LOCAL_USER, b"Password:": PASSWORD}[challenge]
        m = imaplib.IMAP4("127.0.0.1", self.x.port("imap"), timeout=20)
        self.assertIn("AUTH=LOGIN", m.capabilities)
        typ, data = m.authenticate("LOGIN", login_cb)
        self.assertEqual(typ, "OK", data)
        self.assertEqual(m.select("INBOX", readonly=True)[0], "OK")
        m.logout()
        b64 = mc.b64
        # the user name as initial response (RFC 4959), the password on the continuation
        r = self.imap()
        r.send("l1 AUTHENTICATE LOGIN %s\r\n" % b64(LOCAL_USER))
        self.assertEqual(r.line().rstrip(), "+ UGFzc3dvcmQ6")
        r.send(b64(PASSWORD) + "\r\nl2 NOOP\r\n")
        self.assertTrue(r.until_tag("l1")[1].startswith("l1 OK [CAPABILITY "))
        self.assertTrue(r.until_tag("l2")[1].startswith("l2 OK"), "relayed after the login")
        # cancelled at each step, then a bad password and undecodable base64
        r = self.imap()
        r.send("c1 AUTHENTICATE login\r\n")
        self.assertEqual(r.line().rstrip(), "+ VXNlcm5hbWU6")
        r.send("*\r\n")
        self.assertEqual(r.until_tag("c1")[1], "c1 BAD Authentication cancelled.")
        r.send("c2 AUTHENTICATE LOGIN\r\n")
        r.line()
        r.send(b64(LOCAL_USER) + "\r\n")
        self.assertEqual(r.line().rstrip(), "+ UGFzc3dvcmQ6")
        r.send("*\r\n")
        self.assertEqual(r.until_tag("c2")[1], "c2 BAD Authentication cancelled.")
        r.send("c3 AUTHENTICATE LOGIN %s\r\n" % b64(LOCAL_USER))
        r.line()
        r.send(b64("Wr0ngPw-L") + "\r\n")
        self.assertEqual(r.until_tag("c3")[1], "c3 NO [AUTHENTICATIONFAILED] Authentication failed.")
        r.send("c4 AUTHENTICATE LOGIN\r\n")
        r.line()
        r.send("not*base64\r\n")
        self.assertEqual(r.until_tag("c4")[1], "c4 BAD Invalid SASL LOGIN response.")
        r.send("c5 AUTHENTICATE LOGIN =\r\n")
        self.assertEqual(r.until_tag("c5")[1], "c5 BAD Invalid SASL LOGIN response.")
        # curl asked for LOGIN
        rc, out, err = mc.curl(["-u", "%s:%s" % (LOCAL_USER, PASSWORD), "--login-options",
                                "AUTH=LOGIN", "imap://127.0.0.1:%d/" % self.x.port("imap")])
        self.assertEqual(rc, 0, err)
        self.assertIn(b"INBOX", out)
        # where a password may not travel in clear, LOGIN is neither offered nor accepted
        r = self.imap("imap-tls")
        self.assertNotIn("AUTH=LOGIN", r.greeting)
        r.send("p1 AUTHENTICATE LOGIN %s\r\n" % b64(LOCAL_USER))
        self.assertTrue(r.until_tag("p1")[1].startswith("p1 NO [PRIVACYREQUIRED]"))
        r.send("p2 STARTTLS\r\n")
        self.assertTrue(r.until_tag("p2")[1].startswith("p2 OK"))
        r.starttls(mc.client_tls_context(self.rig))
        r.send("p3 CAPABILITY\r\n")
        self.assertIn("AUTH=LOGIN", r.until_tag("p3")[0][0])
        r.send("p4 AUTHENTICATE LOGIN\r\n")
        self.assertEqual(r.line().rstrip(), "+ VXNlcm5hbWU6")
        r.send(b64(LOCAL_USER) + "\r\n")
        r.line()
        r.send(b64(PASSWORD) + "\r\n")
        self.assertTrue(r.until_tag("p4")[1].startswith("p4 OK [CAPABILITY"))
        self.assertNotIn("Wr0ngPw", self.x.log_text(), "a password reached the log")

    # ---- POP3 ------------------------------------------------------------------------------

    def test_pop3_auth_login(self):
        """AUTH LOGIN (RFC 5034 with the LOGIN mechanism): with and without the user name as
        initial response, poplib behind it, cancel, curl, and the plaintext policy."""
        b64 = mc.b64
        r = Raw(self.x.port("pop3"))
        self.addCleanup(r.close)
        r.send("AUTH\r\n")
        self.assertEqual(r.until_dot(), ["+OK", "PLAIN", "LOGIN", "."])
        r.send("AUTH LOGIN\r\n")
        self.assertEqual(r.line().rstrip(), "+ VXNlcm5hbWU6")
        r.send(b64(LOCAL_USER) + "\r\n")
        self.assertEqual(r.line().rstrip(), "+ UGFzc3dvcmQ6")
        r.send(b64(PASSWORD) + "\r\nSTAT\r\n")
        self.assertTrue(r.line().startswith("+OK"))
        self.assertTrue(r.line().startswith("+OK "), "STAT pipelined behind the login")
        # poplib, with the user name as initial response
        p = poplib.POP3("127.0.0.1", self.x.port("pop3"), timeout=20)
        self.assertIn("LOGIN", p.capa()["SASL"])
        self.assertEqual(p._shortcmd("AUTH LOGIN " + b64(LOCAL_USER)), b"+ UGFzc3dvcmQ6")
        self.assertTrue(p._shortcmd(b64(PASSWORD)).startswith(b"+OK"))
        self.assertGreaterEqual(p.stat()[0], 1)
        p.quit()
        # cancelled, a wrong password, undecodable
        r = Raw(self.x.port("pop3"))
        self.addCleanup(r.close)
        r.send("AUTH LOGIN\r\n*\r\n")
        r.line()
        self.assertEqual(r.line().rstrip(), "-ERR Authentication cancelled.")
        r.send("AUTH LOGIN %s\r\n%s\r\n" % (b64(LOCAL_USER), b64("Wr0ngPw-P")))
        r.line()
        self.assertTrue(r.line().startswith("-ERR [AUTH] Authentication failed."))
        r.send("AUTH LOGIN =\r\n")
        self.assertEqual(r.line().rstrip(), "-ERR Invalid SASL LOGIN response.")
        # curl asked for LOGIN
        rc, out, err = mc.curl(["-u", "%s:%s" % (LOCAL_USER, PASSWORD), "--login-options",
                                "AUTH=LOGIN", "pop3://127.0.0.1:%d/" % self.x.port("pop3")])
        self.assertEqual(rc, 0, err)
        self.assertRegex(out.decode(), r"^1 \d+")
        # not before STLS where plain text is not allowed
        r = Raw(self.x.port("pop3-tls"))
        self.addCleanup(r.close)
        r.send("AUTH LOGIN\r\n")
        self.assertTrue(r.line().startswith("-ERR [AUTH]"))
        r.send("AUTH\r\n")
        self.assertEqual(r.until_dot(), ["+OK", "."])
        self.assertNotIn("Wr0ngPw", self.x.log_text(), "a password reached the log")

    def test_poplib_user_pass_list_retr(self):
        p = poplib.POP3("127.0.0.1", self.x.port("pop3"), timeout=20)
        caps = p.capa()
        self.assertEqual(caps.get("SASL"), ["PLAIN", "LOGIN"])
        self.assertIn("USER", caps)
        self.assertNotIn("STLS", caps)
        p.user(LOCAL_USER)
        self.assertTrue(p.pass_(PASSWORD).startswith(b"+OK"))
        n, _ = p.stat()
        self.assertGreaterEqual(n, 1)
        msgs = [b"\r\n".join(p.retr(i)[1]) + b"\r\n" for i in range(1, n + 1)]
        self.assertIn(self.msg, msgs, "the delivered message, byte for byte")
        caps = p.capa()   # now the provider's list, through the relay
        self.assertNotIn("SASL", caps)
        p.quit()

    def test_pop3_auth_plain_stls_and_errors(self):
        r = Raw(self.x.port("pop3"))
        self.addCleanup(r.close)
        self.assertTrue(r.greeting.startswith("+OK"))
        r.send("AUTH PLAIN\r\n")
        self.assertEqual(r.line().rstrip(), "+")
        r.send(mc.plain_b64(LOCAL_USER, PASSWORD) + "\r\nSTAT\r\n")
        self.assertTrue(r.line().startswith("+OK"))
        self.assertTrue(r.line().startswith("+OK "), "STAT pipelined behind the login")
        r = Raw(self.x.port("pop3"))
        r.send("AUTH PLAIN %s\r\nQUIT\r\n" % mc.plain_b64(LOCAL_USER, PASSWORD))
        self.assertTrue(r.line().startswith("+OK"))
        self.assertTrue(r.line().startswith("+OK"))
        r.close()
        ctx = mc.client_tls_context(self.rig)
        r = Raw(self.x.port("pop3-tls"))
        self.addCleanup(r.close)
        r.send("CAPA\r\n")
        capa = r.until_dot()
        self.assertIn("STLS", capa)
        self.assertNotIn("USER", capa)
        r.send("USER %s\r\nPASS x\r\nFROB\r\n" % LOCAL_USER)
        self.assertTrue(r.line().startswith("-ERR [AUTH]"))
        self.assertTrue(r.line().startswith("-ERR"))
        self.assertTrue(r.line().startswith("-ERR"))
        r.send("STLS\r\nCAPA\r\n")
        self.assertTrue(r.line().startswith("+OK"))
        r.starttls(ctx)
        r.send("CAPA\r\n")
        capa = r.until_dot()
        self.assertTrue(capa[0].startswith("+OK"), "exactly one answer: the injected CAPA is gone")
        self.assertNotIn("STLS", capa)
        self.assertIn("SASL PLAIN LOGIN", capa)
        r.send("USER %s\r\nPASS %s\r\n" % (LOCAL_USER, PASSWORD))
        self.assertTrue(r.line().startswith("+OK"))
        self.assertTrue(r.line().startswith("+OK"))


class FailureAndTlsTest(RigTestCase):
    """Fresh xoauthd processes: nothing cached."""
    def test_token_endpoint_down(self):
        x = mc.start_proxy(self.rig, name="tokendown")
        self.addCleanup(x.kill_if_running)
        self.rig.idp.fail("500", count=20)
        try:
            r = Raw(x.port("imap"))
            r.send("d1 LOGIN %s %s\r\n" % (LOCAL_USER, mc.imap_quote(PASSWORD)))
            tagged = r.until_tag("d1")[1]
            self.assertTrue(tagged.startswith("d1 NO [UNAVAILABLE]"), tagged)
            r.send("d2 NOOP\r\n")
            self.assertTrue(r.until_tag("d2")[1].startswith("d2 OK"), "the session goes on")
            r.close()
            p = poplib.POP3("127.0.0.1", x.port("pop3"), timeout=20)
            p.user(LOCAL_USER)
            with self.assertRaises(poplib.error_proto) as cm:
                p.pass_(PASSWORD)
            self.assertTrue(cm.exception.args[0].startswith(b"-ERR [SYS/TEMP]"), cm.exception)
            p.quit()
        finally:
            self.rig.idp.clear_failures()
        x.stop()
        log = x.log_text()
        self.assertIn("event=upstream_login_failed protocol=imap account=reader class=token", log)
        self.assertIn("event=upstream_login_failed protocol=pop3 account=reader class=token", log)

    def test_upstream_implicit_tls_and_token_refresh(self):
        x = mc.start_proxy(self.rig, upstream_tls="implicit", name="tlsup")
        self.addCleanup(x.kill_if_running)
        m = imaplib.IMAP4("127.0.0.1", x.port("imap"), timeout=20)
        m.login(LOCAL_USER, PASSWORD)
        self.assertEqual(m.select("INBOX")[0], "OK")
        m.logout()
        # The cached token dies at the provider: Dovecot rejects it, xoauthd refreshes once.
        self.rig.idp.expire_access(USER)
        p = poplib.POP3("127.0.0.1", x.port("pop3"), timeout=20)
        p.user(LOCAL_USER)
        self.assertTrue(p.pass_(PASSWORD).startswith(b"+OK"))
        p.stat()
        p.quit()
        x.stop()
        log = x.log_text()
        self.assertIn("event=upstream_token_rejected protocol=pop3 account=reader", log)
        self.assertEqual(log.count("event=upstream_login protocol="), 2)
        st = self.rig.idp.user_stats(USER)
        for secret in st["access_tokens"] + st["refresh_tokens_issued"] + [PASSWORD]:
            self.assertNotIn(secret, log, "a secret reached the log")


if __name__ == "__main__":
    R.main()
