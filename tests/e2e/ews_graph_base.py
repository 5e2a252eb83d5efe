"""Shared set-up for the EWS / Graph submission tests (test_ews_graph*.py): the rig's mock IdP,
the mock EWS+Graph server (tests/rig/mock_ews_graph.py) and xoauthd instances configured with
submit = ews | graph."""
import base64
import os
import smtplib
import subprocess
import time

from rig import plain_ir, read_reply
from rig.case import RigTestCase
from rig.mock_ews_graph import MockEwsGraph

USER = "scanner@contoso.test"
PASSWORD = "scan-pass;word"
CLIENT_SECRET = "client-secret-value"


def message(subject, to="boss@contoso.test", cc=None, body=b"hello\r\n"):
    h = "From: Scanner <%s>\r\nTo: %s\r\n" % (USER, to)
    if cc:
        h += "Cc: %s\r\n" % cc
    h += "Subject: %s\r\nMessage-ID: <%s@test>\r\nMIME-Version: 1.0\r\n\r\n" % (
        subject, subject.replace(" ", "-"))
    return h.encode() + body


class EwsGraphCase(RigTestCase):
    RIG = {"mail_servers": False}
    LOCAL_PASSWORD = PASSWORD

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.mock = MockEwsGraph(cls.rig.certs, introspection_url=cls.rig.idp.introspection_url)
        cls.addClassCleanup(cls.mock.stop)
        cls.xs = {}

    @classmethod
    def tearDownClass(cls):
        # SIGTERM: exit status 0 and no sanitizer report in any daemon's log
        for x in cls.xs.values():
            x.stop()

    def setUp(self):
        self.mock.reset()
        self.rig.idp.clear_failures()

    def xoauthd(self, submit, flow="refresh_token", extra=None, provider_extra=None,
                key=None):
        """One xoauthd per configuration, kept for the class (starting one costs time)."""
        key = key or (submit, flow, repr(sorted((extra or {}).items())),
                      repr(sorted((provider_extra or {}).items())))
        x = self.xs.get(key)
        if x is not None and x.running():
            return x
        # Each instance has its own mailbox and client at the IdP: refresh tokens rotate on use,
        # and instances must not kill each other's.
        n = len(self.xs)
        user, cid = "scanner%d@contoso.test" % n, "cid%d" % n
        x = self.new_class_xoauthd()
        x.user = user
        x.add_listen("smtp", tls="none")
        prov = dict(token_url=self.rig.token_url, ews_url=self.mock.ews_url,
                    graph_url=self.mock.graph_url, ca_file=self.rig.ca_file)
        prov.update(provider_extra or {})
        x.add_provider("m365", **prov)
        acct = dict(local_user="scanner", local_password=self.hash, provider="m365",
                    username=user, flow=flow, client_id=cid, client_secret=CLIENT_SECRET,
                    submit=submit)
        if flow == "refresh_token":
            self.rig.idp.set_client(cid, secret=CLIENT_SECRET)
            acct["refresh_token"] = self.rig.idp.seed_user(user)
        else:
            self.rig.idp.set_client(cid, secret=CLIENT_SECRET, username=user)
            self.rig.idp.seed_user(user)
        acct.update(extra or {})
        x.add_account("scanner", **acct)
        x.start()
        self.xs[key] = x
        return x

    def send(self, x, msg, rcpts=("boss@contoso.test",), mail_from=USER):
        """(code, text) of the end of DATA; smtplib does the dot-stuffing."""
        with smtplib.SMTP("127.0.0.1", x.port("smtp"), timeout=120) as s:
            s.ehlo("printer.local")
            s.login("scanner", PASSWORD)
            s.mail(mail_from)
            for r in rcpts:
                code, text = s.rcpt(r)
                self.assertEqual(code, 250, text)
            code, text = s.data(msg)
            return code, text.decode(errors="replace")

    def swaks(self, x, msg, to="boss@contoso.test"):
        path = os.path.join(x.dir, "swaks-%d.eml" % time.monotonic_ns())
        # swaks ends DATA with "\r\n.\r\n" after the text as given
        with open(path, "wb") as f:
            f.write(msg[:-2])
        cmd = ["swaks", "--server", "127.0.0.1", "--port", str(x.port("smtp")),
               "--ehlo", "swaks-client.test", "--from", USER, "--to", to,
               "--auth", "PLAIN", "--auth-user", "scanner", "--auth-password", PASSWORD,
               "--data", "@" + path, "--timeout", "60"]
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=120)
        os.unlink(path)
        return r.returncode, r.stdout.decode(errors="replace")

    def assert_no_spool(self, x):
        left = [n for n in os.listdir(x.state_dir) if n.startswith("spool")]
        self.assertEqual(left, [], "a spool file was left behind")
        # O_TMPFILE files have no name: look at the daemon's open descriptors too.
        fds = os.listdir("/proc/%d/fd" % x.proc.pid)
        held = []
        for fd in fds:
            try:
                t = os.readlink("/proc/%d/fd/%s" % (x.proc.pid, fd))
            except OSError:
                continue
            if x.state_dir in t and ("(deleted)" in t or "/#" in t):
                held.append(t)
        self.assertEqual(held, [], "the daemon still holds a spool file")
