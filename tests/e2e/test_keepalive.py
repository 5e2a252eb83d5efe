#!/usr/bin/env python3
"""TCP keepalive on both sides of a relayed session: a client or a provider that vanished
behind a NAT (which drops idle flows without a word) is found within minutes, not by the
30-minute idle timer. The test takes copies of xoauthd's own sockets (pidfd_getfd: xoauthd is
our child, so no extra privilege is needed) and reads SO_KEEPALIVE, TCP_KEEPIDLE,
TCP_KEEPINTVL and TCP_KEEPCNT on the client-side and the upstream socket of one IMAP session."""
import ctypes
import os
import socket

import rig as R
from rig import mail_clients as mc
from rig.mail_clients import Raw, LOCAL_USER, PASSWORD
from rig.case import RigTestCase

SYS_PIDFD_GETFD = 438          # the same number on every Linux architecture
DETECTION_BOUND_S = 300        # idle + interval * count: a dead peer is found within 5 minutes

_libc = ctypes.CDLL(None, use_errno=True)


def tcp_sockets(pid):
    """Copies of the TCP sockets process pid holds: [(local, peer, socket)]; close them."""
    out = []
    pidfd = os.pidfd_open(pid)
    try:
        for name in os.listdir("/proc/%d/fd" % pid):
            try:
                if not os.readlink("/proc/%d/fd/%s" % (pid, name)).startswith("socket:"):
                    continue
            except OSError:
                continue
            fd = _libc.syscall(SYS_PIDFD_GETFD, pidfd, int(name), 0)
            if fd < 0:
                err = ctypes.get_errno()
                raise OSError(err, "pidfd_getfd: %s" % os.strerror(err))
            s = socket.socket(fileno=fd)
            if s.family not in (socket.AF_INET, socket.AF_INET6) or s.type != socket.SOCK_STREAM:
                s.close()
                continue
            try:
                out.append((s.getsockname(), s.getpeername(), s))
            except OSError:       # a listener has no peer
                s.close()
    finally:
        os.close(pidfd)
    return out


def keepalive(s):
    return {"on": s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            "idle": s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            "intvl": s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            "cnt": s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT)}


class KeepaliveTest(RigTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.x = mc.start_proxy(cls.rig, name="keepalive")
        cls.addClassCleanup(cls.x.stop)

    def test_relayed_imap_session_both_sides(self):
        r = Raw(self.x.port("imap"))
        self.addCleanup(r.close)
        r.send("k1 LOGIN %s %s\r\n" % (LOCAL_USER, mc.imap_quote(PASSWORD)))
        self.assertTrue(r.until_tag("k1")[1].startswith("k1 OK"))
        r.send("k2 NOOP\r\n")
        self.assertTrue(r.until_tag("k2")[1].startswith("k2 OK"), "relayed")
        mine = r.sock.getsockname()
        socks = tcp_sockets(self.x.proc.pid)
        try:
            client = [s for local, peer, s in socks
                      if local[1] == self.x.port("imap") and peer[1] == mine[1]]
            upstream = [s for local, peer, s in socks if peer[1] == self.rig.ports["imap"]]
            self.assertEqual(len(client), 1, socks)
            self.assertEqual(len(upstream), 1, socks)
            for side, s in (("client", client[0]), ("upstream", upstream[0])):
                k = keepalive(s)
                self.assertEqual(k["on"], 1, "%s side: SO_KEEPALIVE off" % side)
                self.assertLessEqual(k["idle"] + k["intvl"] * k["cnt"], DETECTION_BOUND_S,
                                     "%s side: a dead peer is found after %s" % (side, k))
        finally:
            for _, _, s in socks:
                s.close()
        r.send("k3 LOGOUT\r\n")
        r.until_tag("k3")


if __name__ == "__main__":
    R.main()
