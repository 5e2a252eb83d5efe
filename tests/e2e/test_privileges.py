"""Privileges: `user =` / `group =`, the state_dir check, and refusing configuration
and key files that every user can read while they hold secrets.

Run as root (CI does), xoauthd binds its listeners and control socket, then becomes nobody:
nogroup; /proc/PID/status must show nobody's ids only, a real mail must go through it (Postfix
and Dovecot of the rig, token from the mock IdP), SIGHUP must still reload a root:nogroup 0640
configuration, and a reload that needs a privileged port must be refused with a log line while
the old configuration keeps serving. Without root the privilege tests are skipped (printed
reason); the permission checks run either way."""
import grp
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import time

import rig as R
from rig import read_reply
from rig.case import RigTestCase

CLIENT_ID = "priv-client"
CLIENT_SECRET = "priv-Client;secret_9f2"
LOCAL_PASSWORD = "priv-pass;w0rd"
SECRET_KEYS = ("client_secret", "upstream_password", "refresh_token", "access_token",
               "local_password")


def ids(name):
    pw = pwd.getpwnam(name)
    return pw.pw_uid, pw.pw_gid


class PrivilegesTest(RigTestCase):
    RIG = {"mail_servers": os.geteuid() == 0}
    CLIENT_ID = CLIENT_ID
    CLIENT_SECRET = CLIENT_SECRET
    LOCAL_PASSWORD = LOCAL_PASSWORD

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = os.geteuid() == 0
        try:
            cls.nobody_uid = pwd.getpwnam("nobody").pw_uid
            cls.nogroup = "nogroup"
            cls.nogroup_gid = grp.getgrnam("nogroup").gr_gid
        except KeyError:
            cls.nobody_uid = None

    def need_root(self):
        if not self.root:
            print("SKIP reason: %s needs root (it drops to nobody); running as uid %d"
                  % (self._testMethodName, os.geteuid()))
            self.skipTest("needs root")
        if self.nobody_uid is None:
            print("SKIP reason: no user nobody / group nogroup on this system")
            self.skipTest("no nobody/nogroup")

    def make_x(self, user="nobody", group="nogroup", tls_key=None):
        """An xoauthd with a plain SMTP listener and one account on the rig, whose files the
        daemon can still reach after dropping to nobody: its dir 0755, a CA copy 0644."""
        self.user = "priv-%s@example.com" % self._testMethodName.replace("_", "-")
        rt = self.rig.idp.seed_user(self.user)
        opts = {}
        if user is not None:
            opts["user"] = user
        if group is not None:
            opts["group"] = group
        x = self.new_xoauthd(**opts)
        os.chmod(x.dir, 0o755)
        ca = os.path.join(x.dir, "ca.crt")
        shutil.copy(self.rig.ca_file, ca)
        os.chmod(ca, 0o644)
        x.add_listen("plain", tls="none")
        if tls_key is not None:
            x.add_listen("tls", tls="starttls", tls_key=tls_key)
        smtp_port = self.rig.smtp_submission_port if self.root else 1
        x.add_provider("rig", token_url=self.rig.token_url,
                       smtp="127.0.0.1:%d starttls" % smtp_port, ca_file=ca)
        x.add_account("scanner", local_user="scanner", local_password=self.hash,
                      provider="rig", username=self.user, flow="refresh_token",
                      client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=rt)
        return x

    def run_x(self, x, cmd="run", preexec=None):
        r = subprocess.run([x.bin, cmd, "-c", x.config_path], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30, preexec_fn=preexec)
        return r.returncode, r.stdout.decode(errors="replace")

    def give_config(self, x, mode=0o640):
        """root:nogroup 0640, the recommended deployment."""
        os.chown(x.config_path, 0, self.nogroup_gid)
        os.chmod(x.config_path, mode)

    def rewrite_config(self, x, mode=0o640):
        x.write_config()
        self.give_config(x, mode)

    def hup_and_wait(self, x, event):
        before = x.log_text().count(event)
        x.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 20
        while x.log_text().count(event) == before:
            self.assertLess(time.time(), deadline, "no %s after SIGHUP:\n%s"
                            % (event, x.log_text()[-3000:]))
            time.sleep(0.05)

    def wait_started(self, x):
        """start() returns once the ports answer, which is before the drop: wait for it."""
        deadline = time.time() + 30
        while "event=started" not in x.log_text():
            self.assertTrue(x.running(), x.log_text()[-3000:])
            self.assertLess(time.time(), deadline, x.log_text()[-3000:])
            time.sleep(0.05)

    def greet(self, port):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            f = s.makefile("rb")
            return read_reply(f)
        finally:
            s.close()

    # ---- the drop ----------------------------------------------------------------------------

    def test_drop_mail_and_reload(self):
        self.need_root()
        x = self.make_x()
        os.rmdir(x.state_dir)  # created by the daemon, for nobody
        x.start()
        self.wait_started(x)
        pid = x.proc.pid
        with open("/proc/%d/status" % pid) as f:
            status = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
        self.assertEqual(status["Uid"].split(), [str(self.nobody_uid)] * 4, status["Uid"])
        self.assertEqual(status["Gid"].split(), [str(self.nogroup_gid)] * 4, status["Gid"])
        groups = status["Groups"].split()
        self.assertTrue(set(groups) <= {str(self.nogroup_gid)}, status["Groups"])
        log = x.log_text()
        self.assertIn("event=privileges_dropped user=nobody uid=%d group=nogroup gid=%d"
                      % (self.nobody_uid, self.nogroup_gid), log)
        self.assertNotIn("event=running_as_root", log)
        st = os.stat(x.state_dir)
        self.assertEqual((st.st_uid, st.st_mode & 0o7777), (self.nobody_uid, 0o700))
        # The control socket was made as root and given to nobody; status works.
        sock = os.path.join(x.state_dir, "control.sock")
        self.assertEqual(os.stat(sock).st_uid, self.nobody_uid)
        rc, out = self.run_x(x, "status")
        self.assertEqual(rc, 0, out)
        self.assertIn("listeners: 1", out)

        # A real mail: local login, token from the IdP (CA read after the drop), Postfix.
        mid = R.make_message_id("priv")
        msg = R.build_message(self.user, self.user, mid, "privileges", b"dropped\r\n")
        with smtplib.SMTP("127.0.0.1", x.port("plain"), timeout=60) as s:
            s.ehlo("printer.local")
            s.login("scanner", LOCAL_PASSWORD)
            self.assertEqual(s.sendmail(self.user, [self.user], msg), {})
        self.rig.wait_for_message_id(self.user, mid, timeout=30)
        for n in os.listdir(x.state_dir):  # token store files written by nobody
            self.assertEqual(os.lstat(os.path.join(x.state_dir, n)).st_uid, self.nobody_uid, n)

        # SIGHUP with root:nogroup 0640 (unreadable for nobody but through its group).
        self.give_config(x)
        port2 = x.add_listen("second", tls="none")
        self.rewrite_config(x)
        self.hup_and_wait(x, "event=reloaded")
        self.assertTrue(self.greet(port2).startswith("220"))

        # A privileged port cannot be bound any more: refused, the old configuration stays.
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            unpriv = int(f.read())
        if unpriv > 1:
            x.add_listen("low", tls="none", port=1)
            self.rewrite_config(x)
            self.hup_and_wait(x, "event=reload_refused")
            log = x.log_text()
            self.assertRegex(log, r"event=reload_error message=\"cannot open \[listen low\] on "
                             r"127\.0\.0\.1 port 1: permission denied; the daemon no longer "
                             r"runs as root")
            self.assertTrue(self.greet(port2).startswith("220"), "old configuration serves")
            x.sections = [s for s in x.sections if s[0] != "listen low"]
            del x.listen_ports["low"]
        else:
            print("NOTE: ip_unprivileged_port_start is %d: privileged-port reload not tested"
                  % unpriv)

        # A reload of a configuration every user may read is refused too.
        self.rewrite_config(x, 0o644)
        self.hup_and_wait(x, "event=reload_refused")
        self.assertIn("readable by every user (mode 0644)", x.log_text())
        self.give_config(x)
        self.hup_and_wait(x, "event=reloaded")
        self.assertTrue(self.greet(x.port("plain")).startswith("220"))
        self.assertEqual(x.stop(), 0)
        self.assertFalse(os.path.exists(sock), "nobody removed its control socket at exit")

    def test_root_without_user_warns(self):
        self.need_root()
        x = self.make_x(user=None, group=None)
        x.start()
        self.wait_started(x)
        self.assertIn("event=running_as_root", x.log_text())
        with open("/proc/%d/status" % x.proc.pid) as f:
            self.assertRegex(f.read(), r"\nUid:\s+0\s")
        self.assertEqual(x.stop(), 0)

    def test_bad_state_dir_and_users_refused(self):
        self.need_root()
        x = self.make_x()
        x.write_config()
        # World-writable (even when owned by the right user).
        os.chown(x.state_dir, self.nobody_uid, self.nogroup_gid)
        os.chmod(x.state_dir, 0o777)
        rc, out = self.run_x(x)
        self.assertEqual(rc, 1, out)
        self.assertIn("state_dir %s is writable by group or others" % x.state_dir, out)
        self.assertIn("fix: chmod 700 %s" % x.state_dir, out)
        # Owned by another user (root here) and never chowned by the daemon.
        os.chown(x.state_dir, 0, 0)
        os.chmod(x.state_dir, 0o700)
        rc, out = self.run_x(x)
        self.assertEqual(rc, 1, out)
        self.assertIn("state_dir %s is owned by another user (owner root, mode 0700)"
                      % x.state_dir, out)
        self.assertIn("fix: chown nobody:nogroup %s" % x.state_dir, out)
        self.assertEqual(os.stat(x.state_dir).st_uid, 0)
        # A user that does not exist.
        x.global_opts["user"] = "no-such-user-xoauthd"
        x.write_config()
        rc, out = self.run_x(x)
        self.assertEqual(rc, 1, out)
        self.assertIn("user = no-such-user-xoauthd: no such user", out)
        # Started as another unprivileged user, which cannot switch to nobody.
        daemon_uid, daemon_gid = ids("daemon")
        x.global_opts["user"] = "nobody"
        x.write_config()
        os.chown(x.config_path, daemon_uid, daemon_gid)
        os.chown(x.state_dir, daemon_uid, daemon_gid)

        def as_daemon():
            os.setgroups([])
            os.setgid(daemon_gid)
            os.setuid(daemon_uid)
        rc, out = self.run_x(x, preexec=as_daemon)
        self.assertEqual(rc, 1, out)
        self.assertIn("but xoauthd was started as daemon, which cannot switch to it", out)

    # ---- xoauthd check: user =, group = and state_dir, changing nothing ----------------------

    @staticmethod
    def refusal(out, config_path):
        """The lines of a refusal that run and check share (run adds "not started", logs)."""
        return [l for l in out.splitlines()
                if l.startswith(("state_dir ", "  fix: ", config_path))]

    def check_like_run(self, x, *expected):
        """check and run both refuse x, with the same lines, each expected text among them."""
        rc, out = self.run_x(x, "check")
        self.assertEqual(rc, 1, out)
        for e in expected:
            self.assertIn(e, out)
        self.assertNotIn(": ok (", out)
        rc, run_out = self.run_x(x, "run")
        self.assertEqual(rc, 1, run_out)
        self.assertIn("xoauthd: not started", run_out)
        self.assertEqual(self.refusal(out, x.config_path), self.refusal(run_out, x.config_path))
        self.assertTrue(self.refusal(out, x.config_path), out)

    def test_check_user_and_state_dir(self):
        """check reports the user =, group = and state_dir problems run refuses, in run's words,
        and creates or chowns nothing. As root with user = nobody; otherwise without user =
        (the state_dir rules are the same, judged for the user check runs as)."""
        as_nobody = self.root and self.nobody_uid is not None
        if as_nobody:
            x = self.make_x()
            owner, uid = "nobody", self.nobody_uid
        else:
            print("NOTE: not root: check's state_dir rules tested for uid %d, no user =" %
                  os.geteuid())
            x = self.make_x(user=None, group=None)
            owner, uid = pwd.getpwuid(os.geteuid()).pw_name, os.geteuid()
        os.chown(x.state_dir, uid, -1)
        x.write_config()
        # A good configuration.
        rc, out = self.run_x(x, "check")
        self.assertEqual(rc, 0, out)
        self.assertIn("%s: ok (1 listeners, 1 accounts)" % x.config_path, out)
        self.assertNotIn("does not exist", out)
        # A missing state_dir whose parent exists: fine, said so, not created.
        os.rmdir(x.state_dir)
        rc, out = self.run_x(x, "check")
        self.assertEqual(rc, 0, out)
        self.assertIn("%s: state_dir %s does not exist yet; xoauthd run creates it (mode 0700, "
                      "owner %s)" % (x.config_path, x.state_dir, owner), out)
        self.assertFalse(os.path.exists(x.state_dir))
        # One whose parent is missing cannot be created.
        good_state_dir = x.state_dir
        x.global_opts["state_dir"] = os.path.join(x.dir, "no-such-dir", "state")
        x.write_config()
        self.check_like_run(x, "state_dir %s does not exist and cannot be created: No such file "
                            "or directory" % x.global_opts["state_dir"])
        self.assertFalse(os.path.exists(os.path.join(x.dir, "no-such-dir")))
        x.global_opts["state_dir"] = good_state_dir
        x.write_config()
        # World-writable: refused by both, and left as it is.
        os.mkdir(x.state_dir)
        os.chown(x.state_dir, uid, -1)
        os.chmod(x.state_dir, 0o777)
        self.check_like_run(x, "state_dir %s is writable by group or others (owner %s, mode "
                            "0777)" % (x.state_dir, owner), "fix: chmod 700 %s" % x.state_dir)
        self.assertEqual(os.stat(x.state_dir).st_mode & 0o7777, 0o777)
        os.chmod(x.state_dir, 0o700)
        if as_nobody:
            # Owned by another user: never chowned, by check either.
            os.chown(x.state_dir, 0, 0)
            self.check_like_run(x, "state_dir %s is owned by another user (owner root, mode "
                                "0700)" % x.state_dir, "fix: chown nobody:nogroup %s"
                                % x.state_dir)
            self.assertEqual(os.stat(x.state_dir).st_uid, 0)
            os.chown(x.state_dir, uid, -1)
        # A user or a group that does not exist (no root needed: looked up first).
        x.global_opts["user"] = "no-such-user-xoauthd"
        x.write_config()
        self.check_like_run(x, "%s: user = no-such-user-xoauthd: no such user" % x.config_path,
                            "adduser --system --group xoauthd")
        x.global_opts["user"] = owner
        x.global_opts["group"] = "no-such-group-xoauthd"
        x.write_config()
        self.check_like_run(x, "%s: group = no-such-group-xoauthd: no such group"
                            % x.config_path)
        # Every problem in one check: the permissions of the file and the user.
        x.global_opts["user"] = "no-such-user-xoauthd"
        del x.global_opts["group"]
        x.write_config()
        os.chmod(x.config_path, 0o644)
        rc, out = self.run_x(x, "check")
        self.assertEqual(rc, 1, out)
        self.assertIn("readable by every user (mode 0644)", out)
        self.assertIn("user = no-such-user-xoauthd: no such user", out)

    # ---- configuration and key file permissions (no root needed) -----------------------------

    def first_secret_line(self, x):
        with open(x.config_path) as f:
            for n, line in enumerate(f, 1):
                if re.match(r"\s*(%s)\s*=\s*\S" % "|".join(SECRET_KEYS), line):
                    return n, line.split("=")[0].strip()
        self.fail("no secret in the config")

    def test_world_readable_config_refused(self):
        x = self.make_x(user=None, group=None)
        x.write_config()
        os.chmod(x.config_path, 0o644)
        line, key = self.first_secret_line(x)
        secrets = [CLIENT_SECRET, self.hash]
        for cmd in ("run", "check"):
            rc, out = self.run_x(x, cmd)
            self.assertEqual(rc, 1, out)
            self.assertIn("%s:%d: the configuration is readable by every user (mode 0644) and "
                          "holds secrets (the first is %s on line %d); refusing it"
                          % (x.config_path, line, key, line), out)
            self.assertIn("fix: chmod 600 %s" % x.config_path, out)
            self.assertIn("chown root:xoauthd %s; chmod 640 %s" % (x.config_path, x.config_path),
                          out)
            for s in secrets:
                self.assertNotIn(s, out)
            self.assertNotIn("event=listening", out)
        os.chmod(x.config_path, 0o640)
        rc, out = self.run_x(x, "check")
        self.assertEqual(rc, 0, out)
        # Without secrets the same mode is fine.
        y = R.Xoauthd(self.rig)
        y.add_listen("plain", tls="none", allow_networks="127.0.0.0/8 -> cmd")
        y.add_provider("p", token_url=self.rig.token_url, smtp="127.0.0.1:1 none")
        y.add_account("cmd", provider="p", username="a@example.com", flow="command",
                      token_command="cat /nonexistent")
        y.write_config()
        os.chmod(y.config_path, 0o644)
        rc, out = self.run_x(y, "check")
        self.assertEqual(rc, 0, out)

    def test_world_readable_key_file_refused(self):
        key = os.path.join(self.rig.dir, "readable-%d.key" % os.getpid())
        shutil.copy(self.rig.certs["good_key"], key)
        os.chmod(key, 0o644)
        x = self.make_x(user=None, group=None, tls_key=key)
        x.write_config()
        for cmd in ("run", "check"):
            rc, out = self.run_x(x, cmd)
            self.assertEqual(rc, 1, out)
            self.assertRegex(out, r"%s:\d+: tls_key %s of \[listen tls\] is readable by every "
                             r"user \(mode 0644\) and holds a private key"
                             % (re.escape(x.config_path), re.escape(key)))
            self.assertIn("fix: chmod 600 %s" % key, out)
            self.assertNotIn("PRIVATE KEY", out)
        os.chmod(key, 0o600)
        rc, out = self.run_x(x, "check")
        self.assertEqual(rc, 0, out)


if __name__ == "__main__":
    R.main()
