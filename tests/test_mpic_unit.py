"""MPIC without the network: the BR quorum table, the corroboration rule, the
[mpic] config checks, request/response signatures, and the CorroboratingVA with
fake remote perspectives (evidence rows and links included)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from kakuin.config import load_config
from kakuin.context import Context
from kakuin.errors import ConfigError
from kakuin.perspective.auth import AuthError, NonceCache, sign_request, sign_response, verify_request, verify_response
from kakuin.perspective.client import RemoteResult
from kakuin.perspective.settings import MPICConfig, PerspectiveSpec, br_allowed_failures
from kakuin.va.evidence import check_ids_of, evidence_for, link_certificate
from kakuin.va.mpic import CorroboratingVA, corroborate

KEY = b"k" * 32


@pytest.mark.parametrize(("remote", "allowed"), [(0, 0), (1, 0), (2, 1), (3, 1), (5, 1), (6, 2), (9, 2)])
def test_br_quorum_table(remote: int, allowed: int) -> None:
    assert br_allowed_failures(remote) == allowed


def _r(name: str, ok: bool = True, outcome: str | None = None, value: str | None = "v") -> RemoteResult:
    return RemoteResult(name, ok=ok, outcome=outcome or ("passed" if ok else "failed"), value=value,
                        error=None if ok else "boom")


FIVE = [f"p{i}" for i in range(1, 6)]


@pytest.mark.parametrize(("remotes", "ok", "disagree"), [
    ([_r(n) for n in FIVE], True, []),
    ([_r(n) for n in FIVE[:4]] + [_r("p5", ok=False)], True, ["p5"]),
    ([_r(n) for n in FIVE[:3]] + [_r("p4", ok=False), _r("p5", ok=False)], False, ["p4", "p5"]),
    ([_r(n) for n in FIVE[:3]] + [_r("p4", False, "timeout"), _r("p5", False, "error")], False, ["p4", "p5"]),
    ([_r(n) for n in FIVE[:4]] + [_r("p5", value="other")], True, ["p5"]),
    ([_r(n) for n in FIVE[:3]] + [_r("p4", value="x"), _r("p5", value="y")], False, ["p4", "p5"]),
])
def test_corroborate_dcv(remotes: list[RemoteResult], ok: bool, disagree: list[str]) -> None:
    d = corroborate(True, "v", remotes, allowed_failures=1)
    assert d.ok is ok
    assert [n for n, _ in d.non_corroborating] == disagree
    if not ok:
        assert all(n in d.reason for n in disagree)


def test_primary_failure_alone_refuses() -> None:
    d = corroborate(False, None, [_r(n, value=None) for n in FIVE], allowed_failures=1)
    assert not d.ok and "primary" in d.reason


def test_caa_deny_corroborated_by_deny() -> None:
    # The primary denies and the remotes deny too: they corroborate (a refusal, still).
    d = corroborate(False, None, [_r(n, ok=False, value="deny") for n in FIVE], allowed_failures=1)
    assert d.corroborating == tuple(FIVE) and not d.ok


def _spec(i: int) -> dict[str, str]:
    return {"name": f"p{i}", "url": f"http://127.0.0.{10 + i}:1", "key_env": "X"}


def test_config_needs_enough_perspectives() -> None:
    with pytest.raises(ValueError, match="mpic.perspectives: 4 configured, but the quorum needs at least 5"):
        MPICConfig(enabled=True, perspectives=tuple(PerspectiveSpec(**_spec(i)) for i in range(4)))
    MPICConfig(enabled=False, perspectives=())  # disabled: nothing required
    with pytest.raises(ValueError, match="more than BR 3.2.2.9 allows"):
        MPICConfig(enabled=True, allowed_failures=2,
                   perspectives=tuple(PerspectiveSpec(**_spec(i)) for i in range(5)))
    with pytest.raises(ValueError, match="exactly one of key_file or key_env"):
        PerspectiveSpec(name="a", url="http://x")


def test_config_error_names_the_key(tmp_path: Path) -> None:
    persp = "".join(f'\n[[mpic.perspectives]]\nname = "p{i}"\nurl = "http://127.0.0.1:{i + 1}"\n'
                    f'key_env = "K{i}"\n' for i in range(3))
    (tmp_path / "kakuin.toml").write_text(f"[mpic]\nenabled = true\n{persp}")
    with pytest.raises(ConfigError, match=r"mpic: .*mpic\.perspectives: 3 configured"):
        load_config(tmp_path, env={})


# -- signatures ----------------------------------------------------------------------

def test_signed_request_verifies_once() -> None:
    body = b'{"a":1}'
    h = sign_request(KEY, "POST", "/mpic/v1/check", body)
    lower = {k.lower(): v for k, v in h.items()}
    nonces = NonceCache()
    assert verify_request(KEY, "POST", "/mpic/v1/check", lower, body, nonces) == h["X-MPIC-Nonce"]
    with pytest.raises(AuthError) as e:
        verify_request(KEY, "POST", "/mpic/v1/check", lower, body, nonces)
    assert e.value.problem == "replayed-request"


@pytest.mark.parametrize(("change", "problem"), [
    (lambda h, b: ({k: v for k, v in h.items() if k != "authorization"}, b), "unauthenticated"),
    (lambda h, b: (h, b + b" "), "bad-signature"),
    (lambda h, b: ({**h, "authorization": "Bearer x"}, b), "unauthenticated"),
    (lambda h, b: ({**h, "x-mpic-nonce": "c2hvcnQ"}, b), "unauthenticated"),
])
def test_bad_requests_are_refused(change, problem: str) -> None:  # type: ignore[no-untyped-def]
    body = b"{}"
    h = {k.lower(): v for k, v in sign_request(KEY, "POST", "/p", body).items()}
    h, body = change(h, body)
    with pytest.raises(AuthError) as e:
        verify_request(KEY, "POST", "/p", h, body, NonceCache())
    assert e.value.problem == problem


def test_stale_request_and_wrong_key() -> None:
    h = {k.lower(): v for k, v in sign_request(KEY, "POST", "/p", b"", now=time.time() - 300).items()}
    with pytest.raises(AuthError, match="window"):
        verify_request(KEY, "POST", "/p", h, b"", NonceCache())
    h = {k.lower(): v for k, v in sign_request(b"z" * 32, "POST", "/p", b"").items()}
    with pytest.raises(AuthError) as e:
        verify_request(KEY, "POST", "/p", h, b"", NonceCache())
    assert e.value.problem == "bad-signature"


def test_response_signature_binds_nonce() -> None:
    sig = sign_response(KEY, "n1", 200, b"{}")
    assert verify_response(KEY, "n1", 200, b"{}", sig)
    assert not verify_response(KEY, "n2", 200, b"{}", sig)
    assert not verify_response(KEY, "n1", 200, b"{ }", sig)
    assert not verify_response(KEY, "n1", 200, b"{}", None)


# -- CorroboratingVA with fake remotes --------------------------------------------------

class FakeRemote:
    def __init__(self, name: str, ok: bool = True, delay: float = 0.0, value: str | None = None) -> None:
        self.name, self.ok, self.delay, self.value = name, ok, delay, value

    async def check(self, request: dict) -> RemoteResult:
        await asyncio.sleep(self.delay)
        if request["check_type"] == "caa":
            value = "permit" if self.ok else "deny"
        else:
            from kakuin.perspective.service import validated_value

            d = request["dcv_check_parameters"]
            method = d["validation_method"].removeprefix("acme-")
            value = self.value or (validated_value(method, d["key_authorization"]) if self.ok else None)
        return RemoteResult(self.name, ok=self.ok, outcome="passed" if self.ok else "failed", value=value,
                            error=None if self.ok else "hijacked", observed={"fake": True})


def _va(ctx: Context, remotes: list[FakeRemote], timeout: float = 2.0) -> CorroboratingVA:
    mpic = MPICConfig(enabled=True, timeout_seconds=timeout,
                      perspectives=tuple(PerspectiveSpec(**_spec(i)) for i in range(1, 6)))
    va = CorroboratingVA(ctx.config.va, ctx.clock, mpic, remotes, db=ctx.db)  # type: ignore[arg-type]
    return va


@pytest.mark.parametrize(("bad", "ok"), [(0, True), (1, True), (2, False)])
def test_corroborating_caa(ctx: Context, monkeypatch: pytest.MonkeyPatch, bad: int, ok: bool) -> None:
    remotes = [FakeRemote(f"p{i}", ok=i <= 5 - bad) for i in range(1, 6)]
    va = _va(ctx, remotes)

    async def primary(self, domain, *, account_uri, method, wildcard):  # type: ignore[no-untyped-def]
        return self.record("caa", domain, ok=True, observed={"primary": True})

    monkeypatch.setattr("kakuin.va.ValidationAuthority.check_caa", primary)
    rec = asyncio.run(va.check_caa("www.example.ac.jp", account_uri=None, method=None, wildcard=False))
    assert rec.ok is ok
    summary = rec.observed["mpic"]
    assert len(summary["perspectives"]) == 5
    if not ok:
        assert rec.problem == "caa"
        assert "p4" in rec.error and "p5" in rec.error  # type: ignore[operator]
    # Evidence: one row per perspective plus the primary, under one check id.
    [cid] = check_ids_of([rec])
    link_certificate(ctx.db, "abc123", [cid])
    rows = evidence_for(ctx.db, "abc123")
    assert [r.perspective for r in rows] == ["primary", "p1", "p2", "p3", "p4", "p5"]
    assert rows[0].corroborates is ok
    assert sum(not r.corroborates for r in rows[1:]) == bad


def test_timeout_counts_as_failure_and_primary_failure_refuses(ctx: Context,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    remotes = [FakeRemote(f"p{i}") for i in range(1, 4)] + [FakeRemote("p4", delay=5), FakeRemote("p5", delay=5)]
    va = _va(ctx, remotes, timeout=0.3)

    async def dns01(self, domain, key_authorization):  # type: ignore[no-untyped-def]
        return self.record("dns-01", domain, ok=True, observed={"txt": ["x"]})

    monkeypatch.setattr("kakuin.va.ValidationAuthority.validate_dns01", dns01)
    started = time.monotonic()
    rec = asyncio.run(va.validate_dns01("www.example.ac.jp", "tok.thumb"))
    assert time.monotonic() - started < 2
    assert not rec.ok and rec.problem == "unauthorized"
    assert "error 338" in rec.error and "p4 (timeout" in rec.error  # type: ignore[operator]
    assert 'mpic_checks_total{check="dns-01",perspective="p4",result="timeout"} 1' in va.metrics.render()

    async def failing(self, domain, key_authorization):  # type: ignore[no-untyped-def]
        return self.record("dns-01", domain, ok=False, observed={}, error="no TXT", problem="unauthorized")

    va = _va(ctx, [FakeRemote(f"p{i}") for i in range(1, 6)])
    monkeypatch.setattr("kakuin.va.ValidationAuthority.validate_dns01", failing)
    rec = asyncio.run(va.validate_dns01("www.example.ac.jp", "tok.thumb"))
    assert not rec.ok and rec.error == "no TXT"  # the primary's own reason
    assert rec.observed["mpic"]["ok"] is False


def test_context_va_is_corroborating_when_enabled(make_ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx()
    keyfile = ctx.config.data_dir / "secrets" / "mpic.key"
    keyfile.write_text("s" * 40)
    persp = "".join(f'\n[[mpic.perspectives]]\nname = "p{i}"\nurl = "http://127.0.0.1:{i + 1}"\n'
                    f'key_file = "secrets/mpic.key"\n' for i in range(5))
    cfg = ctx.config.data_dir / "kakuin.toml"
    cfg.write_text(cfg.read_text() + f"\n[mpic]\nenabled = true\ntimeout_seconds = 3\n{persp}")
    ctx2 = Context.open(ctx.config.data_dir)
    try:
        assert isinstance(ctx2.va, CorroboratingVA)
        assert [c.name for c in ctx2.va.perspectives] == [f"p{i}" for i in range(5)]
        assert ctx2.va.mpic.max_failures == 1
    finally:
        ctx2.db.dispose()


# -- the TSV path ---------------------------------------------------------------------

def _tsv_ra(make_ctx, remotes: list[FakeRemote], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    import datetime as dt

    from kakuin.clock import UTC, FixedClock
    from kakuin.ra.services import RA
    from kakuin.ra.tsv.apply import caa_with
    from tests.ra_helpers import setup_institution

    at = dt.datetime(2025, 6, 2, tzinfo=UTC)
    base = make_ctx(at)
    cfg = base.config.data_dir / "kakuin.toml"
    cfg.write_text(cfg.read_text() + "\n[ra]\ncheck_caa = true\n")
    ra = RA(Context.open(base.config.data_dir, clock=FixedClock(at)))
    setup_institution(ra)

    async def primary(self, domain, *, account_uri, method, wildcard):  # type: ignore[no-untyped-def]
        return self.record("caa", domain, ok=True, observed={"primary": True})

    monkeypatch.setattr("kakuin.va.ValidationAuthority.check_caa", primary)
    ra.tsv.caa = caa_with(_va(ra.ctx, remotes))
    return ra


def test_tsv_caa_is_corroborated_and_linked(make_ctx, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from tests.helpers import ec_key
    from tests.ra_helpers import INST, OP, server_fields, tsv

    ra = _tsv_ra(make_ctx, [FakeRemote(f"p{i}", ok=i != 5) for i in range(1, 6)], monkeypatch)
    report = ra.tsv.apply(tsv([server_fields(ec_key(ec.SECP384R1()))]), institution=INST, actor=OP)
    [row] = report.results
    assert row.ok and row.serial
    rows = evidence_for(ra.ctx.db, row.serial)
    assert [(e.perspective, e.corroborates) for e in rows] == [
        ("primary", True), ("p1", True), ("p2", True), ("p3", True), ("p4", True), ("p5", False)]


def test_tsv_row_refused_naming_perspectives(make_ctx, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from kakuin.ra.tsv.parse import TSVRefused
    from tests.helpers import ec_key
    from tests.ra_helpers import INST, OP, server_fields, tsv

    ra = _tsv_ra(make_ctx, [FakeRemote(f"p{i}", ok=i < 4) for i in range(1, 6)], monkeypatch)
    with pytest.raises(TSVRefused) as e:
        ra.tsv.apply(tsv([server_fields(ec_key(ec.SECP384R1()))]), institution=INST, actor=OP)
    [err] = e.value.errors
    assert err.rule == "caa" and "error 338" in err.message_en and "338" in err.message_ja
    assert "p4 (" in err.message_en and "p5 (" in err.message_en
