"""Collection side of the whole-suite secret scan (the scan is tests/rig/secret_scan.py).

When $XOAUTHD_SECRET_SCAN_DIR is set (ctest sets it for every e2e test, see
tests/CMakeLists.txt), every process of a test run records here

  * each secret it creates or sees: register(kind, value) appends one JSON line
    {"kind", "test", "origin", "value"} to DIR/secrets/<test>-<pid>-<rand>.jsonl (one file per
    process, so parallel tests and the mock IdP subprocess never share a file);
  * each piece of xoauthd's own output: collect_log(path) / collect_text(text) copy it to
    DIR/logs/<test>-<pid>-<n>-<label> before the rig's temp dir is removed.

Without the variable (a test run by hand) everything here does nothing. Values shorter than
MIN_LEN are recorded too (the scan lists them as skipped, so they can be made longer).
"""
import binascii
import json
import os
import re
import sys
import threading
import traceback

ENV = "XOAUTHD_SECRET_SCAN_DIR"
ENV_TEST = "XOAUTHD_SECRET_SCAN_TEST"  # the test's name, inherited by the rig's subprocesses
MIN_LEN = 8
_RIG_DIR = os.path.dirname(os.path.abspath(__file__))

_lock = threading.Lock()
_seen = set()
_state = {"file": None, "n": 0}


def scan_dir():
    return os.environ.get(ENV) or None


def test_name():
    t = os.environ.get(ENV_TEST)
    if not t:
        t = os.path.splitext(os.path.basename(sys.argv[0] or "python"))[0] or "python"
        os.environ[ENV_TEST] = t       # children (mock IdP, mock EWS) name the same test
    return re.sub(r"[^A-Za-z0-9_.-]", "_", t)


def _origin():
    """file:line of the nearest caller outside the rig package (the test's own line when a
    test handed the secret over), else the nearest caller."""
    frames = traceback.extract_stack()[:-2]
    for fr in reversed(frames):
        if os.path.dirname(os.path.abspath(fr.filename)) != _RIG_DIR:
            return "%s:%d" % (os.path.basename(fr.filename), fr.lineno)
    fr = frames[-1] if frames else None
    return "%s:%d" % (os.path.basename(fr.filename), fr.lineno) if fr else "?"


def register(kind, value, origin=None):
    """Records value (str or bytes) as a secret of the given kind ("local_password",
    "access_token", ...). Safe from any thread; a value is written once per process."""
    d = scan_dir()
    if not d or value is None:
        return
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("latin-1")
    value = str(value)
    if not value:
        return
    with _lock:
        if (kind, value) in _seen:
            return
        _seen.add((kind, value))
        try:
            if _state["file"] is None:
                sd = os.path.join(d, "secrets")
                os.makedirs(sd, exist_ok=True)
                name = "%s-%d-%s.jsonl" % (test_name(), os.getpid(),
                                           binascii.hexlify(os.urandom(4)).decode())
                _state["file"] = open(os.path.join(sd, name), "a", encoding="utf-8")
            _state["file"].write(json.dumps({"kind": kind, "test": test_name(),
                                             "origin": origin or _origin(),
                                             "value": value}) + "\n")
            _state["file"].flush()
        except OSError as e:  # pragma: no cover - the scan then reports missing collections
            sys.stderr.write("secret_collect: cannot record a secret: %s\n" % e)


def register_key_file(path, kind="token store key"):
    """The token store's key file (state_dir/store.key: a magic line, then base64): the base64
    text and the key's hex form."""
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("latin-1").splitlines()
    except OSError:
        return
    if len(lines) >= 2:
        register(kind, lines[1].strip())
        try:
            register(kind + " (hex)", binascii.hexlify(binascii.a2b_base64(lines[1])).decode())
        except (binascii.Error, ValueError):
            pass


def _log_dest(label):
    d = scan_dir()
    if not d:
        return None
    ld = os.path.join(d, "logs")
    os.makedirs(ld, exist_ok=True)
    with _lock:
        _state["n"] += 1
        n = _state["n"]
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", label)
    return os.path.join(ld, "%s-%d-%d-%s" % (test_name(), os.getpid(), n, label))


def collect_log(path, label=None):
    """Copies one of xoauthd's logs (or any output of xoauthd) into the collection."""
    dest = _log_dest(label or os.path.basename(path))
    if dest is None or not path or not os.path.exists(path):
        return
    try:
        with open(path, "rb") as src, open(dest, "wb") as dst:
            while True:
                b = src.read(1 << 20)
                if not b:
                    break
                dst.write(b)
    except OSError as e:  # pragma: no cover
        sys.stderr.write("secret_collect: cannot copy %s: %s\n" % (path, e))


def collect_text(text, label):
    """Records output of an xoauthd command (`check`, `tokens`, `auth`) the test captured."""
    dest = _log_dest(label)
    if dest is None or text is None:
        return
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogateescape")
    with open(dest, "wb") as f:
        f.write(text)
