"""What a test client sends and reads: SASL strings (PLAIN, RFC 4616; XOAUTH2; OAUTHBEARER,
RFC 7628), whole SMTP replies (RFC 5321 section 4.2), a line-level SMTP client for what smtplib
does not do, AUTH XOAUTH2 on smtplib, and a client that floods without reading."""
import base64
import socket
import time

from . import secret_collect


def plain_ir(user, password):
    """The base64 initial response of SASL PLAIN (RFC 4616) with an empty authzid."""
    secret_collect.register("password sent with SASL PLAIN", password)
    return base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode()


def read_reply(f):
    """One whole SMTP reply (every line of a multi-line one) from a socket file."""
    lines = []
    while True:
        line = f.readline()
        if not line:
            raise EOFError("connection closed; got %r" % lines)
        lines.append(line.decode("latin-1"))
        if len(line) < 4 or line[3:4] != b"-":
            return "".join(lines)


class SmtpLines:
    """A bare SMTP client for what smtplib does not do: bytes before the greeting (a PROXY
    protocol header), raw command lines, replies read one by one (and kept in self.replies).
    greeting=True reads the 220 (or whatever came first) into self.greeting."""

    def __init__(self, port, preface=b"", greeting=False, timeout=20):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if preface:
            self.sock.sendall(preface)
        self.f = self.sock.makefile("rb")
        self.replies = []
        self.greeting = self.reply() if greeting else None

    def reply(self):
        text = read_reply(self.f)
        self.replies.append(text)
        return text

    def cmd(self, line):
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def close(self):
        try:
            self.f.close()
            self.sock.close()
        except OSError:
            pass


def xoauth2_string(user, token):
    secret_collect.register("bearer token (XOAUTH2 built by a test)", token)
    return "user=%s\x01auth=Bearer %s\x01\x01" % (user, token)


def oauthbearer_string(user, token, host="127.0.0.1", port=0):
    secret_collect.register("bearer token (OAUTHBEARER built by a test)", token)
    return "n,a=%s,\x01host=%s\x01port=%d\x01auth=Bearer %s\x01\x01" % (user, host, port, token)


def smtp_auth_xoauth2(s, user, token):
    """AUTH XOAUTH2 on an smtplib connection: 'AUTH XOAUTH2' alone, the response after 334
    (a 1-2 KB response does not fit the 512-octet command line). An error challenge gets an
    empty answer, as Gmail expects."""
    raw = xoauth2_string(user, token)
    calls = []

    def authobject(challenge=None):
        if calls:
            return ""
        calls.append(1)
        return raw
    return s.auth("XOAUTH2", authobject, initial_response_ok=False)


def flood_without_reading(port, command, seconds):
    """A client that pipelines command (bytes) over and over and never reads a reply, through a
    small receive buffer. Stops once 64 MiB went out, seconds passed, or the server closed the
    connection; returns (the socket, bytes sent). A server that stops reading from such a
    client sends far less."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setblocking(False)
    chunk = command * 8000
    sent, deadline = 0, time.time() + seconds
    while time.time() < deadline and sent < 64 * 1024 * 1024:
        try:
            sent += s.send(chunk)
        except BlockingIOError:
            time.sleep(0.05)
        except OSError:
            break
    return s, sent
