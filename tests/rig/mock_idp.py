#!/usr/bin/env python3
"""Mock OAuth 2.0 identity provider for xoauthd's end-to-end tests (python stdlib only).

It plays Microsoft's v2.0 token endpoint and an RFC 7662 introspection endpoint, the one
Dovecot's `passdb { driver = oauth2 }` calls with `introspection_mode = post`:

  POST /token       form: grant_type = refresh_token | client_credentials | password
                    Access tokens are random and opaque, live `lifetime` seconds (default 60).
                    Refresh tokens ROTATE like Microsoft's: every use returns a new one and the
                    old one dies at once (400 invalid_grant, AADSTS70008).
  POST /introspect  form `token=...` (or `Authorization: Bearer ...`, or GET ?token=...):
                    {"active": true, "username": ...} for a live token, {"active": false} else.
  POST /devicecode  RFC 8628 device authorization (also .../oauth2/v2.0/devicecode):
                    {device_code, user_code, verification_uri, expires_in, interval}; the test
                    plays the user with control op device_approve / device_deny. The token
                    endpoint then answers grant_type=urn:ietf:params:oauth:grant-type:device_code
                    with authorization_pending, slow_down (polled too fast, or on request),
                    access_denied, expired_token or tokens.
  GET  /authorize   authorization endpoint (also .../oauth2/v2.0/authorize): approves at once
                    and redirects (302) to the loopback redirect_uri with code and state (or
                    error=access_denied when told to deny). grant_type=authorization_code
                    checks redirect_uri and the PKCE S256 code_verifier; codes work once.
  Client assertions (RFC 7523): for a client registered with a certificate (set_client_cert),
  client_assertion must be an RS256 JWT whose signature verifies with the certificate's public
  key (openssl CLI), with x5t#S256 of that certificate, iss = sub = client_id, aud = the token
  URL, a short exp, and a jti never seen before.

Tests drive it through two more endpoints (IdpClient below wraps them):

  POST /_control    JSON {"op": ..., ...}; see Idp.control() for the operations.
  GET  /_stats      JSON counters, issued tokens, current refresh token per user.

Run it as a script (`--port-file F` receives the bound port once it listens; `--state-file F`
persists users and refresh tokens across restarts of the mock) or import it: `start_in_thread`.
"""

import argparse
import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import secret_collect  # (every secret issued or seen, for tests/rig/secret_scan.py)

INVALID_GRANT_DESC = ("AADSTS70008: The provided authorization code or refresh token has "
                      "expired due to inactivity. Send a new interactive authorization request "
                      "for this user and resource.")
FAIL_MODES = ("500", "hang", "malformed", "invalid_grant", "status", "close")


def _rand(length, kind="idp token"):
    """A random URL-safe token of exactly `length` characters, no fixed prefix. Registered
    as a secret of `kind` for the whole-suite secret scan."""
    s = secrets.token_urlsafe(length)
    while len(s) < length:
        s += secrets.token_urlsafe(length)
    secret_collect.register(kind, s[:length])
    return s[:length]


class Idp:
    """All state of the mock; every public method takes the lock."""

    def __init__(self, state_file=None, lifetime=60, access_token_length=1200,
                 refresh_token_length=700):
        self.lock = threading.RLock()
        self.state_file = state_file
        self.lifetime = lifetime                  # default access token lifetime, seconds
        self.access_token_length = access_token_length
        self.refresh_token_length = refresh_token_length
        self.clients = {}        # client_id -> {"secret": str|None, "username": str|None}
        self.users = {}          # username -> {"lifetime": int|None, "password": str|None}
        self.refresh = {}        # refresh token -> username (only live ones)
        self.current_refresh = {}  # username -> the live refresh token
        self.dead_refresh = {}   # rotated/revoked refresh token -> username
        self.access = {}         # access token -> {"username", "exp", "client_id", "scope"}
        self.failures = []       # queued failure rules, see control op "fail"
        self.devices = {}        # device_code -> pending device authorization
        self.codes = {}          # authorization code -> {client_id, redirect_uri, ...}
        self.jtis = set()        # client assertion ids seen (replay)
        self.device_interval = 1  # seconds, what /devicecode tells clients
        self.device_expires = 600
        self.authorize_user = None  # who "signs in" at /authorize (default: login_hint)
        self.authorize_deny = False
        self.introspect_failures = []  # see control op "fail_introspection"
        self.reset_stats()
        self._load()

    # ----- persistence -------------------------------------------------------------------
    def _load(self):
        if not self.state_file or not os.path.exists(self.state_file):
            return
        with open(self.state_file) as f:
            st = json.load(f)
        self.clients = st.get("clients", {})
        self.users = st.get("users", {})
        self.current_refresh = st.get("current_refresh", {})
        self.refresh = {t: u for u, t in self.current_refresh.items()}
        self.dead_refresh = st.get("dead_refresh", {})
        self.lifetime = st.get("lifetime", self.lifetime)

    def _save(self):
        if not self.state_file:
            return
        st = {"clients": self.clients, "users": self.users, "lifetime": self.lifetime,
              "current_refresh": self.current_refresh, "dead_refresh": self.dead_refresh}
        tmp = self.state_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(st, f, indent=1)
        os.replace(tmp, self.state_file)

    # ----- stats -------------------------------------------------------------------------
    def reset_stats(self):
        with self.lock:
            self.stats = {
                "token_requests": {},        # grant_type -> count (every POST /token)
                "token_ok": {},              # grant_type -> count of 200 answers
                "token_errors": {},          # error code ("invalid_grant", "500", ...) -> count
                "introspections": 0,
                "introspections_active": 0,
                "per_user": {},              # username -> counters, see _user_stats
                "requests": [],              # last 200 token requests, oldest first
                "device_authorizations": 0,  # POST /devicecode
                "device_polls": {},          # answer (authorization_pending, ...) -> count
                "authorizations": 0,         # GET /authorize
                "assertions_ok": 0,          # verified client assertions
                "assertions_bad": [],        # why assertions were refused
            }

    def _user_stats(self, username):
        return self.stats["per_user"].setdefault(username, {
            "token_requests": 0, "refreshes_ok": 0, "token_ok": 0, "invalid_grant": 0,
            "failed_injected": 0, "introspections": 0, "introspections_active": 0,
            "access_tokens": [], "refresh_tokens_issued": [], "refresh_tokens_used": []})

    def _record(self, entry):
        reqs = self.stats["requests"]
        reqs.append(entry)
        del reqs[:-200]

    def snapshot(self):
        with self.lock:
            out = json.loads(json.dumps(self.stats))
            out["current_refresh"] = dict(self.current_refresh)
            out["lifetime"] = self.lifetime
            out["live_access_tokens"] = sum(1 for a in self.access.values()
                                            if a["exp"] > time.time())
            out["pending_failures"] = [dict(f) for f in self.failures]
            return out

    # ----- tokens ------------------------------------------------------------------------
    def _issue_access(self, username, client_id, scope):
        tok = _rand(self.access_token_length, "access_token (mock IdP)")
        life = self.users.get(username, {}).get("lifetime") or self.lifetime
        self.access[tok] = {"username": username, "exp": time.time() + life,
                            "client_id": client_id, "scope": scope}
        if username is not None:
            us = self._user_stats(username)
            us["access_tokens"].append(tok)
            # the scope each access token was issued for, in the same order (a token serves one
            # resource: Graph, EWS or SMTP; the mock EWS/Graph endpoints check it on request)
            us.setdefault("access_token_scopes", []).append(scope)
        return tok, life

    def scope_of(self, token):
        """The scope an access token was issued for, None when unknown."""
        with self.lock:
            a = self.access.get(token)
            return a["scope"] if a is not None else None

    def _issue_refresh(self, username):
        old = self.current_refresh.get(username)
        if old is not None:
            self.refresh.pop(old, None)
            self.dead_refresh[old] = username
        tok = _rand(self.refresh_token_length, "refresh_token (mock IdP)")
        self.refresh[tok] = username
        self.current_refresh[username] = tok
        self._user_stats(username)["refresh_tokens_issued"].append(tok)
        return tok

    def mint(self, username, lifetime=None, scope=""):
        """An access token for `username` without a token request (the rig's own IMAP reads)."""
        with self.lock:
            tok = _rand(self.access_token_length, "access_token (mock IdP mint)")
            life = lifetime or self.users.get(username, {}).get("lifetime") or self.lifetime
            self.access[tok] = {"username": username, "exp": time.time() + life,
                                "client_id": "_mint", "scope": scope or ""}
            return tok

    def introspect_failure(self):
        """(status, body, delay) for an injected introspection failure, or None."""
        with self.lock:
            if not self.introspect_failures:
                return None
            f = self.introspect_failures[0]
            f["count"] -= 1
            if f["count"] <= 0:
                self.introspect_failures.pop(0)
            self.stats["introspection_failures"] = self.stats.get("introspection_failures", 0) + 1
            if f["mode"] == "hang":
                return 503, {"error": "temporarily_unavailable"}, float(f.get("seconds", 30))
            return 500, {"error": "server_error"}, 0

    def introspect(self, token):
        with self.lock:
            self.stats["introspections"] += 1
            a = self.access.get(token)
            if a is None or a["exp"] <= time.time():
                if a is not None and a["username"]:
                    self._user_stats(a["username"])["introspections"] += 1
                return {"active": False}
            self.stats["introspections_active"] += 1
            if a["username"]:
                us = self._user_stats(a["username"])
                us["introspections"] += 1
                us["introspections_active"] += 1
            out = {"active": True, "token_type": "Bearer", "exp": int(a["exp"]),
                   "client_id": a["client_id"], "scope": a["scope"]}
            if a["username"]:
                out["username"] = a["username"]
            return out

    def _take_failure(self, grant_type, username, client_id):
        for f in self.failures:
            if f.get("grant_type") and f["grant_type"] != grant_type:
                continue
            if f.get("username") and f["username"] != username:
                continue
            if f.get("client_id") and f["client_id"] != client_id:
                continue
            f["count"] -= 1
            if f["count"] <= 0:
                self.failures.remove(f)
            return dict(f)
        return None

    def token(self, form, auth_header, token_url=None):
        """Handles one POST /token. Returns (status, json-able body or raw bytes, delay).
        token_url is this endpoint's own URL (the aud a client assertion must carry)."""
        grant = form.get("grant_type", "")
        client_id = form.get("client_id", "")
        client_secret = form.get("client_secret")
        if auth_header and auth_header.lower().startswith("basic "):
            try:
                raw = base64.b64decode(auth_header[6:].strip()).decode()
                cid, _, csec = raw.partition(":")
                client_id = urllib.parse.unquote_plus(cid)
                client_secret = urllib.parse.unquote_plus(csec)
            except Exception:
                pass
        for k in ("client_secret", "client_assertion", "refresh_token", "password", "code",
                  "code_verifier", "device_code"):
            secret_collect.register("%s sent to the mock IdP" % k, form.get(k), "mock_idp /token")
        secret_collect.register("client_secret sent to the mock IdP", client_secret,
                                "mock_idp /token")
        with self.lock:
            st = self.stats
            st["token_requests"][grant] = st["token_requests"].get(grant, 0) + 1
            username = None
            if grant == "refresh_token":
                rt = form.get("refresh_token", "")
                username = self.refresh.get(rt) or self.dead_refresh.get(rt)
            elif grant == "password":
                username = form.get("username")
            elif grant == "client_credentials":
                username = self.clients.get(client_id, {}).get("username")
            entry = {"time": time.time(), "grant_type": grant, "client_id": client_id,
                     "username": username, "scope": form.get("scope"),
                     "refresh_token": form.get("refresh_token"), "result": None}
            self._record(entry)
            if username:
                self._user_stats(username)["token_requests"] += 1

            def err(status, code, desc=None, extra=None):
                entry["result"] = code
                st["token_errors"][code] = st["token_errors"].get(code, 0) + 1
                body = {"error": code}
                if desc:
                    body["error_description"] = desc
                if extra:
                    body.update(extra)
                return status, body, 0

            fail = self._take_failure(grant, username, client_id)
            if fail is not None:
                if username:
                    self._user_stats(username)["failed_injected"] += 1
                mode = fail["mode"]
                entry["result"] = "injected:" + mode
                st["token_errors"]["injected"] = st["token_errors"].get("injected", 0) + 1
                if mode == "500":
                    return 500, {"error": "server_error",
                                 "error_description": "AADSTS50000: injected failure"}, 0
                if mode == "status":
                    body = dict(fail.get("body", {"error": "temporarily_unavailable"}))
                    if fail.get("retry_after") is not None:
                        body["_headers"] = {"Retry-After": str(fail["retry_after"])}
                    return int(fail.get("status", 503)), body, 0
                if mode == "hang":
                    return 503, {"error": "temporarily_unavailable"}, float(fail.get("seconds", 30))
                if mode == "malformed":
                    return 200, b'{"token_type": "Bearer", "access_token": "abc', 0
                if mode == "close":
                    return None, None, 0
                if mode == "invalid_grant":
                    if username:
                        self._user_stats(username)["invalid_grant"] += 1
                    return 400, {"error": "invalid_grant", "error_description": INVALID_GRANT_DESC,
                                 "error_codes": [70008]}, 0

            # Certificate clients must send a valid client assertion (RFC 7523).
            if self.clients.get(client_id, {}).get("cert"):
                why = self._check_assertion(client_id, form, token_url)
                if why:
                    st["assertions_bad"].append(why)
                    return err(401, "invalid_client", "AADSTS700027: Client assertion failed "
                               "signature validation: " + why)
                st["assertions_ok"] += 1
                client_secret = self.clients[client_id].get("secret")

            # Client authentication: only checked for client ids that were registered.
            if self.clients and client_id not in self.clients:
                return err(401, "invalid_client", "AADSTS700016: Application with identifier '%s' "
                           "was not found in the directory." % client_id)
            if client_id in self.clients:
                want = self.clients[client_id].get("secret")
                if want is not None and client_secret != want:
                    return err(401, "invalid_client",
                               "AADSTS7000215: Invalid client secret provided.")
            scope = form.get("scope") or ""

            if grant == "refresh_token":
                rt = form.get("refresh_token", "")
                if rt not in self.refresh:
                    if username:
                        self._user_stats(username)["invalid_grant"] += 1
                    return err(400, "invalid_grant", INVALID_GRANT_DESC, {"error_codes": [70008]})
                us = self._user_stats(username)
                us["refresh_tokens_used"].append(rt)
                at, life = self._issue_access(username, client_id, scope)
                new_rt = self._issue_refresh(username)
                us["refreshes_ok"] += 1
                us["token_ok"] += 1
                self._save()
                entry["result"] = "ok"
                st["token_ok"][grant] = st["token_ok"].get(grant, 0) + 1
                return 200, {"token_type": "Bearer", "scope": scope, "expires_in": life,
                             "ext_expires_in": life, "access_token": at,
                             "refresh_token": new_rt}, 0
            if grant == "client_credentials":
                if username is None:
                    return err(400, "unauthorized_client",
                               "AADSTS700016: client has no mailbox configured in the mock")
                at, life = self._issue_access(username, client_id, scope)
                self._user_stats(username)["token_ok"] += 1
                entry["result"] = "ok"
                st["token_ok"][grant] = st["token_ok"].get(grant, 0) + 1
                return 200, {"token_type": "Bearer", "expires_in": life,
                             "ext_expires_in": life, "access_token": at}, 0
            if grant == "password":
                u = self.users.get(username or "")
                if u is None or u.get("password") is None or u["password"] != form.get("password"):
                    if username:
                        self._user_stats(username)["invalid_grant"] += 1
                    return err(400, "invalid_grant",
                               "AADSTS50126: Error validating credentials due to invalid "
                               "username or password.", {"error_codes": [50126]})
                at, life = self._issue_access(username, client_id, scope)
                out = {"token_type": "Bearer", "scope": scope, "expires_in": life,
                       "ext_expires_in": life, "access_token": at}
                if "offline_access" in scope.split():
                    out["refresh_token"] = self._issue_refresh(username)
                    self._save()
                self._user_stats(username)["token_ok"] += 1
                entry["result"] = "ok"
                st["token_ok"][grant] = st["token_ok"].get(grant, 0) + 1
                return 200, out, 0
            if grant == "urn:ietf:params:oauth:grant-type:device_code":
                return self._device_token(form, client_id, scope, entry, err)
            if grant == "authorization_code":
                return self._code_token(form, client_id, entry, err)
            return err(400, "unsupported_grant_type",
                       "AADSTS70003: The app requested an unsupported grant type '%s'." % grant)

    # ----- client assertions, device code, authorization code ----------------------------
    def _check_assertion(self, client_id, form, token_url):
        """None when form carries a valid client assertion for client_id, else why not."""
        c = self.clients[client_id]
        if form.get("client_assertion_type") != \
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            return "no client_assertion_type jwt-bearer"
        jwt = form.get("client_assertion") or ""
        parts = jwt.split(".")
        if len(parts) != 3:
            return "not a JWT"

        def unb64(x):
            return base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
        try:
            header = json.loads(unb64(parts[0]))
            claims = json.loads(unb64(parts[1]))
            sig = unb64(parts[2])
        except Exception:
            return "undecodable JWT"
        if header.get("alg") != "RS256":
            return "alg is not RS256"
        if header.get("x5t#S256") != c["x5t256"]:
            return "x5t#S256 is not the registered certificate's"
        if c.get("x5t") and header.get("x5t") != c["x5t"]:
            return "x5t is not the registered certificate's"
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            return "iss/sub are not the client id"
        if token_url and claims.get("aud") != token_url:
            return "aud %r is not %r" % (claims.get("aud"), token_url)
        now = time.time()
        exp, nbf = claims.get("exp", 0), claims.get("nbf", now)
        if not (now < exp <= now + 900):
            return "exp is not a few minutes ahead"
        if nbf > now + 60:
            return "nbf is in the future"
        jti = claims.get("jti")
        if not jti or jti in self.jtis:
            return "jti missing or replayed"
        with tempfile.TemporaryDirectory() as d:
            data, sigf = os.path.join(d, "data"), os.path.join(d, "sig")
            with open(data, "wb") as f:
                f.write((parts[0] + "." + parts[1]).encode())
            with open(sigf, "wb") as f:
                f.write(sig)
            r = subprocess.run(["openssl", "dgst", "-sha256", "-verify", c["pubkey"],
                                "-signature", sigf, data], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
            if r.returncode != 0 or b"Verified OK" not in r.stdout:
                return "signature does not verify with the certificate's public key"
        self.jtis.add(jti)
        return None

    def device_authorize(self, form):
        """POST /devicecode. Returns (status, body)."""
        with self.lock:
            self.stats["device_authorizations"] += 1
            client_id = form.get("client_id", "")
            if self.clients and client_id not in self.clients:
                return 400, {"error": "invalid_client"}
            dc = _rand(48, "device_code (mock IdP)")
            uc = "%04d-%04d" % (secrets.randbelow(10000), secrets.randbelow(10000))
            self.devices[dc] = {"user_code": uc, "client_id": client_id,
                                "scope": form.get("scope") or "", "status": "pending",
                                "username": None, "exp": time.time() + self.device_expires,
                                "interval": self.device_interval, "last_poll": 0.0,
                                "slow_down": 0, "polls": 0}
            return 200, {"device_code": dc, "user_code": uc,
                         "verification_uri": "https://microsoft.test/devicelogin",
                         "expires_in": self.device_expires, "interval": self.device_interval,
                         "message": "To sign in, use a web browser to open the page "
                                    "https://microsoft.test/devicelogin and enter the code %s "
                                    "to authenticate." % uc}

    def _device_token(self, form, client_id, scope, entry, err):
        st = self.stats
        d = self.devices.get(form.get("device_code", ""))

        def poll(result, status=400):
            st["device_polls"][result] = st["device_polls"].get(result, 0) + 1
            return err(status, result)
        if d is None:
            return poll("invalid_grant")
        now = time.time()
        d["polls"] += 1
        too_fast = d["last_poll"] and now - d["last_poll"] < d["interval"] - 0.3
        d["last_poll"] = now
        if now > d["exp"]:
            return poll("expired_token")
        if d["slow_down"] > 0 or too_fast:
            if d["slow_down"] > 0:
                d["slow_down"] -= 1
            d["interval"] += 5          # RFC 8628 3.5: the client must add 5 s from now on
            return poll("slow_down")
        if d["status"] == "denied":
            return poll("access_denied")
        if d["status"] != "approved":
            return poll("authorization_pending")
        del self.devices[form["device_code"]]
        user = d["username"]
        entry["username"] = user
        self._user_stats(user)["token_requests"] += 1
        at, life = self._issue_access(user, client_id, d["scope"] or scope)
        rt = self._issue_refresh(user)
        self._user_stats(user)["token_ok"] += 1
        self._save()
        entry["result"] = "ok"
        st["token_ok"][entry["grant_type"]] = st["token_ok"].get(entry["grant_type"], 0) + 1
        st["device_polls"]["ok"] = st["device_polls"].get("ok", 0) + 1
        return 200, {"token_type": "Bearer", "scope": d["scope"], "expires_in": life,
                     "access_token": at, "refresh_token": rt}, 0

    def authorize(self, query):
        """GET /authorize. Returns (status, location or None, body)."""
        with self.lock:
            self.stats["authorizations"] += 1
            q = {k: v[0] for k, v in urllib.parse.parse_qs(query, keep_blank_values=True).items()}
            ruri = q.get("redirect_uri", "")
            host = urllib.parse.urlsplit(ruri).hostname or ""
            if not ruri.startswith("http://") or host not in ("127.0.0.1", "localhost", "::1"):
                return 400, None, {"error": "invalid_request",
                                   "error_description": "redirect_uri must be loopback http"}
            if self.clients and q.get("client_id") not in self.clients:
                return 400, None, {"error": "unauthorized_client"}
            if q.get("response_type") != "code" or q.get("code_challenge_method") != "S256" \
                    or not q.get("code_challenge") or not q.get("state"):
                return 400, None, {"error": "invalid_request",
                                   "error_description": "code, S256 PKCE and state required"}
            sep = "&" if "?" in ruri else "?"
            if self.authorize_deny:
                return 302, ruri + sep + urllib.parse.urlencode(
                    {"error": "access_denied", "state": q["state"]}), None
            user = self.authorize_user or q.get("login_hint")
            if not user:
                return 400, None, {"error": "invalid_request", "error_description": "who?"}
            code = _rand(40, "authorization code (mock IdP)")
            self.codes[code] = {"client_id": q.get("client_id"), "redirect_uri": ruri,
                                "challenge": q["code_challenge"], "username": user,
                                "scope": q.get("scope") or "", "exp": time.time() + 300,
                                "access_type": q.get("access_type")}
            return 302, ruri + sep + urllib.parse.urlencode(
                {"code": code, "state": q["state"]}), None

    def _code_token(self, form, client_id, entry, err):
        st = self.stats
        c = self.codes.pop(form.get("code", ""), None)
        if c is None or c["exp"] < time.time():
            return err(400, "invalid_grant", "AADSTS54005: the code was already redeemed or "
                       "is unknown")
        if c["client_id"] != client_id or c["redirect_uri"] != form.get("redirect_uri"):
            return err(400, "invalid_grant", "AADSTS50148: redirect_uri or client_id differ")
        verifier = form.get("code_verifier") or ""
        want = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()) \
            .decode().rstrip("=")
        if want != c["challenge"]:
            return err(400, "invalid_grant", "AADSTS501481: the code_verifier does not match")
        user = c["username"]
        entry["username"] = user
        self._user_stats(user)["token_requests"] += 1
        at, life = self._issue_access(user, client_id, c["scope"])
        rt = self._issue_refresh(user)
        self._user_stats(user)["token_ok"] += 1
        self._save()
        entry["result"] = "ok"
        st["token_ok"][entry["grant_type"]] = st["token_ok"].get(entry["grant_type"], 0) + 1
        return 200, {"token_type": "Bearer", "scope": c["scope"], "expires_in": life,
                     "access_token": at, "refresh_token": rt}, 0

    # ----- control -----------------------------------------------------------------------
    def control(self, req):
        """Operations (JSON object with "op"):
          seed_user      username, [refresh_token], [password], [lifetime]
                         -> {"refresh_token": ...}; a new live refresh token for the user
                            (the previous one dies). lifetime overrides the access token
                            lifetime for this user.
          set_client     client_id, [secret] (null = not checked), [username] (client_credentials)
          set_lifetime   seconds, [username]  (global default, or one user's)
          fail           mode (500|hang|malformed|invalid_grant|status|close), [count=1],
                         [seconds] (hang), [status, body, retry_after] (status: retry_after
                         adds a Retry-After header, e.g. with status 429), filters [username],
                         [grant_type], [client_id]: the next `count` matching token requests
                         fail this way
          fail_introspection  mode (500|hang), [count=1], [seconds]: the next `count`
                         introspections fail (Dovecot sees a temporary failure)
          clear_failures (both kinds)
          expire_access  [username]: every access token issued so far (for the user) is dead
          revoke_refresh username: the user's live refresh token dies (invalid_grant)
          mint           username, [lifetime], [scope] -> {"access_token": ...} (no token
                         request)
          reset_stats
        """
        op = req.get("op")
        with self.lock:
            if op == "seed_user":
                user = req["username"]
                u = self.users.setdefault(user, {"lifetime": None, "password": None})
                if "password" in req:
                    u["password"] = req["password"]
                    secret_collect.register("ROPC password (mock IdP seed_user)",
                                            req["password"], "mock_idp seed_user")
                if "lifetime" in req:
                    u["lifetime"] = req["lifetime"]
                self._user_stats(user)
                rt = req.get("refresh_token")
                secret_collect.register("refresh_token (mock IdP seed_user)", rt,
                                        "mock_idp seed_user")
                if rt:
                    old = self.current_refresh.get(user)
                    if old is not None:
                        self.refresh.pop(old, None)
                        self.dead_refresh[old] = user
                    self.refresh[rt] = user
                    self.current_refresh[user] = rt
                    self._user_stats(user)["refresh_tokens_issued"].append(rt)
                else:
                    rt = self._issue_refresh(user)
                self._save()
                return {"refresh_token": rt}
            if op == "set_client":
                self.clients[req["client_id"]] = {"secret": req.get("secret"),
                                                  "username": req.get("username")}
                secret_collect.register("client_secret (mock IdP set_client)", req.get("secret"),
                                        "mock_idp set_client")
                self._save()
                return {}
            if op == "set_lifetime":
                if req.get("username"):
                    self.users.setdefault(req["username"], {"lifetime": None, "password": None})
                    self.users[req["username"]]["lifetime"] = req["seconds"]
                else:
                    self.lifetime = req["seconds"]
                self._save()
                return {}
            if op == "fail":
                mode = req.get("mode", "500")
                if mode not in FAIL_MODES:
                    raise ValueError("unknown fail mode %r" % mode)
                rule = {k: req[k] for k in ("username", "grant_type", "client_id", "seconds",
                                            "status", "body", "retry_after") if k in req}
                rule["mode"] = mode
                rule["count"] = int(req.get("count", 1))
                self.failures.append(rule)
                return {}
            if op == "fail_introspection":
                mode = req.get("mode", "500")
                if mode not in ("500", "hang"):
                    raise ValueError("unknown introspection fail mode %r" % mode)
                self.introspect_failures.append({"mode": mode, "count": int(req.get("count", 1)),
                                                 "seconds": req.get("seconds", 30)})
                return {}
            if op == "clear_failures":
                self.failures = []
                self.introspect_failures = []
                return {}
            if op == "expire_access":
                n = 0
                for a in self.access.values():
                    if req.get("username") in (None, a["username"]) and a["exp"] > 0:
                        a["exp"] = 0
                        n += 1
                return {"expired": n}
            if op == "revoke_refresh":
                user = req["username"]
                old = self.current_refresh.pop(user, None)
                if old is not None:
                    self.refresh.pop(old, None)
                    self.dead_refresh[old] = user
                self._save()
                return {"revoked": old is not None}
            if op == "mint":
                return {"access_token": self.mint(req["username"], req.get("lifetime"),
                                                  req.get("scope") or "")}
            if op == "reset_stats":
                self.reset_stats()
                return {}
            if op == "set_client_cert":
                # client_id, cert (PEM path), [username]: assertions signed by its key only
                cert = req["cert"]
                der = subprocess.run(["openssl", "x509", "-in", cert, "-outform", "DER"],
                                     stdout=subprocess.PIPE, check=True).stdout
                pub = cert + ".pub.pem"
                with open(pub, "wb") as f:
                    f.write(subprocess.run(["openssl", "x509", "-in", cert, "-pubkey", "-noout"],
                                           stdout=subprocess.PIPE, check=True).stdout)

                def b64u(b):
                    return base64.urlsafe_b64encode(b).decode().rstrip("=")
                self.clients[req["client_id"]] = {
                    "secret": None, "username": req.get("username"), "cert": cert,
                    "pubkey": pub, "x5t256": b64u(hashlib.sha256(der).digest()),
                    "x5t": b64u(hashlib.sha1(der).digest())}
                self._save()
                return {}
            if op == "device_settings":
                # [interval], [expires_in]: what /devicecode hands out from now on
                self.device_interval = int(req.get("interval", self.device_interval))
                self.device_expires = int(req.get("expires_in", self.device_expires))
                return {}
            if op in ("device_approve", "device_deny", "device_slow_down", "device_expire"):
                # user_code, [username] (approve), [count] (slow_down)
                for d in self.devices.values():
                    if d["user_code"] == req["user_code"]:
                        if op == "device_approve":
                            d["status"], d["username"] = "approved", req["username"]
                            self._user_stats(req["username"])
                        elif op == "device_deny":
                            d["status"] = "denied"
                        elif op == "device_slow_down":
                            d["slow_down"] += int(req.get("count", 1))
                        else:
                            d["exp"] = 0
                        return {"found": True, "polls": d["polls"]}
                return {"found": False}
            if op == "authorize_settings":
                # [user] (who signs in; default login_hint), [deny]
                self.authorize_user = req.get("user")
                self.authorize_deny = bool(req.get("deny", False))
                return {}
        raise ValueError("unknown op %r" % op)


class _Handler(BaseHTTPRequestHandler):
    server_version = "mock-idp/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("mock_idp: %s %s\n" % (self.address_string(), fmt % args))

    def _send(self, status, body, ctype="application/json", headers=None):
        if isinstance(body, dict) and "_headers" in body:
            body = dict(body)
            headers = dict(headers or {}, **body.pop("_headers"))
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _form(self, raw):
        return {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode("utf-8", "replace"),
                                                           keep_blank_values=True).items()}

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/_stats":
            return self._send(200, self.server.idp.snapshot())
        if url.path == "/introspect":
            if self._introspect_failed():
                return
            q = self._form(url.query.encode())
            return self._send(200, self.server.idp.introspect(self._bearer() or q.get("token", "")))
        if url.path == "/_health":
            return self._send(200, {"ok": True})
        if url.path == "/authorize" or url.path.endswith("/oauth2/v2.0/authorize"):
            status, location, body = self.server.idp.authorize(url.query)
            if location:
                return self._send(302, b"", "text/plain", {"Location": location})
            return self._send(status, body)
        self._send(404, {"error": "not_found"})

    def _introspect_failed(self):
        f = self.server.idp.introspect_failure()
        if f is None:
            return False
        status, body, delay = f
        if delay:
            time.sleep(delay)
        self._send(status, body)
        return True

    def _bearer(self):
        h = self.headers.get("Authorization") or ""
        return h[7:].strip() if h.lower().startswith("bearer ") else None

    def do_POST(self):
        path = urllib.parse.urlsplit(self.path).path
        raw = self._body()
        idp = self.server.idp
        if path == "/token" or path.endswith("/oauth2/v2.0/token"):
            status, body, delay = idp.token(self._form(raw), self.headers.get("Authorization"),
                                            "http://127.0.0.1:%d%s"
                                            % (self.server.server_address[1], path))
            if delay:
                time.sleep(delay)
            if status is None:          # mode "close": drop the connection unanswered
                self.close_connection = True
                return
            return self._send(status, body)
        if path == "/devicecode" or path.endswith("/oauth2/v2.0/devicecode"):
            status, body = idp.device_authorize(self._form(raw))
            return self._send(status, body)
        if path == "/introspect":
            if self._introspect_failed():
                return
            form = self._form(raw)
            return self._send(200, idp.introspect(form.get("token") or self._bearer() or ""))
        if path == "/_control":
            try:
                return self._send(200, idp.control(json.loads(raw or b"{}")))
            except Exception as e:  # a test bug: say so loudly
                return self._send(400, {"error": "%s: %s" % (type(e).__name__, e)})
        self._send(404, {"error": "not_found"})


class IdpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, idp, host="127.0.0.1", port=0, verbose=False):
        self.idp = idp
        self.verbose = verbose
        super().__init__((host, port), _Handler)


def start_in_thread(idp=None, **kw):
    """Starts a server in a daemon thread; returns (server, base_url). server.shutdown() stops."""
    srv = IdpServer(idp or Idp(), **kw)
    t = threading.Thread(target=srv.serve_forever, name="mock-idp", daemon=True)
    t.start()
    return srv, "http://127.0.0.1:%d" % srv.server_address[1]


class IdpClient:
    """Drives a running mock IdP over HTTP (works for a subprocess or a thread)."""

    def __init__(self, base_url):
        self.base_url = base_url.rstrip("/")
        self.token_url = self.base_url + "/token"
        self.introspection_url = self.base_url + "/introspect"

    def _post_json(self, path, obj, timeout=10):
        req = urllib.request.Request(self.base_url + path, data=json.dumps(obj).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise RuntimeError("mock idp %s: %s" % (path, e.read().decode(errors="replace")))

    def control(self, op, **kw):
        kw["op"] = op
        return self._post_json("/_control", kw)

    def stats(self):
        with urllib.request.urlopen(self.base_url + "/_stats", timeout=10) as r:
            return json.loads(r.read())

    def user_stats(self, username):
        return self.stats()["per_user"].get(username) or {
            "token_requests": 0, "refreshes_ok": 0, "token_ok": 0, "invalid_grant": 0,
            "failed_injected": 0, "introspections": 0, "introspections_active": 0,
            "access_tokens": [], "refresh_tokens_issued": [], "refresh_tokens_used": []}

    # Convenience wrappers.
    def seed_user(self, username, refresh_token=None, password=None, lifetime=None):
        kw = {"username": username}
        if refresh_token:
            kw["refresh_token"] = refresh_token
        if password is not None:
            kw["password"] = password
        if lifetime is not None:
            kw["lifetime"] = lifetime
        return self.control("seed_user", **kw)["refresh_token"]

    def set_client(self, client_id, secret=None, username=None):
        return self.control("set_client", client_id=client_id, secret=secret, username=username)

    def set_lifetime(self, seconds, username=None):
        kw = {"seconds": seconds}
        if username:
            kw["username"] = username
        return self.control("set_lifetime", **kw)

    def fail(self, mode, count=1, **filters):
        return self.control("fail", mode=mode, count=count, **filters)

    def fail_introspection(self, mode="500", count=1, seconds=None):
        kw = {"mode": mode, "count": count}
        if seconds is not None:
            kw["seconds"] = seconds
        return self.control("fail_introspection", **kw)

    def clear_failures(self):
        return self.control("clear_failures")

    def expire_access(self, username=None):
        kw = {"username": username} if username else {}
        return self.control("expire_access", **kw)["expired"]

    def revoke_refresh(self, username):
        return self.control("revoke_refresh", username=username)

    def mint(self, username, lifetime=None):
        kw = {"username": username}
        if lifetime:
            kw["lifetime"] = lifetime
        return self.control("mint", **kw)["access_token"]

    def reset_stats(self):
        return self.control("reset_stats")

    def set_client_cert(self, client_id, cert, username=None):
        return self.control("set_client_cert", client_id=client_id, cert=cert,
                            username=username)

    def device_approve(self, user_code, username):
        return self.control("device_approve", user_code=user_code, username=username)

    @property
    def device_code_url(self):
        return self.base_url + "/devicecode"

    @property
    def authorize_url(self):
        return self.base_url + "/authorize"

    def token_request(self, form, timeout=30):
        """POST /token like a real client; returns (status, parsed JSON or raw text)."""
        data = urllib.parse.urlencode(form).encode()
        req = urllib.request.Request(self.token_url, data=data, headers={
            "Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def refresh(self, client_id, refresh_token, client_secret=None, scope=None):
        form = {"grant_type": "refresh_token", "client_id": client_id,
                "refresh_token": refresh_token}
        if client_secret is not None:
            form["client_secret"] = client_secret
        if scope:
            form["scope"] = scope
        return self.token_request(form)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 = any free port (default)")
    ap.add_argument("--port-file", help="write the bound port here once listening")
    ap.add_argument("--state-file", help="persist users/clients/refresh tokens here (JSON)")
    ap.add_argument("--lifetime", type=int, default=60, help="access token lifetime, seconds")
    ap.add_argument("--access-token-length", type=int, default=1200)
    ap.add_argument("--refresh-token-length", type=int, default=700)
    ap.add_argument("--client", action="append", default=[],
                    help="register CLIENT_ID[:SECRET] (repeatable); unregistered ids are "
                         "refused once any client is registered")
    ap.add_argument("--seed", action="append", default=[],
                    help="USERNAME[=REFRESH_TOKEN]: seed a refresh token (repeatable)")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    idp = Idp(state_file=a.state_file, lifetime=a.lifetime,
              access_token_length=a.access_token_length,
              refresh_token_length=a.refresh_token_length)
    for c in a.client:
        cid, sep, sec = c.partition(":")
        idp.control({"op": "set_client", "client_id": cid, "secret": sec if sep else None})
    for s in a.seed:
        user, sep, rt = s.partition("=")
        req = {"op": "seed_user", "username": user}
        if sep:
            req["refresh_token"] = rt
        out = idp.control(req)
        print("seeded %s refresh_token=%s" % (user, out["refresh_token"]), flush=True)
    srv = IdpServer(idp, a.host, a.port, a.verbose)
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % srv.server_address[1])
        os.replace(tmp, a.port_file)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    import signal

    def _term(*_):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, _term)
    sys.exit(main())
