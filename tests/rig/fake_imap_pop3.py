"""A misbehaving-on-purpose IMAP or POP3 upstream for the relay fault tests, beside
the real Dovecot: it accepts AUTHENTICATE XOAUTH2/OAUTHBEARER (IMAP, SASL-IR or continuation)
or AUTH XOAUTH2/OAUTHBEARER (POP3) with any token, then serves one big message and misbehaves
as its knobs say:

  fetch_size / retr_size   bytes of the message a FETCH (literal) or RETR (dot-terminated,
                           CRLF lines of base64 text, so nothing needs dot-stuffing) sends;
  close_after              close the connection after this many bytes of the message;
  stall                    never answer NOOP (the provider hangs after login);
  login_caps               the capability list in the tagged OK of AUTHENTICATE (IMAP).

The message is deterministic per connection (random.Random(seed)), sent in 1 MiB blocks with
sendall (so a client that stops reading holds the fake back through TCP), and its SHA-256 and
length are recorded when it was sent whole. Each connection records what happened in
`conns[i]` (a dict): "logged_in", "sent" (message bytes), "sha256", "peer_gone" (the time the
fake saw EOF or a reset from xoauthd) and "commands". Runs in threads on 127.0.0.1, free port.
"""
import base64
import hashlib
import random
import socket
import socketserver
import threading
import time

BLOCK = 1 << 20
LOGIN_CAPS = b"IMAP4rev1 IDLE"


def message_blocks(size, seed):
    """Yields `size` bytes of CRLF-terminated base64 lines (76 characters), in ~1 MiB blocks."""
    rng = random.Random(seed)
    left = size
    while left > 0:
        raw = base64.encodebytes(rng.randbytes(BLOCK * 3 // 4 // 57 * 57)).replace(b"\n", b"\r\n")
        b = raw[:left]
        left -= len(b)
        yield b


def message_sha256(size, seed):
    h = hashlib.sha256()
    for b in message_blocks(size, seed):
        h.update(b)
    return h.hexdigest()


class FakeMailUpstream:
    def __init__(self, protocol="imap"):
        assert protocol in ("imap", "pop3")
        self.protocol = protocol
        self.fetch_size = 1 << 20
        self.close_after = None
        self.stall = False
        self.login_caps = LOGIN_CAPS
        self.conns = []
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        fake = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                fake._serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.endpoint = "127.0.0.1:%d none" % self.port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    # -- waiting from the test --
    def wait_for(self, pred, timeout):
        """Waits until pred(conns) is true; returns it (False after timeout)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                v = pred(self.conns)
                if v or time.monotonic() >= deadline:
                    return v
                self.changed.wait(min(0.1, max(0.0, deadline - time.monotonic())))

    def _note(self, st, **kw):
        with self.changed:
            st.update(kw)
            self.changed.notify_all()

    # -- one connection --
    def _serve(self, sock):
        st = {"logged_in": False, "sent": 0, "sha256": None, "peer_gone": None, "commands": [],
              "seed": None}
        with self.changed:
            st["seed"] = len(self.conns) + 1
            self.conns.append(st)
            self.changed.notify_all()
        sock.settimeout(120)
        f = sock.makefile("rb")
        try:
            if self.protocol == "imap":
                self._imap(sock, f, st)
            else:
                self._pop3(sock, f, st)
        except (BrokenPipeError, ConnectionResetError, socket.timeout, OSError):
            if st["peer_gone"] is None:
                self._note(st, peer_gone=time.monotonic())
        finally:
            try:
                f.close()
                sock.close()
            except OSError:
                pass

    def _readline(self, f, st):
        line = f.readline()
        if not line:
            self._note(st, peer_gone=time.monotonic())
            return None
        with self.changed:
            st["commands"].append(line.rstrip(b"\r\n"))
            self.changed.notify_all()
        return line.rstrip(b"\r\n")

    def _send_message(self, sock, st, size):
        """Sends the message; False when close_after cut it (the connection is then closed)."""
        h = hashlib.sha256()
        for b in message_blocks(size, st["seed"]):
            if self.close_after is not None and st["sent"] + len(b) >= self.close_after:
                b = b[:self.close_after - st["sent"]]
                sock.sendall(b)
                self._note(st, sent=st["sent"] + len(b), cut=True)
                sock.shutdown(socket.SHUT_RDWR)
                return False
            sock.sendall(b)
            h.update(b)
            with self.changed:
                st["sent"] += len(b)
        self._note(st, sha256=h.hexdigest())
        return True

    def _imap(self, sock, f, st):
        sock.sendall(b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2 AUTH=OAUTHBEARER] "
                     b"fake IMAP ready\r\n")
        while True:
            line = self._readline(f, st)
            if line is None:
                return
            parts = line.split(b" ")
            tag, cmd = parts[0], (parts[1].upper() if len(parts) > 1 else b"")
            if cmd == b"UID" and len(parts) > 2:
                cmd = parts[2].upper()
            if cmd == b"CAPABILITY":
                sock.sendall(b"* CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2 IDLE\r\n"
                             b"%s OK done\r\n" % tag)
            elif cmd == b"AUTHENTICATE":
                if len(parts) < 4:
                    sock.sendall(b"+ \r\n")
                    if self._readline(f, st) is None:
                        return
                self._note(st, logged_in=True)
                sock.sendall(b"%s OK [CAPABILITY %s] fake: logged in\r\n" % (tag, self.login_caps))
            elif cmd == b"FETCH":
                sock.sendall(b"* 1 FETCH (BODY[] {%d}\r\n" % self.fetch_size)
                if not self._send_message(sock, st, self.fetch_size):
                    return
                sock.sendall(b")\r\n%s OK FETCH completed\r\n" % tag)
            elif cmd == b"NOOP":
                if not self.stall:
                    sock.sendall(b"%s OK NOOP completed\r\n" % tag)
            elif cmd == b"IDLE":
                sock.sendall(b"+ idling\r\n")
                if self._readline(f, st) is None:
                    return
                sock.sendall(b"%s OK IDLE terminated\r\n" % tag)
            elif cmd == b"LOGOUT":
                sock.sendall(b"* BYE fake logging out\r\n%s OK LOGOUT completed\r\n" % tag)
                return
            else:
                sock.sendall(b"%s OK fake: %s\r\n" % (tag, cmd))

    def _pop3(self, sock, f, st):
        sock.sendall(b"+OK fake POP3 ready\r\n")
        while True:
            line = self._readline(f, st)
            if line is None:
                return
            parts = line.split(b" ")
            cmd = parts[0].upper()
            if cmd == b"CAPA":
                sock.sendall(b"+OK\r\nSASL XOAUTH2 OAUTHBEARER\r\nUSER\r\nTOP\r\n.\r\n")
            elif cmd == b"AUTH":
                if len(parts) < 3:
                    sock.sendall(b"+ \r\n")
                    if self._readline(f, st) is None:
                        return
                self._note(st, logged_in=True)
                sock.sendall(b"+OK fake: logged in\r\n")
            elif cmd == b"STAT":
                sock.sendall(b"+OK 1 %d\r\n" % self.fetch_size)
            elif cmd == b"RETR":
                sock.sendall(b"+OK %d octets\r\n" % self.fetch_size)
                if not self._send_message(sock, st, self.fetch_size):
                    return
                sock.sendall(b".\r\n")
            elif cmd == b"NOOP":
                if not self.stall:
                    sock.sendall(b"+OK\r\n")
            elif cmd == b"QUIT":
                sock.sendall(b"+OK bye\r\n")
                return
            else:
                sock.sendall(b"+OK fake\r\n")
