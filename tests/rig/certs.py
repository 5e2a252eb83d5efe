"""The rig's test CA (openssl req/x509): server certificates for 127.0.0.1 / localhost, one for a
wrong host name signed by the same CA, and client certificates."""
import os

from .processes import run


_OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = xoauthd-rig
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[srv_good]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1,IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[srv_wrong]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:wrong.example
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def make_certs(d):
    """Test CA + two server certificates (EC P-256) made with the openssl CLI. Returns paths."""
    os.makedirs(d, exist_ok=True)
    cnf = os.path.join(d, "openssl.cnf")
    with open(cnf, "w") as f:
        f.write(_OPENSSL_CNF)
    p = lambda n: os.path.join(d, n)  # noqa: E731
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run(["openssl", "req", "-x509", "-config", cnf, "-extensions", "v3_ca"] + ec +
        ["-keyout", p("ca.key"), "-out", p("ca.crt"), "-days", "30",
         "-subj", "/O=xoauthd tests/CN=xoauthd test CA"])
    for name, cn in (("good", "localhost"), ("wrong", "wrong.example")):
        run(["openssl", "req", "-new", "-config", cnf] + ec +
            ["-keyout", p(name + ".key"), "-out", p(name + ".csr"), "-subj",
             "/O=xoauthd tests/CN=" + cn])
        run(["openssl", "x509", "-req", "-in", p(name + ".csr"), "-CA", p("ca.crt"),
             "-CAkey", p("ca.key"), "-set_serial", str(int.from_bytes(os.urandom(8), "big")),
             "-out", p(name + ".crt"), "-days", "30", "-extfile", cnf,
             "-extensions", "srv_" + name])
    for n in os.listdir(d):
        os.chmod(p(n), 0o600 if n.endswith(".key") else 0o644)
    return {"ca": p("ca.crt"), "ca_key": p("ca.key"),
            "good_cert": p("good.crt"), "good_key": p("good.key"),
            "wrong_cert": p("wrong.crt"), "wrong_key": p("wrong.key")}


def make_client_cert(d, name="app"):
    """An app registration's certificate for client assertions (RSA 2048, self-signed, like the
    ones admins upload to Entra ID), made with the openssl CLI. Returns (cert, key) paths."""
    os.makedirs(d, exist_ok=True)
    cert, key = os.path.join(d, name + ".crt"), os.path.join(d, name + ".key")
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
         "-out", cert, "-days", "30", "-subj", "/O=xoauthd tests/CN=" + name + " app"])
    os.chmod(key, 0o600)
    os.chmod(cert, 0o644)
    return cert, key
