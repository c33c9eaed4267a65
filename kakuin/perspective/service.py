"""The perspective service: one authenticated check per request, with kakuin's VA.

``POST /mpic/v1/check`` takes an Open MPIC-shaped check request::

    {"check_type": "dcv", "domain_or_ip_target": "www.example.ac.jp",
     "dcv_check_parameters": {"validation_method": "acme-http-01",
                              "token": "…", "key_authorization": "…"},
     "trace_identifier": "…"}
    {"check_type": "caa", "domain_or_ip_target": "www.example.ac.jp",
     "caa_check_parameters": {"certificate_type": "tls-server",
                              "caa_domains": ["kakuin.example"],
                              "account_uri": "…", "validation_method": "http-01"}}

and answers with the perspective's observation (Open MPIC's perspective response)::

    {"perspective_code": "p1", "check_type": "dcv", "check_passed": true,
     "errors": [], "timestamp_ns": …, "trace_identifier": "…",
     "details": {"method": "http-01", "validated_value": "…", "observed": {…},
                 "dnssec": null, "at": "…"}}

Refusals are RFC 7807 problem documents of type ``urn:kakuin:mpic:<problem>``:
unauthenticated / bad-signature / stale-request / replayed-request (401),
malformed / unknown-check-type / unsupported-validation-method (400),
forbidden-target (403). ``GET /health`` (unauthenticated) and ``GET /metrics``.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kakuin.clock import Clock, SystemClock
from kakuin.config import VAConfig
from kakuin.errors import NameRuleError
from kakuin.http import BodyTooLarge, problem_response, read_body
from kakuin.perspective.auth import AuthError, NonceCache, sign_response, verify_request
from kakuin.perspective.metrics import CONTENT_TYPE, Metrics
from kakuin.policy.names import check_dns_name
from kakuin.va import ValidationAuthority, ValidationRecord
from kakuin.va.targets import NON_PUBLIC_SUFFIXES, non_public_reason  # noqa: F401  (re-exported)

__all__ = ["CHECK_PATH", "PROBLEM_NS", "Perspective", "create_perspective_app", "validated_value"]

CHECK_PATH = "/mpic/v1/check"
PROBLEM_NS = "urn:kakuin:mpic:"
VERSION = "kakuin-perspective/1"
MAX_BODY = 16 * 1024
# Open MPIC validation_method → RFC 8555 challenge type.
DCV_METHODS = {"acme-http-01": "http-01", "acme-dns-01": "dns-01", "acme-tls-alpn-01": "tls-alpn-01"}
class _Req(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class DcvParams(_Req):
    validation_method: str
    token: str | None = Field(default=None, max_length=256)
    key_authorization: str = Field(min_length=1, max_length=512)


class CaaParams(_Req):
    certificate_type: Literal["tls-server", "tls-server-wildcard"] = "tls-server"
    caa_domains: tuple[str, ...] | None = None
    account_uri: str | None = None  # RFC 8657 accounturi
    validation_method: str | None = None  # RFC 8657 validationmethods (ACME challenge type)


class CheckRequest(_Req):
    check_type: str
    domain_or_ip_target: str = Field(min_length=1, max_length=253)
    dcv_check_parameters: DcvParams | None = None
    caa_check_parameters: CaaParams | None = None
    trace_identifier: str | None = Field(default=None, max_length=128)


class Refused(Exception):
    def __init__(self, status: int, problem: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.problem, self.detail = status, problem, detail


def validated_value(method: str, key_authorization: str) -> str:
    """What a passing DCV check proves was published, compared between perspectives:
    the key authorization (http-01), the TXT digest (dns-01), the acmeIdentifier
    digest (tls-alpn-01)."""
    if method == "dns-01":
        from kakuin.va.dns01 import expected_txt

        return expected_txt(key_authorization)
    if method == "tls-alpn-01":
        return hashlib.sha256(key_authorization.encode()).hexdigest()
    return key_authorization


@dataclass
class Perspective:
    """One perspective: its name, key, VA settings and whether private targets are allowed."""

    name: str
    key: bytes
    va_config: VAConfig
    allow_private_targets: bool = False
    clock: Clock = field(default_factory=SystemClock)
    nonces: NonceCache = field(default_factory=NonceCache)
    metrics: Metrics = field(default_factory=lambda: Metrics("mpic_perspective"))
    _va: ValidationAuthority | None = None

    def __post_init__(self) -> None:
        # The perspective's own VA refuses non-public addresses unless it may reach them.
        if self.va_config.allow_private_targets != self.allow_private_targets:
            self.va_config = self.va_config.model_copy(update={"allow_private_targets": self.allow_private_targets})

    @property
    def va(self) -> ValidationAuthority:
        """The perspective's own VA: its own resolver (va_config.resolver), its own clock."""
        if self._va is None:
            self._va = ValidationAuthority(self.va_config, self.clock)
        return self._va

    def _va_for(self, caa_domains: tuple[str, ...] | None) -> ValidationAuthority:
        if not caa_domains or tuple(caa_domains) == tuple(self.va_config.caa_identities):
            return self.va
        # The CA says which issuer domain names its CAA "issue" records must name.
        va = ValidationAuthority(self.va_config.model_copy(update={"caa_identities": tuple(caa_domains)}),
                                 self.clock)
        va._resolver = self.va.resolver  # share the resolver (and its sockets' settings)
        return va

    def parse(self, body: bytes) -> CheckRequest:
        try:
            raw = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise Refused(400, "malformed", f"the body is not JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise Refused(400, "malformed", "the body must be a JSON object")
        if raw.get("check_type") not in ("dcv", "caa"):
            raise Refused(400, "unknown-check-type",
                          f"unknown check_type {raw.get('check_type')!r} (expected 'dcv' or 'caa')")
        try:
            req = CheckRequest.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise Refused(400, "malformed", f"{loc}: {first['msg']}") from None
        if req.check_type == "dcv":
            if req.dcv_check_parameters is None:
                raise Refused(400, "malformed", "dcv_check_parameters is required for check_type 'dcv'")
            method = req.dcv_check_parameters.validation_method
            if method not in DCV_METHODS:
                raise Refused(400, "unsupported-validation-method",
                              f"validation_method {method!r} is not supported "
                              f"({', '.join(DCV_METHODS)})")
            if method == "acme-http-01" and not req.dcv_check_parameters.token:
                raise Refused(400, "malformed", "dcv_check_parameters.token is required for acme-http-01")
        target = req.domain_or_ip_target.lower().rstrip(".")
        reason = non_public_reason(target.removeprefix("*."))
        if reason and not self.allow_private_targets:
            raise Refused(403, "forbidden-target", f"refused: {reason}")
        try:
            check_dns_name(target)
        except NameRuleError as exc:
            raise Refused(400, "malformed", f"domain_or_ip_target: {exc.message}") from None
        return req

    async def _public_addresses(self, va: ValidationAuthority, domain: str) -> None:
        """Refuse (403) a name that resolves to a non-public address, before connecting."""
        if self.allow_private_targets:
            return
        try:
            addrs = await va.resolve_addresses(domain)
        except Exception:  # noqa: BLE001 - the check itself reports the DNS problem
            return
        bad = [a for a in addrs if non_public_reason(a)]
        if bad:
            raise Refused(403, "forbidden-target", f"refused: {domain} resolves to non-public "
                          f"address(es) {', '.join(bad)}")

    async def check(self, req: CheckRequest) -> dict[str, Any]:
        domain = req.domain_or_ip_target.lower().rstrip(".")
        value: str | None = None
        if req.check_type == "caa":
            p = req.caa_check_parameters or CaaParams()
            va = self._va_for(p.caa_domains)
            wildcard = p.certificate_type == "tls-server-wildcard" or domain.startswith("*.")
            rec = await va.check_caa(domain.removeprefix("*."), account_uri=p.account_uri,
                                     method=p.validation_method, wildcard=wildcard)
            method = "caa"
            value = "permit" if rec.ok else "deny"
        else:
            d = req.dcv_check_parameters
            assert d is not None
            method = DCV_METHODS[d.validation_method]
            va = self.va
            if method in ("http-01", "tls-alpn-01"):
                await self._public_addresses(va, domain)
            if method == "http-01":
                rec = await va.validate_http01(domain, d.token or "", d.key_authorization)
            elif method == "dns-01":
                rec = await va.validate_dns01(domain, d.key_authorization)
            else:
                rec = await va.validate_tlsalpn01(domain, d.key_authorization)
            rec = self._connected_publicly(rec)
            if rec.ok:
                value = validated_value(method, d.key_authorization)
        return {
            "perspective_code": self.name,
            "check_type": req.check_type,
            "check_passed": rec.ok,
            "errors": [] if rec.ok else [{"error_type": rec.problem or "unauthorized",
                                          "error_message": rec.error or "check failed"}],
            "timestamp_ns": time.time_ns(),
            "trace_identifier": req.trace_identifier,
            "details": {"method": method, "domain": rec.domain, "validated_value": value,
                        "observed": rec.observed, "dnssec": rec.dnssec, "at": rec.at.isoformat()},
        }

    def _connected_publicly(self, rec: ValidationRecord) -> ValidationRecord:
        """Defence in depth: a check that reached a non-public address does not pass."""
        if self.allow_private_targets or not rec.ok:
            return rec
        addrs = [h.get("address") for h in rec.observed.get("hops", [])] + [rec.observed.get("address")]
        bad = [str(a) for a in addrs if a and non_public_reason(str(a))]
        if not bad:
            return rec
        return self.va.record(rec.method, rec.domain, ok=False, observed=rec.observed,
                              problem="forbidden-target",
                              error=f"connected to non-public address(es) {', '.join(bad)}")


def create_perspective_app(p: Perspective) -> Starlette:
    async def check(request: Request) -> Response:
        started = time.perf_counter()
        try:  # refused before it is held
            body = await read_body(request, MAX_BODY)
        except BodyTooLarge:
            return _refuse(p, Refused(413, "malformed", f"the body is larger than {MAX_BODY} bytes"))
        try:
            nonce = verify_request(p.key, request.method, request.url.path, request.headers, body, p.nonces)
        except AuthError as exc:
            return _refuse(p, Refused(401, exc.problem, exc.detail))
        try:
            req = p.parse(body)
            result = await p.check(req)
        except Refused as exc:
            return _refuse(p, exc)
        out = json.dumps(result, default=str, separators=(",", ":")).encode()
        kind = result["details"]["method"]
        p.metrics.count(check=kind, result="passed" if result["check_passed"] else "failed")
        p.metrics.observe(time.perf_counter() - started, check=kind)
        return Response(out, media_type="application/json",
                        headers={"X-MPIC-Response-Signature": sign_response(p.key, nonce, 200, out)})

    async def health(_request: Request) -> Response:
        return JSONResponse({"status": "ok", "perspective": p.name, "version": VERSION})

    async def metrics(_request: Request) -> Response:
        return Response(p.metrics.render(), media_type=CONTENT_TYPE)

    return Starlette(routes=[
        Route(CHECK_PATH, check, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ])


def _refuse(p: Perspective, exc: Refused) -> Response:
    p.metrics.count(check="refused", result=exc.problem)
    return problem_response(exc.status, PROBLEM_NS + exc.problem, exc.detail, title=exc.problem)
