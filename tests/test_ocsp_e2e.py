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
    res = subprocess.run(
        [tool("openssl"), "ocsp", "-issuer", str(issuer), "-url", url, *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return res.stdout + res.stderr


def issued_files(make_ctx, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A DV certificate issued in a fresh data dir, and its leaf, issuing CA and
    roots as PEM files for openssl; the context is closed for a server to use."""
    ctx = make_ctx()
    issued = issue_dv(ctx)
    leaf, inter, roots = tmp_path / "leaf.pem", tmp_path / "inter.pem", tmp_path / "roots.pem"
    leaf.write_bytes(pem(issued.certificate))
    inter.write_bytes(pem(issued.chain[0]))
    roots.write_bytes(all_roots_pem(ctx))
    ctx.db.dispose()
    return ctx.config.data_dir, issued, leaf, inter, roots


def test_openssl_ocsp_good_revoked_unknown(make_ctx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d, issued, leaf, inter, roots = issued_files(make_ctx, tmp_path)
    server = Server(d)
    try:
        url = server.url + "/ocsp"
        text = openssl_ocsp(url, inter, "-cert", str(leaf), "-CAfile", str(roots))
        assert "Response verify OK" in text and f"{leaf}: good" in text, text
        # without a nonce: the pre-signed, cacheable response (GET as browsers do)
        respout = tmp_path / "resp.der"
        text = openssl_ocsp(
            url,
            inter,
            "-cert",
            str(leaf),
            "-CAfile",
            str(roots),
            "-no_nonce",
            "-reqout",
            str(tmp_path / "req.der"),
            "-respout",
            str(respout),
        )
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


def test_lean_listener_with_two_workers(make_ctx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``kakuin serve --workers 2 --ocsp-port P``: openssl gets the same answers
    on the lean listener; a ``kakuin revoke`` in another process shows there
    within the cache TTL; malformed GET and POST get malformedRequest."""
    import httpx

    from tests.status_helpers import free_port

    d, issued, leaf, inter, roots = issued_files(make_ctx, tmp_path)
    ocsp_port = free_port()
    server = Server(d, "--workers", "2", "--ocsp-port", str(ocsp_port))
    try:
        url = f"http://127.0.0.1:{ocsp_port}/ocsp"
        for args in ((), ("-no_nonce",)):
            text = openssl_ocsp(url, inter, "-cert", str(leaf), "-CAfile", str(roots), *args)
            assert "Response verify OK" in text and f"{leaf}: good" in text, text
        for bad in (httpx.post(url, content=b"garbage"), httpx.get(url + "/bm90LWRlcg==")):
            assert bad.status_code == 200
            assert ocsp.load_der_ocsp_response(bad.content).response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
        assert httpx.put(url, content=b"x").status_code == 405

        res = kakuin(d, "revoke", issued.serial, "--reason", "keyCompromise")
        assert res.returncode == 0, res.stderr
        # Each worker re-reads an answer it holds once it is cache_ttl (10 s) old,
        # so past that every worker on both ports must say "revoked". Polling
        # "4 in a row" was not enough: SO_REUSEPORT may send all of them to one
        # worker while the other still serves its cached "good".
        time.sleep(10.5)
        for _ in range(6):  # fresh connections each: both workers, both ports
            for target in (url, server.url + "/ocsp"):
                text = openssl_ocsp(target, inter, "-cert", str(leaf), "-CAfile", str(roots), "-no_nonce")
                assert f"{leaf}: revoked" in text and "Reason: keyCompromise" in text, (target, text)
    finally:
        server.stop()
