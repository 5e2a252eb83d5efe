"""Processes of the rig: free loopback ports, waiting for a port or a pid, stopping what the
rig started (by pid, never by name), running a command (also under a pty), a log's tail, a
process's memory, and starting a module of this package as a program."""
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time


TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_module(module, *args):
    """(argv, env) that run the rig's module (e.g. "mock_idp") as a program in a new python:
    `python3 -m rig.MODULE ARGS`, with tests/ on PYTHONPATH whether or not this process found
    the package that way."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (TESTS_DIR, env.get("PYTHONPATH")) if p)
    return [sys.executable, "-m", "rig." + module] + list(args), env


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


def rss_kb(pid, field="VmRSS"):
    """The resident memory of a running process (field="VmHWM": its peak), in kB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0
