"""Submission without SMTP AUTH: swaks / smtplib -> xoauthd (submit = ews | graph) -> the mock
EWS and Graph endpoints (tests/rig/mock_ews_graph.py, schema-validated). The message must arrive
byte for byte, Bcc-only recipients as a Bcc: header, app-only sends with the impersonation
header, and every provider answer must map to its SMTP reply. Large messages, fallbacks and
clients that drop mid-DATA are in test_ews_graph_big.py."""
import smtplib
import time
import unittest

from ews_graph_base import PASSWORD, USER, EwsGraphCase, message
from rig import rss_kb


class EwsGraphTest(EwsGraphCase):
    # ---- EWS ---------------------------------------------------------------------------------

    def test_ews_send_byte_for_byte(self):
        x = self.xoauthd("ews")
        body = (b"line one\r\n.leading dot\r\n..two dots\r\n.\tdot tab\r\n"
                b"8bit: caf\xc3\xa9\r\nno final newline")
        msg = message("ews exact", cc="cc@contoso.test", body=body)
        code, text = self.send(x, msg + b"\r\n", rcpts=("boss@contoso.test", "cc@contoso.test"))
        self.assertEqual(code, 250, text)
        reqs = self.mock.of_kind("ews")
        self.assertEqual(len(reqs), 1)
        r = reqs[0]
        self.assertEqual(self.mock.validation_errors, [])
        self.assertEqual(r["op"], "CreateItem")
        self.assertEqual(r["disposition"], "SendAndSaveCopy")
        self.assertEqual(r["mime"], msg + b"\r\n", "the provider got the client's bytes")
        self.assertEqual(r["version"], "Exchange2013_SP1")
        self.assertIsNone(r["impersonate"], "delegated tokens do not impersonate")
        self.assertEqual(r["headers"].get("X-AnchorMailbox"), x.user)
        self.assertTrue(r["token_ok"])
        self.assertIn("text/xml", r["headers"].get("Content-Type", ""))
        self.assertIn("sentitems", r["body"].decode())

    def test_ews_swaks(self):
        x = self.xoauthd("ews")
        msg = message("swaks ews", body=b"from swaks\r\n")
        rc, out = self.swaks(x, msg)
        self.assertEqual(rc, 0, out)
        reqs = self.mock.of_kind("ews")
        self.assertEqual(len(reqs), 1)
        self.assertIn(b"from swaks\r\n", reqs[0]["mime"])
        self.assertIn(b"Subject: swaks ews\r\n", reqs[0]["mime"])

    def test_ews_bcc_only_recipient(self):
        x = self.xoauthd("ews")
        msg = message("bcc test")
        code, text = self.send(x, msg, rcpts=("boss@contoso.test", "hidden@contoso.test",
                                              "other@contoso.test"))
        self.assertEqual(code, 250, text)
        mime = self.mock.of_kind("ews")[0]["mime"]
        self.assertEqual(mime, b"Bcc: hidden@contoso.test,\r\n other@contoso.test\r\n" + msg)

    def test_ews_version_and_impersonation_keys(self):
        x = self.xoauthd("ews", extra={"ews_impersonation": "yes"},
                         provider_extra={"ews_version": "Exchange2016"})
        code, text = self.send(x, message("imp yes"))
        self.assertEqual(code, 250, text)
        r = self.mock.of_kind("ews")[0]
        self.assertEqual(r["version"], "Exchange2016")
        self.assertEqual(r["impersonate"], x.user)
        self.assertEqual(self.mock.validation_errors, [])

    def test_ews_app_only_impersonates(self):
        x = self.xoauthd("ews", flow="client_credentials",
                         extra={"scope": "https://outlook.office365.com/.default"})
        code, text = self.send(x, message("app only"))
        self.assertEqual(code, 250, text)
        r = self.mock.of_kind("ews")[0]
        self.assertEqual(r["impersonate"], x.user)
        self.assertEqual(r["headers"].get("X-AnchorMailbox"), x.user)
        self.assertEqual(self.mock.validation_errors, [])

    def expect_ews(self, script, want, requests=1):
        x = self.xoauthd("ews")
        self.mock.reset()
        self.mock.ews_script.extend(script)
        code, text = self.send(x, message("err %s" % script[0][0]))
        got = "%d %s" % (code, text)
        self.last = got
        self.assertTrue(got.startswith(want), "%r -> %r, want %r" % (script, got, want))
        self.assertEqual(len(self.mock.of_kind("ews")), requests)
        return x

    def test_ews_error_codes(self):
        self.expect_ews([("error", "ErrorSendAsDenied")], "550 5.7.60")
        self.expect_ews([("error", "ErrorMessageSizeExceeded")], "552 5.3.4")
        self.expect_ews([("error", "ErrorInvalidRecipients")], "550 5.1.1")
        self.expect_ews([("error", "ErrorMailRecipientNotFound")], "550 5.1.1")
        self.expect_ews([("error", "ErrorMailboxStoreUnavailable")], "451 4.")
        x = self.expect_ews([("fault",)], "554 5.6.0")
        self.assertNotIn("internal server error", self.last.lower(), "fault text in the reply")
        self.assertIn("An internal server error occurred", x.log_text(),
                      "the fault text is in the log")

    def test_ews_entity_bomb_refused(self):
        """A response with a DTD is refused unread: the client hears 451 at once and the
        daemon's memory stays flat (it used to take ~11 s and 0.9 GB expanding the entity)."""
        x = self.xoauthd("ews")
        self.assertEqual(self.send(x, message("warm up"))[0], 250)
        hwm_before = rss_kb(x.proc.pid, "VmHWM")
        self.mock.ews_script.append(("bomb",))
        with smtplib.SMTP("127.0.0.1", x.port("smtp"), timeout=120) as s:
            s.ehlo("printer.local")
            s.login("scanner", PASSWORD)
            s.mail(USER)
            s.rcpt("boss@contoso.test")
            s.putcmd("data")
            self.assertEqual(s.getreply()[0], 354)
            s.send(message("bomb").replace(b"\r\n.", b"\r\n..") + b"\r\n.\r\n")
            t0 = time.monotonic()
            code, text = s.getreply()
            took = time.monotonic() - t0
        hwm_after = rss_kb(x.proc.pid, "VmHWM")
        print("entity bomb: reply after %.3f s, VmHWM %d -> %d kB"
              % (took, hwm_before, hwm_after))
        self.assertTrue(code == 451 and text.startswith(b"4."), (code, text))
        self.assertLess(took, 1.0, "the reply to the end of DATA took too long")
        # generous: the whole 104 KB body, its tree and libxml2's buffers are a few MB
        self.assertLess(hwm_after - hwm_before, 64 * 1024, "peak memory grew")
        self.assertEqual(len(self.mock.of_kind("ews")), 2)
        self.assertIn('event=ews_response_refused http_status=500 size=104', x.log_text())
        self.assertIn('reason="the response carries a DTD"', x.log_text())
        # and the daemon still works
        self.assertEqual(self.send(x, message("after the bomb"))[0], 250)

    def test_ews_busy(self):
        # a back-off beyond the budget: 451 at once
        self.expect_ews([("busy", 600000)], "451 4.4.5")
        # a short back-off: waited for, then sent
        self.expect_ews([("busy", 300)], "250", requests=2)
        # HTTP 503 with a long Retry-After: 451
        self.expect_ews([("http", 503, 3600)], "451 4.4.5")
        self.expect_ews([("http", 429, 1)], "250", requests=2)

    def test_ews_401_refreshes_once(self):
        x = self.expect_ews([("http", 401)], "250", requests=2)
        reqs = self.mock.of_kind("ews")
        self.assertNotEqual(reqs[0]["token"], reqs[1]["token"], "a refreshed token was used")
        self.expect_ews([("http", 401), ("http", 401)], "451 4.7.0", requests=2)
        self.assertIn("token was refused", x.log_text())

    # ---- Graph -------------------------------------------------------------------------------

    def test_graph_send_byte_for_byte(self):
        x = self.xoauthd("graph")
        msg = message("graph exact", body=b".dot\r\nline\r\n\r\n")
        code, text = self.send(x, msg)
        self.assertEqual(code, 250, text)
        reqs = self.mock.of_kind("graph")
        self.assertEqual(len(reqs), 1)
        r = reqs[0]
        self.assertEqual(r["user"], x.user)
        self.assertEqual(r["content_type"], "text/plain")
        self.assertEqual(r["mime"], msg)
        self.assertTrue(r["token_ok"])
        self.assertEqual(self.mock.of_kind("ews"), [])

    def test_graph_swaks_and_bcc(self):
        x = self.xoauthd("graph")
        msg = message("swaks graph", to="someone@contoso.test")
        rc, out = self.swaks(x, msg, to="hidden@contoso.test")
        self.assertEqual(rc, 0, out)
        mime = self.mock.of_kind("graph")[0]["mime"]
        self.assertTrue(mime.startswith(b"Bcc: hidden@contoso.test\r\nFrom: "), mime[:80])

    def expect_graph(self, script, want, requests=1):
        x = self.xoauthd("graph")
        self.mock.reset()
        self.mock.graph_script.extend(script)
        code, text = self.send(x, message("gerr"))
        got = "%d %s" % (code, text)
        self.assertTrue(got.startswith(want), "%r -> %r, want %r" % (script, got, want))
        self.assertEqual(len(self.mock.of_kind("graph")), requests)
        return x

    def test_graph_errors(self):
        self.expect_graph([("error", 400, "ErrorInvalidRecipients")], "550 5.1.1")
        self.expect_graph([("error", 403, "ErrorSendAsDenied")], "550 5.7.60")
        self.expect_graph([("error", 400, "ErrorMessageSizeExceeded")], "552 5.3.4")
        self.expect_graph([("error", 400, "BadRequest")], "554 5.6.0")
        self.expect_graph([("error", 500, "InternalServerError")], "451 4.")
        self.expect_graph([("http", 429, 1)], "250", requests=2)
        self.expect_graph([("http", 504)], "250", requests=2)
        self.expect_graph([("http", 503, 3600)], "451 4.4.5")

    def test_graph_401(self):
        x = self.xoauthd("graph")
        self.send(x, message("warm the token cache"))
        self.mock.reset()
        # the cached token is dead at the provider: one refresh, one retry
        self.rig.idp.expire_access(x.user)
        code, text = self.send(x, message("expired"))
        self.assertEqual(code, 250, text)
        self.assertEqual(len(self.mock.of_kind("graph")), 2)

    def test_token_endpoint_down_is_454_at_auth(self):
        import smtplib
        x = self.xoauthd("graph", key="graph-down")
        self.rig.idp.fail("500", count=50, username=x.user)
        try:
            with smtplib.SMTP("127.0.0.1", x.port("smtp"), timeout=60) as s:
                s.ehlo("printer.local")
                with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
                    s.login("scanner", "scan-pass;word")
                self.assertEqual(cm.exception.smtp_code, 454)
        finally:
            self.rig.idp.clear_failures()
        self.assertEqual(self.mock.of_kind("graph"), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
