"""End to end: ``openssl ocsp`` against ``kakuin serve`` on a free loopback port
reports good, then revoked with the reason after ``kakuin revoke`` (a separate
process), and unknown for a serial never issued; the responder chain verifies
against the roots (-CAfile) and as a trusted responder (-VAfile)."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from tests.helpers import all_roots_pem
from tests.status_helpers import Server, issue_dv, kakuin, pem, tool


def openssl_ocsp(url: str, issuer: Path, *args: str) -> str:
    res = subprocess.run([tool("openssl"), "ocsp", "-issuer", str(issuer), "-url", url, *args],
                         capture_output=True, text=True, timeout=30)
    return res.stdout + res.stderr


def test_openssl_ocsp_good_revoked_unknown(make_ctx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx()
    issued = issue_dv(ctx)
    d = ctx.config.data_dir
    leaf, inter, roots = tmp_path / "leaf.pem", tmp_path / "inter.pem", tmp_path / "roots.pem"
    leaf.write_bytes(pem(issued.certificate))
    inter.write_bytes(pem(issued.chain[0]))
    roots.write_bytes(all_roots_pem(ctx))
    ctx.db.dispose()
    server = Server(d)
    try:
        url = server.url + "/ocsp"
        text = openssl_ocsp(url, inter, "-cert", str(leaf), "-CAfile", str(roots))
        assert "Response verify OK" in text and f"{leaf}: good" in text, text
        # without a nonce: the pre-signed, cacheable response (GET as browsers do)
        respout = tmp_path / "resp.der"
        text = openssl_ocsp(url, inter, "-cert", str(leaf), "-CAfile", str(roots), "-no_nonce", "-reqout",
                            str(tmp_path / "req.der"), "-respout", str(respout))
        assert "Response verify OK" in text and f"{leaf}: good" in text, text
        # -VAfile: trust the delegated responder certificate itself
        [responder] = ocsp.load_der_ocsp_response(respout.read_bytes()).certificates
        va = tmp_path / "responder.pem"
        va.write_bytes(responder.public_bytes(Encoding.PEM))
        text = openssl_ocsp(url, inter, "-cert", str(leaf), "-VAfile", str(va))
        assert "Response verify OK" in text and f"{leaf}: good" in text, text

        res = kakuin(d, "revoke", issued.serial, "--reason", "keyCompromise")
        assert res.returncode == 0, res.stderr
        deadline = time.monotonic() + 20  # another process's in-memory cache re-reads within 10 s
        while True:
            text = openssl_ocsp(url, inter, "-cert", str(leaf), "-CAfile", str(roots), "-no_nonce")
            if f"{leaf}: revoked" in text or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert f"{leaf}: revoked" in text and "Reason: keyCompromise" in text, text
        assert re.search(r"Revocation Time: \w+ +\d+ [\d:]+ \d{4} GMT", text), text
        text = openssl_ocsp(url, inter, "-cert", str(leaf), "-CAfile", str(roots))  # with a nonce
        assert f"{leaf}: revoked" in text and "Response verify OK" in text, text

        text = openssl_ocsp(url, inter, "-serial", "0x1234567890abcdef", "-CAfile", str(roots))
        assert "0x1234567890abcdef: unknown" in text and "Response verify OK" in text, text
    finally:
        server.stop()
