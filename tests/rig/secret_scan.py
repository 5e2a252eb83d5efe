#!/usr/bin/env python3
"""Whole-suite secret scan: every secret the tests used, searched in every piece of
xoauthd's output the tests produced.

    python3 -m rig.secret_scan --reset DIR   empty the collection dir (ctest's fixture setup)
    python3 -m rig.secret_scan DIR           scan it; exit 1 naming each hit (fixture cleanup)
    python3 -m rig.secret_scan --self-test   plant fake secrets in a temp dir, check they are found
(with tests/ on PYTHONPATH)

The collection (tests/rig/secret_collect.py) is filled while the e2e tests run with debug
logging: DIR/secrets/*.jsonl holds every local password, refresh and access token the mock IdP
issued or was given, client secret and assertion, static token and upstream password of the
configs, token-store key and token seen by the mock EWS/Graph endpoints; DIR/logs/ holds
xoauthd's own output: each daemon's log (its stderr and stdout) and the output of `xoauthd
check`, `xoauthd tokens` and `xoauthd auth` where the tests capture it.

Only xoauthd's output is scanned. Dovecot's, Postfix's and the mocks' logs are not collected:
with auth_debug they print tokens by design, and they are not xoauthd's to fix.

Each secret is searched raw, URL-encoded (quote and quote_plus), JSON-escaped, escaped the way
xoauthd's log_quote() escapes values, and base64-encoded at each of the three byte alignments
(a SASL response is base64 of a string that contains the token), standard and URL-safe.
Secrets shorter than MIN_LEN characters are skipped (and listed: make them longer). A hit is
reported as kind, test, where the test registered it, a short hash and the first 4 characters
of the secret, never the secret itself, with the log file and line.
"""
import base64
import glob
import hashlib
import json
import os
import shutil
import sys
import tempfile
import urllib.parse

MIN_LEN = 8
GRAM = 8         # index gram length; encodings of at least 2*GRAM-1 bytes use the sampled index


def log_quote(s):
    """proxy/util/log.c log_quote() without the surrounding quotes."""
    out = []
    for c in s.encode("utf-8", "surrogateescape"):
        if c in (0x22, 0x5c):
            out.append("\\" + chr(c))
        elif 0x20 <= c < 0x7f:
            out.append(chr(c))
        else:
            out.append("\\x%02x" % c)
    return "".join(out)


def b64_forms(raw):
    """Stable parts of base64(prefix + raw + suffix) for any prefix length mod 3."""
    out = []
    for o in range(3):
        for enc in (base64.b64encode, base64.urlsafe_b64encode):
            e = enc(b"\0" * o + raw)
            start = 4 if o else 0          # the first group mixes in the bytes before it
            end = len(e) if (o + len(raw)) % 3 == 0 else len(e) - 4   # the last, after it
            part = e[start:end]
            if len(part) >= MIN_LEN:
                out.append(("base64/%d" % o, part))
    return out


def encodings(value):
    """(form name, bytes) pairs to search for one secret, without duplicates."""
    raw = value.encode("utf-8", "surrogateescape")
    forms = [("raw", raw),
             ("url-encoded", urllib.parse.quote(value, safe="").encode()),
             ("url-encoded+", urllib.parse.quote_plus(value, safe="").encode()),
             ("json-escaped", json.dumps(value)[1:-1].encode()),
             ("json-escaped-utf8", json.dumps(value, ensure_ascii=False)[1:-1].encode()),
             ("log-quoted", log_quote(value).encode())] + b64_forms(raw)
    seen, out = set(), []
    for name, b in forms:
        if b not in seen and len(b) >= MIN_LEN:
            seen.add(b)
            out.append((name, b))
    return out


def describe(sec):
    v = sec["value"]
    return "%s (test %s, registered at %s, sha256:%s, starts %r...)" % (
        sec["kind"], sec.get("test", "?"), sec.get("origin", "?"),
        hashlib.sha256(v.encode("utf-8", "surrogateescape")).hexdigest()[:12], v[:4])


def load_secrets(d):
    secrets, short = {}, {}
    for p in sorted(glob.glob(os.path.join(d, "secrets", "*.jsonl"))):
        with open(p, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    sec = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a killed test
                v = sec.get("value") or ""
                if len(v) < MIN_LEN:
                    short.setdefault((sec.get("kind"), sec.get("test"), sec.get("origin")), 0)
                    short[(sec.get("kind"), sec.get("test"), sec.get("origin"))] += 1
                    continue
                secrets.setdefault(v, sec)   # the first registration names it
    return list(secrets.values()), short


class Index:
    def __init__(self, secrets):
        self.grams = {}      # GRAM bytes -> [(encoding, offset of the gram in it, secret, form)]
        self.short = []      # (encoding, secret, form): searched with bytes.find
        for sec in secrets:
            for form, e in encodings(sec["value"]):
                if len(e) >= 2 * GRAM - 1:
                    for j in range(GRAM):
                        self.grams.setdefault(e[j:j + GRAM], []).append((e, j, sec, form))
                else:
                    self.short.append((e, sec, form))

    def search(self, data):
        """[(position, secret, form)] of every occurrence (one per secret and form)."""
        hits, found = [], set()
        grams = self.grams
        # Any occurrence of an encoding of length >= 2*GRAM-1 starts a gram at one of the
        # sampled positions (multiples of GRAM) within its first GRAM bytes.
        for p in range(0, len(data) - GRAM + 1, GRAM):
            cands = grams.get(data[p:p + GRAM])
            if not cands:
                continue
            for e, j, sec, form in cands:
                start = p - j
                if start >= 0 and (id(sec), form) not in found and data.startswith(e, start):
                    found.add((id(sec), form))
                    hits.append((start, sec, form))
        for e, sec, form in self.short:
            i = data.find(e)
            if i >= 0 and (id(sec), form) not in found:
                found.add((id(sec), form))
                hits.append((i, sec, form))
        return hits


def scan(d, out=sys.stdout):
    """Returns the number of hits (0 = clean)."""
    secrets, short = load_secrets(d)
    logs = sorted(p for p in glob.glob(os.path.join(d, "logs", "*")) if os.path.isfile(p))
    idx = Index(secrets)
    total, hits = 0, 0
    for p in logs:
        with open(p, "rb") as f:
            data = f.read()
        total += len(data)
        for pos, sec, form in sorted(idx.search(data), key=lambda h: h[0]):
            hits += 1
            line = data.count(b"\n", 0, pos) + 1
            out.write("LEAK: %s found %s in %s:%d\n" % (describe(sec), form, p, line))
    out.write("secret scan: %d secrets (%d encodings), %d files of xoauthd output, %d bytes: "
              "%d hits\n" % (len(secrets), sum(len(v) for v in idx.grams.values()) // GRAM +
                             len(idx.short), len(logs), total, hits))
    for (kind, test, origin), n in sorted(short.items(), key=str):
        out.write("skipped (shorter than %d characters, make it longer): %s x%d (test %s, "
                  "registered at %s)\n" % (MIN_LEN, kind, n, test, origin))
    if not logs:
        out.write("note: no xoauthd output was collected (no e2e test ran in this ctest run?)\n")
    return hits


def self_test():
    """Plants fake secrets in a temp collection and checks the scan finds each planted form at
    the right line, and nothing else."""
    import io
    from rig import secret_collect
    d = tempfile.mkdtemp(prefix="xoauthd-secret-scan-selftest-")
    old = {k: os.environ.get(k) for k in (secret_collect.ENV, secret_collect.ENV_TEST)}
    try:
        os.environ[secret_collect.ENV] = d
        os.environ[secret_collect.ENV_TEST] = "selftest"
        tok = base64.urlsafe_b64encode(os.urandom(300)).decode().rstrip("=")
        pw = 'pw "with" \\ odd; chars & +spaces\x01'
        other = "never-logged-" + base64.b32encode(os.urandom(10)).decode()
        secret_collect.register("access_token", tok)
        secret_collect.register("local_password", pw)
        secret_collect.register("client_secret", other)
        secret_collect.register("short", "abc")
        sasl = base64.b64encode(("user=a@b\x01auth=Bearer %s\x01\x01" % tok).encode()).decode()
        log = "\n".join([
            "level=info event=start",
            "level=debug token=%s" % tok[100:],                       # not the whole token
            "level=debug url=%s" % urllib.parse.quote_plus(pw),      # line 3
            'level=debug json={"p": %s}' % json.dumps(pw),           # line 4
            "level=debug C: AUTHENTICATE XOAUTH2 %s" % sasl,          # line 5
            "level=debug pass=\"%s\"" % log_quote(pw),               # line 6
            "x" * 3 + tok + "y",                                      # line 7
            "end"]) + "\n"
        secret_collect.collect_text(log, "planted.log")
        secret_collect.collect_text("nothing here\n", "clean.log")
        buf = io.StringIO()
        n = scan(d, buf)
        text = buf.getvalue()
        want = [("local_password", "url-encoded+", 3), ("local_password", "json-escaped", 4),
                ("access_token", "base64/", 5), ("local_password", "log-quoted", 6),
                ("access_token", "raw", 7)]
        ok = True
        for kind, form, line in want:
            if not any(l.startswith("LEAK: " + kind) and (" found " + form) in l and
                       l.endswith("planted.log:%d" % line) for l in text.splitlines()):
                sys.stderr.write("self-test: %s as %s at line %d not found\n" % (kind, form, line))
                ok = False
        if "client_secret" in text.split("skipped")[0] or "clean.log" in text:
            sys.stderr.write("self-test: a hit that is no hit\n")
            ok = False
        if tok in text or pw in text:
            sys.stderr.write("self-test: the report printed a secret\n")
            ok = False
        if "skipped (shorter than 8 characters, make it longer): short x1" not in text:
            sys.stderr.write("self-test: the short secret was not listed\n")
            ok = False
        if n < len(want) or not ok:
            sys.stderr.write("self-test output:\n" + text)
            return 1
        sys.stdout.write("secret scan self-test: ok (%d planted hits found)\n" % n)
        return 0
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(d, ignore_errors=True)


def main(argv):
    if argv[1:2] == ["--self-test"]:
        return self_test()
    if len(argv) == 3 and argv[1] == "--reset":
        shutil.rmtree(argv[2], ignore_errors=True)
        os.makedirs(os.path.join(argv[2], "secrets"))
        os.makedirs(os.path.join(argv[2], "logs"))
        return 0
    if len(argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    if self_test() != 0:
        return 1
    return 1 if scan(argv[1]) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
