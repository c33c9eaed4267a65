"""Enrollment in the browser (TSV download method 3) in a real browser: Debian
chromium (headless) through playwright-core (tests/browser/enroll_flow.mjs)
against ``kakuin serve``.

The subscriber opens the link from the mail, types a password and presses the
button; the page makes the key pair with WebCrypto, POSTs only a CSR, and saves
the PKCS#12 it builds. Then: openssl opens the PKCS#12 with that password and
not with another; its key matches the issued certificate; the private key is
nowhere in the data directory (database included); the link works once."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat, pkcs12
from sqlalchemy import select

from kakuin.context import Context
from kakuin.ra.models import Enrollment
from kakuin.ra.services import RA
from kakuin.store.models import Certificate
from tests.helpers import run
from tests.portal_helpers import PortalServer
from tests.ra_helpers import INST, client_fields, outbox, setup_institution, tsv
from tests.test_enrollment import enroll_token, officer
from tests.test_portal_browser import ARTIFACTS, drive, node  # noqa: F401  (node: the fixture)

PASSWORD = "correct-horse-42"


def openssl_opens(path: Path, password: str) -> bool:
    openssl = shutil.which("openssl")
    assert openssl, "openssl is required for this test"
    return run([openssl, "pkcs12", "-info", "-in", path, "-passin", f"pass:{password}", "-noout"]).returncode == 0


@pytest.mark.parametrize(
    ("pin", "p12_name"),
    [("", ""), ("Abcd1234efgh", "hanako.p12")],
    ids=["chosen-password", "access-pin-from-tsv"],
)
def test_key_pair_csr_and_pkcs12_are_made_in_the_browser(
    node: str,  # noqa: F811  (the fixture imported above)
    make_ctx: Callable[..., Context],
    tmp_path: Path,
    pin: str,
    p12_name: str,
) -> None:
    ctx = make_ctx()
    ra = RA(ctx)
    setup_institution(ra)
    row = client_fields(method="3", pin=pin)
    row[11] = p12_name
    report = ra.tsv.apply(tsv([row]), institution=INST, actor=officer(ra))
    assert report.results[0].enrollment is not None and report.results[0].serial is None
    token = enroll_token(outbox(ctx, "enrollment")[0])
    got = tmp_path / "enrolled.p12"
    ARTIFACTS.mkdir(exist_ok=True)

    with PortalServer(ctx.config.data_dir) as server:
        link = f"{server.url}/enroll/{token}"
        seen = drive(
            node,
            script="enroll_flow.mjs",
            link=link,
            password=PASSWORD,
            pin=pin,
            downloadTo=str(got),
            artifacts=str(ARTIFACTS),
        )
        assert seen["status"] == 200 and "script-src 'self'" in str(seen["csp"])
        assert "秘密鍵は送信されません" in str(seen["pageText"]) and "never sent" in str(seen["pageText"])
        # Only the CSR went to the server: one POST, {"csr": …}, and no password in it.
        [post] = seen["requests"]  # type: ignore[misc]
        assert post["url"] == link and list(httpx.Response(200, content=post["body"]).json()) == ["csr"]
        assert PASSWORD not in post["body"] and (not pin or pin not in post["body"])
        assert seen["againStatus"] == 410 and "使用済み" in str(seen["againText"])
        again = httpx.post(link, json={"csr": httpx.Response(200, content=post["body"]).json()["csr"]})
        assert again.status_code == 410

    with ctx.db.session() as s:
        e = s.scalars(select(Enrollment)).one()
        assert e.serial and e.used_at is not None
        cert_row = s.scalars(select(Certificate).where(Certificate.serial == e.serial)).one()
        assert seen["filename"] == (p12_name or f"{e.serial}.p12")
        issued_der = cert_row.der

    secret = pin or PASSWORD
    assert openssl_opens(got, secret)
    assert not openssl_opens(got, "wrong-password")
    key, cert, chain = pkcs12.load_key_and_certificates(got.read_bytes(), secret.encode())
    assert key is not None and cert is not None and chain
    assert cert.public_bytes(Encoding.DER) == issued_der  # the certificate kakuin issued and stored
    spki = PublicFormat.SubjectPublicKeyInfo
    assert cert.public_key().public_bytes(Encoding.DER, spki) == key.public_key().public_bytes(Encoding.DER, spki)

    # The private key never reached the server: neither the raw scalar (binary
    # or hex) nor the PKCS#8 is anywhere in the data directory.
    scalar = key.private_numbers().private_value.to_bytes(32, "big")  # type: ignore[union-attr]
    pkcs8 = key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    needles = [scalar, pkcs8, scalar.hex().encode(), base64.b64encode(scalar)[:40]]
    files = [p for p in Path(ctx.config.data_dir).rglob("*") if p.is_file()]
    assert any(p.suffix in (".db", ".sqlite", ".sqlite3") or "db" in p.name for p in files)
    for p in files:
        data = p.read_bytes()
        assert not any(n in data for n in needles), f"private key material in {p}"
