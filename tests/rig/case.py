"""The base of every e2e test case, and the unittest runner the tests end with.

RigTestCase starts the class's Rig (start_class_rig) and, when the subclass says so,
registers its OAuth client at the mock IdP and hashes its local password; new_xoauthd() and
new_class_xoauthd() give an Xoauthd on that rig that is killed after the test or the class.
Everything started is stopped through addCleanup / addClassCleanup, which also run when
set-up fails half-way, so no subclass needs a try/except around its set-up."""
import os
import sys
import unittest

from .mail_rig import Rig, _ACTIVE
from .xoauthd import Xoauthd, hash_password, xoauthd_bin


def closed_after(test):
    """A list for the sockets (anything with close()) a test opens: closed when it ends."""
    items = []

    def close_all():
        for s in items:
            try:
                s.close()
            except OSError:
                pass

    test.addCleanup(close_all)
    return items


def start_class_rig(cls, needs_xoauthd=True, **rig_opts):
    """The Rig of a TestCase class, from its setUpClass. Skips the class when it needs xoauthd
    and xoauthd is not built (an XOAUTHD_BIN that does not exist is an error). The rig closes
    after the class, and also when setUpClass fails further on (addClassCleanup): register
    what starts later - an Xoauthd's stop - the same way, it runs first."""
    if needs_xoauthd and not os.path.exists(xoauthd_bin()):
        if os.environ.get("XOAUTHD_BIN"):
            raise RuntimeError("XOAUTHD_BIN=%s does not exist" % xoauthd_bin())
        raise unittest.SkipTest("xoauthd not built (%s); build it or set XOAUTHD_BIN"
                                % xoauthd_bin())
    rig = Rig(**rig_opts).start()
    cls.addClassCleanup(rig.close)
    return rig


class _DumpingResult(unittest.TextTestResult):
    """Prints the servers' logs (from the start of the failing test) when a test fails."""

    def startTest(self, test):
        for r in _ACTIVE:
            r.mark_logs()
        super().startTest(test)

    def _dump(self, test):
        self.stream.write("\n##### server logs for %s #####\n" % test.id())
        for r in _ACTIVE:
            r.dump_logs(self.stream)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._dump(test)

    def addError(self, test, err):
        super().addError(test, err)
        self._dump(test)


def main():
    """unittest.main() that dumps server logs on failures; exits non-zero on failure."""
    runner = unittest.TextTestRunner(resultclass=_DumpingResult, verbosity=2, stream=sys.stderr)
    unittest.main(testRunner=runner)


class RigTestCase(unittest.TestCase):
    """Class attributes a subclass sets:
      RIG             options of the class's Rig (mail_servers=False: no Dovecot/Postfix)
      CLIENT_ID, CLIENT_SECRET  registered at the mock IdP for the class when CLIENT_ID is set
                      (CLIENT_SECRET None: a public client)
      LOCAL_PASSWORD  hashed once into cls.hash (`xoauthd hash-password`; the secret scan
                      learns the password)"""
    RIG = {}
    CLIENT_ID = None
    CLIENT_SECRET = None
    LOCAL_PASSWORD = None
    rig = None
    hash = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.rig = start_class_rig(cls, **cls.RIG)
        if cls.CLIENT_ID is not None:
            cls.rig.idp.set_client(cls.CLIENT_ID, cls.CLIENT_SECRET)
        if cls.LOCAL_PASSWORD is not None:
            cls.hash = hash_password(cls.LOCAL_PASSWORD)

    @classmethod
    def new_class_xoauthd(cls, **global_opts):
        """An Xoauthd (not started) on the class's rig, killed after the class if it runs."""
        x = Xoauthd(cls.rig, **global_opts)
        cls.addClassCleanup(x.kill_if_running)
        return x

    def new_xoauthd(self, **global_opts):
        """An Xoauthd (not started) on the class's rig, killed after the test if it runs."""
        x = Xoauthd(self.rig, **global_opts)
        self.addCleanup(x.kill_if_running)
        return x
