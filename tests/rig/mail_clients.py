"""Helpers for the IMAP/POP3 end-to-end tests: a raw line-level client (to send exactly the
bytes a test needs: literals, pipelining, writing before the greeting), one xoauthd with IMAP and
POP3 listeners in front of the rig's Dovecot, and runners for curl and mbsync.

Only processes started here are stopped here (by pid, through subprocess)."""
import base64
import os
import socket
import ssl
import subprocess
import time

import rig as R

USER = "reader@example.com"
LOCAL_USER = "reader"
# A password with the characters IMAP quoting must escape, and a space and a ';'.
PASSWORD = 'pa"ss\\wo rd;1'
CLIENT_ID = "imap-cid"
CLIENT_SECRET = "imap-client-secret"


class Raw:
    """A line-oriented client over a plain or TLS socket."""

    def __init__(self, port, tls_ctx=None, timeout=20, read_greeting=True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls_ctx is not None:
            self.sock = tls_ctx.wrap_socket(self.sock, server_hostname="localhost")
        self.buf = b""
        self.greeting = self.line() if read_greeting else None

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed; buffered %r" % self.buf[-300:])
        self.buf += chunk

    def line(self):
        while b"\n" not in self.buf:
            self._fill()
        ln, _, self.buf = self.buf.partition(b"\n")
        return ln.rstrip(b"\r").decode(errors="replace")

    def exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def until_tag(self, tag):
        """Lines up to and including the tagged response of tag; returns (untagged, tagged)."""
        lines = []
        while True:
            ln = self.line()
            if ln.startswith(tag + " "):
                return lines, ln
            lines.append(ln)

    def until_dot(self):
        """A POP3 multi-line response: its lines up to and including the "." that ends it."""
        lines = []
        while True:
            lines.append(self.line())
            if lines[-1] == ".":
                return lines

    def starttls(self, ctx):
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")

    def closed_by_peer(self, timeout=5):
        """True once the server closed the connection (after what it sent is read)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def plain_b64(user, password, authzid=""):
    return base64.b64encode(("%s\0%s\0%s" % (authzid, user, password)).encode()).decode()


def b64(s):
    """One response of the LOGIN mechanism (a user name or a password), base64."""
    return base64.b64encode(s.encode()).decode()


def imap_quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def start_proxy(rig, upstream_tls="none", listens=None, name=None, provider_extra=None,
                env=None, **account_extra):
    """An xoauthd with IMAP and POP3 listeners (plain; more in listens) for USER.
    provider_extra overrides settings of the provider section; env is added to the daemon's
    environment."""
    rt = rig.idp.seed_user(USER)
    rig.idp.set_client(CLIENT_ID, secret=CLIENT_SECRET)
    x = R.Xoauthd(rig, name=name)
    x.env.update(env or {})
    x.add_listen("imap", protocol="imap", tls="none")
    x.add_listen("pop3", protocol="pop3", tls="none")
    for lname, opts in (listens or {}).items():
        x.add_listen(lname, **opts)
    prov = rig.provider_settings(imap=upstream_tls, pop3=upstream_tls)
    prov.update(provider_extra or {})
    x.add_provider("rig", **prov)
    acct = dict(local_user=LOCAL_USER, local_password=password_hash(), provider="rig",
                username=USER, flow="refresh_token", client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET, refresh_token=rt)
    acct.update(account_extra)
    x.add_account("reader", **acct)
    x.start()
    return x


_HASH = []


def password_hash():
    if not _HASH:
        _HASH.append(R.hash_password(PASSWORD))
    return _HASH[0]


def deliver(rig, subject, body=b"hello\r\n"):
    """Delivers one message to USER through Postfix (direct XOAUTH2 SMTP); returns its raw
    bytes as Dovecot stored them."""
    mid = R.make_message_id(subject)
    rig.send_direct_xoauth2(USER, R.build_message(USER, USER, mid, subject, body))
    return rig.wait_for_message_id(USER, mid)


def curl(args, timeout=60):
    r = subprocess.run(["curl", "-sS", "--max-time", "30"] + args, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    return r.returncode, r.stdout, r.stderr.decode(errors="replace")


def mbsync(rig, port, workdir, timeout=120):
    """Pulls the whole mailbox through xoauthd (implicit TLS, test CA) into workdir/mail with
    mbsync; returns (exit code, output)."""
    os.makedirs(os.path.join(workdir, "mail"), exist_ok=True)
    cfg = os.path.join(workdir, "mbsyncrc")
    with open(cfg, "w") as f:
        f.write("""IMAPAccount proxy
Host localhost
Port {port}
User {user}
PassCmd "cat {pwfile}"
SSLType IMAPS
CertificateFile {ca}
AuthMechs LOGIN
PipelineDepth 8

IMAPStore remote
Account proxy

MaildirStore local
Path {d}/mail/
Inbox {d}/mail/INBOX
SubFolders Verbatim

Channel all
Far :remote:
Near :local:
Patterns *
Create Near
Sync Pull
SyncState *
""".format(port=port, user=LOCAL_USER, pwfile=os.path.join(workdir, "pw"), ca=rig.ca_file,
           d=workdir))
    with open(os.path.join(workdir, "pw"), "w") as f:
        f.write(PASSWORD)
    os.chmod(os.path.join(workdir, "pw"), 0o600)
    r = subprocess.run(["mbsync", "-c", cfg, "-a"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout, cwd=workdir)
    return r.returncode, r.stdout.decode(errors="replace")


def maildir_messages(path):
    """Raw bytes of every message in a maildir (new and cur)."""
    out = []
    for sub in ("new", "cur"):
        d = os.path.join(path, sub)
        if os.path.isdir(d):
            for n in sorted(os.listdir(d)):
                with open(os.path.join(d, n), "rb") as f:
                    out.append(f.read())
    return out


def wait_for(pred, timeout=10.0, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def client_tls_context(rig):
    ctx = ssl.create_default_context(cafile=rig.ca_file)
    return ctx
