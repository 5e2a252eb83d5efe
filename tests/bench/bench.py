#!/usr/bin/env python3
"""xoauthd benchmark: every workload through xoauthd and directly against the same upstream, in
the same run, alternating, several rounds; prints medians and the ratio proxied / direct. SMTP,
login and IMAP FETCH also run through tests/bench/null_relay (the cheapest possible proxy), so
that the cost of one extra hop (null / direct) and xoauthd's own (xoauthd / null) show apart.

    python3 tests/bench/bench.py [--quick] [--build DIR] [--only smtp,login,cpu,idle,imap]

Workloads (BENCHMARKS.md has the figures and the commands):
  smtp   1/10/100 clients x 10 KB / 1 MB messages against tests/bench/smtp_sink (C, accepts
         XOAUTH2, discards), messages/s;
  login  a complete SMTP login with a cached token, p50/p99 at 1 and 100 in parallel;
  cpu    xoauthd CPU per relayed 10 KB message and per MB: instructions from valgrind's
         callgrind (two runs of different length, the difference divided by the extra
         messages, so start-up and the one slow password hash cancel out) when valgrind is
         installed (also per MB relayed after an IMAP login; XOAUTHD_BENCH_KEEP_CALLGRIND=DIR
         keeps the profiles), and process CPU time from /proc in every case;
  idle   xoauthd resident memory per idle authenticated IMAP connection (1,000 and as many as
         fit its descriptor limit) against a small IMAP upstream started here, plain text and
         TLS on both sides;
  imap   FETCH BODY.PEEK[] of a whole mailbox from the rig's real Dovecot (tests/rig/mail_rig.py),
         MB/s; and SMTP to the rig's real Postfix (messages/s).

--quick is the CI-sized run (small counts, one round per side): it checks that the benchmark
still works and prints its table; it asserts nothing about timing. Everything runs on 127.0.0.1
on free ports; only processes started here are stopped, by pid.
"""
import argparse
import asyncio
import base64
import os
import resource
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests"))  # the rig package (tests/rig/)
PASSWORD = "bench-password"
TOKEN = "bench-static-token-" + "x" * 1000   # provider tokens are 1-2 KB
MAILBOX = "bench@example.com"


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, timeout=30):
    import socket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("process exited with %s" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("port %d did not open" % port)


def wait_file(path, proc, timeout=10):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) or os.path.getsize(path) == 0:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("%s did not appear" % path)
        time.sleep(0.01)
    with open(path) as f:
        return int(f.read())


def cpu_seconds(proc):
    with open("/proc/%d/stat" % proc.pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(proc):
    with open("/proc/%d/status" % proc.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Processes:
    """Starts the sink, fake upstreams and xoauthd processes; stops exactly those, by pid."""

    def __init__(self, build):
        self.build = build
        self.dir = tempfile.mkdtemp(prefix="xoauthd-bench-")
        self.procs = []
        self.hash = None
        self.n = 0

    def password_hash(self):
        if self.hash is None:
            xo = os.path.join(self.build, "xoauthd")
            self.hash = subprocess.run([xo, "hash-password"], input=(PASSWORD + "\n").encode(),
                                       stdout=subprocess.PIPE, check=True
                                       ).stdout.decode().split()[-1]
        return self.hash

    def start_sink(self):
        port_file = os.path.join(self.dir, "sink.port")
        p = subprocess.Popen([os.path.join(self.build, "tests", "smtp_sink"), port_file])
        self.procs.append(p)
        self.sink_port = wait_file(port_file, p)
        return self.sink_port

    def start_null_relay(self, upstream_port):
        """tests/bench/null_relay: the cheapest possible proxy in front of upstream_port (the
        cost of one extra hop, as a baseline for xoauthd). Returns its port."""
        self.n += 1
        port_file = os.path.join(self.dir, "null%d.port" % self.n)
        p = subprocess.Popen([os.path.join(self.build, "tests", "null_relay"), port_file,
                              str(upstream_port)])
        self.procs.append(p)
        return wait_file(port_file, p)

    def start_fake_imap(self, tls=None):
        """The small IMAP upstream of this file (--fake-imap), in its own process (own fds)."""
        self.n += 1
        port_file = os.path.join(self.dir, "imap%d.port" % self.n)
        cmd = [sys.executable, os.path.abspath(__file__), "--fake-imap", port_file]
        if tls:
            cmd += ["--cert", tls[0], "--key", tls[1]]
        p = subprocess.Popen(cmd)
        self.procs.append(p)
        self.fake_imap = p
        return wait_file(port_file, p)

    def start_xoauthd(self, listens, provider, wrapper=(), log_level="warn"):
        """listens: {name: {key: value}} (port picked here); provider: [provider bench] keys.
        Returns (process, {name: port})."""
        self.n += 1
        xo = os.path.join(self.build, "xoauthd")
        cfg = os.path.join(self.dir, "bench%d.ini" % self.n)
        ports = {}
        text = "[xoauthd]\nstate_dir = %s/state%d\nlog_level = %s\n" % (self.dir, self.n,
                                                                      log_level)
        for name, opts in listens.items():
            ports[name] = free_port()
            text += "\n[listen %s]\naddress = 127.0.0.1:%d\nmax_connections = 20000\n" % (
                name, ports[name])
            text += "".join("%s = %s\n" % kv for kv in opts.items())
        text += "\n[provider bench]\n" + "".join("%s = %s\n" % kv for kv in provider.items())
        text += ("\n[account bench]\nlocal_user = bench\nlocal_password = %s\nprovider = bench\n"
                 "username = %s\nflow = static\naccess_token = %s\n"
                 % (self.password_hash(), MAILBOX, TOKEN))
        # 0600: xoauthd refuses a configuration with secrets that every user may read.
        with open(os.open(cfg, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(text)
        os.chmod(cfg, 0o600)
        log = open(os.path.join(self.dir, "xoauthd%d.log" % self.n), "wb")
        p = subprocess.Popen(list(wrapper) + [xo, "run", "-c", cfg], stdout=log,
                             stderr=subprocess.STDOUT, cwd=self.dir)
        self.procs.append(p)
        for port in ports.values():
            wait_port(port, p, 120 if wrapper else 30)
        return p, ports

    def stop_one(self, p, timeout=60):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p in self.procs:
            self.procs.remove(p)

    def stop(self):
        for p in reversed(list(self.procs)):
            self.stop_one(p, 15)
        shutil.rmtree(self.dir, ignore_errors=True)


# ----- a small asyncio SMTP client (the same code for both sides) ----------------------------

async def reply(reader):
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        lines.append(line)
        if line[3:4] != b"-":
            return int(line[:3]), lines


async def smtp_session(port, proxied, messages, message, token=TOKEN, mailbox=MAILBOX,
                       rcpt=b"boss@example.com"):
    """One connection: EHLO, login (local password via xoauthd, XOAUTH2 direct), messages,
    each sent as one pipelined group MAIL/RCPT/DATA (RFC 2920) as an MTA does."""
    t0 = time.perf_counter()
    r, w = await asyncio.open_connection("127.0.0.1", port)
    await reply(r)
    w.write(b"EHLO bench\r\n")
    await reply(r)
    if proxied:
        w.write(b"AUTH PLAIN " + base64.b64encode(b"\0bench\0" + PASSWORD.encode()) + b"\r\n")
    else:
        w.write(b"AUTH XOAUTH2\r\n")
        await reply(r)
        w.write(base64.b64encode(("user=%s\x01auth=Bearer %s\x01\x01" % (mailbox, token))
                                 .encode()) + b"\r\n")
    code, _ = await reply(r)
    if code != 235:
        raise RuntimeError("login failed: %d" % code)
    login = time.perf_counter() - t0
    for _ in range(messages):
        w.write(b"MAIL FROM:<" + mailbox.encode() + b">\r\nRCPT TO:<" + rcpt + b">\r\nDATA\r\n")
        for expect in (250, 250, 354):
            code, lines = await reply(r)
            if code != expect:
                raise RuntimeError("unexpected %r" % lines)
        w.write(message)
        code, lines = await reply(r)
        if code != 250:
            raise RuntimeError("message refused: %r" % lines)
    w.write(b"QUIT\r\n")
    await reply(r)
    w.close()
    return login


def make_message(size):
    line = b"X" * 76 + b"\r\n"
    body = line * max(1, size // len(line))
    return b"Subject: bench\r\n\r\n" + body + b".\r\n"


async def smtp_round(port, proxied, clients, per_client, message, **kw):
    t0 = time.perf_counter()
    await asyncio.gather(*[smtp_session(port, proxied, per_client, message, **kw)
                           for _ in range(clients)])
    return clients * per_client / (time.perf_counter() - t0)


async def login_round(port, proxied, parallel, count):
    lat = []
    for _ in range(max(1, count // parallel)):
        lat += await asyncio.gather(*[smtp_session(port, proxied, 0, b"") for _ in range(parallel)])
    return lat


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def alternate(rounds, direct, proxied):
    """Runs direct() and proxied() alternately; returns (median direct, median proxied)."""
    return tuple(statistics.median(r) for r in alternate_n(rounds, direct, proxied))


def alternate_n(rounds, *runs):
    """Runs each of runs in turn, rounds times; returns the list of results of each."""
    res = [[] for _ in runs]
    for _ in range(rounds):
        for i, f in enumerate(runs):
            res[i].append(f())
    return res


def print_three(label, res, fmt="%10.1f"):
    """One row from alternate_n(direct, null relay, xoauthd): the medians, then the ratios
    xoauthd/direct, null/direct, xoauthd/null (the last is xoauthd's own cost beyond the extra
    hop). Each ratio is the median of the ratios within a round: the three runs of a round
    are seconds apart, so a change in the machine's load between rounds cancels out."""
    d, n, x = res
    med = statistics.median
    ratios = [med([b / a for a, b in zip(p, q)]) for p, q in ((d, x), (d, n), (n, x))]
    print(label + (" " + fmt) * 3 % (med(d), med(n), med(x))
          + " %7.3f %7.3f %7.3f" % tuple(ratios))


def three_header(label):
    print(label + " %10s %10s %10s %7s %7s %7s" % ("direct", "null", "xoauthd", "xo/dir",
                                                  "nul/dir", "xo/nul"))


# ----- workloads against the C sink ------------------------------------------------------------

def bench_sink(args, procs, rounds, run, only):
    procs.start_sink()
    xo, ports = procs.start_xoauthd({"smtp": {"protocol": "smtp", "tls": "none"}},
                                    {"smtp": "127.0.0.1:%d none" % procs.sink_port})
    xport = ports["smtp"]
    nport = procs.start_null_relay(procs.sink_port)
    # Warm up: the first login pays the slow password hash once.
    run(smtp_session(xport, True, 1, make_message(1000)))

    if "smtp" in only:
        print("SMTP throughput to the C sink, messages/s (median of %d rounds, alternating; "
              "ratios: median of the per-round ratios)" % rounds)
        print("(null = tests/bench/null_relay, the cheapest proxy: the client logs in with "
              "XOAUTH2 through it as direct)")
        three_header("%-8s %-8s" % ("clients", "size"))
        for clients in (1, 10, 100):
            for size, label in ((10 * 1024, "10KB"), (1024 * 1024, "1MB")):
                total = {10 * 1024: 400, 1024 * 1024: 40}[size]
                if args.quick:
                    total = {10 * 1024: 40, 1024 * 1024: 4}[size]
                per_client = max(1, total // clients)
                msg = make_message(size)
                res = alternate_n(
                    rounds,
                    lambda: run(smtp_round(procs.sink_port, False, clients, per_client, msg)),
                    lambda: run(smtp_round(nport, False, clients, per_client, msg)),
                    lambda: run(smtp_round(xport, True, clients, per_client, msg)))
                print_three("%-8d %-8s" % (clients, label), res)
        print()

    if "login" in only:
        print("SMTP login latency with a cached token, ms (added = xoauthd - direct; %d rounds)"
              % rounds)
        print("%-9s %9s %9s %9s %9s %9s %9s %9s %9s" % (
            "parallel", "direct50", "direct99", "null50", "null99", "xo50", "xo99", "added50",
            "added99"))
        for parallel in (1, 100):
            count = 200 if not args.quick else 20
            if parallel == 100:
                count = 500 if not args.quick else 100
            d, nl, x = [], [], []
            for _ in range(rounds):
                d += run(login_round(procs.sink_port, False, parallel, count))
                nl += run(login_round(nport, False, parallel, count))
                x += run(login_round(xport, True, parallel, count))
            d50, d99, n50, n99, x50, x99 = (pct(v, p) * 1e3 for v in (d, nl, x)
                                            for p in (50, 99))
            print("%-9d %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f" % (
                parallel, d50, d99, n50, n99, x50, x99, x50 - d50, x99 - d99))
        print()

    if "cpu" in only:
        n = 200 if not args.quick else 20
        msg = make_message(10 * 1024)
        c0 = cpu_seconds(xo)
        run(smtp_round(xport, True, 1, n, msg))
        c1 = cpu_seconds(xo)
        print("xoauthd CPU time (/proc) per relayed 10 KB message: %.1f us (%d messages)"
              % ((c1 - c0) / n * 1e6, n))
        mb = 20 if not args.quick else 2
        big = make_message(1024 * 1024)
        c0 = cpu_seconds(xo)
        run(smtp_round(xport, True, 1, mb, big))
        c1 = cpu_seconds(xo)
        print("xoauthd CPU time (/proc) per relayed MB: %.2f ms" % ((c1 - c0) / mb * 1e3))
        print("xoauthd resident memory now: %d KiB" % rss_kib(xo))
        if shutil.which("valgrind") and not args.no_callgrind:
            bench_callgrind(args, procs, run)
        else:
            print("callgrind: valgrind not installed or --no-callgrind; instructions not counted")
        print()
    procs.stop_one(xo)


def callgrind_instructions(procs, run, messages, message, logins=0):
    """Total instructions (Ir) of one xoauthd run under callgrind that relays `messages` on
    one connection, then makes `logins` more complete logins (one connection each)."""
    out = os.path.join(procs.dir, "callgrind.%d.out" % (procs.n + 1))
    xo, ports = procs.start_xoauthd({"smtp": {"protocol": "smtp", "tls": "none"}},
                                    {"smtp": "127.0.0.1:%d none" % procs.sink_port},
                                    wrapper=("valgrind", "--tool=callgrind", "-q",
                                             "--callgrind-out-file=" + out))
    run(smtp_round(ports["smtp"], True, 1, 1, make_message(1000)))   # the slow hash, once
    if messages:
        run(smtp_round(ports["smtp"], True, 1, messages, message))
    for _ in range(logins):
        run(smtp_session(ports["smtp"], True, 0, b""))
    procs.stop_one(xo, 300)
    keep = os.environ.get("XOAUTHD_BENCH_KEEP_CALLGRIND")   # a directory: keep the profiles
    if keep:
        os.makedirs(keep, exist_ok=True)
        shutil.copy(out, os.path.join(keep, "callgrind.%s.%d-%d-%d" % (
            "big" if len(message) > 100000 else "small", messages, logins, procs.n)))
    with open(out) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError("no totals in %s" % out)


def bench_callgrind(args, procs, run):
    small = make_message(10 * 1024)
    big = make_message(1024 * 1024)
    n0, n1 = (2, 12) if args.quick else (10, 210)
    b0, b1 = (1, 3) if args.quick else (2, 22)
    base = callgrind_instructions(procs, run, n0, small)
    more = callgrind_instructions(procs, run, n1, small)
    print("xoauthd instructions (callgrind) per relayed 10 KB message: %.0f "
          "((Ir(%d msgs) - Ir(%d msgs)) / %d)" % ((more - base) / (n1 - n0), n1, n0, n1 - n0))
    base = callgrind_instructions(procs, run, b0, big)
    more = callgrind_instructions(procs, run, b1, big)
    print("xoauthd instructions (callgrind) per relayed MB (1 MB messages): %.0f"
          % ((more - base) / (b1 - b0) / (len(big) / 1048576.0)))
    l0, l1 = (1, 5) if args.quick else (5, 105)
    base = callgrind_instructions(procs, run, 0, b"", l0)
    more = callgrind_instructions(procs, run, 0, b"", l1)
    print("xoauthd instructions (callgrind) per SMTP login with a cached token "
          "(connect, EHLO, AUTH PLAIN, upstream connect + EHLO + AUTH XOAUTH2, QUIT): %.0f"
          % ((more - base) / (l1 - l0)))
    if args.quick:
        print("IMAP relay instructions: not counted in --quick (two more valgrind runs)")
    else:
        bench_callgrind_imap(args, procs, run)


async def imap_fetch_fake(port, nbytes):
    """Logs in through xoauthd and fetches one literal of nbytes from the fake upstream."""
    r, w = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    await r.readline()
    w.write(b"a LOGIN bench " + PASSWORD.encode() + b"\r\n")
    while not (await r.readline()).startswith(b"a "):
        pass
    w.write(b"f FETCH %d\r\n" % nbytes)
    got, tail = 0, b""
    while True:
        chunk = await r.read(1 << 20)
        if not chunk:
            raise ConnectionError("closed during FETCH")
        got += len(chunk)
        tail = (tail + chunk)[-64:]
        if tail.endswith(b"\r\nf OK done\r\n"):
            break
    w.write(b"l LOGOUT\r\n")
    await r.read()
    w.close()
    return got


def bench_callgrind_imap(args, procs, run):
    """xoauthd instructions per MB relayed after an IMAP login (the byte pump), plain text."""
    up = procs.start_fake_imap()
    m0, m1 = 2, 22
    ir = []
    for mb in (m0, m1):
        out = os.path.join(procs.dir, "callgrind.%d.out" % (procs.n + 1))
        xo, ports = procs.start_xoauthd({"imap": {"protocol": "imap", "tls": "none"}},
                                        {"imap": "127.0.0.1:%d none" % up},
                                        wrapper=("valgrind", "--tool=callgrind", "-q",
                                                 "--callgrind-out-file=" + out))
        run(imap_fetch_fake(ports["imap"], 1000))   # the slow hash, once
        run(imap_fetch_fake(ports["imap"], mb * 1048576))
        procs.stop_one(xo, 300)
        keep = os.environ.get("XOAUTHD_BENCH_KEEP_CALLGRIND")
        if keep:
            os.makedirs(keep, exist_ok=True)
            shutil.copy(out, os.path.join(keep, "callgrind.imap.%d" % mb))
        with open(out) as f:
            ir += [int(line.split()[1]) for line in f
                   if line.startswith("summary:") or line.startswith("totals:")][:1]
    procs.stop_one(procs.fake_imap)
    print("xoauthd instructions (callgrind) per MB relayed after an IMAP login (FETCH): %.0f"
          % ((ir[1] - ir[0]) / (m1 - m0)))


# ----- IMAP idle memory against a small IMAP upstream -------------------------------------------

async def fake_imap_serve(port_file, cert, key):
    """Greets with SASL-IR, accepts any AUTHENTICATE XOAUTH2, answers NOOP/LOGOUT; enough for
    xoauthd's upstream login and an idle connection."""
    ctx = None
    if cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)

    async def handle(r, w):
        try:
            w.write(b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2 IDLE] bench ready\r\n")
            while True:
                line = await r.readline()
                if not line:
                    break
                parts = line.split(b" ", 2)
                tag = parts[0]
                cmd = parts[1].upper().strip() if len(parts) > 1 else b""
                if cmd == b"AUTHENTICATE":
                    w.write(tag + b" OK [CAPABILITY IMAP4rev1 IDLE] logged in\r\n")
                elif cmd == b"FETCH":
                    # "t FETCH <bytes>": one literal of that many bytes (the relay's per-MB
                    # cost; xoauthd does not parse what it relays).
                    n = int(parts[2].split()[0])
                    w.write(b"* 1 FETCH (BODY[] {%d}\r\n" % n)
                    chunk = b"Z" * 65536
                    while n > 0:
                        w.write(chunk[:min(n, len(chunk))])
                        n -= min(n, len(chunk))
                        await w.drain()
                    w.write(b")\r\n" + tag + b" OK done\r\n")
                elif cmd == b"CAPABILITY":
                    w.write(b"* CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2 IDLE\r\n"
                            + tag + b" OK done\r\n")
                elif cmd == b"LOGOUT":
                    w.write(b"* BYE bye\r\n" + tag + b" OK done\r\n")
                    await w.drain()
                    break
                else:
                    w.write(tag + b" OK done\r\n")
                await w.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            w.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx, backlog=4096)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(srv.sockets[0].getsockname()[1]))
    os.rename(port_file + ".tmp", port_file)
    await srv.serve_forever()


async def imap_login_idle(port, ctx, sem, conns):
    async with sem:
        r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                             server_hostname="localhost" if ctx else None)
        await r.readline()
        w.write(b"a LOGIN bench " + PASSWORD.encode() + b"\r\n")
        while True:
            line = await r.readline()
            if not line:
                raise ConnectionError("closed during login")
            if line.startswith(b"a "):
                if not line.startswith(b"a OK"):
                    raise RuntimeError("login refused: %r" % line)
                break
        conns.append(w)


async def idle_round(port, ctx, count):
    sem = asyncio.Semaphore(100)
    conns = []
    res = await asyncio.gather(*[imap_login_idle(port, ctx, sem, conns) for _ in range(count)],
                               return_exceptions=True)
    errors = [e for e in res if isinstance(e, BaseException)]
    return conns, errors


def bench_idle(args, procs, run):
    # "max": as many as fit xoauthd's descriptor limit (2 per connection plus what it holds
    # before the first client), the client side and the upstream being separate processes.
    counts = args.idle.split(",") if args.idle else (["100"] if args.quick else
                                                     ["1000", "max"])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    import rig as R
    certs = R.make_certs(os.path.join(procs.dir, "certs"))
    print("IMAP idle: xoauthd resident memory per idle authenticated connection "
          "(RLIMIT_NOFILE %d; xoauthd holds 2 fds per connection)" % hard)
    print("%-10s %8s %8s %12s %12s %10s" % ("tls", "conns", "held", "rss_before", "rss_after",
                                           "KiB/conn"))
    # TLS on the client side, the upstream side, or both; --quick measures the two ends only.
    modes = ("none", "both") if args.quick else ("none", "client", "upstream", "both")
    for mode in modes:
        ctls, utls = mode in ("client", "both"), mode in ("upstream", "both")
        up = procs.start_fake_imap((certs["good_cert"], certs["good_key"]) if utls else None)
        listen = {"protocol": "imap", "tls": "implicit" if ctls else "none"}
        provider = {"imap": "127.0.0.1:%d %s" % (up, "implicit" if utls else "none"),
                    "ca_file": certs["ca"]}
        if ctls:
            listen.update(tls_cert=certs["good_cert"], tls_key=certs["good_key"])
        ctx = ssl.create_default_context(cafile=certs["ca"]) if ctls else None
        for count in counts:
            xo, ports = procs.start_xoauthd({"imap": listen}, provider)
            # Warm up: the slow hash once, the TLS contexts, the allocator's first arenas.
            warm, errors = run(idle_round(ports["imap"], ctx, 2))
            if errors:
                raise errors[0]
            time.sleep(0.3)
            # Descriptors xoauthd holds with the 2 warm-up sessions open (listener, epoll,
            # signal pipes, log...): the rest of its limit is for idle connections, 2 each.
            base = len(os.listdir("/proc/%d/fd" % xo.pid))
            fit = (hard - base) // 2
            if count == "max":
                count = fit
                # The 2 warm-up sessions hold 4 of base: 10,000 sessions in all need
                # base - 4 + 20,000 descriptors.
                print("%-10s max: xoauthd holds %d fds with 2 sessions open; (%d - %d) / 2 = "
                      "%d more fit (10,000 in all would need %d)"
                      % (mode, base, hard, base, fit, base - 4 + 20000))
            count = int(count)
            if count > fit:
                print("%-10s %8d  skipped: needs %d fds in xoauthd, limit %d"
                      % (mode, count, base + 2 * count, hard))
                procs.stop_one(xo)
                continue
            before = rss_kib(xo)
            conns, errors = run(idle_round(ports["imap"], ctx, count))
            time.sleep(1.0)
            after = rss_kib(xo)
            print("%-10s %8d %8d %12d %12d %10.1f%s"
                  % (mode, count, len(conns), before, after,
                     (after - before) / max(1, len(conns)),
                     "" if not errors else "  (%d failed: %r)" % (len(errors), errors[0])))
            for w in conns + warm:
                w.close()
            run(asyncio.sleep(0.5))   # let the transports really close their sockets
            procs.stop_one(xo)
        procs.stop_one(procs.fake_imap)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    print()


# ----- the rig's real Dovecot and Postfix -------------------------------------------------------

def imap_fetch_all(port, login_line, expect_continue=False):
    """Logs in, SELECTs INBOX, FETCH 1:* BODY.PEEK[]; returns (bytes, seconds of the FETCH)."""
    import socket
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    f = s.makefile("rb")

    def until(tag):
        while True:
            line = f.readline()
            if not line:
                raise ConnectionError("closed")
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError("%r" % line)
                return
    f.readline()
    s.sendall(login_line)
    until(b"l")
    s.sendall(b"s SELECT INBOX\r\n")
    until(b"s")
    t0 = time.perf_counter()
    s.sendall(b"f FETCH 1:* BODY.PEEK[]\r\n")
    total = 0
    tail = b""
    while True:
        chunk = f.read1(1 << 20)
        if not chunk:
            raise ConnectionError("closed during FETCH")
        total += len(chunk)
        tail = (tail + chunk)[-256:]
        if b"\r\nf OK" in tail or tail.startswith(b"f OK"):
            if tail.endswith(b"\r\n"):
                break
    secs = time.perf_counter() - t0
    s.sendall(b"o LOGOUT\r\n")
    s.close()
    return total, secs


def bench_rig(args, procs, rounds, run):
    import rig as R
    os.environ["XOAUTHD_BIN"] = os.path.join(os.path.abspath(args.build), "xoauthd")
    nmsg = args.imap_messages or (20 if args.quick else 200)
    size = args.imap_size or (50 * 1024 if args.quick else 100 * 1024)
    user = "reader@example.com"
    with R.Rig() as rig:
        rt = rig.idp.seed_user(user)
        rig.idp.set_client("bench-cid", secret="bench-secret")
        x = R.Xoauthd(rig, log_level="warn")
        x.add_listen("imap", protocol="imap", tls="none")
        x.add_listen("smtp", protocol="smtp", tls="none")
        x.add_provider("rig", **rig.provider_settings(smtp="none"))
        x.add_account("bench", local_user="bench", local_password=procs.password_hash(),
                      provider="rig", username=user, flow="refresh_token",
                      client_id="bench-cid", client_secret="bench-secret", refresh_token=rt)
        x.start()
        # Fill the mailbox directly (IMAP APPEND with XOAUTH2).
        m = rig.imap_login(user)
        line = b"Y" * 76 + b"\r\n"
        body = line * max(1, size // len(line))
        t0 = time.perf_counter()
        for i in range(nmsg):
            msg = (b"From: %s\r\nTo: %s\r\nSubject: bench %d\r\nMessage-ID: <bench%d@example.com>"
                   b"\r\n\r\n" % (user.encode(), user.encode(), i, i)) + body
            m.append("INBOX", None, None, msg)
        m.logout()
        print("IMAP FETCH of %d messages x %d KB from Dovecot (filled in %.1f s), MB/s "
              "(median of %d rounds, alternating)" % (nmsg, size // 1024,
                                                      time.perf_counter() - t0, rounds))
        direct_port = rig.imap_port
        null_port = procs.start_null_relay(direct_port)

        def direct(port=direct_port):
            tok = rig.idp.mint(user)
            sasl = base64.b64encode(R.xoauth2_string(user, tok).encode())
            n, secs = imap_fetch_all(port, b"l AUTHENTICATE XOAUTH2 " + sasl + b"\r\n")
            return n / secs / 1e6

        def proxied():
            n, secs = imap_fetch_all(x.port("imap"), b"l LOGIN bench " + PASSWORD.encode()
                                     + b"\r\n")
            return n / secs / 1e6
        proxied()      # warm: the slow hash and the token
        res = alternate_n(max(rounds, 3) if not args.quick else 1, direct,
                                 lambda: direct(null_port), proxied)
        three_header("")
        print_three("", res)
        print()

        # SMTP to the real Postfix (which delivers to Dovecot over LMTP).
        per = 5 if args.quick else 50
        print("SMTP to the rig's Postfix (delivers to Dovecot), 10 KB, messages/s")
        print("%-8s %10s %10s %7s" % ("clients", "direct", "xoauthd", "ratio"))
        msg = make_message(10 * 1024)
        sport = rig.smtp_submission_port
        for clients in ((1,) if args.quick else (1, 10)):
            def d():
                tok = rig.idp.mint(user)
                return run(smtp_round(sport, False, clients, per // clients or 1, msg,
                                      token=tok, mailbox=user, rcpt=user.encode()))

            def p():
                return run(smtp_round(x.port("smtp"), True, clients, per // clients or 1, msg,
                                      mailbox=user, rcpt=user.encode()))
            md, mx = alternate(rounds, d, p)
            print("%-8d %10.1f %10.1f %7.3f" % (clients, md, mx, mx / md))
        print()
        x.stop(check=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="CI-sized run: small counts")
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", default="smtp,login,cpu,idle,imap",
                    help="comma list of workloads: smtp,login,cpu,idle,imap")
    ap.add_argument("--idle", help="idle connection counts, e.g. 1000,9000")
    ap.add_argument("--imap-messages", type=int, help="mailbox size for FETCH (200; quick 20)")
    ap.add_argument("--imap-size", type=int, help="bytes per message (100 KB; quick 50 KB)")
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--fake-imap", help=argparse.SUPPRESS)
    ap.add_argument("--cert", help=argparse.SUPPRESS)
    ap.add_argument("--key", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)  # processes run with cwd set to a temp dir
    if args.fake_imap:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        asyncio.run(fake_imap_serve(args.fake_imap, args.cert, args.key))
        return
    only = set(args.only.split(","))
    rounds = 1 if args.quick else args.rounds
    procs = Processes(args.build)
    loop = asyncio.new_event_loop()
    run = loop.run_until_complete
    try:
        if only & {"smtp", "login", "cpu"}:
            bench_sink(args, procs, rounds, run, only)
        if "idle" in only:
            bench_idle(args, procs, run)
        if "imap" in only:
            bench_rig(args, procs, rounds, run)
    finally:
        loop.close()
        procs.stop()
    print("benchmark finished")


if __name__ == "__main__":
    main()
