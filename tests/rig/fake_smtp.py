"""A misbehaving-on-purpose SMTP upstream for fault tests (beside the real Postfix/Dovecot).

It offers AUTH XOAUTH2/OAUTHBEARER, accepts a token only when `accept_token(token)` says so,
answers a rejected token Gmail-style (334 + base64 JSON challenge, then 535 after the client's
empty answer) or Microsoft-style (plain 535), and records every command line and every message
it accepted. Runs in a thread on 127.0.0.1, on a free port.
"""
import base64
import json
import socket
import socketserver
import threading


class FakeSmtp:
    def __init__(self, accept_token=lambda token: True, style="gmail"):
        self.accept_token = accept_token
        self.style = style              # "gmail" (error challenge) or "microsoft" (plain 535)
        self.lines = []                 # every command line received, in order
        self.auth_users = []            # user= of each AUTH attempt
        self.challenge_answers = []     # what the client sent after an error challenge
        self.messages = []              # (mail_from, [rcpts], data bytes) accepted
        self.close_after_data_lines = None  # close the connection after N lines of DATA
        # Fault knobs (tests/e2e/test_faults_*.py). Step names are the verbs ("EHLO", "AUTH",
        # "MAIL", "RCPT", "DATA", "RSET", ...) plus "DATA_END" for the final dot.
        self.close_at = set()    # steps at which the connection is closed instead of a reply
        self.replies = {}        # step -> reply text sent instead of the normal one
        self.partial_messages = []  # DATA bodies cut off before the final dot
        self.dotted = []         # DATA bodies whose final dot arrived (accepted or not)
        self.connections = 0
        self.lock = threading.Lock()
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                try:
                    fake._serve(self.rfile, self.wfile)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # xoauthd hung up first: a fault case, not a rig failure

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def _serve(self, rfile, wfile):
        def send(text):
            wfile.write(text.encode() + b"\r\n")
            wfile.flush()

        with self.lock:
            self.connections += 1
        send("220 fake.test ESMTP")
        mail_from, rcpts = None, []
        while True:
            raw = rfile.readline()
            if not raw:
                return
            line = raw.rstrip(b"\r\n").decode("latin-1")
            with self.lock:
                self.lines.append(line)
            verb = line.split(" ", 1)[0].upper()
            if verb in self.close_at:
                return
            canned = self.replies.get(verb) if verb != "DATA_END" else None
            if canned is not None:
                # Read once: a test may replace self.replies as soon as the reply is out.
                send(canned)
                if verb == "MAIL" and canned[:1] == "2":
                    mail_from, rcpts = line[10:].strip("<> "), []
                continue
            if verb == "EHLO":
                send("250-fake.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                     "250 AUTH XOAUTH2 OAUTHBEARER")
            elif verb == "AUTH":
                self._auth(rfile, send)
            elif verb == "MAIL":
                mail_from, rcpts = line[10:].strip("<> "), []
                send("250 2.1.0 Ok")
            elif verb == "RCPT":
                rcpts.append(line[8:].strip("<> "))
                send("250 2.1.5 Ok")
            elif verb == "DATA":
                send("354 End data with <CR><LF>.<CR><LF>")
                data, n = [], 0
                while True:
                    l = rfile.readline()
                    if not l:
                        with self.lock:  # connection gone before the final dot: not accepted
                            self.partial_messages.append(b"".join(data))
                        return
                    n += 1
                    if self.close_after_data_lines is not None and n >= self.close_after_data_lines:
                        return
                    if l == b".\r\n":
                        break
                    data.append(l[1:] if l.startswith(b"..") else l)
                with self.lock:
                    self.dotted.append(b"".join(data))
                if "DATA_END" in self.close_at:
                    return  # the whole message arrived, the verdict never does: not accepted
                canned_end = self.replies.get("DATA_END")  # read once, see above
                if canned_end is not None:
                    send(canned_end)
                    continue
                with self.lock:
                    self.messages.append((mail_from, rcpts, b"".join(data)))
                send("250 2.0.0 Ok: queued")
            elif verb == "RSET":
                mail_from, rcpts = None, []
                send("250 2.0.0 Ok")
            elif verb == "QUIT":
                send("221 2.0.0 Bye")
                return
            else:
                send("250 2.0.0 Ok")

    def _auth(self, rfile, send):
        send("334 ")
        resp = rfile.readline().strip()
        try:
            decoded = base64.b64decode(resp, validate=True).decode("latin-1")
        except Exception:
            send("501 5.5.2 cannot decode")
            return
        fields = dict(f.split("=", 1) for f in decoded.replace("n,a=", "user=", 1).split("\x01")
                      if "=" in f)
        user = fields.get("user", "").rstrip(",")
        token = fields.get("auth", "").replace("Bearer ", "", 1)
        with self.lock:
            self.auth_users.append(user)
        if self.accept_token(token):
            send("235 2.7.0 Accepted")
            return
        if self.style == "gmail":
            challenge = json.dumps({"status": "401", "schemes": "bearer",
                                    "scope": "https://mail.google.com/"})
            send("334 " + base64.b64encode(challenge.encode()).decode())
            answer = rfile.readline().rstrip(b"\r\n")
            with self.lock:
                self.challenge_answers.append(answer)
            send("535-5.7.8 Username and Password not accepted.\r\n535 5.7.8 https://support.google.com/mail/?p=BadCredentials")
        else:
            send("535 5.7.3 Authentication unsuccessful")
