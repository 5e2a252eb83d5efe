#!/usr/bin/env python3
"""A `flow = command` child inherits none of xoauthd's descriptors: not the listeners, the
control socket, the client and upstream sockets of a relayed session, nor libcurl's connection
to a token endpoint (libcurl before 8.17 does not set close-on-exec on its sockets). The
command lists its own open descriptors while all of those exist; only stdin (/dev/null), stdout
and stderr (the pipes xoauthd reads) may be there."""
import threading
import time

import rig as R
from rig import mail_clients as mc
from rig.mail_clients import Raw, USER, PASSWORD
from rig.case import RigTestCase

FDS_SCRIPT = r"""
import os, sys
seen = []
for n in sorted(os.listdir("/proc/self/fd"), key=int):
    try:
        seen.append("%s %s" % (n, os.readlink("/proc/self/fd/" + n)))
    except OSError:
        pass  # the directory listdir had open
with open(sys.argv[1], "w") as f:
    f.write("\n".join(seen) + "\n")
with open(sys.argv[2]) as f:
    sys.stdout.write(f.read())
"""


def login(port, user):
    r = Raw(port, timeout=60)
    r.send("l1 LOGIN %s %s\r\n" % (user, mc.imap_quote(PASSWORD)))
    return r, r.until_tag("l1")[1]


class ChildDescriptorsTest(RigTestCase):
    def test_command_child_inherits_no_socket(self):
        rig, idp = self.rig, self.rig.idp
        script = rig.path("list_fds.py")
        with open(script, "w") as f:
            f.write(FDS_SCRIPT)
        fds_out = rig.path("child-fds.txt")
        tok_file = rig.path("child-token")
        tok = idp.mint(USER, lifetime=600)
        with open(tok_file, "w") as f:
            f.write(tok + "\n")
        idp.set_client("hold-cid", secret="hold-secret", username=USER)
        pw = mc.password_hash()
        # The reader account (refresh token) is the rig's usual one; "hold" asks the mock IdP
        # for a token that hangs; "cmd" runs the listing.
        x = mc.start_proxy(rig, name="fds")
        self.addCleanup(x.kill_if_running)
        x.stop()
        x.add_account("hold", local_user="hold", local_password=pw, provider="rig",
                      username=USER, flow="client_credentials", client_id="hold-cid",
                      client_secret="hold-secret")
        x.add_account("cmd", local_user="cmd", local_password=pw, provider="rig",
                      username=USER, flow="command",
                      token_command="python3 %s %s %s" % (script, fds_out, tok_file))
        x.start()

        relayed, tagged = login(x.port("imap"), "reader")   # client + upstream socket
        self.addCleanup(relayed.close)
        self.assertTrue(tagged.startswith("l1 OK"), tagged)

        idp.fail("hang", count=1, seconds=6, client_id="hold-cid")
        before = idp.stats()["token_requests"].get("client_credentials", 0)
        held = {}
        t = threading.Thread(target=lambda: held.update(r=login(x.port("imap"), "hold")))
        t.start()
        deadline = time.monotonic() + 20
        while idp.stats()["token_requests"].get("client_credentials", 0) == before:
            self.assertLess(time.monotonic(), deadline, "the token request never arrived")
            time.sleep(0.05)

        r, tagged = login(x.port("imap"), "cmd")     # while the token request is open
        r.close()
        self.assertTrue(tagged.startswith("l1 OK"), tagged)
        t.join(60)
        self.assertFalse(t.is_alive())
        held["r"][0].close()
        x.stop()

        with open(fds_out) as f:
            lines = f.read().split("\n")
        fds = {int(ln.split(" ", 1)[0]): ln.split(" ", 1)[1] for ln in lines if ln}
        self.assertEqual(sorted(fds), [0, 1, 2],
                         "the command inherited descriptors: %s" % fds)
        self.assertEqual(fds[0], "/dev/null")


if __name__ == "__main__":
    R.main()
