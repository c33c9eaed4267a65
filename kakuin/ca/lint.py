"""Pre-issuance linting with pkilint, in process (BR 4.3.1.2: linting is required).

Building a pkilint validator container costs ~150 ms, so one is built per
(linter, certificate type) and reused; linting one certificate then costs ~3 ms.
Any ERROR or FATAL finding refuses the certificate. On top of pkilint, kakuin's
own house rule: a CA certificate never carries id-kp-OCSPSigning (PRODUCT.md §2).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from kakuin.ca.der import issuer_and_subject
from kakuin.policy.profiles import Linter

_BLOCKING = ("FATAL", "ERROR")

# Decoded values that recur from certificate to certificate (kakuin's own
# extensions: AIA, CRL distribution points, policies, key usages, the issuer's
# name attributes, the curve), by (DER bytes, schema object).
_DECODED: dict[tuple[bytes, int], tuple[Any, Any, Any]] = {}
_DECODED_MAX = 512
_DECODED_BYTES = 512


def _install_decode_cache() -> None:
    """Let pkilint decode a recurring value once. pkilint decodes each extension's
    and each name attribute's value with ``pyasn1_fasder.decode_der`` into pyasn1
    objects, and building those objects is a third of a lint (~0.35 ms of a
    ~3 ms DV certificate, of which the extensions that never change make most).
    Decoding is a pure function of the bytes and the schema, and pkilint's
    validators only read the decoded objects, so the same object may serve
    every document; each document still builds its own nodes over it. Only
    small substrates are kept (a certificate itself is never), the cache is
    bounded, and a failed decode is never kept (its error is raised each time).
    ``tests/test_lint_index.py`` compares findings with and without it."""
    from pkilint import document

    original = getattr(document, "decode_der", None)
    if original is None or getattr(original, "kakuin_cached", False):
        return  # a pkilint that decodes some other way: lint uncached, as pkilint does

    def decode_der(substrate: Any, asn1Spec: Any = None, **kwargs: Any) -> Any:  # noqa: N803 (pkilint's name)
        raw = bytes(substrate)
        if asn1Spec is None or kwargs or len(raw) > _DECODED_BYTES:
            return original(substrate, asn1Spec=asn1Spec, **kwargs)
        key = (raw, id(asn1Spec))
        hit = _DECODED.get(key)
        if hit is not None and hit[0] is asn1Spec:
            return hit[1], hit[2]
        decoded, rest = original(substrate, asn1Spec=asn1Spec)
        if len(_DECODED) >= _DECODED_MAX:
            _DECODED.clear()
        _DECODED[key] = (asn1Spec, decoded, rest)
        return decoded, rest

    decode_der.kakuin_cached = True  # type: ignore[attr-defined]
    decode_der.original = original  # type: ignore[attr-defined]
    document.decode_der = decode_der


@dataclass(frozen=True, slots=True)
class Finding:
    severity: str
    code: str
    message: str | None
    path: str

    def __str__(self) -> str:
        msg = f": {self.message}" if self.message else ""
        return f"{self.severity} {self.code} at {self.path}{msg}"


class CertificateLinter:
    """Reusable pkilint containers. Thread-safe (one lint at a time)."""

    def __init__(self) -> None:
        _install_decode_cache()
        self._lock = threading.Lock()
        self._containers: dict[tuple[str, str], Any] = {}

    def _container(self, key: tuple[str, str], factory: Any) -> Any:
        c = self._containers.get(key)
        if c is None:
            c = factory()
            index_validators(c)
            self._containers[key] = c
        return c

    def preload(self) -> None:
        """Build the container of the certificates ACME issues (DV final
        certificates) now, not on a worker's first finalize (~150 ms)."""
        from pkilint.cabf import serverauth
        from pkilint.cabf.serverauth import serverauth_constants
        from pkilint.pkix import certificate

        ctype = serverauth_constants.CertificateType.DV_FINAL_CERTIFICATE
        with self._lock:
            self._container(
                ("serverauth", str(ctype)),
                lambda: certificate.create_pkix_certificate_validator_container(
                    serverauth.create_decoding_validators(),
                    serverauth.create_validators(ctype),
                ),
            )

    def lint(self, der: bytes, linter: Linter) -> list[Finding]:
        """All findings of NOTICE severity and above."""
        from pkilint import finding_filter, loader
        from pkilint.cabf import serverauth, smime
        from pkilint.pkix import certificate, extension, name

        with self._lock:
            doc = loader.RFC5280CertificateDocumentLoader().load_der_document(der, "tbs")
            _preset_self_issued(doc, der)
            filters: list[Any] = []
            if linter is Linter.SERVERAUTH:
                ctype = serverauth.determine_certificate_type(doc)
                container = self._container(
                    ("serverauth", str(ctype)),
                    lambda: certificate.create_pkix_certificate_validator_container(
                        serverauth.create_decoding_validators(),
                        serverauth.create_validators(ctype),
                    ),
                )
                filters = serverauth.create_serverauth_finding_filters(ctype)
            elif linter is Linter.SMIME:
                level, generation = smime.determine_validation_level_and_generation(doc) or (
                    None,
                    None,
                )
                if level is None:
                    return [Finding("FATAL", "kakuin.smime_type_unknown", "no S/MIME policy OID", "")]
                container = self._container(
                    ("smime", f"{level}-{generation}"),
                    lambda: certificate.create_pkix_certificate_validator_container(
                        smime.create_decoding_validators(),
                        smime.create_subscriber_validators(level, generation),
                    ),
                )
            else:
                container = self._container(
                    ("pkix", ""),
                    lambda: certificate.create_pkix_certificate_validator_container(
                        certificate.create_decoding_validators(
                            name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS
                        ),
                        [
                            certificate.create_issuer_validator_container([]),
                            certificate.create_validity_validator_container(),
                            certificate.create_subject_validator_container([]),
                            certificate.create_extensions_validator_container([]),
                            certificate.create_spki_validator_container([]),
                        ],
                    ),
                )
            results = container.validate(doc.root)
            if filters:
                results, _ = finding_filter.filter_results(filters, results)
        findings = [
            Finding(fd.finding.severity.name, fd.finding.code, fd.message, r.node.path)
            for r in results
            for fd in r.finding_descriptions
        ]
        del results
        _dismantle(doc)
        findings += house_rules(der)
        return findings

    def lint_crl(self, der: bytes, *, arl: bool = False) -> list[Finding]:
        """pkilint's CRL linter with the BR profile (as ``lint_crl -p BR``)."""
        from pkilint import loader, pkix
        from pkilint.cabf import cabf_crl
        from pkilint.pkix import crl, extension, name

        crl_type = crl.CertificateRevocationListType.ARL if arl else crl.CertificateRevocationListType.CRL

        def factory() -> Any:
            return crl.create_pkix_crl_validator_container(
                [
                    pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
                    pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS),
                ],
                [
                    crl.create_issuer_validator_container([]),
                    crl.create_validity_validator_container([cabf_crl.create_validity_period_validator(crl_type)]),
                    crl.create_extensions_validator_container([]),
                    cabf_crl.CabfCrlReasonCodeAllowlistValidator(crl_type),
                ],
            )

        with self._lock:
            doc = loader.RFC5280CertificateListDocumentLoader().load_der_document(der, "crl")
            results = self._container(("crl", crl_type.name), factory).validate(doc.root)
        return _findings(results)

    def lint_ocsp_response(self, der: bytes) -> list[Finding]:
        """pkilint's RFC 6960 OCSP response linter (as ``lint_ocsp_response``)."""
        from pkilint import loader, pkix
        from pkilint.pkix import extension, name, ocsp

        def factory() -> Any:
            return ocsp.create_pkix_ocsp_response_validator_container(
                [
                    ocsp.create_response_decoder(),
                    pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
                    pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS),
                ],
                [],
            )

        with self._lock:
            doc = loader.RFC6960OCSPResponseDocumentLoader().load_der_document(der, "ocsp")
            results = self._container(("ocsp", ""), factory).validate(doc.root)
        return _findings(results)


def _preset_self_issued(doc: Any, cert_der: bytes) -> None:
    """pkilint's ``is_self_issued`` (asked first of all, to tell a root from the
    rest) re-encodes the decoded issuer and subject with pyasn1 and compares
    the encodings: ~0.2 ms of a ~2.7 ms lint. For the DER certificate pkilint
    has just decoded, those encodings are the Names' bytes as they stand in the
    certificate, so compare those. Anything unexpected leaves it to pkilint."""
    try:
        issuer, subject = issuer_and_subject(cert_der)
    except (ValueError, IndexError):
        return
    doc.__dict__.setdefault("is_self_issued", issuer == subject)


def _findings(results: Any) -> list[Finding]:
    return [
        Finding(fd.finding.severity.name, fd.finding.code, fd.message, r.node.path)
        for r in results
        for fd in r.finding_descriptions
    ]


def _dismantle(doc: Any) -> None:
    """Break the reference cycles of a linted pkilint document (node ↔ parent,
    document ↔ root) so that reference counting frees its ~300 nodes at once.
    Left to the cyclic garbage collector, every certificate's tree cost a
    share of frequent collections (~0.9 ms per ACME order) and, once enough
    had piled up, a full collection of ~100 ms in the middle of requests."""
    root = getattr(doc, "root", None)
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        children = getattr(node, "children", None)
        if children:
            stack.extend(children.values())
            node.children = {}
        node.parent = None
        node.document = None
    doc.root = None


def index_validators(container: Any) -> None:
    """Make a pkilint container visit each node with only the validators that
    can match it. pkilint asks every validator of a container whether it
    matches every node of the subtree (~6,600 ``match`` calls per TLS
    certificate, a third of the lint's CPU); most match on the node's PDU class
    or its exact path, which depend only on (path, PDU type). So each container
    gets, per (path, type), the list of its validators that could match — in
    their original order — and still calls ``match`` on each of them: the
    findings are exactly pkilint's (``tests/test_lint_index.py`` compares them).
    A validator with its own ``match``, a regex, a predicate or a supertype
    test is asked on every node as before. Containers whose ``_validate_rec``
    is not pkilint's own are left alone."""
    from pkilint.document import NodeVisitor
    from pkilint.validation import ValidatorContainer

    seen: set[int] = set()

    def visit(c: Any) -> None:
        if id(c) in seen:
            return
        seen.add(id(c))
        for v in c.validators:
            if isinstance(v, ValidatorContainer):
                visit(v)
        if getattr(type(c), "_validate_rec", None) is not ValidatorContainer._validate_rec:
            return
        by_path: dict[str, list[tuple[int, Any]]] = {}
        by_class: list[tuple[int, Any, type]] = []
        always: list[tuple[int, Any]] = []
        for i, v in enumerate(c.validators):
            # A candidate list only needs a necessary condition of ``match``: the
            # exact path, else the PDU class. A regex, predicate or supertype
            # test is still made by the ``match`` call itself.
            guarded = _guarded_by_nodevisitor(type(v))
            if guarded and v._path is not None:
                by_path.setdefault(v._path, []).append((i, v))
            elif guarded and isinstance(v._pdu_class, type):
                by_class.append((i, v, v._pdu_class))
            else:
                always.append((i, v))
        plans: dict[tuple[str, type], list[tuple[Any, bool]]] = {}

        def plan(path: str, pdu_type: type) -> list[tuple[Any, bool]]:
            """The validators that may match a node of this path and PDU type, in
            order, each with whether ``match`` must still be asked. It need not
            be for NodeVisitor's own ``match`` without a predicate or supertype
            test: its path, regex and PDU-class tests depend on nothing else."""
            cands = always + by_path.get(path, []) + [(i, v) for i, v, k in by_class if issubclass(pdu_type, k)]
            found: list[tuple[Any, bool]] = []
            for _, v in sorted(cands, key=lambda t: t[0]):
                if type(v).match is NodeVisitor.match and v._predicate is None and v._pdu_supertype is None:
                    if ((v._path is None or v._path == path)
                            and (v._path_re is None or v._path_re.match(path) is not None)
                            and (v._pdu_class is None or issubclass(pdu_type, v._pdu_class))):
                        found.append((v, False))
                else:
                    found.append((v, True))
            if len(plans) < 50_000:
                plans[(path, pdu_type)] = found
            return found

        def validate_rec(node: Any, results: list[Any]) -> None:
            key = (node.path, type(node.pdu))
            todo = plans.get(key)
            for v, ask in plan(*key) if todo is None else todo:
                if not ask or v.match(node):
                    result = v.validate_wrapper(node)
                    if isinstance(result, list):
                        results += result
                    else:
                        results.append(result)
            for child in node.children.values():
                validate_rec(child, results)

        c._validate_rec = validate_rec

    visit(container)


# pkilint validator classes whose own ``match`` starts with ``super().match(node)``
# (NodeVisitor's path and PDU-class test), read in pkilint 0.13's source; a
# class is trusted only while the next ``match`` up its MRO is NodeVisitor's.
_MATCH_CALLS_SUPER_FIRST = (
    "pkilint.pkix.extension.ExtensionCriticalityValidator",
    "pkilint.validation.TypeMatchingValidator",
    "pkilint.cabf.cabf_name.ValidCountryCodeValidatorBase",
    "pkilint.pkix.certificate.certificate_extension.ExtendedKeyUsageCriticalityValidator",
)


def _guarded_by_nodevisitor(cls: type) -> bool:
    """Whether every ``match`` of ``cls`` is NodeVisitor.match, or a known one that
    returns False whenever NodeVisitor.match would."""
    from pkilint.document import NodeVisitor

    definers = [k for k in cls.__mro__ if "match" in k.__dict__]
    if not definers or definers[0] is NodeVisitor:
        return True
    name = f"{definers[0].__module__}.{definers[0].__qualname__}"
    return name in _MATCH_CALLS_SUPER_FIRST and len(definers) > 1 and definers[1] is NodeVisitor


def house_rules(der: bytes) -> list[Finding]:
    """kakuin's own refusals, beyond pkilint."""
    cert = x509.load_der_x509_certificate(der)
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return []
    if bc.ca and ExtendedKeyUsageOID.OCSP_SIGNING in eku:
        return [
            Finding(
                "FATAL",
                "kakuin.ca_with_ocsp_signing_eku",
                "a CA certificate must never carry id-kp-OCSPSigning (2020 incident)",
                "certificate.tbsCertificate.extensions",
            )
        ]
    return []


def blocking(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity in _BLOCKING]
