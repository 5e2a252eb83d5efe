"""A minimal Graph client for tests that drive the mock Graph mailbox (tests/rig/
mock_graph_drafts.py) directly: drafts from MIME and upload sessions, over TLS with the rig's
test CA."""
import base64
import http.client
import json
import secrets
import ssl
import urllib.parse


class GraphTestClient:
    def __init__(self, mock, ca_file, user):
        self.mock = mock
        self.user = user
        self.ctx = ssl.create_default_context(cafile=ca_file)
        # The mock registers every bearer token for the secret scan: a word that could turn
        # up in a log by chance would be a false leak.
        self.token = "mock-client-" + secrets.token_hex(16)

    def request(self, method, url, body=b"", headers=None, bearer=True):
        """(status, headers, body), or None when the connection dropped without an answer."""
        u = urllib.parse.urlsplit(url)
        c = http.client.HTTPSConnection(u.hostname, u.port, context=self.ctx, timeout=30)
        h = dict(headers or {})
        if bearer:
            h["Authorization"] = "Bearer " + self.token
        try:
            c.request(method, u.path + ("?" + u.query if u.query else ""), body=body, headers=h)
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        except (http.client.RemoteDisconnected, ConnectionError, ssl.SSLError):
            return None
        finally:
            c.close()

    def graph(self, method, rest, body=b"", ctype="application/json"):
        url = "%s/users/%s/%s" % (self.mock.graph_url, urllib.parse.quote(self.user), rest)
        return self.request(method, url, body, {"Content-Type": ctype} if body else {})

    def draft(self, mime):
        """The new draft's id (AssertionError when the mock refused it)."""
        st, _, body = self.graph("POST", "messages", base64.b64encode(mime), "text/plain")
        assert st == 201, (st, body)
        return json.loads(body)["id"]

    def session(self, mid, size, name="scan.pdf"):
        """(status, uploadSession JSON) of createUploadSession."""
        item = {"AttachmentItem": {"attachmentType": "file", "name": name, "size": size,
                                   "contentType": "application/pdf"}}
        st, _, body = self.graph("POST", "messages/%s/attachments/createUploadSession"
                                 % urllib.parse.quote(mid), json.dumps(item).encode())
        return st, json.loads(body) if body else None
