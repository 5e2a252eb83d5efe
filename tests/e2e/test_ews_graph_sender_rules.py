"""header_from = account on the EWS and Graph paths: smtplib -> xoauthd (submit = ews | graph)
-> the mock EWS and Graph endpoints. These read the unstuffed message that xoauthd captured, in
which a line starting with "." is an ordinary line of the message: every From: of the header
block, whatever its spelling and wherever it is, must reach the provider as one From:, the
mailbox, with the first original address in Reply-To:."""
import unittest

from ews_graph_base import EwsGraphCase


class EwsGraphSenderRules(EwsGraphCase):
    def check_path(self, submit):
        x = self.xoauthd(submit, extra={"header_from": "account"})
        # smtplib dot-stuffs ".X-Dot" and "." on the wire; xoauthd unstuffs them for the capture.
        hdr = ("To: boss@contoso.test\r\n"
               "From: Desk <desk@printer.local>\r\n"
               ".X-Dot: y\r\n"
               ".\r\n"
               "FROM : ceo@contoso.test\r\n"
               "Subject: two senders via %s\r\n"
               "from:\r\n\tcfo@contoso.test\r\n" % submit)
        body = "\r\nFrom: a body line, not a header\r\n"
        code, text = self.send(x, (hdr + body).encode())
        self.assertEqual(code, 250, text)
        reqs = self.mock.of_kind(submit)
        self.assertEqual(len(reqs), 1)
        want = ("To: boss@contoso.test\r\n"
                "From: %s\r\n"
                "Reply-To: Desk <desk@printer.local>\r\n"
                ".X-Dot: y\r\n"
                ".\r\n"
                "Subject: two senders via %s\r\n" % (x.user, submit)) + body
        self.assertEqual(reqs[0]["mime"], want.encode())

    def test_ews_every_from_replaced(self):
        self.check_path("ews")

    def test_graph_every_from_replaced(self):
        self.check_path("graph")


if __name__ == "__main__":
    unittest.main(verbosity=2)
