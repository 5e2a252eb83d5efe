"""The daemon under test ($XOAUTHD_BIN, default build/xoauthd): Xoauthd writes its INI config from
Python (registering every secret in it for the secret scan), starts and stops it, reads its
log and runs its sub-commands; hash_password runs `xoauthd hash-password`."""
import os
import re
import signal
import subprocess

from . import secret_collect
from .processes import _die_with_parent, _tail, free_port, stop_popen, wait_port

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))


def xoauthd_bin():
    return os.environ.get("XOAUTHD_BIN") or os.path.join(REPO_ROOT, "build", "xoauthd")


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
        out = ["; xoauthd test config written by tests/rig/xoauthd.py", "[xoauthd]"]
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
