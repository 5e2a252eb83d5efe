#!/usr/bin/env python3
"""Packaging: `cmake --install BUILD --prefix /usr` with DESTDIR puts the binary, the example
configuration, the systemd unit and the man pages where Debian expects them, and the unit passes
`systemd-analyze verify` with no warning at all (an unknown or misspelt hardening key is only a
warning there, and would silently not harden anything)."""
import os
import shutil
import subprocess
import tempfile
import unittest

import rig as R

SRC = os.environ.get("XOAUTHD_SRCDIR") or R.REPO_ROOT


class InstallSystemd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        binary = R.xoauthd_bin()
        if not os.path.exists(binary):
            raise unittest.SkipTest("xoauthd not built")
        cls.build = os.path.dirname(os.path.abspath(binary))
        if not os.path.exists(os.path.join(cls.build, "cmake_install.cmake")):
            raise unittest.SkipTest("%s is not a CMake build directory" % cls.build)
        cls.dest = tempfile.mkdtemp(prefix="xoauthd-install-")
        env = dict(os.environ, DESTDIR=cls.dest)
        r = subprocess.run(["cmake", "--install", cls.build, "--prefix", "/usr"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        if r.returncode != 0:
            raise AssertionError("cmake --install failed:\n" + r.stdout.decode())

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dest, ignore_errors=True)

    def p(self, rel):
        return os.path.join(self.dest, rel.lstrip("/"))

    def test_debian_layout(self):
        self.assertTrue(os.access(self.p("/usr/bin/xoauthd"), os.X_OK))
        conf = self.p("/etc/xoauthd/xoauthd.ini")
        self.assertTrue(os.path.isfile(conf))
        self.assertEqual(os.stat(conf).st_mode & 0o007, 0, "config readable by others")
        self.assertTrue(os.path.isfile(self.p("/usr/lib/systemd/system/xoauthd.service")))
        self.assertTrue(os.path.isfile(self.p("/usr/share/man/man8/xoauthd.8")))
        self.assertTrue(os.path.isfile(self.p("/usr/share/man/man5/xoauthd.ini.5")))
        self.assertTrue(os.path.isfile(self.p("/usr/share/doc/xoauthd/examples/main.cf")))
        with open(self.p("/usr/lib/systemd/system/xoauthd.service")) as f:
            unit = f.read()
        self.assertIn("ExecStart=/usr/bin/xoauthd run -c /etc/xoauthd/xoauthd.ini", unit)
        # The installed binary runs.
        r = subprocess.run([self.p("/usr/bin/xoauthd"), "version"], stdout=subprocess.PIPE,
                           timeout=30)
        self.assertEqual(r.returncode, 0)

    def test_man_pages_render_cleanly(self):
        if shutil.which("groff") is None:
            self.skipTest("groff not installed")
        for page in ("usr/share/man/man8/xoauthd.8", "usr/share/man/man5/xoauthd.ini.5"):
            r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", self.p(page)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
            self.assertEqual(r.stdout.decode(), "", page)

    def test_systemd_analyze_verify(self):
        tool = shutil.which("systemd-analyze")
        if tool is None:
            print("SKIP reason: systemd-analyze not installed (apt-get install systemd)")
            self.skipTest("systemd-analyze not installed")
        # verify checks that ExecStart's binary exists: point it at the installed copy.
        with open(self.p("/usr/lib/systemd/system/xoauthd.service")) as f:
            unit = f.read().replace("/usr/bin/xoauthd", self.p("/usr/bin/xoauthd"))
        d = tempfile.mkdtemp(prefix="xoauthd-unit-")
        try:
            path = os.path.join(d, "xoauthd.service")
            with open(path, "w") as f:
                f.write(unit)
            r = subprocess.run([tool, "verify", "--man=no", path], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=60)
            out = r.stdout.decode(errors="replace")
            if r.returncode != 0 and ("Failed to initialize" in out or
                                      "System has not been booted" in out):
                print("SKIP reason: systemd-analyze cannot run here: %s" % out.strip())
                self.skipTest("systemd-analyze cannot run in this container")
            self.assertEqual(r.returncode, 0, out)
            self.assertEqual(out.strip(), "", "systemd-analyze verify warned:\n" + out)
        finally:
            shutil.rmtree(d, ignore_errors=True)
        for key in ("Type=notify", "ProtectSystem=strict", "StateDirectory=xoauthd",
                    "NoNewPrivileges=yes", "CapabilityBoundingSet=", "PrivateTmp=yes",
                    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
                    "ExecReload=/bin/kill -HUP $MAINPID"):
            self.assertIn(key + "\n", unit)


if __name__ == "__main__":
    R.main()
