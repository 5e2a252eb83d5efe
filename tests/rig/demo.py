#!/usr/bin/env python3
"""The demo behind `bash tests/demo.sh`: a scanner sends one message through xoauthd.

Starts the test rig (mock IdP, private Dovecot and Postfix on 127.0.0.1, free ports), fills in
conf/demo.ini, starts xoauthd, sends a message with swaks and AUTH LOGIN as local user
"scanner" (what a scan-to-email device does), reads it back from the mailbox over IMAP with
XOAUTH2 and shows where it landed. With a terminal on stdin it then waits for Enter, so you can
try things yourself; without one it stops at once. Everything is stopped at the end.

    PYTHONPATH=tests python3 -m rig.demo [--wait | --no-wait]
"""
import argparse
import os
import re
import subprocess
import sys
import textwrap

import rig as R

MAILBOX = "scanner@example.com"
LOCAL_USER = "scanner"
LOCAL_PASSWORD = "demo-scanner-password"
CLIENT_ID = "xoauthd-demo"
CLIENT_SECRET = "demo-client-secret"


def say(msg=""):
    print(msg, flush=True)


def step(msg):
    say("\n==> " + msg)


def fill_template(text, values):
    for k, v in values.items():
        text = text.replace("@%s@" % k, str(v))
    left = [m for line in text.splitlines() if not line.lstrip().startswith((";", "#"))
            for m in re.findall(r"@[A-Z][A-Z_]*@", line)]
    if left:
        raise RuntimeError("unfilled placeholders in conf/demo.ini: %s" % ", ".join(left))
    return text


def main():
    ap = argparse.ArgumentParser(description="xoauthd demo")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--wait", action="store_true", help="wait for Enter before stopping")
    g.add_argument("--no-wait", action="store_true", help="stop as soon as the demo is done")
    a = ap.parse_args()
    wait = a.wait or (not a.no_wait and sys.stdin.isatty())

    binary = R.xoauthd_bin()
    if not os.path.exists(binary):
        say("xoauthd binary not found at %s: build it first (bash tests/demo.sh does)." % binary)
        return 2

    rig = x = None
    ok = False
    try:
        step("Starting the private test servers on 127.0.0.1 (mock IdP, Dovecot, Postfix)")
        rig = R.Rig().start()
        say("    everything lives in %s" % rig.dir)
        say("    mock IdP token endpoint   %s" % rig.token_url)
        say("    Postfix submission        127.0.0.1:%d (STARTTLS; accepts only XOAUTH2/OAUTHBEARER)"
            % rig.smtp_submission_port)
        say("    Dovecot IMAP              127.0.0.1:%d (mailboxes in %s)"
            % (rig.imap_port, rig.maildirs))

        step("Registering the OAuth client and a refresh token for %s at the mock IdP" % MAILBOX)
        rig.idp.set_client(CLIENT_ID, CLIENT_SECRET)
        refresh_token = rig.idp.seed_user(MAILBOX)
        say("    refresh token: %s... (%d characters, rotated on every use)"
            % (refresh_token[:12], len(refresh_token)))

        step("Hashing the scanner's local password with `xoauthd hash-password`")
        pw_hash = R.hash_password(LOCAL_PASSWORD, binary)
        say("    %s -> %s" % (LOCAL_PASSWORD, pw_hash))

        step("Filling in conf/demo.ini")
        x = R.Xoauthd(rig, name="xoauthd")
        listen_port = R.free_port(set(rig.ports.values()))
        listen_tls_port = R.free_port(set(rig.ports.values()) | {listen_port})
        with open(os.path.join(R.REPO_ROOT, "conf", "demo.ini")) as f:
            template = f.read()
        config = fill_template(template, {
            "STATE_DIR": x.state_dir, "LISTEN_PORT": listen_port,
            "LISTEN_TLS_PORT": listen_tls_port, "TLS_CERT": rig.certs["good_cert"],
            "TLS_KEY": rig.certs["good_key"], "TOKEN_URL": rig.token_url,
            "SMTP_PORT": rig.smtp_submission_port, "CA_FILE": rig.ca_file,
            "LOCAL_PASSWORD_HASH": pw_hash, "MAILBOX": MAILBOX, "CLIENT_ID": CLIENT_ID,
            "CLIENT_SECRET": CLIENT_SECRET, "REFRESH_TOKEN": refresh_token})
        x.use_config_text(config, {"scanner": listen_port, "scanner-tls": listen_tls_port})
        x.write_config()
        say("    wrote %s" % x.config_path)

        step("Starting xoauthd: %s run -c %s" % (binary, x.config_path))
        x.start()
        say("    listening on 127.0.0.1:%d (plain) and 127.0.0.1:%d (STARTTLS); log: %s"
            % (listen_port, listen_tls_port, x.log_path))

        step("Sending a scan the way a scanner does: swaks, AUTH LOGIN as '%s'" % LOCAL_USER)
        mid = R.make_message_id("demo")
        swaks = ["swaks", "--server", "127.0.0.1", "--port", str(listen_port),
                 "--auth", "LOGIN", "--auth-user", LOCAL_USER,
                 "--auth-password", LOCAL_PASSWORD,
                 "--from", MAILBOX, "--to", MAILBOX,
                 "--header", "Subject: Scan from the office printer",
                 "--header", "Message-Id: <%s>" % mid,
                 "--body", "Hello from the scanner. This message went scanner -> xoauthd "
                           "(AUTH LOGIN) -> Postfix (AUTH XOAUTH2) -> Dovecot."]
        say("    $ " + " ".join(("'%s'" % w) if " " in w else w for w in swaks))
        r = subprocess.run(swaks, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=120)
        say(textwrap.indent(r.stdout.decode(errors="replace").rstrip(), "    | ", lambda l: True))
        if r.returncode != 0:
            raise RuntimeError("swaks failed with exit code %d" % r.returncode)

        step("Reading it back from the mailbox over IMAP with AUTHENTICATE XOAUTH2")
        raw = rig.wait_for_message_id(MAILBOX, mid, timeout=30)
        maildir = rig.mailbox_path(MAILBOX)
        path = None
        for sub in ("new", "cur"):
            d = os.path.join(maildir, sub)
            for n in sorted(os.listdir(d)) if os.path.isdir(d) else []:
                with open(os.path.join(d, n), "rb") as f:
                    if mid.encode() in f.read():
                        path = os.path.join(d, n)
        say("    mailbox: %s" % maildir)
        say("    file:    %s" % path)
        say("    message as IMAP returns it:")
        say(textwrap.indent(raw.decode("utf-8", "replace").rstrip(), "    | ", lambda l: True))

        st = rig.idp.user_stats(MAILBOX)
        step("What happened at the identity provider")
        say("    token requests: %d, refresh tokens rotated: %d, token checks by Dovecot: %d"
            % (st["token_requests"], st["refreshes_ok"], st["introspections"]))
        step("xoauthd's log")
        say(textwrap.indent(x.log_text().rstrip(), "    | ", lambda l: True))
        ok = True

        if wait:
            say("\nEverything is still running. Try it yourself, e.g.:")
            say("    swaks --server 127.0.0.1 --port %d --auth LOGIN --auth-user %s "
                "--auth-password %s --to %s" % (listen_port, LOCAL_USER, LOCAL_PASSWORD, MAILBOX))
            say("    swaks --server 127.0.0.1 --port %d -tls --auth PLAIN --auth-user %s "
                "--auth-password %s --to %s" % (listen_tls_port, LOCAL_USER, LOCAL_PASSWORD,
                                                 MAILBOX))
            say("    ls %s/new" % maildir)
            say("    tail -f %s" % x.log_path)
            try:
                input("\nPress Enter to stop xoauthd and the test servers... ")
            except (EOFError, KeyboardInterrupt):
                say("")
        else:
            say("\nstdin is not a terminal: stopping everything now.")
    except Exception as e:
        say("\nDEMO FAILED: %s" % e)
        if rig is not None:
            rig.dump_logs(sys.stdout, since_mark=False, max_lines=60)
    except KeyboardInterrupt:
        say("\ninterrupted")
    finally:
        step("Stopping xoauthd and the test servers")
        if x is not None and x.running():
            try:
                x.stop()
            except AssertionError as e:
                say("    xoauthd did not stop cleanly: %s" % e)
                ok = False
        if rig is not None:
            rig.close()
        say("    done" if ok else "    done (with errors)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
