"""Pre-issuance lint of a DV certificate: kakuin's linter against pkilint's own.

The anchor is pkilint as ``lint_cabf_serverauth_cert`` runs it, in process:
``RFC5280CertificateDocumentLoader``, ``determine_certificate_type``, a
validator container built once for the type and reused, and the serverauth
finding filters. kakuin's ``CertificateLinter.lint`` is the same work with its
own indexing of the validators, the cache of recurring decoded values and the
self-issued test from the Names' bytes (``kakuin.ca.lint``). Both lint the same
certificates, issued by the dev hierarchy's TLS ECDSA CA through the issuance
pipeline, in alternating rounds in one process; the findings must be equal.

Usage: .venv/bin/python bench/lint_bench.py [--n 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from kakuin.ca.issuer import IssueRequest
from kakuin.context import Context, init_data_dir
from kakuin.store.repos import InstitutionRepo


def certificates(n: int) -> tuple[Context, list[bytes]]:
    os.environ.setdefault("KAKUIN_CA_PASSPHRASE", "bench-passphrase-not-secret")
    d = Path(tempfile.mkdtemp(prefix="lint-bench-")) / "data"
    init_data_dir(d)
    ctx = Context.open(d)
    ctx.hierarchy().ensure()
    with ctx.db.session() as s:
        InstitutionRepo(s).add("Bench University", domains=["bench.ac.jp"], prefecture="Tokyo", now=ctx.clock.now())
    profile = ctx.config.acme.profile
    ders = []
    for i in range(n):
        key = ec.generate_private_key(ec.SECP256R1())
        issued = ctx.issuance.issue(IssueRequest(
            profile=profile, public_key=key.public_key(), subject=x509.Name([]),
            dns_names=(f"n{i}.bench.ac.jp",), institution="Bench University", requested_by="bench"))
        ders.append(issued.certificate.public_bytes(Encoding.DER))
    return ctx, ders


def pkilint_as_is():  # type: ignore[no-untyped-def]
    """pkilint's lint_cabf_serverauth_cert, in process, one container per type,
    with pkilint's own decoder (kakuin's linter wraps it with its cache)."""
    from pkilint import document, finding_filter, loader
    from pkilint.cabf import serverauth
    from pkilint.pkix import certificate

    containers: dict[object, object] = {}

    def lint(der: bytes) -> list[tuple[str, str, str]]:
        cached = document.decode_der
        document.decode_der = getattr(cached, "original", cached)
        try:
            return _lint(der)
        finally:
            document.decode_der = cached

    def _lint(der: bytes) -> list[tuple[str, str, str]]:
        doc = loader.RFC5280CertificateDocumentLoader().load_der_document(der, "tbs")
        ctype = serverauth.determine_certificate_type(doc)
        c = containers.get(ctype)
        if c is None:
            c = containers[ctype] = certificate.create_pkix_certificate_validator_container(
                serverauth.create_decoding_validators(), serverauth.create_validators(ctype))
        results = c.validate(doc.root)  # type: ignore[attr-defined]
        results, _ = finding_filter.filter_results(serverauth.create_serverauth_finding_filters(ctype), results)
        return sorted((fd.finding.severity.name, fd.finding.code, r.node.path)
                      for r in results for fd in r.finding_descriptions)

    return lint


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300, help="certificates per round (default 300)")
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    ctx, ders = certificates(a.n)
    linter = ctx.linter
    profile = ctx.issuance.profile(ctx.config.acme.profile)
    theirs = pkilint_as_is()

    def ours(der: bytes) -> list[tuple[str, str, str]]:
        return sorted((f.severity, f.code, f.path) for f in linter.lint(der, profile.linter)
                      if not f.code.startswith("kakuin."))

    for der in ders[:20]:  # warm-up: containers, plans, caches; and the findings agree
        assert ours(der) == theirs(der), der.hex()
    assert all(ours(d) == theirs(d) for d in ders)
    runs: dict[str, list[float]] = {"pkilint": [], "kakuin": []}
    for _ in range(a.rounds):
        for label, fn in (("pkilint", theirs), ("kakuin", ours)):
            t0 = time.thread_time()
            for der in ders:
                fn(der)
            runs[label].append((time.thread_time() - t0) / len(ders) * 1000)
    p, k = statistics.median(runs["pkilint"]), statistics.median(runs["kakuin"])
    print(f"pkilint as lint_cabf_serverauth_cert runs it: {p:.2f} ms/certificate (rounds: "
          + ", ".join(f"{x:.2f}" for x in runs["pkilint"]) + ")")
    print(f"kakuin CertificateLinter.lint:               {k:.2f} ms/certificate (rounds: "
          + ", ".join(f"{x:.2f}" for x in runs["kakuin"]) + ")")
    print(f"kakuin / pkilint: {k / p:.2f}× the CPU per certificate; same findings on {len(ders)} certificates")


if __name__ == "__main__":
    main()
