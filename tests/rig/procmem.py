"""Searching a running process's memory for a byte string (the test runs as root, or as the
process's user with ptrace allowed): /proc/PID/maps lists the mappings, /proc/PID/mem reads
them. Only private writable mappings are read - heap, stacks, anonymous memory, data - which is
where a secret the process received or built can be; huge reservations (a sanitizer's shadow
memory) are skipped, they hold no program data."""

CHUNK = 1 << 20
MAX_REGION = 1 << 30


def _regions(pid):
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            perms = parts[1]
            path = parts[5] if len(parts) > 5 else ""
            if not perms.startswith("rw") or perms[3] != "p" or path in ("[vvar]", "[vsyscall]"):
                continue
            if hi - lo > MAX_REGION:
                continue
            yield lo, hi


def contains(pid, needle, context=None):
    """True when needle (bytes) is somewhere in pid's writable memory. context: a list that
    gets the bytes around the first hit (for a failure message)."""
    keep = len(needle) - 1
    with open("/proc/%d/mem" % pid, "rb", buffering=0) as mem:
        for lo, hi in _regions(pid):
            tail = b""
            addr = lo
            while addr < hi:
                try:
                    mem.seek(addr)
                    data = mem.read(min(CHUNK, hi - addr))
                except OSError:
                    break  # unmapped meanwhile, or not readable after all
                if not data:
                    break
                i = (tail + data).find(needle)
                if i >= 0:
                    if context is not None:
                        buf = tail + data
                        context.append(buf[max(0, i - 200):i + len(needle) + 200])
                    return True
                tail = data[-keep:] if keep else b""
                addr += len(data)
    return False
