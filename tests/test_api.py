"""REST API (/api/v1) in process, with real officer certificates presented
through the ASGI TLS extension: what officers of institution A can and cannot
do to institution B, RFC 7807 errors, TSV check/apply, EAB (key shown once),
revocation with pending requests, and the OpenAPI document covering every route."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from kakuin.clock import UTC
from kakuin.portal.app import create_portal_app
from kakuin.portal.openapi import document
from kakuin.ra.services import RA
from tests.helpers import ec_key
from tests.portal_helpers import INST_A, INST_B, client, two_institutions
from tests.ra_helpers import OP, server_fields, tsv

AT = dt.datetime(2025, 6, 2, tzinfo=UTC)
TSV_TYPE = {"Content-Type": "text/tab-separated-values"}


@pytest.fixture
def world(make_ctx):  # type: ignore[no-untyped-def]
    ra = RA(make_ctx(AT))
    a, b = two_institutions(ra)
    row_b = server_fields(ec_key(ec.SECP384R1()), cn="www.other.ac.jp", o=INST_B, email_addr="jiro@other.ac.jp")
    serial_b = ra.tsv.apply(tsv([row_b]), institution=INST_B, actor=OP).results[0].serial
    app = create_portal_app(ra.ctx)
    return ra, client(ra, a.pem, app), client(ra, b.pem, app), serial_b


def test_officer_sees_only_their_institution(world) -> None:  # type: ignore[no-untyped-def]
    ra, ca, cb, serial_b = world
    assert [i["name_en"] for i in ca.get("/api/v1/institutions").json()] == [INST_A]
    assert ca.get(f"/api/v1/institutions/{INST_A}").status_code == 200
    r = ca.get(f"/api/v1/institutions/{INST_B}")
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    # Certificates of B: not in A's search, not readable, not revocable (404: nothing to learn).
    assert serial_b not in {c["serial"] for c in ca.get("/api/v1/certificates").json()}
    assert serial_b in {c["serial"] for c in cb.get("/api/v1/certificates").json()}
    assert ca.get("/api/v1/certificates", params={"q": serial_b}).json() == []
    assert ca.get(f"/api/v1/certificates/{serial_b}").status_code == 404
    assert ca.get("/api/v1/certificates", params={"institution": INST_B}).status_code == 403
    r = ca.post(f"/api/v1/certificates/{serial_b}/revoke", json={"reason": 4})
    assert r.status_code == 404 and r.json()["type"] == "urn:kakuin:problem:not-found"
    assert cb.get(f"/api/v1/certificates/{serial_b}").json()["status"] == "valid"
    # Statistics.
    assert [s["institution"] for s in ca.get("/api/v1/stats").json()] == [INST_A]
    assert ca.get("/api/v1/stats", params={"institution": INST_B}).status_code == 403
    # TSV for B: refused.
    row = server_fields(ec_key(ec.SECP384R1()), cn="www.other.ac.jp", o=INST_B)
    r = ca.post("/api/v1/tsv/apply", params={"institution": INST_B}, content=tsv([row]), headers=TSV_TYPE)
    assert r.status_code == 403
    # EAB: A cannot make one for B, nor list or revoke B's.
    kid_b = cb.post("/api/v1/eab", json={}).json()["kid"]
    assert ca.post("/api/v1/eab", json={"institution": INST_B}).status_code == 403
    assert kid_b not in {c["kid"] for c in ca.get("/api/v1/eab").json()}
    assert ca.delete(f"/api/v1/eab/{kid_b}").status_code == 404
    assert [c["state"] for c in cb.get("/api/v1/eab").json()] == ["unused"]
    # Pending revocation requests of B are not A's to see.
    ra.ctx.revocation.report(serial_b, 1, reported_by="subscriber:jiro@other.ac.jp")
    assert ca.get("/api/v1/revocation-requests").json() == []
    [p] = cb.get("/api/v1/revocation-requests").json()
    assert p["serial"] == serial_b and p["reason_name"] == "keyCompromise" and p["seconds_left"] == 24 * 3600


def test_tsv_check_apply_and_revoke(world) -> None:  # type: ignore[no-untyped-def]
    ra, ca, _cb, _ = world
    bad = tsv([server_fields(ec_key(ec.SECP384R1()), email_addr="taro+x@example.ac.jp")])
    r = ca.post("/api/v1/tsv/check", content=bad, headers=TSV_TYPE)
    assert r.status_code == 200
    body = r.json()
    assert body["ok"] is False and body["kind"] == "server-issue"
    assert [(e["row"], e["column"], e["rule"]) for e in body["errors"]] == [(1, 10, "email-charset")]
    r = ca.post("/api/v1/tsv/apply", content=bad, headers=TSV_TYPE)
    assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "email-charset"
    good = tsv([server_fields(ec_key(ec.SECP384R1()))])
    applied = ca.post("/api/v1/tsv/apply", content=good, headers=TSV_TYPE).json()
    assert applied["status"] == "applied"
    serial = applied["results"][0]["serial"]
    detail = ca.get(f"/api/v1/certificates/{serial}").json()
    assert detail["subscriber"] == "国立 太郎 <taro@example.ac.jp>" and detail["downloaded"] is False
    # Reason 0 needs a comment (policy → 422 with the rule).
    r = ca.post(f"/api/v1/certificates/{serial}/revoke", json={"reason": 0})
    assert r.status_code == 422 and r.json()["rule"] == "revocation-comment"
    r = ca.post(f"/api/v1/certificates/{serial}/revoke", json={"reason": "keyCompromise", "comment": "leaked"})
    assert r.status_code == 200 and r.json()["blocked_key"] is True
    assert ca.post(f"/api/v1/certificates/{serial}/revoke", json={"reason": 4}).status_code == 409
    assert ca.get("/api/v1/certificates", params={"status": "revoked"}).json()[0]["serial"] == serial


def test_eab_key_is_shown_once(world) -> None:  # type: ignore[no-untyped-def]
    _ra, ca, _cb, _ = world
    r = ca.post("/api/v1/eab", json={"domains": ["www.example.ac.jp"], "days": 7})
    assert r.status_code == 201
    new = r.json()
    assert new["hmac_key"] and new["institution"] == INST_A
    listed = ca.get("/api/v1/eab").json()
    assert new["hmac_key"] not in str(listed) and listed[0]["kid"] == new["kid"]
    assert ca.post("/api/v1/eab", json={"domains": ["www.other.ac.jp"]}).status_code == 422
    assert ca.delete(f"/api/v1/eab/{new['kid']}").status_code == 204
    assert ca.get("/api/v1/eab").json()[0]["state"] == "revoked"


def test_csrf_and_bad_input(world) -> None:  # type: ignore[no-untyped-def]
    _ra, ca, _cb, _ = world
    # A form post (a content type any cross-site page can send) is refused.
    r = ca.post("/api/v1/eab", data={"domains": "x"})
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    r = ca.post("/api/v1/tsv/check", content=b"a\tb", headers={"Content-Type": "text/plain"})
    assert r.status_code == 400
    r = ca.post("/api/v1/eab", json={}, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    assert ca.get("/api/v1/certificates", params={"limit": "x"}).status_code == 400
    assert ca.post("/api/v1/eab", content=b"[1", headers={"Content-Type": "application/json"}).status_code == 400
    big = ca.post("/api/v1/eab", content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
                  headers={"Content-Type": "application/json"})
    assert big.status_code == 400 and "bytes" in big.json()["detail"]


def test_openapi_describes_every_route(world) -> None:  # type: ignore[no-untyped-def]
    ra, ca, _cb, _ = world
    served = ca.get("/api/v1/openapi.json").json()
    assert served == document(ra.ctx.config.portal)
    app = create_portal_app(ra.ctx)
    routes = {
        (r.path, m.lower())  # type: ignore[attr-defined]
        for r in app.app.routes  # type: ignore[attr-defined]
        if r.path.startswith("/api/")  # type: ignore[attr-defined]
        for m in r.methods - {"HEAD"}  # type: ignore[attr-defined]
    }
    documented = {(p, m) for p, ops in served["paths"].items() for m in ops}
    assert routes == documented
