"""End-to-end test rig for xoauthd: real Dovecot and Postfix plus a mock IdP, on loopback.

    with Rig() as rig:
        rt = rig.idp.seed_user("scanner@example.com")
        ...
        x = Xoauthd(rig)
        x.add_listen("smtp", protocol="smtp", tls="none")
        x.add_provider("rig", **rig.provider_settings())
        x.add_account("scanner", ...)
        x.start()

What runs (every server binds 127.0.0.1 on a port chosen at run time):
  * the mock IdP (tests/rig/mock_idp.py, a subprocess): token + introspection endpoints;
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

Everything lives in one temp dir (mode 0755 so mail/dovenull/postfix can traverse it) that is
removed at the end unless XOAUTHD_RIG_KEEP=1. Only processes the rig started are stopped, by
pid. Cleanup happens in close() / the context manager, at exit (atexit, SIGTERM, SIGHUP), and,
if the test process is killed outright, by a small reaper process (`rig.py --reaper`) and
PR_SET_PDEATHSIG on the direct children. `Xoauthd` runs the daemon under test ($XOAUTHD_BIN,
default build/xoauthd). `main()` runs unittest and dumps the servers' logs for failed tests.
"""

import atexit
import base64
import ctypes
import imaplib
import json
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from mock_idp import IdpClient  # noqa: E402
import secret_collect  # noqa: E402  (the whole-suite secret scan, tests/rig/secret_scan.py)

secret_collect.test_name()   # names this test for the subprocesses that register secrets

TEST_DOMAIN = "example.com"
_ACTIVE = []          # live Rig objects, for log dumps on failure and the atexit backstop


# ----- small helpers -------------------------------------------------------------------------

def free_port(taken=None):
    """A port that was free on 127.0.0.1 a moment ago (bind port 0). Callers retry on races."""
    for _ in range(50):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        if not taken or port not in taken:
            if taken is not None:
                taken.add(port)
            return port
    raise RuntimeError("no free port")


def wait_port(port, timeout=10.0, proc=None, what="server"):
    """Waits until 127.0.0.1:port accepts a connection. Raises if proc dies first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("%s exited with %s before listening on %d"
                               % (what, proc.returncode, port))
        if time.monotonic() > deadline:
            raise RuntimeError("%s: port %d not accepting after %.0fs" % (what, port, timeout))
        time.sleep(0.02)


def pid_alive(pid):
    """True if pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return st[st.rfind(")") + 2:][:1] not in ("Z", "X")


def wait_pid_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def stop_popen(proc, timeout=10.0, sig=signal.SIGTERM):
    """Stops a child we started: signal, wait, then SIGKILL. Returns the exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


try:
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # pragma: no cover
    _PRCTL = None


def _die_with_parent():
    """preexec_fn: the child gets SIGTERM when the test process dies (even by SIGKILL).
    Resolved before fork so that the child runs no import (fork + threads)."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)          # PR_SET_PDEATHSIG


def _proc_starttime(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
        return int(st[st.rfind(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def run(cmd, timeout=60, check=True, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s" % (" ".join(cmd), r.returncode,
                                                   r.stdout.decode(errors="replace")))
    return r


def run_with_tty(cmd, timeout=60):
    """Postfix's `postfix` command reports fatal errors only to a terminal (and syslog, which a
    container may not have): run it under a pty so its messages reach us."""
    import pty
    import select
    out = bytearray()
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)
    deadline = time.monotonic() + timeout
    status = None
    try:
        while True:
            r, _, _ = select.select([fd], [], [], 0.05)
            if r:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    data = b""
                out += data
                if data:
                    continue
            if status is None:
                wpid, st = os.waitpid(pid, os.WNOHANG)
                if wpid == pid:
                    status = st
                    continue          # drain what is left, then stop
            if status is not None and not r:
                break
            if status is not None and r and not data:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
                break
    finally:
        os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def plain_ir(user, password):
    """The base64 initial response of SASL PLAIN (RFC 4616) with an empty authzid."""
    secret_collect.register("password sent with SASL PLAIN", password)
    return base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode()


def read_reply(f):
    """One whole SMTP reply (every line of a multi-line one) from a socket file."""
    lines = []
    while True:
        line = f.readline()
        if not line:
            raise EOFError("connection closed; got %r" % lines)
        lines.append(line.decode("latin-1"))
        if len(line) < 4 or line[3:4] != b"-":
            return "".join(lines)


class SmtpLines:
    """A bare SMTP client for what smtplib does not do: bytes before the greeting (a PROXY
    protocol header), raw command lines, replies read one by one (and kept in self.replies).
    greeting=True reads the 220 (or whatever came first) into self.greeting."""

    def __init__(self, port, preface=b"", greeting=False, timeout=20):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if preface:
            self.sock.sendall(preface)
        self.f = self.sock.makefile("rb")
        self.replies = []
        self.greeting = self.reply() if greeting else None

    def reply(self):
        text = read_reply(self.f)
        self.replies.append(text)
        return text

    def cmd(self, line):
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def close(self):
        try:
            self.f.close()
            self.sock.close()
        except OSError:
            pass


def xoauth2_string(user, token):
    secret_collect.register("bearer token (XOAUTH2 built by a test)", token)
    return "user=%s\x01auth=Bearer %s\x01\x01" % (user, token)


def oauthbearer_string(user, token, host="127.0.0.1", port=0):
    secret_collect.register("bearer token (OAUTHBEARER built by a test)", token)
    return "n,a=%s,\x01host=%s\x01port=%d\x01auth=Bearer %s\x01\x01" % (user, host, port, token)


def split_message(raw):
    """(headers, body) of a raw RFC 5322 message (bytes), split at the first empty line."""
    i = raw.find(b"\r\n\r\n")
    if i < 0:
        return raw, b""
    return raw[:i + 2], raw[i + 4:]


def header_value(raw, name):
    hdrs, _ = split_message(raw)
    m = re.search(rb"(?im)^" + re.escape(name.encode()) + rb":[ \t]*(.*(?:\r\n[ \t].*)*)", hdrs)
    return m.group(1).decode(errors="replace").strip() if m else None


def _tail(path, start=0, max_lines=150):
    try:
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read()
    except OSError as e:
        return "(cannot read %s: %s)" % (path, e)
    lines = data.decode(errors="replace").splitlines()
    if len(lines) > max_lines:
        lines = ["... (%d lines skipped)" % (len(lines) - max_lines)] + lines[-max_lines:]
    return "\n".join(lines)


# ----- certificates --------------------------------------------------------------------------

_OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = xoauthd-rig
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[srv_good]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1,IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[srv_wrong]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:wrong.example
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def make_certs(d):
    """Test CA + two server certificates (EC P-256) made with the openssl CLI. Returns paths."""
    os.makedirs(d, exist_ok=True)
    cnf = os.path.join(d, "openssl.cnf")
    with open(cnf, "w") as f:
        f.write(_OPENSSL_CNF)
    p = lambda n: os.path.join(d, n)  # noqa: E731
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run(["openssl", "req", "-x509", "-config", cnf, "-extensions", "v3_ca"] + ec +
        ["-keyout", p("ca.key"), "-out", p("ca.crt"), "-days", "30",
         "-subj", "/O=xoauthd tests/CN=xoauthd test CA"])
    for name, cn in (("good", "localhost"), ("wrong", "wrong.example")):
        run(["openssl", "req", "-new", "-config", cnf] + ec +
            ["-keyout", p(name + ".key"), "-out", p(name + ".csr"), "-subj",
             "/O=xoauthd tests/CN=" + cn])
        run(["openssl", "x509", "-req", "-in", p(name + ".csr"), "-CA", p("ca.crt"),
             "-CAkey", p("ca.key"), "-set_serial", str(int.from_bytes(os.urandom(8), "big")),
             "-out", p(name + ".crt"), "-days", "30", "-extfile", cnf,
             "-extensions", "srv_" + name])
    for n in os.listdir(d):
        os.chmod(p(n), 0o600 if n.endswith(".key") else 0o644)
    return {"ca": p("ca.crt"), "ca_key": p("ca.key"),
            "good_cert": p("good.crt"), "good_key": p("good.key"),
            "wrong_cert": p("wrong.crt"), "wrong_key": p("wrong.key")}


def make_client_cert(d, name="app"):
    """An app registration's certificate for client assertions (RSA 2048, self-signed, like the
    ones admins upload to Entra ID), made with the openssl CLI. Returns (cert, key) paths."""
    os.makedirs(d, exist_ok=True)
    cert, key = os.path.join(d, name + ".crt"), os.path.join(d, name + ".key")
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
         "-out", cert, "-days", "30", "-subj", "/O=xoauthd tests/CN=" + name + " app"])
    os.chmod(key, 0o600)
    os.chmod(cert, 0o644)
    return cert, key


# ----- Dovecot -------------------------------------------------------------------------------

_DOVECOT_CONF = """\
# Private Dovecot for xoauthd's tests. Generated by tests/rig/rig.py.
instance_name = {instance}
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
debug_log_path = {d}/dovecot.log
listen = 127.0.0.1
protocols = imap pop3 lmtp submission
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
shutdown_clients = yes
login_greeting = rig dovecot ready

auth_mechanisms = xoauth2 oauthbearer
auth_failure_delay = 0
auth_cache_size = 0
auth_verbose = yes
auth_debug = {auth_debug}
auth_username_format = %Lu
disable_plaintext_auth = no

ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2

mail_location = maildir:~/Maildir
mail_uid = {uid}
mail_gid = {gid}
first_valid_uid = 1
first_valid_gid = 1
mail_fsync = never

passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {d}/oauth2.conf.ext
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={maildirs}/%Lu allow_all_users=yes
}}

service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {pop3s}
    ssl = yes
  }}
}}
# Dovecot's submission service (STARTTLS, XOAUTH2/OAUTHBEARER), relaying to a Postfix listener
# that trusts loopback (Dovecot did the authentication).
service submission-login {{
  inet_listener submission {{
    address = 127.0.0.1
    port = {submission}
  }}
}}
hostname = rig-dovecot.localhost
submission_relay_host = 127.0.0.1
submission_relay_port = {postfix_relay}
submission_relay_trusted = no
submission_relay_ssl = no
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp}
  }}
}}
# No auth penalty (up to 15 s of delay per failed login from one IP, and every client here is
# 127.0.0.1): anvil's penalty socket with mode 0 turns it off.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service auth {{
  inet_listener auth-postfix {{
    address = 127.0.0.1
    port = {auth}
  }}
}}
protocol lmtp {{
  postmaster_address = postmaster@{domain}
}}
{load}"""

# Rig(load=True) only (tests/e2e/test_load.py): thousands of concurrent sessions of one user
# from 127.0.0.1. Dovecot's defaults allow 10 per user and IP, 100 processes per service, one
# process per IMAP session and 1,000 clients per process (auth: every Postfix smtpd and login
# process is one); imap and the login processes here serve many clients each.
_DOVECOT_LOAD = """\
# --- Rig(load=True) ---
mail_max_userip_connections = 20000
default_process_limit = 2000
default_client_limit = 15000
default_vsz_limit = 2G
service imap-login {
  service_count = 0
  client_limit = 5000
  process_min_avail = 2
  process_limit = 8
}
service imap {
  service_count = 0
  client_limit = 250
  process_limit = 200
}
service submission-login {
  service_count = 0
  client_limit = 5000
  process_min_avail = 1
  process_limit = 8
}
service submission {
  process_limit = 2000
}
service lmtp {
  process_limit = 200
}
"""

_OAUTH2_CONF = """\
introspection_mode = post
introspection_url = {url}
username_attribute = username
active_attribute = active
active_value = true
force_introspection = yes
timeout_msecs = 10000
"""


# ----- Postfix -------------------------------------------------------------------------------

_POSTFIX_MAIN = """\
# Private Postfix for xoauthd's tests. Generated by tests/rig/rig.py.
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = rig-postfix.localhost
mydomain = localhost
myorigin = $myhostname
mydestination =
mynetworks = 127.0.0.0/8
relayhost =
alias_maps =
alias_database =
local_recipient_maps =
append_dot_mydomain = no
biff = no
smtpd_banner = $myhostname ESMTP rig postfix
smtp_dns_support_level = disabled

virtual_mailbox_domains = {domain}
virtual_mailbox_maps = static:exists
virtual_transport = lmtp:inet:127.0.0.1:{lmtp}
lmtp_connection_cache_on_demand = no
disable_mime_output_conversion = yes
line_length_limit = 16384
# Delivered as received: a long line (tests/e2e/test_smtp_data.py) is not folded at 998.
lmtp_line_length_limit = 0
message_size_limit = 104857600
mailbox_size_limit = 0

smtpd_tls_security_level = may
smtpd_tls_cert_file = {good_cert}
smtpd_tls_key_file = {good_key}
smtpd_tls_auth_only = no
smtpd_tls_loglevel = 1
smtpd_tls_received_header = yes
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = inet:127.0.0.1:{auth}
smtpd_sasl_security_options = noanonymous
smtpd_sasl_tls_security_options = noanonymous
smtpd_sasl_authenticated_header = no
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 1000
smtpd_hard_error_limit = 1000
smtpd_client_connection_rate_limit = 0
smtpd_client_auth_rate_limit = 0
smtpd_timeout = {smtpd_timeout}
{load}"""

# Rig(load=True) only: 1,000 and more concurrent smtpd processes (each one client) on the
# submission ports and as many cleanup processes, no connection limits for loopback, no
# in-flow delay (smtpd pausing when mail arrives faster than it is delivered), sessions that
# wait for the others for minutes.
_POSTFIX_LOAD = """\
# --- Rig(load=True) ---
default_process_limit = 2000
smtpd_client_connection_count_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_recipient_rate_limit = 0
smtpd_client_new_tls_session_rate_limit = 0
in_flow_delay = 0
lmtp_destination_concurrency_limit = 50
"""

# The services every private Postfix runs (smarthost.py's too): master.cf after the listeners.
POSTFIX_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

_POSTFIX_MASTER = """\
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:{sub} inet n - n - - smtpd
  -o syslog_name=postfix/submission
127.0.0.1:{wrong} inet n - n - - smtpd
  -o syslog_name=postfix/wronghost
  -o smtpd_tls_cert_file={wrong_cert}
  -o smtpd_tls_key_file={wrong_key}
127.0.0.1:{relay} inet n - n - - smtpd
  -o syslog_name=postfix/dovecot-relay
  -o smtpd_sasl_auth_enable=no
  -o smtpd_relay_restrictions=permit_mynetworks,reject
  -o smtpd_recipient_restrictions=permit_mynetworks,reject
127.0.0.1:{smtps} inet n - n - - smtpd
  -o syslog_name=postfix/smtps
  -o smtpd_tls_wrappermode=yes
  -o smtpd_tls_security_level=encrypt
lmtp      unix  -       -       n       -       -       lmtp
""" + POSTFIX_SERVICES


# ----- private Postfix instances -------------------------------------------------------------
# The rig's Postfix and smarthost.py's client Postfix differ only in main.cf and master.cf.

# main.cf's lines for the layout postfix_prepare makes (appended to every instance's main.cf).
_POSTFIX_LAYOUT = """\
# --- instance layout (rig.postfix_prepare) ---
compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = {d}/postfix.log
maillog_file_prefixes = {d}
"""


def postfix_prepare(d, main_cf, master_cf):
    """Lays out an instance in d (etc, queue, data) with these config files (main_cf without
    the layout's lines: they are added); returns etc."""
    for sub in ("", "etc", "queue", "data"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
        os.chmod(os.path.join(d, sub), 0o755)
    pf = pwd.getpwnam("postfix")
    os.chown(os.path.join(d, "data"), pf.pw_uid, pf.pw_gid)
    etc = os.path.join(d, "etc")
    main_cf += _POSTFIX_LAYOUT.format(d=d)
    for name, text in (("main.cf", main_cf), ("master.cf", master_cf)):
        with open(os.path.join(etc, name), "w") as f:
            f.write(text)
        # Postfix re-reads a config file modified within the current second until it looks
        # stable (up to ~2 s of 300 ms sleeps): date the files in the past.
        past = time.time() - 60
        os.utime(os.path.join(etc, name), (past, past))
    return etc


def postfix_start(d, timeout=0.0):
    """postfix start for the instance in d: (rc, output, master pid or None). The pid file is
    polled for up to timeout seconds (0: read once)."""
    rc, out = run_with_tty(["postfix", "-c", os.path.join(d, "etc"), "start"])
    return rc, out, postfix_master_pid(d, timeout)


def postfix_master_pid(d, timeout=0.0):
    """The running master's pid of the instance in d, or None."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(os.path.join(d, "queue", "pid", "master.pid")) as f:
                pid = int(f.read().strip())
            if pid_alive(pid):
                return pid
        except (OSError, ValueError):
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def postfix_stop(d, pid):
    """postfix stop for the instance in d; SIGKILL to its master (pid) only if it stays."""
    if pid and pid_alive(pid):
        run_with_tty(["postfix", "-c", os.path.join(d, "etc"), "stop"], timeout=30)
        if not wait_pid_gone(pid, 10):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            wait_pid_gone(pid, 5)


# ----- the rig -------------------------------------------------------------------------------

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
        self.reaper_proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--reaper", self.dir, str(os.getpid())],
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
        self.idp_proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "mock_idp.py"), "--port-file", port_file,
             "--state-file", self.path("idp-state.json")] + self.idp_args,
            stdin=subprocess.DEVNULL, stdout=self._logfile("idp.log"), stderr=subprocess.STDOUT,
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


def smtp_auth_xoauth2(s, user, token):
    """AUTH XOAUTH2 on an smtplib connection: 'AUTH XOAUTH2' alone, the response after 334
    (a 1-2 KB response does not fit the 512-octet command line). An error challenge gets an
    empty answer, as Gmail expects."""
    raw = xoauth2_string(user, token)
    calls = []

    def authobject(challenge=None):
        if calls:
            return ""
        calls.append(1)
        return raw
    return s.auth("XOAUTH2", authobject, initial_response_ok=False)


_MSGID_SEQ = [0]


def make_message_id(tag="msg"):
    _MSGID_SEQ[0] += 1
    return "%s.%d.%d.%s@xoauthd-tests.example" % (tag, os.getpid(), _MSGID_SEQ[0],
                                                   base64.b32encode(os.urandom(5)).decode().lower())


def build_message(mail_from, rcpt, message_id, subject, body):
    """A message (bytes, CRLF) with the given body (bytes, CRLF line ends, ends in CRLF)."""
    hdr = ("From: Test Sender <%s>\r\n"
           "To: <%s>\r\n"
           "Subject: %s\r\n"
           "Message-ID: <%s>\r\n"
           "Date: %s\r\n"
           "MIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n"
           "Content-Transfer-Encoding: 8bit\r\n"
           "\r\n") % (mail_from, rcpt, subject, message_id,
                      time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()))
    return hdr.encode() + body


def tricky_body():
    """A body that tests transparency: leading dots, a lone dot line, 8-bit UTF-8, a 998-octet
    line, trailing white space, empty lines, a tab. Lines end in CRLF; the body ends in CRLF."""
    lines = [
        b"Scan to email test body.",
        b".a line that starts with a dot",
        b"..two leading dots",
        b".",
        b"8-bit: Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln \xe2\x80\x94 \xc2\xbd \xe2\x82\xac \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
        b"",
        b"x" * 998,
        b"y" * 997 + b".",
        b"trailing white space   \t",
        b"\tstarts with a tab",
        b"",
        b"last line",
    ]
    return b"\r\n".join(lines) + b"\r\n"


# ----- xoauthd under test ---------------------------------------------------------------------

def xoauthd_bin():
    return os.environ.get("XOAUTHD_BIN") or os.path.join(REPO_ROOT, "build", "xoauthd")


def rss_kb(pid, field="VmRSS"):
    """The resident memory of a running process (field="VmHWM": its peak), in kB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def flood_without_reading(port, command, seconds):
    """A client that pipelines command (bytes) over and over and never reads a reply, through a
    small receive buffer. Stops once 64 MiB went out, seconds passed, or the server closed the
    connection; returns (the socket, bytes sent). A server that stops reading from such a
    client sends far less."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setblocking(False)
    chunk = command * 8000
    sent, deadline = 0, time.time() + seconds
    while time.time() < deadline and sent < 64 * 1024 * 1024:
        try:
            sent += s.send(chunk)
        except BlockingIOError:
            time.sleep(0.05)
        except OSError:
            break
    return s, sent


def closed_after(test):
    """A list for the sockets (anything with close()) a test opens: closed when it ends."""
    items = []

    def close_all():
        for s in items:
            try:
                s.close()
            except OSError:
                pass

    test.addCleanup(close_all)
    return items


def start_class_rig(cls, needs_xoauthd=True, **rig_opts):
    """The Rig of a TestCase class, from its setUpClass. Skips the class when it needs xoauthd
    and xoauthd is not built (an XOAUTHD_BIN that does not exist is an error). The rig closes
    after the class, and also when setUpClass fails further on (addClassCleanup): register
    what starts later - an Xoauthd's stop - the same way, it runs first."""
    if needs_xoauthd and not os.path.exists(xoauthd_bin()):
        if os.environ.get("XOAUTHD_BIN"):
            raise RuntimeError("XOAUTHD_BIN=%s does not exist" % xoauthd_bin())
        raise unittest.SkipTest("xoauthd not built (%s); build it or set XOAUTHD_BIN"
                                % xoauthd_bin())
    rig = Rig(**rig_opts).start()
    cls.addClassCleanup(rig.close)
    return rig


# Config keys whose values are secrets (registered for the whole-suite secret scan).
CONFIG_SECRET_KEYS = ("client_secret", "upstream_password", "refresh_token", "access_token")

SANITIZER_PATTERNS = ("AddressSanitizer", "LeakSanitizer", "runtime error:",
                      "UndefinedBehaviorSanitizer", "ThreadSanitizer")


class Xoauthd:
    """One xoauthd process with a config written from python.

        x = Xoauthd(rig)                      # [xoauthd] state_dir/log_level
        x.add_listen("smtp", protocol="smtp", tls="none")           # address picked for you
        x.add_provider("rig", **rig.provider_settings())
        x.add_account("scanner", local_user="scanner", ...)
        x.start(); x.port("smtp"); x.restart(); x.stop()
    """

    def __init__(self, rig, log_level="debug", name=None, state_dir=None, **xoauthd_opts):
        self.rig = rig
        self.bin = xoauthd_bin()
        self.name = name or "xoauthd%d" % len(rig.xoauthds)
        self.dir = rig.path(self.name)
        os.makedirs(self.dir, exist_ok=True)
        self.state_dir = state_dir or os.path.join(self.dir, "state")
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        self.config_path = os.path.join(self.dir, "xoauthd.ini")
        self.log_path = os.path.join(self.dir, "xoauthd.log")
        self.global_opts = {"state_dir": self.state_dir, "log_level": log_level}
        self.global_opts.update(xoauthd_opts)
        self.sections = []          # (header, dict)
        self.raw_config = None      # use_config_text(): a ready-made config instead
        self.listen_ports = {}
        self._auto_ports = set()    # listeners whose port was picked here (re-picked on EADDRINUSE)
        self.proc = None
        self._log = None
        self.starts = 0
        self.env = {}               # added to the daemon's environment (e.g. LD_PRELOAD)
        rig.xoauthds.append(self)

    # -- config --
    def add_listen(self, name, protocol="smtp", tls="none", port=None, **opts):
        if port is None:
            port = free_port(set(self.rig.ports.values()) | set(self.listen_ports.values()))
            self._auto_ports.add(name)
        self.listen_ports[name] = port
        sec = {"protocol": protocol, "address": "127.0.0.1:%d" % port, "tls": tls}
        if tls != "none":
            sec.setdefault("tls_cert", self.rig.certs["good_cert"])
            sec.setdefault("tls_key", self.rig.certs["good_key"])
        sec.update(opts)
        self.sections.append(("listen " + name, sec))
        return port

    def add_provider(self, name, **opts):
        self.sections.append(("provider " + name, dict(opts)))

    def add_account(self, name, **opts):
        self.sections.append(("account " + name, dict(opts)))

    def use_config_text(self, text, listen_ports):
        """Runs with a ready-made config (e.g. a filled-in template) instead of the sections
        built here. listen_ports: {listener name: port} that start() waits for."""
        self.raw_config = text
        self.listen_ports = dict(listen_ports)

    def port(self, listen_name):
        return self.listen_ports[listen_name]

    def config_text(self):
        out = ["; xoauthd test config written by tests/rig/rig.py", "[xoauthd]"]
        for k, v in self.global_opts.items():
            out.append("%s = %s" % (k, v))
        for header, opts in self.sections:
            out.append("")
            out.append("[%s]" % header)
            for k, v in opts.items():
                if v is None:
                    continue
                v = str(v)
                if "\n" in v or "\r" in v:
                    raise ValueError("newline in config value %s" % k)
                out.append("%s = %s" % (k, v))
        return "\n".join(out) + "\n"

    def write_config(self):
        text = self.raw_config if self.raw_config is not None else self.config_text()
        for m in re.finditer(r"(?m)^[ \t]*(%s)[ \t]*=[ \t]*(.*?)[ \t]*$"
                             % "|".join(CONFIG_SECRET_KEYS), text):
            secret_collect.register("config %s" % m.group(1), m.group(2))
        with open(self.config_path, "w") as f:
            f.write(text)
        os.chmod(self.config_path, 0o600)

    # -- process --
    def check_config(self):
        """Runs `xoauthd check -c FILE`; returns (exit code, output)."""
        self.write_config()
        r = subprocess.run([self.bin, "check", "-c", self.config_path], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        secret_collect.collect_text(r.stdout, self.name + "-check.out")
        return r.returncode, r.stdout.decode(errors="replace")

    def start(self, timeout=20.0):
        if not os.path.exists(self.bin):
            raise RuntimeError("xoauthd binary not found: %s (build it, or set XOAUTHD_BIN)"
                               % self.bin)
        for attempt in range(3):
            self.write_config()
            self._log = open(self.log_path, "ab")
            self.starts += 1
            self._log.write(("----- xoauthd start #%d -----\n" % self.starts).encode())
            self._log.flush()
            log_start = self._log.tell()
            env = dict(os.environ)
            env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
            env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
            env.update(self.env)
            self.proc = subprocess.Popen([self.bin, "run", "-c", self.config_path],
                                         stdin=subprocess.DEVNULL, stdout=self._log,
                                         stderr=subprocess.STDOUT, env=env, cwd=self.dir,
                                         preexec_fn=_die_with_parent)
            self.rig.save_reaper_state()
            try:
                for name, port in self.listen_ports.items():
                    wait_port(port, timeout, self.proc, "xoauthd")
                return self
            except RuntimeError as e:
                stop_popen(self.proc, 5, signal.SIGKILL)
                self.proc = None
                self._log.close()
                self._log = None
                err = e
            # A port picked here may have been taken in the meantime: pick new ones and retry.
            since = _tail(self.log_path, log_start, 50).lower()
            if "in use" not in since or not self._auto_ports or self.raw_config is not None:
                break
            self._repick_ports()
        raise RuntimeError("%s\n----- xoauthd log -----\n%s" % (err, self.log_text()))

    def _repick_ports(self):
        taken = set(self.rig.ports.values()) | set(self.listen_ports.values())
        for header, opts in self.sections:
            name = header[len("listen "):] if header.startswith("listen ") else None
            if name in self._auto_ports:
                port = free_port(taken)
                self.listen_ports[name] = port
                opts["address"] = "127.0.0.1:%d" % port

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=15.0, check=True):
        """SIGTERM, wait; asserts exit code 0 and no sanitizer report in the log."""
        if self.proc is None:
            return None
        rc = self.proc.poll()
        if rc is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                if self._log:
                    self._log.close()
                self.proc = None
                raise AssertionError("xoauthd did not exit within %.0fs of SIGTERM" % timeout)
        self.proc = None
        if self._log:
            self._log.close()
            self._log = None
        if check:
            self.check_log_clean()
            if rc != 0:
                raise AssertionError("xoauthd exited with %d\n----- log -----\n%s"
                                     % (rc, _tail(self.log_path)))
        return rc

    def kill_if_running(self):
        if self.proc is not None:
            stop_popen(self.proc, 10)
            self.proc = None
        if self._log:
            self._log.close()
            self._log = None

    def restart(self):
        self.stop()
        return self.start()

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def check_log_clean(self):
        bad = [l for l in self.log_text().splitlines() if any(p in l for p in SANITIZER_PATTERNS)]
        if bad:
            raise AssertionError("sanitizer report in xoauthd log:\n%s\n----- log -----\n%s"
                                 % ("\n".join(bad[:20]), _tail(self.log_path)))

    def hash_password(self, password):
        return hash_password(password, self.bin)


def hash_password(password, binary=None):
    """`xoauthd hash-password` with the password on stdin; the last line of stdout is the hash."""
    secret_collect.register("local_password", password)
    r = subprocess.run([binary or xoauthd_bin(), "hash-password"], input=(password + "\n").encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    if r.returncode != 0:
        raise RuntimeError("xoauthd hash-password failed (%d): %s"
                           % (r.returncode, r.stderr.decode(errors="replace")))
    lines = [l.strip() for l in r.stdout.decode().splitlines() if l.strip()]
    if not lines:
        raise RuntimeError("xoauthd hash-password printed nothing")
    return lines[-1]


# ----- plumbing ------------------------------------------------------------------------------

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


class _DumpingResult(unittest.TextTestResult):
    """Prints the servers' logs (from the start of the failing test) when a test fails."""

    def startTest(self, test):
        for r in _ACTIVE:
            r.mark_logs()
        super().startTest(test)

    def _dump(self, test):
        self.stream.write("\n##### server logs for %s #####\n" % test.id())
        for r in _ACTIVE:
            r.dump_logs(self.stream)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._dump(test)

    def addError(self, test, err):
        super().addError(test, err)
        self._dump(test)


def _reaper_main(rig_dir, parent_pid):
    """`python3 rig.py --reaper DIR PID`: waits for PID to die; if DIR still exists then (the
    rig was not closed), stops the processes listed in DIR/reaper.json and removes DIR."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while pid_alive(parent_pid):
        if not os.path.isdir(rig_dir):
            return 0
        time.sleep(0.5)
    if not os.path.isdir(rig_dir):
        return 0
    try:
        with open(os.path.join(rig_dir, "reaper.json")) as f:
            st = json.load(f)
    except (OSError, ValueError):
        st = {"procs": []}

    def ours(entry):
        return entry and entry[1] is not None and _proc_starttime(entry[0]) == entry[1]
    procs = [e for e in st.get("procs", []) if ours(e)]
    for pid, _ in procs:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    pf = st.get("postfix_pid")
    if st.get("postfix_dir") and ours(pf):
        try:
            subprocess.run(["postfix", "-c", st["postfix_dir"], "stop"], timeout=30,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        except Exception:
            pass
        procs.append(pf)
    deadline = time.monotonic() + 10
    for pid, start in procs:
        while _proc_starttime(pid) == start and pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _proc_starttime(pid) == start and pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if not st.get("keep"):
        time.sleep(0.2)
        shutil.rmtree(rig_dir, ignore_errors=True)
    return 0


def main():
    """unittest.main() that dumps server logs on failures; exits non-zero on failure."""
    runner = unittest.TextTestRunner(resultclass=_DumpingResult, verbosity=2, stream=sys.stderr)
    unittest.main(testRunner=runner)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--reaper":
        sys.exit(_reaper_main(sys.argv[2], int(sys.argv[3])))
    sys.stderr.write("usage: rig.py --reaper DIR PID (internal); import rig for tests\n")
    sys.exit(2)
