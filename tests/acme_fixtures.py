"""Fixtures for in-process ACME tests: a context with an institution, an EAB
credential, a fake VA (http-01 always passes unless told; CAA answers as told)
and a TestClient on the app."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from kakuin.app import create_app
from kakuin.context import Context
from kakuin.va import ValidationRecord
from tests.acme_client import Client
from tests.helpers import add_institution

INSTITUTION = "Example University"
DOMAIN = "example.ac.jp"


@dataclass
class FakeVA:
    """Stands in for ValidationAuthority's network checks."""

    ctx: Context
    validation_ok: bool = True
    caa: dict[str, tuple[str, str]] = field(default_factory=dict)  # domain → (problem, error)
    caa_calls: list[str] = field(default_factory=list)

    def install(self) -> None:
        va = self.ctx.va

        async def ok(method: str, domain: str) -> ValidationRecord:
            if self.validation_ok:
                return va.record(method, domain, ok=True, observed={"fake": True})
            return va.record(
                method, domain, ok=False, observed={}, error="fake refusal", problem="unauthorized"
            )

        async def http01(domain: str, token: str, keyauth: str) -> ValidationRecord:
            return await ok("http-01", domain)

        async def dns01(domain: str, keyauth: str) -> ValidationRecord:
            return await ok("dns-01", domain)

        async def check_caa(
            domain: str, *, account_uri: str | None, method: str | None, wildcard: bool
        ) -> ValidationRecord:
            self.caa_calls.append(domain)
            if domain in self.caa:
                problem, error = self.caa[domain]
                return va.record("caa", domain, ok=False, observed={}, error=error, problem=problem)
            return va.record("caa", domain, ok=True, observed={})

        va.validate_http01 = http01  # type: ignore[method-assign]
        va.validate_tlsalpn01 = dns01  # type: ignore[method-assign,assignment]
        va.validate_dns01 = dns01  # type: ignore[method-assign]
        va.check_caa = check_caa  # type: ignore[method-assign]


@dataclass
class Env:
    ctx: Context
    http: TestClient
    va: FakeVA
    cred: tuple[str, str]

    def client(self, **kw: object) -> Client:
        return Client(self.http, "http://127.0.0.1:8080/acme/directory", **kw)  # type: ignore[arg-type]

    def registered(self) -> Client:
        c = self.client()
        kid, key = self.new_cred()
        assert c.register((kid, key)).status_code == 201
        return c

    def new_cred(self, **kw: object) -> tuple[str, str]:
        n = self.ctx.acme.eab.new(INSTITUTION, **kw)  # type: ignore[arg-type]
        return n.kid, n.hmac_key

    def count(self, model: type) -> int:
        with self.ctx.db.session() as s:
            return s.scalar(select(func.count()).select_from(model)) or 0


@pytest.fixture(name="env")
def env_fixture(ctx: Context) -> Iterator[Env]:
    add_institution(ctx, INSTITUTION, (DOMAIN,))
    va = FakeVA(ctx)
    va.install()
    cred = ctx.acme.eab.new(INSTITUTION)
    with TestClient(create_app(ctx), base_url="http://127.0.0.1:8080") as http:
        yield Env(ctx, http, va, (cred.kid, cred.hmac_key))
