#!/usr/bin/env python3
"""Seeing what happens: the session summary line, `xoauthd status` over
the control socket and the Prometheus /metrics page, against the rig's Dovecot (IMAP) and
Dovecot submission (SMTP):

  * after one message relayed over SMTP and one IMAP login, `xoauthd status` shows the
    listeners, the account's token state and the counters; a live session is listed;
  * /metrics parses as Prometheus text (format 0.0.4) and its counters move;
  * one `event=session` line per finished session, with the right fields for SMTP and IMAP;
  * no password, client secret, refresh token or access token in status, metrics or the log.
"""
import http.client
import imaplib
import os
import re
import shutil
import smtplib
import socket
import stat
import subprocess
import tempfile
import time

import rig as R
from rig import mail_clients as mc
from rig.mail_clients import USER, LOCAL_USER, PASSWORD, CLIENT_SECRET
from rig.case import RigTestCase

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
                    r'(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*)?\})? '
                    r'(-?[0-9.eE+-]+|NaN|[+-]Inf)$')


def parse_prometheus(text):
    """Strict enough parser of the text format: {(name, labels): value}; raises on bad lines."""
    out, typed = {}, {}
    for line in text.split("\n"):
        if line == "":
            continue
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "untyped", "histogram", "summary"), line
            assert name not in typed, "TYPE twice: " + line
            typed[name] = kind
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        name = m.group(1)
        assert name in typed, "sample before its TYPE: " + line
        labels = tuple(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        assert (name, labels) not in out, "duplicate sample: " + line
        out[(name, labels)] = float(m.group(5))
    return out


class StatusMetrics(RigTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.rt = cls.rig.idp.seed_user(USER)
        cls.rig.idp.set_client(mc.CLIENT_ID, secret=CLIENT_SECRET)
        cls.metrics_port = R.free_port()
        x = R.Xoauthd(cls.rig, metrics="127.0.0.1:%d" % cls.metrics_port)
        # A short path: sun_path holds 108 bytes and temp dirs can be long.
        cls.sock_dir = tempfile.mkdtemp(prefix="xo-ctl-")
        cls.addClassCleanup(shutil.rmtree, cls.sock_dir, ignore_errors=True)
        x.global_opts["control_socket"] = os.path.join(cls.sock_dir, "c.sock")
        x.add_listen("smtp", protocol="smtp", tls="none")
        x.add_listen("imap", protocol="imap", tls="none")
        x.add_provider("rig", **cls.rig.provider_settings())
        x.add_account("reader", local_user=LOCAL_USER, local_password=mc.password_hash(),
                      provider="rig", username=USER, flow="refresh_token",
                      client_id=mc.CLIENT_ID, client_secret=CLIENT_SECRET,
                      refresh_token=cls.rt)
        x.add_account("idle", local_user="idle", local_password=mc.password_hash(),
                      provider="rig", username="idle@example.com",
                      flow="refresh_token", client_id=mc.CLIENT_ID,
                      client_secret=CLIENT_SECRET, refresh_token="never-used-rt-1234")
        x.start()
        cls.addClassCleanup(x.stop)
        cls.x = x

    def status(self):
        r = subprocess.run([R.xoauthd_bin(), "status", "-c", self.x.config_path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
        R.secret_collect.collect_text(r.stdout + r.stderr, "status-cli.out")  # secret scan
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        return r.stdout.decode()

    def metrics(self, path="/metrics", method="GET"):
        c = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=10)
        c.request(method, path)
        resp = c.getresponse()
        body = resp.read().decode()
        c.close()
        return resp.status, resp.getheader("Content-Type"), body

    def send_mail(self, subject):
        mid = R.make_message_id(subject)
        msg = R.build_message(USER, USER, mid, subject, b"status test\r\n")
        with smtplib.SMTP("127.0.0.1", self.x.port("smtp"), timeout=30) as s:
            s.ehlo("printer.local")
            s.login(LOCAL_USER, PASSWORD)
            s.sendmail(USER, [USER], msg)
        self.rig.wait_for_message_id(USER, mid)
        return len(msg)

    def wait_log(self, pattern, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.findall(pattern, self.x.log_text(), re.M)
            if m:
                return m
            time.sleep(0.05)
        self.fail("no log line matching %r" % pattern)

    def assert_no_secret(self, text):
        for secret in (PASSWORD, CLIENT_SECRET, self.rt, "never-used-rt-1234", "Bearer",
                       mc.password_hash()):
            self.assertNotIn(secret, text)
        # Access and refresh tokens the mock IdP handed out.
        st = self.rig.idp.user_stats(USER)
        toks = st.get("access_tokens", []) + st.get("refresh_tokens_issued", [])
        self.assertTrue(toks)
        for tok in toks:
            if isinstance(tok, str) and len(tok) > 8:
                self.assertNotIn(tok, text)

    def test_status_metrics_and_session_lines(self):
        st = os.stat(self.x.global_opts["control_socket"])
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode) & 0o077, 0, "control socket must be 0600")

        code, ctype, body = self.metrics()
        self.assertEqual(code, 200)
        self.assertTrue(ctype.startswith("text/plain; version=0.0.4"), ctype)
        before = parse_prometheus(body)
        self.assertEqual(before[("xoauthd_messages_total", (("account", "reader"),))], 0)
        self.assertEqual(self.metrics("/other")[0], 404)
        self.assertEqual(self.metrics(method="POST")[0], 405)

        size = self.send_mail("status-metrics")

        # IMAP: a login and a command through the relay; status lists the live session.
        m = imaplib.IMAP4("127.0.0.1", self.x.port("imap"), timeout=20)
        m.login(LOCAL_USER, PASSWORD)
        m.select("INBOX")
        live = self.status()
        self.assertRegex(live, r"(?m)^  sid=\S+ client=127\.0\.0\.1 user=reader "
                               r"account=reader protocol=imap ")
        m.logout()

        smtp_line = self.wait_log(r"^.* sid=\S+ event=session client=127\.0\.0\.1 "
                                  r"user=reader account=reader protocol=smtp "
                                  r"upstream=127\.0\.0\.1:\d+ result=ok messages=1 size=(\d+) "
                                  r"bytes_in=\d+ bytes_out=\d+ reply=\"250 .*\" "
                                  r"duration=\d+\.\d{3}s$")
        self.assertGreaterEqual(int(smtp_line[-1]), size - 10)
        imap_line = self.wait_log(r"^.* sid=\S+ event=session client=127\.0\.0\.1 "
                                  r"user=reader account=reader protocol=imap "
                                  r"upstream=127\.0\.0\.1:\d+ result=ok messages=0 size=0 "
                                  r"bytes_in=([1-9]\d*) bytes_out=([1-9]\d*) reply=- "
                                  r"duration=\d+\.\d{3}s$")
        self.assertTrue(imap_line)

        # A wrong password: result=auth_failed, counted.
        with self.assertRaises(smtplib.SMTPAuthenticationError):
            with smtplib.SMTP("127.0.0.1", self.x.port("smtp"), timeout=30) as s:
                s.ehlo("printer.local")
                s.login(LOCAL_USER, "wrong-password")
        self.wait_log(r"event=session client=\S+ user=- account=- protocol=smtp upstream=- "
                      r"result=auth_failed ")

        text = self.status()
        self.assertRegex(text, r"(?m)^xoauthd pid=\d+ uptime=\d+s reloads=0 ")
        self.assertRegex(text, r"(?m)^  smtp +protocol=smtp address=127\.0\.0\.1:%d tls=none "
                         % self.x.port("smtp"))
        self.assertRegex(text, r"(?m)^  imap +protocol=imap address=127\.0\.0\.1:%d "
                         % self.x.port("imap"))
        self.assertRegex(text, r"(?m)^  reader +flow=refresh_token token=ok expires_in=\d+s "
                               r"last_refresh=\d{4}-\d\d-\d\dT\S+Z sessions=2 messages=1 "
                               r"bytes=\d+ token_requests=1 token_failures=0")
        self.assertRegex(text, r"(?m)^  idle +flow=refresh_token token=unused ")
        # The rig's readiness probe connected once per listener: those count too.
        self.assertRegex(text, r"(?m)^  sessions_total\{smtp\}=\d+ active=0$")
        self.assertRegex(text, r"(?m)^  sessions_total\{imap\}=\d+ active=0$")
        self.assertRegex(text, r"(?m)^  messages=1 message_bytes=[1-9]\d*$")
        # smtplib tries each mechanism the server offers: one failure per attempt.
        self.assertRegex(text, r"(?m)^  local_auth_failures=[1-9]\d*$")

        code, _, body = self.metrics()
        after = parse_prometheus(body)
        acct = (("account", "reader"),)
        self.assertEqual(after[("xoauthd_messages_total", acct)], 1)
        self.assertGreater(after[("xoauthd_message_bytes_total", acct)], 0)
        self.assertEqual(after[("xoauthd_token_requests_total", acct)], 1)
        self.assertEqual(after[("xoauthd_token_failures_total", acct)], 0)
        self.assertEqual(after[("xoauthd_token_requests_total", (("account", "idle"),))], 0)
        self.assertGreater(after[("xoauthd_token_valid_seconds", acct)], 0)
        for proto, n in (("smtp", 2), ("imap", 1), ("pop3", 0)):
            key = ("xoauthd_sessions_total", (("protocol", proto),))
            self.assertEqual(after[key] - before[key], n, proto)
            self.assertEqual(after[("xoauthd_sessions_active", (("protocol", proto),))], 0)
        self.assertGreaterEqual(after[("xoauthd_local_auth_failures_total", ())], 1)
        self.assertGreater(after[("xoauthd_relay_bytes_total", (("direction", "from_server"),))],
                           before[("xoauthd_relay_bytes_total", (("direction", "from_server"),))])

        self.assert_no_secret(text)
        self.assert_no_secret(body)
        self.assert_no_secret(live)
        self.assert_no_secret(self.x.log_text())


if __name__ == "__main__":
    R.main()
