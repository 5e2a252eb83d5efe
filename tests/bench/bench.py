#!/usr/bin/env python3
"""xoauthd benchmark: every workload through xoauthd and directly against the same upstream, in
the same run, alternating, several rounds; prints medians and the ratio proxied / direct.

    python3 tests/bench/bench.py [--quick] [--build DIR]

--quick is the CI-sized run (small counts, one round per side): it checks that the benchmark
still works and prints its table; it asserts nothing about timing. Results and the command go in
BENCHMARKS.md. Everything runs on 127.0.0.1 on free ports; only processes started here are
stopped.
"""
import argparse
import asyncio
import base64
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
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


def wait_port(port, proc, timeout=15):
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


class Processes:
    """Starts the sink and xoauthd; stops exactly those, by pid."""

    def __init__(self, build):
        self.build = build
        self.dir = tempfile.mkdtemp(prefix="xoauthd-bench-")
        self.procs = []

    def start_sink(self):
        port_file = os.path.join(self.dir, "sink.port")
        p = subprocess.Popen([os.path.join(self.build, "tests", "smtp_sink"), port_file])
        self.procs.append(p)
        deadline = time.monotonic() + 10
        while not os.path.exists(port_file) or os.path.getsize(port_file) == 0:
            if time.monotonic() > deadline or p.poll() is not None:
                raise RuntimeError("smtp_sink did not start")
            time.sleep(0.01)
        with open(port_file) as f:
            self.sink_port = int(f.read())
        return self.sink_port

    def start_xoauthd(self):
        xo = os.path.join(self.build, "xoauthd")
        h = subprocess.run([xo, "hash-password"], input=(PASSWORD + "\n").encode(),
                           stdout=subprocess.PIPE, check=True).stdout.decode().split()[-1]
        self.xo_port = free_port()
        cfg = os.path.join(self.dir, "bench.ini")
        with open(cfg, "w") as f:
            f.write("[xoauthd]\nstate_dir = %s/state\nlog_level = warn\n\n"
                    "[listen smtp]\nprotocol = smtp\naddress = 127.0.0.1:%d\ntls = none\n"
                    "max_connections = 2000\n\n"
                    "[provider sink]\nsmtp = 127.0.0.1:%d none\n\n"
                    "[account bench]\nlocal_user = bench\nlocal_password = %s\nprovider = sink\n"
                    "username = %s\nflow = static\naccess_token = %s\n"
                    % (self.dir, self.xo_port, self.sink_port, h, MAILBOX, TOKEN))
        self.xo_log = open(os.path.join(self.dir, "xoauthd.log"), "wb")
        p = subprocess.Popen([xo, "run", "-c", cfg], stdout=self.xo_log, stderr=subprocess.STDOUT)
        self.procs.append(p)
        self.xo = p
        wait_port(self.xo_port, p)
        return self.xo_port

    def cpu_seconds(self, proc):
        with open("/proc/%d/stat" % proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kib(self, proc):
        with open("/proc/%d/status" % proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        import shutil
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


async def smtp_session(port, proxied, messages, message):
    """One connection: EHLO, login (local password via xoauthd, XOAUTH2 direct), messages."""
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
        w.write(base64.b64encode(("user=%s\x01auth=Bearer %s\x01\x01" % (MAILBOX, TOKEN))
                                 .encode()) + b"\r\n")
    code, _ = await reply(r)
    if code != 235:
        raise RuntimeError("login failed: %d" % code)
    login = time.perf_counter() - t0
    for _ in range(messages):
        w.write(b"MAIL FROM:<scan@example.com>\r\nRCPT TO:<boss@example.com>\r\nDATA\r\n")
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


async def smtp_round(port, proxied, clients, per_client, message):
    t0 = time.perf_counter()
    await asyncio.gather(*[smtp_session(port, proxied, per_client, message)
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="CI-sized run: small counts")
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    rounds = 1 if args.quick else args.rounds
    procs = Processes(args.build)
    try:
        procs.start_sink()
        procs.start_xoauthd()
        loop = asyncio.new_event_loop()
        run = loop.run_until_complete
        # Warm up: the first login pays the slow password hash once.
        run(smtp_session(procs.xo_port, True, 1, make_message(1000)))

        print("SMTP throughput, messages/s (median of %d rounds, alternating)" % rounds)
        print("%-8s %-8s %10s %10s %7s" % ("clients", "size", "direct", "xoauthd", "ratio"))
        sizes = [(10 * 1024, "10KB"), (1024 * 1024, "1MB")]
        for clients in (1, 10, 100):
            for size, label in sizes:
                total = {10 * 1024: 400, 1024 * 1024: 40}[size]
                if args.quick:
                    total = {10 * 1024: 40, 1024 * 1024: 4}[size]
                per_client = max(1, total // clients)
                msg = make_message(size)
                d, x = [], []
                for _ in range(rounds):
                    d.append(run(smtp_round(procs.sink_port, False, clients, per_client, msg)))
                    x.append(run(smtp_round(procs.xo_port, True, clients, per_client, msg)))
                md, mx = statistics.median(d), statistics.median(x)
                print("%-8d %-8s %10.1f %10.1f %7.3f" % (clients, label, md, mx, mx / md))

        print()
        print("Login latency with a cached token, ms (added = xoauthd - direct)")
        print("%-9s %9s %9s %9s %9s %9s %9s" % ("parallel", "direct50", "direct99", "xo50",
                                                 "xo99", "added50", "added99"))
        for parallel in (1, 100):
            count = 200 if not args.quick else 20
            if parallel == 100:
                count = 500 if not args.quick else 100
            d, x = [], []
            for _ in range(rounds):
                d += run(login_round(procs.sink_port, False, parallel, count))
                x += run(login_round(procs.xo_port, True, parallel, count))
            d50, d99, x50, x99 = (pct(d, 50) * 1e3, pct(d, 99) * 1e3,
                                  pct(x, 50) * 1e3, pct(x, 99) * 1e3)
            print("%-9d %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f" % (parallel, d50, d99, x50, x99,
                                                                x50 - d50, x99 - d99))

        print()
        n = 200 if not args.quick else 20
        msg = make_message(10 * 1024)
        c0 = procs.cpu_seconds(procs.xo)
        run(smtp_round(procs.xo_port, True, 1, n, msg))
        c1 = procs.cpu_seconds(procs.xo)
        print("xoauthd CPU per relayed 10 KB message: %.1f us (%d messages)"
              % ((c1 - c0) / n * 1e6, n))
        mb = 20 if not args.quick else 2
        big = make_message(1024 * 1024)
        c0 = procs.cpu_seconds(procs.xo)
        run(smtp_round(procs.xo_port, True, 1, mb, big))
        c1 = procs.cpu_seconds(procs.xo)
        print("xoauthd CPU per relayed MB: %.2f ms" % ((c1 - c0) / mb * 1e3))
        print("xoauthd resident memory now: %d KiB" % procs.rss_kib(procs.xo))
        loop.close()
    finally:
        procs.stop()
    print("benchmark finished")


if __name__ == "__main__":
    main()
