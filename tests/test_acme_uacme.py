"""uacme (Debian, plain C on libcurl/GnuTLS) against a real kakuin on loopback,
for what the certbot and lego tests do not reach: EAB registration, http-01
through a hook program (tests/uacme_hook.sh writing into a webroot served on
the VA's http-01 port), account key rollover (RFC 8555 §7.3.5) followed by an
issuance signed with the new key, revocation signed by the certificate's own
key (§7.6; kakuin records keyCompromise and blocks the key, as Boulder does),
and alternate chains (§7.4.2) after a new root is cross-signed by the old one.

uacme is run with ``-o``: the certificates' OCSP URL names the development
host pki.kakuin-dev.example.ac.jp, which does not resolve offline, and uacme
would otherwise retry it for 15 s before every re-issuance."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key
from sqlalchemy import select

from kakuin.acme.jws import key_from_jwk
from kakuin.acme.models import ACMEAccount, EABCredential
from kakuin.ca.keystore import KeyType
from kakuin.ca.rotation import RotationService
from kakuin.policy.keys import spki_sha256
from kakuin.status.models import RevocationRequest
from kakuin.store.models import BlockedKey, Certificate
from kakuin.store.repos import CARepo, CertificateRepo
from tests.acme_server import DOMAIN, Server, start_server
from tests.test_acme_certbot import lint

pytestmark = pytest.mark.e2e

HOOK = Path(__file__).with_name("uacme_hook.sh")
NAME = f"www.{DOMAIN}"
EMAIL = f"admin@{DOMAIN}"


def require_uacme() -> str:
    """Fail (not skip): CI installs uacme, so its absence is a broken setup."""
    found = shutil.which("uacme")
    if not found:
        raise AssertionError(
            "uacme is not installed: tests/test_acme_uacme.py needs the uacme "
            "ACME client on PATH (Debian: apt-get install uacme)"
        )
    return found


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def server(template_dir: Path, tmp_path: Path) -> Iterator[Server]:
    yield from start_server(template_dir, tmp_path)


@pytest.fixture
def webroot(server: Server, tmp_path: Path) -> Iterator[Path]:
    """A directory served on 127.0.0.1:<va.http01_port>, where kakuin's VA fetches
    /.well-known/acme-challenge/TOKEN; the hook writes the tokens into it."""
    root = tmp_path / "webroot"
    root.mkdir()
    handler = functools.partial(_Quiet, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", server.http01_port), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield root
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@dataclass
class Uacme:
    exe: str
    server: Server
    confdir: Path
    webroot: Path

    def __call__(self, *args: str, confdir: Path | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [
            self.exe,
            "-v",
            "-o",
            "-c",
            str(confdir or self.confdir),
            "-a",
            self.server.directory,
            "-h",
            str(HOOK),
            *args,
        ]
        env = {**os.environ, "UACME_WEBROOT": str(self.webroot)}
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        r = self(*args)
        assert r.returncode == 0, f"uacme {' '.join(args)} exited {r.returncode}:\n{r.stderr}"
        return r

    def register(self) -> str:
        kid, hmac = self.server.eab()
        self.ok("-e", f"{kid}:{hmac}", "-y", "new", EMAIL)
        return kid

    @property
    def cert(self) -> Path:
        return self.confdir / NAME / "cert.pem"

    @property
    def cert_key(self) -> Path:
        return self.confdir / "private" / NAME / "key.pem"

    @property
    def account_key(self) -> Path:
        return self.confdir / "private" / "key.pem"


@pytest.fixture
def uacme(server: Server, webroot: Path, tmp_path: Path) -> Uacme:
    return Uacme(require_uacme(), server, tmp_path / "uacme", webroot)


def chain_of(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def serial_of(path: Path) -> str:
    return format(chain_of(path)[0].serial_number, "x")


def key_hash(pem: Path) -> str:
    return spki_sha256(load_pem_private_key(pem.read_bytes(), None).public_key())


def account_of(server: Server, kid: str) -> ACMEAccount:
    with server.ctx.db.session() as s:
        cred = s.scalars(select(EABCredential).where(EABCredential.kid == kid)).one()
        account = s.scalars(select(ACMEAccount).where(ACMEAccount.eab_credential_id == cred.id)).one()
        s.expunge(account)
        return account


def test_uacme_eab_http01_then_key_rollover_and_reissue(uacme: Uacme, server: Server) -> None:
    kid = uacme.register()
    account = account_of(server, kid)
    assert account.status == "valid" and account.contact == [f"mailto:{EMAIL}"]
    assert spki_sha256(key_from_jwk(account.jwk)) == key_hash(uacme.account_key)

    uacme.ok("issue", NAME)
    hook_log = (uacme.webroot / "hook.log").read_text().split()
    assert hook_log[0::2] == ["begin", "done"]  # the hook answered, then cleaned up
    assert not list((uacme.webroot / ".well-known" / "acme-challenge").iterdir())
    chain = chain_of(uacme.cert)
    assert len(chain) == 2
    san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [NAME]
    assert spki_sha256(chain[0].public_key()) == key_hash(uacme.cert_key)
    lint(uacme.cert)
    first = serial_of(uacme.cert)
    with server.ctx.db.session() as s:
        row = CertificateRepo(s).by_serial(first)
        assert row.state == "issued" and row.requested_by == f"acme:{account.id}"

    old_key = uacme.account_key.read_bytes()
    uacme.ok("newkey")
    assert uacme.account_key.read_bytes() != old_key
    backups = list(uacme.account_key.parent.glob("key-*.pem"))
    assert [b.read_bytes() for b in backups] == [old_key]
    rolled = account_of(server, kid)
    assert rolled.id == account.id
    assert spki_sha256(key_from_jwk(rolled.jwk)) == key_hash(uacme.account_key)

    # The old key no longer finds the account: uacme's newAccount with
    # onlyReturnExisting gets accountDoesNotExist, which it reports so.
    stale = uacme.confdir.parent / "uacme-old-key"
    (stale / "private").mkdir(parents=True)
    (stale / "private" / "key.pem").write_bytes(old_key)
    r = uacme("-n", "update", EMAIL, confdir=stale)
    assert r.returncode != 0
    assert "no account associated with" in r.stderr, r.stderr

    uacme.ok("-f", "issue", NAME)  # signed with the new account key
    second = serial_of(uacme.cert)
    assert second != first
    lint(uacme.cert)
    with server.ctx.db.session() as s:
        assert CertificateRepo(s).by_serial(second).requested_by == f"acme:{account.id}"


def test_uacme_revoke_with_the_certificate_key_blocks_it(uacme: Uacme, server: Server) -> None:
    uacme.register()
    uacme.ok("issue", NAME)
    serial = serial_of(uacme.cert)
    spki = key_hash(uacme.cert_key)
    lint(uacme.cert)

    # Reason 0 asked for; signed with the certificate key (no account involved).
    uacme.ok("-r", "0", "revoke", str(uacme.cert), str(uacme.cert_key))
    assert not uacme.cert.exists()
    revoked = list(uacme.cert.parent.glob("revoked-*.pem"))
    assert len(revoked) == 1 and serial_of(revoked[0]) == serial
    with server.ctx.db.session() as s:
        row = CertificateRepo(s).by_serial(serial)
        # Boulder: whoever holds the certificate key says the key is compromised.
        assert row.revoked_at is not None and row.revocation_reason == 1
        blocked = s.get(BlockedKey, spki)
        assert blocked is not None and blocked.source_serial == serial
        req = s.scalars(select(RevocationRequest).where(RevocationRequest.serial == serial)).one()
        assert (req.reason, req.status, req.reported_by) == (1, "done", "acme:certificate-key")

    # uacme reuses CONFDIR/private/NAME/key.pem: the blocked key is refused at finalize.
    r = uacme("-f", "issue", NAME)
    assert r.returncode == 2, r.stderr
    assert "urn:ietf:params:acme:error:badCSR" in r.stderr and "blocked" in r.stderr, r.stderr
    assert not uacme.cert.exists()
    with server.ctx.db.session() as s:  # nothing reserved or signed for that key since
        assert s.scalars(select(Certificate.serial).where(Certificate.spki_sha256 == spki)).all() == [serial]

    # Already revoked: a second request is refused (alreadyRevoked).
    r = uacme("revoke", str(revoked[0]), str(uacme.cert_key))
    assert r.returncode == 2 and "alreadyRevoked" in r.stderr, r.stderr


def openssl_verify(
    anchor: x509.Certificate, untrusted: list[x509.Certificate], leaf: x509.Certificate, tmp: Path
) -> subprocess.CompletedProcess[str]:
    files = {"anchor.pem": [anchor], "untrusted.pem": untrusted, "leaf.pem": [leaf]}
    for name, certs in files.items():
        (tmp / name).write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in certs))
    cmd = [
        "openssl",
        "verify",
        "-purpose",
        "sslserver",
        "-CAfile",
        str(tmp / "anchor.pem"),
        "-untrusted",
        str(tmp / "untrusted.pem"),
        str(tmp / "leaf.pem"),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def test_uacme_alternate_chain_ends_at_the_cross_certificate(uacme: Uacme, server: Server, tmp_path: Path) -> None:
    rot = RotationService(server.ctx)
    rot.new_root("root-rsa-g2", "kakuin Development Root CA RSA - G2", KeyType.RSA3072)
    cross = rot.cross_sign("root-rsa-g2", by="root-rsa")
    assert rot.rotate("tls-rsa", under="root-rsa-g2").slug == "tls-rsa-g2"
    with server.ctx.db.session() as s:
        old_root = x509.load_der_x509_certificate(CARepo(s).by_slug("root-rsa").der)
        new_root = x509.load_der_x509_certificate(CARepo(s).by_slug("root-rsa-g2").der)
        g2 = x509.load_der_x509_certificate(CARepo(s).by_slug("tls-rsa-g2").der)

    uacme.register()
    uacme.ok("issue", NAME)
    default = chain_of(uacme.cert)
    r = uacme.ok("-f", "-l", "1", "issue", NAME)
    alternate = chain_of(uacme.cert)
    # uacme followed the Link rel="alternate" (it falls back to the default silently otherwise).
    assert f"retrieving alternate certificate at {server.url}/acme/cert/" in r.stderr, r.stderr
    assert "falling back to default" not in r.stderr, r.stderr

    assert default[1:] == [g2]  # issued under the new root's intermediate
    assert alternate[1:] == [g2, cross] and alternate[1:] != default[1:]
    assert cross.subject == new_root.subject and cross.issuer == old_root.subject
    assert cross.public_key() == new_root.public_key()
    lint(uacme.cert)

    leaf, work = alternate[0], tmp_path / "verify"
    work.mkdir()
    # A client that trusts only the old root builds its path through the cross-certificate…
    v = openssl_verify(old_root, alternate[1:], leaf, work)
    assert v.returncode == 0, v.stdout + v.stderr
    v = openssl_verify(old_root, default[1:], default[0], work)
    assert v.returncode != 0  # …which the default chain lacks
    # …and one that trusts the new root is served by the default chain.
    v = openssl_verify(new_root, default[1:], default[0], work)
    assert v.returncode == 0, v.stdout + v.stderr
