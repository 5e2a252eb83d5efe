"""The Rig: the mock IdP, a private Dovecot and a private Postfix on free loopback ports in one temp
dir, what tests ask of them (send directly, fetch, wait for a message), their logs, and the
clean-up backstops (atexit, SIGTERM/SIGHUP, the reaper process).

What runs (every server binds 127.0.0.1 on a port chosen at run time):
  * the mock IdP (rig.mock_idp, a subprocess): token + introspection endpoints;
  * a private Dovecot (`dovecot -F -c FILE`): IMAP (+ IMAPS), POP3 (+ POP3S), LMTP, and an
    auth inet listener for Postfix's SASL. Logins are XOAUTH2/OAUTHBEARER only, validated by
    `passdb oauth2` through the IdP's introspection endpoint; maildirs under the temp dir;
  * a private Postfix (`postfix -c DIR start`) delivering example.com to Dovecot over LMTP,
    with three smtpd listeners: `smtp_submission_port` (STARTTLS, good certificate),
    `smtp_wrong_host_port` (STARTTLS, certificate for wrong.example signed by the same CA) and
    `smtps_port` (implicit TLS, good certificate). AUTH (XOAUTH2/OAUTHBEARER via Dovecot) is
    required for every recipient; AUTH also works without TLS (loopback). A fourth listener,
    `ports["postfix_relay"]`, takes mail from Dovecot's submission service
    (`dovecot_submission_port`: STARTTLS + XOAUTH2/OAUTHBEARER, a second kind of upstream)
    without AUTH: never point xoauthd at it.

The temp dir (mode 0755 so mail/dovenull/postfix can traverse it) is removed at the end unless
XOAUTHD_RIG_KEEP=1. Only processes the rig started are stopped, by pid: in close() / the
context manager, at exit (atexit, SIGTERM, SIGHUP), and, if the test process is killed
outright, by the reaper (rig.reaper) and PR_SET_PDEATHSIG on the direct children."""
import atexit
import imaplib
import json
import os
import pwd
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
import tempfile
import time

from . import secret_collect
from .certs import make_certs
from .mail_servers import TEST_DOMAIN, _DOVECOT_CONF, _DOVECOT_LOAD, _OAUTH2_CONF, _POSTFIX_LOAD, _POSTFIX_MAIN, _POSTFIX_MASTER, postfix_master_pid, postfix_prepare, postfix_start, postfix_stop
from .messages import build_message, header_value, make_message_id
from .mock_idp import IdpClient
from .processes import python_module, _die_with_parent, _proc_starttime, _tail, free_port, stop_popen, wait_port
from .smtp_client import smtp_auth_xoauth2, xoauth2_string


_ACTIVE = []          # live Rig objects, for log dumps on failure and the atexit backstop


def _tmp_parent():
    """Temp dirs must be traversable by mail/dovenull/postfix: never under a 0700 $TMPDIR."""
    cand = tempfile.gettempdir()
    p = cand
    while p and p != "/":
        if os.stat(p).st_mode & 0o001 == 0:
            return "/tmp"
        p = os.path.dirname(p)
    return cand


_backstops = [False]


def _close_all():
    for r in list(_ACTIVE):
        try:
            r.close()
        except Exception as e:
            sys.stderr.write("rig: cleanup error: %s\n" % e)


def _install_backstops():
    if _backstops[0]:
        return
    _backstops[0] = True
    atexit.register(_close_all)
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                signal.signal(sig, lambda s, f: sys.exit(128 + s))
    except ValueError:
        pass  # not the main thread


class Rig:
    """Starts the mock IdP, Dovecot and Postfix in a fresh temp dir; stops them on exit."""

    def __init__(self, auth_debug=False, idp_args=(), mail_servers=True, load=False):
        """mail_servers=False starts only the certificates and the mock IdP (for tests that
        talk to fake upstreams): about 0.6 s faster to start and 1 s faster to stop.
        load=True raises Dovecot's and Postfix's connection and process limits for thousands
        of concurrent sessions of one user (tests/e2e/test_load.py)."""
        self.auth_debug = auth_debug
        self.load = load
        self.mail_servers = mail_servers
        self.idp_args = list(idp_args)
        self.dir = None
        self.idp_proc = None
        self.dovecot_proc = None
        self.postfix_pid = None
        self.postfix_started = False
        self.xoauthds = []
        self.ports = {}
        self._marks = {}
        self._closed = False

    # -- lifecycle --
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="xoauthd-rig-", dir=_tmp_parent())
        os.chmod(self.dir, 0o755)
        _ACTIVE.append(self)
        _install_backstops()
        try:
            self._start_reaper()
            self.certs = make_certs(os.path.join(self.dir, "certs"))
            self.ca_file = self.certs["ca"]
            self._start_idp()
            self.save_reaper_state()
            if self.mail_servers:
                self._start_dovecot()
                self.save_reaper_state()
                self._start_postfix()
                self.save_reaper_state()
        except BaseException:
            self.dump_logs(sys.stderr, since_mark=False)
            self.close()
            raise
        return self

    def close(self):
        if self._closed:
            return
        self._closed = True
        errors = []
        for x in list(self.xoauthds):
            try:
                x.kill_if_running()
            except Exception as e:  # pragma: no cover
                errors.append(e)
            # The whole-suite secret scan reads xoauthd's output after the temp dir is gone.
            secret_collect.collect_log(x.log_path, x.name + ".log")
            secret_collect.register_key_file(os.path.join(x.state_dir, "store.key"))
        try:
            self._stop_postfix()
        except Exception as e:
            errors.append(e)
        stop_popen(self.dovecot_proc)
        stop_popen(self.idp_proc, timeout=5)
        for f in getattr(self, "_logfiles", []):
            f.close()
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        stop_popen(getattr(self, "reaper_proc", None), timeout=5)
        if self.dir and os.environ.get("XOAUTHD_RIG_KEEP") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)
        elif self.dir:
            sys.stderr.write("rig: kept %s (XOAUTHD_RIG_KEEP=1)\n" % self.dir)
        if errors:
            raise errors[0]

    # -- the reaper: cleans up if this process dies without close() (SIGKILL, ctest timeout) --
    def _start_reaper(self):
        argv, env = python_module("reaper", self.dir, str(os.getpid()))
        self.reaper_proc = subprocess.Popen(
            argv, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)

    def save_reaper_state(self):
        """Tells the reaper which processes are ours (pid + start time, so that a reused pid is
        never killed) and where Postfix's config is."""
        if not self.dir or not os.path.isdir(self.dir):
            return
        procs = []
        for p in [self.idp_proc, self.dovecot_proc] + [x.proc for x in self.xoauthds]:
            if p is not None and p.poll() is None:
                procs.append([p.pid, _proc_starttime(p.pid)])
        pf_pid = self.postfix_pid if self.postfix_started else None
        st = {"procs": procs, "postfix_dir": getattr(self, "postfix_dir", None),
              "postfix_pid": [pf_pid, _proc_starttime(pf_pid)] if pf_pid else None,
              "keep": os.environ.get("XOAUTHD_RIG_KEEP") == "1"}
        tmp = self.path("reaper.json.tmp")
        with open(tmp, "w") as f:
            json.dump(st, f)
        os.replace(tmp, self.path("reaper.json"))

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def _logfile(self, name):
        f = open(self.path(name), "ab")
        self.__dict__.setdefault("_logfiles", []).append(f)
        return f

    # -- IdP --
    def _start_idp(self):
        port_file = self.path("idp.port")
        self.idp_log = self.path("idp.log")
        argv, env = python_module("mock_idp", "--port-file", port_file,
                                  "--state-file", self.path("idp-state.json"), *self.idp_args)
        self.idp_proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=self._logfile("idp.log"), stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 10
        while not os.path.exists(port_file):
            if self.idp_proc.poll() is not None:
                raise RuntimeError("mock IdP exited: %s" % _tail(self.idp_log))
            if time.monotonic() > deadline:
                raise RuntimeError("mock IdP did not start")
            time.sleep(0.01)
        with open(port_file) as f:
            self.ports["idp"] = int(f.read())
        self.idp = IdpClient("http://127.0.0.1:%d" % self.ports["idp"])
        self.token_url = self.idp.token_url

    # -- Dovecot --
    def _start_dovecot(self):
        d = self.path("dovecot")
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o755)
        self.maildirs = self.path("mail")
        os.makedirs(self.maildirs, exist_ok=True)
        mail = pwd.getpwnam("mail")
        os.chown(self.maildirs, mail.pw_uid, mail.pw_gid)
        os.chmod(self.maildirs, 0o770)
        self.dovecot_conf = os.path.join(d, "dovecot.conf")
        self.dovecot_log = os.path.join(d, "dovecot.log")
        with open(os.path.join(d, "oauth2.conf.ext"), "w") as f:
            f.write(_OAUTH2_CONF.format(url=self.idp.introspection_url))
        last = None
        names = ("imap", "imaps", "pop3", "pop3s", "submission", "lmtp", "auth")
        # Dovecot's submission service relays to a Postfix listener that starts later.
        self.ports["postfix_relay"] = free_port(set(self.ports.values()))
        for attempt in range(3):
            taken = set(self.ports.values())
            ports = {k: free_port(taken) for k in names}
            self._dovecot_fmt = dict(
                instance="xoauthd-rig-%d-%s" % (os.getpid(), os.path.basename(self.dir)),
                d=d, cert=self.certs["good_cert"], key=self.certs["good_key"],
                uid=mail.pw_uid, gid=mail.pw_gid, maildirs=self.maildirs,
                domain=TEST_DOMAIN, auth_debug="yes" if self.auth_debug else "no",
                load=_DOVECOT_LOAD if self.load else "",
                postfix_relay=self.ports["postfix_relay"], **ports)
            with open(self.dovecot_conf, "w") as f:
                f.write(_DOVECOT_CONF.format(**self._dovecot_fmt))
            self.dovecot_proc = subprocess.Popen(
                ["dovecot", "-F", "-c", self.dovecot_conf], stdin=subprocess.DEVNULL,
                stdout=self._logfile("dovecot/dovecot.stderr"), stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent)
            try:
                for k in names:
                    wait_port(ports[k], 15, self.dovecot_proc, "dovecot")
                self.ports.update(ports)
                return
            except RuntimeError as e:
                last = e
                stop_popen(self.dovecot_proc)
                self.dovecot_proc = None
        raise RuntimeError("dovecot did not start: %s\n%s\n%s" % (
            last, _tail(self.path("dovecot/dovecot.stderr")), _tail(self.dovecot_log)))

    # -- Postfix --
    def _start_postfix(self):
        d = self.path("postfix")
        self.postfix_dir = os.path.join(d, "etc")
        self.postfix_log = os.path.join(d, "postfix.log")
        last = ""
        for attempt in range(3):
            taken = set(self.ports.values())
            ports = {k: free_port(taken) for k in ("smtp_submission", "smtp_wrong_host", "smtps")}
            if attempt > 0:
                # The relay port Dovecot was told about may be the one that was taken.
                ports["postfix_relay"] = free_port(taken | set(ports.values()))
                self._dovecot_fmt["postfix_relay"] = ports["postfix_relay"]
                with open(self.dovecot_conf, "w") as f:
                    f.write(_DOVECOT_CONF.format(**self._dovecot_fmt))
                self.dovecot_proc.send_signal(signal.SIGHUP)      # reload the config
            else:
                ports["postfix_relay"] = self.ports["postfix_relay"]
            postfix_prepare(
                d, _POSTFIX_MAIN.format(d=d, domain=TEST_DOMAIN, lmtp=self.ports["lmtp"],
                                        load=_POSTFIX_LOAD if self.load else "",
                                        smtpd_timeout="600s" if self.load else "120s",
                                        auth=self.ports["auth"],
                                        good_cert=self.certs["good_cert"],
                                        good_key=self.certs["good_key"]),
                _POSTFIX_MASTER.format(sub=ports["smtp_submission"],
                                       relay=ports["postfix_relay"],
                                       wrong=ports["smtp_wrong_host"],
                                       smtps=ports["smtps"],
                                       wrong_cert=self.certs["wrong_cert"],
                                       wrong_key=self.certs["wrong_key"]))
            rc, out, self.postfix_pid = postfix_start(d)
            self.postfix_started = True
            if rc == 0 and self.postfix_pid:
                try:
                    for k in ports:
                        wait_port(ports[k], 10, None, "postfix")
                    self.ports.update(ports)
                    return
                except RuntimeError as e:
                    out += "\n%s" % e
            last = out
            self._stop_postfix()
        raise RuntimeError("postfix did not start:\n%s\n%s" % (last, _tail(self.postfix_log)))

    def _stop_postfix(self):
        if not self.postfix_started:
            return
        self.postfix_started = False
        d = self.path("postfix")
        postfix_stop(d, self.postfix_pid or postfix_master_pid(d))
        self.postfix_pid = None

    # -- facts for tests --
    @property
    def imap_port(self):
        return self.ports["imap"]

    @property
    def dovecot_submission_port(self):
        """Dovecot's submission service (STARTTLS, XOAUTH2/OAUTHBEARER; relays to Postfix)."""
        return self.ports["submission"]

    @property
    def smtp_submission_port(self):
        return self.ports["smtp_submission"]

    @property
    def smtp_wrong_host_port(self):
        return self.ports["smtp_wrong_host"]

    @property
    def smtps_port(self):
        return self.ports["smtps"]

    def provider_settings(self, smtp="starttls", smtp_port=None, imap="none", pop3="none"):
        """Settings for an xoauthd [provider] section pointing at this rig."""
        smtp_port = smtp_port or {"starttls": self.ports["smtp_submission"],
                                  "implicit": self.ports["smtps"],
                                  "none": self.ports["smtp_submission"]}[smtp]
        imap_port = self.ports["imaps"] if imap == "implicit" else self.ports["imap"]
        pop3_port = self.ports["pop3s"] if pop3 == "implicit" else self.ports["pop3"]
        return {"token_url": self.token_url,
                "smtp": "127.0.0.1:%d %s" % (smtp_port, smtp),
                "imap": "127.0.0.1:%d %s" % (imap_port, imap),
                "pop3": "127.0.0.1:%d %s" % (pop3_port, pop3),
                "ca_file": self.ca_file}

    def ssl_context(self):
        ctx = ssl.create_default_context(cafile=self.ca_file)
        return ctx

    def mailbox_path(self, user):
        return os.path.join(self.maildirs, user.lower(), "Maildir")

    def server_logs(self):
        logs = {"idp": getattr(self, "idp_log", None),
                "dovecot": getattr(self, "dovecot_log", None),
                "postfix": getattr(self, "postfix_log", None)}
        for i, x in enumerate(self.xoauthds):
            logs["xoauthd#%d" % i] = x.log_path
        return logs

    def mark_logs(self):
        """Remembers the current size of every log; dump_logs() prints from there."""
        self._marks = {}
        for name, p in self.server_logs().items():
            if not p:
                continue  # a server this rig does not run (mail_servers=False)
            try:
                self._marks[p] = os.path.getsize(p)
            except OSError:
                self._marks[p] = 0

    def dump_logs(self, out=None, since_mark=True, max_lines=150):
        """Writes each server log (from the last mark_logs(), if since_mark) to out. xoauthd
        logs that did not grow are left out."""
        out = out or sys.stderr
        for name, p in self.server_logs().items():
            if not p or not os.path.exists(p):
                continue
            start = self._marks.get(p, 0) if since_mark else 0
            if name.startswith("xoauthd") and os.path.getsize(p) <= start:
                continue
            out.write("\n===== %s log (%s) =====\n%s\n" % (name, p, _tail(p, start, max_lines)))
        out.flush()

    def postfix_log_text(self):
        try:
            with open(self.postfix_log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def postfix_saw_login(self, username):
        """True if Postfix logged a successful SASL login of username."""
        return ("sasl_username=%s\n" % username) in self.postfix_log_text() or \
            ("sasl_username=%s," % username) in self.postfix_log_text()

    def postfix_saw_message_id(self, message_id):
        """True if Postfix's cleanup logged this Message-ID (i.e. Postfix queued the message)."""
        mid = message_id.strip("<>")
        return ("message-id=<%s>" % mid) in self.postfix_log_text()

    # -- direct access to the servers --
    def imap_login(self, user, token=None, ssl_implicit=False):
        token = token or self.idp.mint(user)
        if ssl_implicit:
            m = imaplib.IMAP4_SSL("127.0.0.1", self.ports["imaps"], ssl_context=self.ssl_context(),
                                  timeout=20)
        else:
            m = imaplib.IMAP4("127.0.0.1", self.ports["imap"], timeout=20)
        raw = xoauth2_string(user, token).encode()
        sent = []

        def auth_cb(challenge):
            if sent:           # error challenge: answer empty
                return b""
            sent.append(1)
            return raw
        try:
            m.authenticate("XOAUTH2", auth_cb)
        except Exception:
            try:
                m.shutdown()
            except Exception:
                pass
            raise
        return m

    def fetch_messages(self, user):
        """All messages in user's INBOX, raw bytes, read over IMAP with AUTHENTICATE XOAUTH2."""
        m = self.imap_login(user)
        try:
            typ, _ = m.select("INBOX", readonly=True)
            if typ != "OK":
                return []
            typ, data = m.uid("SEARCH", None, "ALL")
            uids = data[0].split() if data and data[0] else []
            msgs = []
            for uid in uids:
                typ, d = m.uid("FETCH", uid, "(BODY.PEEK[])")
                for part in d:
                    if isinstance(part, tuple):
                        msgs.append(part[1])
            return msgs
        finally:
            try:
                m.logout()
            except Exception:
                pass

    def count_delivered(self, user):
        """Messages in the maildir on disk (no IMAP); 0 if the mailbox does not exist yet."""
        n = 0
        for sub in ("new", "cur"):
            p = os.path.join(self.mailbox_path(user), sub)
            if os.path.isdir(p):
                n += len([f for f in os.listdir(p) if not f.startswith(".")])
        return n

    def wait_for_message(self, user, predicate, timeout=20.0):
        """Polls the mailbox until a message satisfies predicate(raw); returns it."""
        deadline = time.monotonic() + timeout
        last_count = -1
        while True:
            if self.count_delivered(user) != last_count:
                msgs = self.fetch_messages(user)
                last_count = len(msgs)
                for raw in msgs:
                    if predicate(raw):
                        return raw
            if time.monotonic() > deadline:
                raise AssertionError("no matching message for %s after %.0fs (%d in mailbox)"
                                     % (user, timeout, max(last_count, 0)))
            time.sleep(0.05)

    def wait_for_message_id(self, user, message_id, timeout=20.0):
        mid = message_id.strip("<>")
        return self.wait_for_message(
            user, lambda raw: (header_value(raw, "Message-ID") or "").strip("<>") == mid, timeout)

    def smtp_connect(self, port=None, starttls=True, implicit=False, verify=True, timeout=30):
        """smtplib connection to Postfix (default: the submission port with STARTTLS)."""
        ctx = self.ssl_context() if verify else ssl._create_unverified_context()
        if implicit:
            s = smtplib.SMTP_SSL("127.0.0.1", port or self.ports["smtps"], context=ctx,
                                 timeout=timeout)
        else:
            s = smtplib.SMTP("127.0.0.1", port or self.ports["smtp_submission"], timeout=timeout)
            if starttls:
                s.starttls(context=ctx)
        s.ehlo("rig-selfcheck.localhost")
        return s

    def send_direct_xoauth2(self, user, msg, token=None, mail_from=None, rcpt_to=None,
                            starttls=True, implicit=False, port=None):
        """Sends msg (bytes) straight to Postfix with AUTH XOAUTH2 (no xoauthd). Raises the
        smtplib exception on failure; returns the token used."""
        token = token or self.idp.mint(user)
        s = self.smtp_connect(port=port, starttls=starttls, implicit=implicit)
        try:
            smtp_auth_xoauth2(s, user, token)
            s.sendmail(mail_from or user, rcpt_to or [user], msg)
        finally:
            try:
                s.quit()
            except Exception:
                s.close()
        return token

    def assert_nothing_arrived(self, user, message_id, sentinel_user=None):
        """Proves message_id was neither queued by Postfix nor delivered: a sentinel message
        sent afterwards arrives first, and by then there is no trace of message_id."""
        sentinel_user = sentinel_user or user
        sid = make_message_id("sentinel")
        self.send_direct_xoauth2(sentinel_user, build_message(sentinel_user, sentinel_user,
                                                              sid, "sentinel", b"sentinel\r\n"))
        self.wait_for_message_id(sentinel_user, sid)
        mid = message_id.strip("<>")
        if self.postfix_saw_message_id(mid):
            raise AssertionError("Postfix queued %s" % mid)
        for raw in self.fetch_messages(user):
            if (header_value(raw, "Message-ID") or "").strip("<>") == mid:
                raise AssertionError("%s was delivered to %s" % (mid, user))
