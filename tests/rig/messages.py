"""Messages the tests send (RFC 5322, CRLF) and look-ups in the ones that arrive: unique
Message-IDs, a body that exercises SMTP transparency, header values."""
import base64
import os
import re
import time


def split_message(raw):
    """(headers, body) of a raw RFC 5322 message (bytes), split at the first empty line."""
    i = raw.find(b"\r\n\r\n")
    if i < 0:
        return raw, b""
    return raw[:i + 2], raw[i + 4:]


def header_value(raw, name):
    hdrs, _ = split_message(raw)
    m = re.search(rb"(?im)^" + re.escape(name.encode()) + rb":[ \t]*(.*(?:\r\n[ \t].*)*)", hdrs)
    return m.group(1).decode(errors="replace").strip() if m else None


_MSGID_SEQ = [0]


def make_message_id(tag="msg"):
    _MSGID_SEQ[0] += 1
    return "%s.%d.%d.%s@xoauthd-tests.example" % (tag, os.getpid(), _MSGID_SEQ[0],
                                                   base64.b32encode(os.urandom(5)).decode().lower())


def build_message(mail_from, rcpt, message_id, subject, body):
    """A message (bytes, CRLF) with the given body (bytes, CRLF line ends, ends in CRLF)."""
    hdr = ("From: Test Sender <%s>\r\n"
           "To: <%s>\r\n"
           "Subject: %s\r\n"
           "Message-ID: <%s>\r\n"
           "Date: %s\r\n"
           "MIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n"
           "Content-Transfer-Encoding: 8bit\r\n"
           "\r\n") % (mail_from, rcpt, subject, message_id,
                      time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()))
    return hdr.encode() + body


def tricky_body():
    """A body that tests transparency: leading dots, a lone dot line, 8-bit UTF-8, a 998-octet
    line, trailing white space, empty lines, a tab. Lines end in CRLF; the body ends in CRLF."""
    lines = [
        b"Scan to email test body.",
        b".a line that starts with a dot",
        b"..two leading dots",
        b".",
        b"8-bit: Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln \xe2\x80\x94 \xc2\xbd \xe2\x82\xac \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
        b"",
        b"x" * 998,
        b"y" * 997 + b".",
        b"trailing white space   \t",
        b"\tstarts with a tab",
        b"",
        b"last line",
    ]
    return b"\r\n".join(lines) + b"\r\n"
