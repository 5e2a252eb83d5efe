"""The end-to-end test rig of xoauthd: real Dovecot and Postfix, a mock IdP, mock EWS/Graph and
fake upstreams on 127.0.0.1, and the daemon under test in between.

The package is found through PYTHONPATH=tests/ (tests/CMakeLists.txt sets it for every e2e
test; by hand: `PYTHONPATH=tests python3 tests/e2e/test_smtp_submit.py`). Import it one way,
`import rig as R` (or `from rig import Xoauthd, ...`); never touch sys.path in a test.

Writing a new e2e test (tests/e2e/test_NAME.py; ctest picks it up as e2e.test_NAME):

    import rig as R
    from rig.case import RigTestCase

    class TestThing(RigTestCase):
        RIG = {"mail_servers": False}      # Rig(...) options: here only the CA and mock IdP
        CLIENT_ID, CLIENT_SECRET = "cid", "a-client-secret"   # registered at the mock IdP
        LOCAL_PASSWORD = "a-local-password"                    # hashed into cls.hash

        def test_login(self):
            x = self.new_xoauthd()         # an Xoauthd on the class's rig, killed after the test
            x.add_listen("smtp", tls="none")
            x.add_provider("rig", **self.rig.provider_settings())
            x.add_account("scanner", local_user="scanner", local_password=self.hash, ...)
            x.start()
            ...

    if __name__ == "__main__":
        R.main()                           # unittest that prints the servers' logs on failure

Fake upstreams instead of Dovecot/Postfix: rig.fake_case (FakeSmtpCase, FakeUpstreamCase);
EWS/Graph submission: tests/e2e/ews_graph_base.py; token flows: tests/e2e/tokentest.py.
The rig and everything registered with addClassCleanup / addCleanup are stopped by pid, also
when set-up fails half-way; every secret a test uses must reach the whole-suite secret scan
(rig.secret_collect.register, or hand it to Xoauthd/IdP helpers that register it).

Modules, one concept each:
  processes     start, wait for, stop processes; free ports; run a rig module as a program
  certs         the test CA and its server and client certificates
  mail_servers  the private Dovecot's and Postfix's configuration and Postfix's commands
  mail_rig      Rig: the IdP, Dovecot and Postfix of one test class in one temp dir
  reaper        cleans up after a test process that died without closing its rig
  xoauthd       Xoauthd: config writing, start/stop, its log, `xoauthd status/check/...`
  smtp_client   SASL strings, SMTP reply reading, a line-level SMTP client
  messages      RFC 5322 messages to send and header look-ups in received ones
  case          RigTestCase and the unittest runner (main) that dumps logs on failure
  fake_case     test-case bases with fake SMTP upstreams
  mock_idp, mock_ews_graph, fake_smtp, fake_imap_pop3, smarthost, mail_clients, procmem,
  secret_collect, secret_scan (run by ctest), demo (`bash tests/demo.sh`)
"""
from . import secret_collect
from .certs import make_certs, make_client_cert
from .case import RigTestCase, closed_after, main, start_class_rig
from .mail_rig import Rig
from .mail_servers import (POSTFIX_SERVICES, TEST_DOMAIN, postfix_master_pid, postfix_prepare,
                           postfix_start, postfix_stop)
from .messages import build_message, header_value, make_message_id, split_message, tricky_body
from .processes import (_die_with_parent, _tail, free_port, pid_alive, python_module, rss_kb, run,
                        run_with_tty, stop_popen, wait_pid_gone, wait_port)
from .smtp_client import (SmtpLines, flood_without_reading, oauthbearer_string, plain_ir,
                          read_reply, smtp_auth_xoauth2, xoauth2_string)
from .xoauthd import (CONFIG_SECRET_KEYS, REPO_ROOT, SANITIZER_PATTERNS, Xoauthd, hash_password,
                      xoauthd_bin)

# Names this test (after its script) for the secret scan's records of every subprocess.
secret_collect.test_name()

__all__ = [
    "secret_collect", "make_certs", "make_client_cert", "RigTestCase", "closed_after", "main",
    "start_class_rig", "Rig", "POSTFIX_SERVICES", "TEST_DOMAIN", "postfix_master_pid",
    "postfix_prepare", "postfix_start", "postfix_stop", "build_message", "header_value",
    "make_message_id", "split_message", "tricky_body", "_die_with_parent", "_tail", "free_port",
    "pid_alive", "python_module", "rss_kb", "run", "run_with_tty", "stop_popen", "wait_pid_gone",
    "wait_port", "SmtpLines", "flood_without_reading", "oauthbearer_string", "plain_ir",
    "read_reply", "smtp_auth_xoauth2", "xoauth2_string", "CONFIG_SECRET_KEYS", "REPO_ROOT",
    "SANITIZER_PATTERNS", "Xoauthd", "hash_password", "xoauthd_bin",
]
