"""Multi-Perspective Issuance Corroboration (BR 3.2.2.9; issue #6).

BR 3.2.2.9: "the CA MUST corroborate the determinations (i.e., domain validation
pass/fail, CAA permission/prohibition) made by the Primary Network Perspective
from multiple remote Network Perspectives before Certificate issuance".

``CorroboratingVA`` has the interface of ``ValidationAuthority`` (it is one: the
primary network perspective is its own code), so ``Context.va`` returns it when
``[mpic] enabled`` and callers (ACME, TSV) do not change. Each check runs on the
primary and on every configured remote perspective at once, under one deadline;
``corroborate`` (pure) compares them:

- the primary's failure refuses on its own, whatever the remotes say;
- a remote corroborates when it reached the same determination: for DCV, it
  passed and validated the same value; for CAA, the same permit/deny decision;
- a remote that times out, errs or refuses counts as not corroborating;
- more non-corroborations than allowed (``[mpic] allowed_failures``, default the
  BR table: 2–5 remote → 1, 6+ → 2) refuses with error 338, naming them.

Every check's observations (primary and each remote) are written to
``validation_evidence`` (``kakuin.va.evidence``) under one ``check_id``, which the
returned record carries in ``observed["mpic"]["check_id"]``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kakuin.clock import Clock
from kakuin.config import VAConfig
from kakuin.errors import CAAError
from kakuin.perspective.client import PerspectiveClient, RemoteResult
from kakuin.perspective.metrics import Metrics
from kakuin.perspective.service import validated_value
from kakuin.perspective.settings import MPICConfig, load_key
from kakuin.va import ValidationAuthority, ValidationRecord

if TYPE_CHECKING:
    from kakuin.store.db import Database

__all__ = ["Corroboration", "CorroboratingVA", "ERROR_CODE", "corroborate"]

# The reference service's code for a refusal by CAA or by corroboration.
ERROR_CODE = CAAError.error_code  # 338


@dataclass(frozen=True, slots=True)
class Corroboration:
    """The quorum decision over one check."""

    ok: bool
    remote: int  # remote perspectives asked
    corroborating: tuple[str, ...]
    non_corroborating: tuple[tuple[str, str], ...]  # (name, why)
    allowed_failures: int
    reason: str

    def summary(self) -> dict[str, Any]:
        return {"ok": self.ok, "remote": self.remote, "corroborating": list(self.corroborating),
                "non_corroborating": [{"perspective": n, "why": w} for n, w in self.non_corroborating],
                "allowed_failures": self.allowed_failures, "reason": self.reason}


def corroborate(primary_ok: bool, primary_value: str | None, remotes: list[RemoteResult], *,
                allowed_failures: int) -> Corroboration:
    """BR 3.2.2.9 quorum over the remote results (pure)."""
    agree: list[str] = []
    disagree: list[tuple[str, str]] = []
    for r in remotes:
        if r.outcome in ("timeout", "error"):
            disagree.append((r.perspective, f"{r.outcome}: {r.error}"))
        elif r.ok != primary_ok:
            seen = "passed" if r.ok else f"failed: {r.error}"
            disagree.append((r.perspective, f"saw a different result ({seen})"))
        elif primary_value is not None and r.value != primary_value:
            disagree.append((r.perspective, f"validated a different value ({r.value!r})"))
        else:
            agree.append(r.perspective)
    if not primary_ok:
        reason = "the primary network perspective's check failed"
        return Corroboration(False, len(remotes), tuple(agree), tuple(disagree), allowed_failures, reason)
    ok = len(disagree) <= allowed_failures
    if ok:
        reason = f"{len(agree)} of {len(remotes)} remote perspectives corroborate"
    else:
        names = ", ".join(f"{n} ({w})" for n, w in disagree)
        reason = (f"multi-perspective corroboration failed: {len(disagree)} of {len(remotes)} remote "
                  f"perspectives did not corroborate (at most {allowed_failures} may): {names}")
    return Corroboration(ok, len(remotes), tuple(agree), tuple(disagree), allowed_failures, reason)


class CorroboratingVA(ValidationAuthority):
    """A ValidationAuthority whose every check is corroborated by remote perspectives."""

    def __init__(self, config: VAConfig, clock: Clock, mpic: MPICConfig,
                 perspectives: list[PerspectiveClient], *, db: Database | None = None,
                 metrics: Metrics | None = None,
                 address_override: Callable[[str], list[str]] | None = None) -> None:
        super().__init__(config, clock, address_override=address_override)
        self.mpic = mpic
        self.perspectives = perspectives
        self.db = db
        self.metrics = metrics or Metrics("mpic")

    @classmethod
    def from_config(cls, config: VAConfig, mpic: MPICConfig, clock: Clock, data_dir: Path,
                    db: Database | None = None) -> CorroboratingVA:
        clients = [PerspectiveClient(p.name, p.url, load_key(p, data_dir), timeout=mpic.timeout_seconds)
                   for p in mpic.perspectives]
        return cls(config, clock, mpic, clients, db=db)

    # -- the four checks, corroborated ------------------------------------------------
    async def validate_http01(self, domain: str, token: str, key_authorization: str) -> ValidationRecord:
        return await self._corroborated(
            "http-01", domain, super().validate_http01(domain, token, key_authorization),
            _dcv(domain, "acme-http-01", key_authorization, token),
            validated_value("http-01", key_authorization))

    async def validate_dns01(self, domain: str, key_authorization: str) -> ValidationRecord:
        base = domain.removeprefix("*.")
        return await self._corroborated(
            "dns-01", base, super().validate_dns01(domain, key_authorization),
            _dcv(base, "acme-dns-01", key_authorization),
            validated_value("dns-01", key_authorization))

    async def validate_tlsalpn01(self, domain: str, key_authorization: str) -> ValidationRecord:
        return await self._corroborated(
            "tls-alpn-01", domain, super().validate_tlsalpn01(domain, key_authorization),
            _dcv(domain, "acme-tls-alpn-01", key_authorization),
            validated_value("tls-alpn-01", key_authorization))

    async def check_caa(self, domain: str, *, account_uri: str | None, method: str | None,
                        wildcard: bool) -> ValidationRecord:
        base, wildcard = (domain[2:], True) if domain.startswith("*.") else (domain, wildcard)
        request = {"check_type": "caa", "domain_or_ip_target": base,
                   "caa_check_parameters": {
                       "certificate_type": "tls-server-wildcard" if wildcard else "tls-server",
                       "caa_domains": list(self.config.caa_identities),
                       "account_uri": account_uri, "validation_method": method}}
        primary = super().check_caa(domain, account_uri=account_uri, method=method, wildcard=wildcard)
        return await self._corroborated("caa", base, primary, request, None)

    # -- the machinery -------------------------------------------------------------------
    async def _remote(self, client: PerspectiveClient, request: dict[str, Any]) -> RemoteResult:
        started = time.perf_counter()
        try:
            result = await asyncio.wait_for(client.check(request), self.mpic.timeout_seconds)
        except TimeoutError:
            result = RemoteResult(client.name, ok=False, outcome="timeout", problem="connection",
                                  error=f"no answer within the {self.mpic.timeout_seconds:g}s deadline",
                                  latency=time.perf_counter() - started)
        return result

    async def _corroborated(self, method: str, domain: str, primary_check: Awaitable[ValidationRecord],
                            request: dict[str, Any], value: str | None) -> ValidationRecord:
        check_id = secrets.token_hex(16)
        request = {**request, "trace_identifier": check_id}
        started = time.perf_counter()
        primary, *remotes = await asyncio.gather(
            _timed(primary_check), *(self._remote(c, request) for c in self.perspectives))
        primary_rec, primary_latency = primary
        elapsed = time.perf_counter() - started
        if method == "caa":
            value = "permit" if primary_rec.ok else "deny"
        decision = corroborate(primary_rec.ok, value if primary_rec.ok else None, list(remotes),
                               allowed_failures=self.mpic.max_failures)
        self._count(method, primary_rec, primary_latency, list(remotes), decision, elapsed)
        summary = {"check_id": check_id, **decision.summary(),
                   "perspectives": [_remote_json(r, decision) for r in remotes]}
        observed = {**primary_rec.observed, "mpic": summary}
        if decision.ok or not primary_rec.ok:
            rec = dataclasses.replace(primary_rec, observed=observed)
        else:
            # For CAA the transport adds "(error 338)" itself (problem_for, TSV messages).
            error = decision.reason if method == "caa" else f"{decision.reason} (error {ERROR_CODE})"
            rec = dataclasses.replace(primary_rec, ok=False, observed=observed, error=error,
                                      problem="caa" if method == "caa" else "unauthorized")
        await self._store(check_id, method, domain, primary_rec, list(remotes), decision)
        return rec

    def _count(self, method: str, primary: ValidationRecord, primary_latency: float,
               remotes: list[RemoteResult], decision: Corroboration, elapsed: float) -> None:
        m = self.metrics
        m.count(perspective="primary", check=method, result="passed" if primary.ok else "failed")
        m.observe(primary_latency, perspective="primary")
        disagreeing = {n for n, _ in decision.non_corroborating}
        for r in remotes:
            result = r.outcome if r.outcome in ("timeout", "error") else (
                "disagreed" if r.perspective in disagreeing else "corroborated")
            m.count(perspective=r.perspective, check=method, result=result)
            m.observe(r.latency, perspective=r.perspective)
        m.count(perspective="quorum", check=method, result="met" if decision.ok else "refused")
        m.observe(elapsed, perspective="all")

    async def _store(self, check_id: str, method: str, domain: str, primary: ValidationRecord,
                     remotes: list[RemoteResult], decision: Corroboration) -> None:
        if self.db is None:
            return
        from kakuin.va.evidence import record_check

        await asyncio.to_thread(record_check, self.db, check_id, method, domain, primary, remotes, decision)


async def _timed(check: Awaitable[ValidationRecord]) -> tuple[ValidationRecord, float]:
    started = time.perf_counter()
    rec = await check
    return rec, time.perf_counter() - started


def _dcv(domain: str, method: str, key_authorization: str, token: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"validation_method": method, "key_authorization": key_authorization}
    if token is not None:
        params["token"] = token
    return {"check_type": "dcv", "domain_or_ip_target": domain, "dcv_check_parameters": params}


def _remote_json(r: RemoteResult, decision: Corroboration) -> dict[str, Any]:
    return {"perspective": r.perspective, "outcome": r.outcome, "ok": r.ok,
            "corroborates": r.perspective in decision.corroborating, "error": r.error,
            "latency_ms": round(r.latency * 1000, 1)}
