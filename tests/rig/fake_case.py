"""Test-case bases (on rig.case.RigTestCase) for end-to-end tests whose upstreams are fakes,
beside the rig's mock token endpoint. The rig (and a fake) live as long as the test class and
are closed by class cleanups, so that a subclass's setUpClass needs no try/except.

  FakeSmtpCase      one FakeSmtp for the class; add_fake_account() gives an Xoauthd the
                    provider "fake" on it and one refresh-token account.
  FakeUpstreamCase  fault tests: no mail servers at all, a local password (LOCAL_PASSWORD,
                    hashed into cls.hash), the OAuth
                    client registered afresh before each test; start_xoauthd() runs an xoauthd
                    with one account on a provider "fake" the test points at its fakes.
  FakeSmtpUpstreamCase  the same with a FakeSmtp per test as the provider's SMTP (self.fake)
                    and self.socks, client sockets closed after the test."""
import socket

import rig as R
from rig.case import RigTestCase
from rig.fake_smtp import FakeSmtp

CLIENT_ID = "cid"
CLIENT_SECRET = "s3cret-fake-case"  # 8+ characters: the secret scan skips shorter ones


class FakeSmtpCase(RigTestCase):
    CLIENT_ID = CLIENT_ID
    CLIENT_SECRET = CLIENT_SECRET

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.fake = FakeSmtp()
        cls.addClassCleanup(cls.fake.stop)

    @classmethod
    def add_fake_account(cls, x, name, username):
        """Adds the provider "fake" (the FakeSmtp, no TLS) and account name for the mailbox
        username (a fresh refresh token) to x; returns the account's settings."""
        rt = cls.rig.idp.seed_user(username)
        x.add_provider("fake", token_url=cls.rig.token_url,
                       smtp="127.0.0.1:%d none" % cls.fake.port)
        acct = dict(provider="fake", username=username, flow="refresh_token",
                    client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=rt)
        x.add_account(name, **acct)
        return acct


class FakeUpstreamCase(RigTestCase):
    """Subclasses set LOCAL_PASSWORD (the account's) and CLIENT_SECRET; the client CLIENT_ID is
    registered afresh before each test, not once for the class."""
    RIG = {"mail_servers": False}

    def setUp(self):
        self.rig.idp.set_client(CLIENT_ID, secret=self.CLIENT_SECRET)

    def start_xoauthd(self, listens, provider, account, username, global_opts=None,
                      **acct_extra):
        """An xoauthd with listens (name -> options), the provider "fake" (provider: its
        endpoints) and account (also its local_user) for the mailbox username; killed after
        the test if it still runs."""
        rt = self.rig.idp.seed_user(username)
        x = self.new_xoauthd(**(global_opts or {}))
        for name, opts in listens.items():
            x.add_listen(name, **opts)
        x.add_provider("fake", token_url=self.rig.token_url, **provider)
        acct = dict(local_user=account, local_password=self.hash, provider="fake",
                    username=username, flow="refresh_token", client_id=CLIENT_ID,
                    client_secret=self.CLIENT_SECRET, refresh_token=rt)
        acct.update(acct_extra)
        x.add_account(account, **acct)
        x.start()
        return x


class FakeSmtpUpstreamCase(FakeUpstreamCase):
    def setUp(self):
        super().setUp()
        self.fake = FakeSmtp()
        self.addCleanup(self.fake.stop)
        self.socks = R.closed_after(self)

    def start_smtp(self, account, username, listens=None, global_opts=None):
        """start_xoauthd() with an SMTP listener (unless listens) and self.fake upstream."""
        return self.start_xoauthd(listens or {"smtp": {"tls": "none"}},
                                  {"smtp": "127.0.0.1:%d none" % self.fake.port}, account,
                                  username, global_opts=global_opts)

    def smtp_auth(self, port, user, password, source="127.0.0.1"):
        """EHLO and one AUTH PLAIN on a new connection from the loopback address source; the
        reply to AUTH."""
        s = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
        self.socks.append(s)
        f = s.makefile("rb")
        R.read_reply(f)
        s.sendall(b"EHLO x\r\nAUTH PLAIN " + R.plain_ir(user, password).encode() + b"\r\n")
        R.read_reply(f)
        r = R.read_reply(f)
        s.close()
        return r
