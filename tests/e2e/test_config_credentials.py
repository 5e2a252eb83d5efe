#!/usr/bin/env python3
"""End-to-end: a configuration that holds no secret and may be read by every user.

Every secret of the account (local_password, client_secret, refresh_token) is in a file of its
own, named by its *_file key with a relative name, and found in $CREDENTIALS_DIRECTORY as under
systemd's LoadCredential= (xoauthd.ini(5), SECRETS IN FILES). The main file is mode 0644:
`xoauthd check` and `xoauthd run` accept it, and one message goes through the rig
(legacy client -> xoauthd -> Postfix with XOAUTH2 -> Dovecot) and arrives unchanged. A
credential readable by every user is refused, naming the file and the line.
"""
import os
import smtplib
import stat
import subprocess

import rig as R
from rig.case import RigTestCase

CLIENT_ID = "xoauthd-e2e-credentials"
CLIENT_SECRET = "cred;Secret~in.a_file_Z4"
LOCAL_USER = "scanner"
LOCAL_PASSWORD = "Cred-Pass;w0rd#4411"
SCOPE = "https://outlook.office.com/SMTP.Send offline_access"


class ConfigCredentials(RigTestCase):
    CLIENT_ID = CLIENT_ID
    CLIENT_SECRET = CLIENT_SECRET
    LOCAL_PASSWORD = LOCAL_PASSWORD

    def setUp(self):
        self.user = "t-%s@example.com" % self._testMethodName.replace("_", "-")

    def xoauthd(self, cred_mode=0o400):
        """xoauthd whose account's secrets are credentials in a fake CREDENTIALS_DIRECTORY."""
        rig = self.rig
        seed_rt = rig.idp.seed_user(self.user)
        x = self.new_xoauthd(log_level="debug")
        creds = os.path.join(x.dir, "credentials")
        os.makedirs(creds, mode=0o700, exist_ok=True)
        for name, value in (("scanner.local_password", self.hash),
                            ("scanner.client_secret", CLIENT_SECRET),
                            ("scanner.refresh_token", seed_rt)):
            path = os.path.join(creds, name)
            with open(path, "w") as f:
                f.write(value + "\n")
            os.chmod(path, cred_mode)
            R.secret_collect.register("credential " + name, value)
        x.env["CREDENTIALS_DIRECTORY"] = creds
        x.add_listen("plain", protocol="smtp", tls="none", allow_plaintext_auth="loopback")
        x.add_provider("rig", token_url=rig.token_url,
                       smtp="127.0.0.1:%d starttls" % rig.smtp_submission_port,
                       ca_file=rig.ca_file)
        x.add_account("scanner", local_user=LOCAL_USER,
                      local_password_file="scanner.local_password", provider="rig",
                      username=self.user, flow="refresh_token", client_id=CLIENT_ID,
                      client_secret_file="scanner.client_secret",
                      refresh_token_file="scanner.refresh_token", scope=SCOPE)
        write_private = x.write_config

        def write_world_readable():
            write_private()
            os.chmod(x.config_path, 0o644)
        x.write_config = write_world_readable
        return x, seed_rt, creds

    def check(self, x, creds):
        x.write_config()
        env = dict(os.environ, CREDENTIALS_DIRECTORY=creds)
        r = subprocess.run([x.bin, "check", "-c", x.config_path], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, env=env, timeout=60)
        return r.returncode, r.stdout.decode(errors="replace")

    def test_world_readable_config_without_secrets(self):
        x, seed_rt, creds = self.xoauthd()
        x.write_config()
        text = open(x.config_path).read()
        self.assertEqual(stat.S_IMODE(os.stat(x.config_path).st_mode), 0o644)
        for secret in (CLIENT_SECRET, seed_rt, self.hash):
            self.assertNotIn(secret, text)
        rc, out = self.check(x, creds)
        self.assertEqual(rc, 0, out)
        x.start()
        mid = R.make_message_id("credentials")
        body = R.tricky_body()
        msg = R.build_message(self.user, self.user, mid, "xoauthd e2e credentials", body)
        s = smtplib.SMTP("127.0.0.1", x.port("plain"), timeout=60)
        try:
            s.ehlo("e2e-client.test")
            s.login(LOCAL_USER, LOCAL_PASSWORD)
            self.assertEqual(s.sendmail(self.user, [self.user], msg), {})
        finally:
            s.quit()
        raw = self.rig.wait_for_message_id(self.user, mid)
        self.assertEqual(R.split_message(raw)[1], body)
        x.stop()
        log = x.log_text()
        for secret in (CLIENT_SECRET, seed_rt, LOCAL_PASSWORD):
            self.assertNotIn(secret, log)

    def test_world_readable_credential_refused(self):
        x, _, creds = self.xoauthd(cred_mode=0o644)
        rc, out = self.check(x, creds)
        self.assertNotEqual(rc, 0)
        self.assertIn("%s:" % x.config_path, out)
        self.assertIn("local_password_file", out)
        self.assertIn("is readable by every user (mode 0644) and holds a secret", out)


if __name__ == "__main__":
    R.main()
