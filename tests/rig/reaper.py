"""The reaper: a small process each Rig starts that cleans up after a test process that died
without closing its rig (SIGKILL, a ctest timeout)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

from .processes import _proc_starttime, pid_alive


def _reaper_main(rig_dir, parent_pid):
    """`python3 -m rig.reaper DIR PID`: waits for PID to die; if DIR still exists then (the
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


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.stderr.write("usage: python3 -m rig.reaper DIR PID (started by the rig itself)\n")
        sys.exit(2)
    sys.exit(_reaper_main(sys.argv[1], int(sys.argv[2])))
