"""Bad input to a perspective is refused with a specific RFC 7807 problem: over the
wire against a running ``kakuin perspective serve`` (unauthenticated, bad
signature, replayed, expired, malformed, unknown check type), and non-public
targets against a perspective started without ``--allow-private-targets``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kakuin.perspective.auth import sign_request
from kakuin.perspective.service import CHECK_PATH, PROBLEM_NS
from tests.bind import free_port
from tests.perspectives import Fleet, fleet  # noqa: F401

pytestmark = pytest.mark.e2e

CAA = {"check_type": "caa", "domain_or_ip_target": "www.loopback.ac.jp"}


def post(url: str, key: bytes, payload: object, *, raw: bytes | None = None, now: float | None = None,
         headers: dict[str, str] | None = None) -> httpx.Response:
    body = raw if raw is not None else json.dumps(payload).encode()
    h = headers if headers is not None else sign_request(key, "POST", CHECK_PATH, body, now=now)
    return httpx.post(url + CHECK_PATH, content=body, headers={**h, "Content-Type": "application/json"},
                      timeout=10)


def problem(resp: httpx.Response, status: int, kind: str) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    doc = resp.json()
    assert doc["type"] == PROBLEM_NS + kind and doc["status"] == status and doc["detail"]
    return doc


def test_good_request_passes(fleet: Fleet) -> None:  # noqa: F811
    r = post(fleet.urls["p1"], fleet.keys["p1"].read_bytes().strip(), CAA)
    assert r.status_code == 200, r.text
    assert r.json()["check_passed"] is True and r.json()["perspective_code"] == "p1"
    assert r.headers["x-mpic-response-signature"]


def test_unauthenticated(fleet: Fleet) -> None:  # noqa: F811
    problem(post(fleet.urls["p1"], b"", CAA, headers={}), 401, "unauthenticated")


def test_bad_signature(fleet: Fleet) -> None:  # noqa: F811
    # Signed with p2's key, sent to p1.
    problem(post(fleet.urls["p1"], fleet.keys["p2"].read_bytes().strip(), CAA), 401, "bad-signature")


def test_replayed(fleet: Fleet) -> None:  # noqa: F811
    key = fleet.keys["p1"].read_bytes().strip()
    body = json.dumps(CAA).encode()
    h = sign_request(key, "POST", CHECK_PATH, body)
    assert post(fleet.urls["p1"], key, None, raw=body, headers=h).status_code == 200
    problem(post(fleet.urls["p1"], key, None, raw=body, headers=h), 401, "replayed-request")


def test_expired(fleet: Fleet) -> None:  # noqa: F811
    key = fleet.keys["p1"].read_bytes().strip()
    problem(post(fleet.urls["p1"], key, CAA, now=time.time() - 600), 401, "stale-request")
    problem(post(fleet.urls["p1"], key, CAA, now=time.time() + 600), 401, "stale-request")


@pytest.mark.parametrize(("payload", "raw", "status", "kind"), [
    (None, b"{not json", 400, "malformed"),
    (None, b"[1, 2]", 400, "malformed"),
    ({"check_type": "whois", "domain_or_ip_target": "a.loopback.ac.jp"}, None, 400, "unknown-check-type"),
    ({"check_type": "dcv", "domain_or_ip_target": "a.loopback.ac.jp"}, None, 400, "malformed"),
    ({"check_type": "dcv", "domain_or_ip_target": "a.loopback.ac.jp",
      "dcv_check_parameters": {"validation_method": "website-change", "key_authorization": "x"}},
     None, 400, "unsupported-validation-method"),
    ({"check_type": "dcv", "domain_or_ip_target": "a.loopback.ac.jp",
      "dcv_check_parameters": {"validation_method": "acme-http-01", "key_authorization": "x"}},
     None, 400, "malformed"),
    ({"check_type": "caa", "domain_or_ip_target": "not a name"}, None, 400, "malformed"),
])
def test_malformed(fleet: Fleet, payload: object, raw: bytes | None, status: int, kind: str) -> None:  # noqa: F811
    problem(post(fleet.urls["p1"], fleet.keys["p1"].read_bytes().strip(), payload, raw=raw), status, kind)


@pytest.fixture(scope="module")
def public_only(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # noqa: F811
    """A perspective started without --allow-private-targets (production mode)."""
    log_path = tmp_path_factory.mktemp("public") / "p.log"
    url = f"http://127.0.0.16:{free_port('127.0.0.16')}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kakuin", "perspective", "serve", "--name", "p1",
             "--listen", url.removeprefix("http://"), "--resolver", fleet.dns.resolver_for("p1"),
             "--key-file", str(fleet.keys["p1"]), "--no-dnssec", "--http01-port", str(fleet.http01_port)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, Path(log_path).read_text()
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "perspective did not start"
                time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=10)


@pytest.mark.parametrize("target", ["localhost", "127.0.0.1", "10.1.2.3", "printer.local", "www.example",
                                    "host.test", "svc.internal", "intranet"])
def test_non_public_target_refused(fleet: Fleet, public_only: str, target: str) -> None:  # noqa: F811
    payload = {"check_type": "caa", "domain_or_ip_target": target}
    doc = problem(post(public_only, fleet.keys["p1"].read_bytes().strip(), payload), 403, "forbidden-target")
    assert target in doc["detail"]


def test_name_resolving_to_loopback_refused(fleet: Fleet, public_only: str) -> None:  # noqa: F811
    # www.loopback.ac.jp is a public name, but its A record is 127.0.0.1.
    payload = {"check_type": "dcv", "domain_or_ip_target": "www.loopback.ac.jp",
               "dcv_check_parameters": {"validation_method": "acme-http-01", "token": "t",
                                        "key_authorization": "t.x"}}
    doc = problem(post(public_only, fleet.keys["p1"].read_bytes().strip(), payload), 403, "forbidden-target")
    assert "127.0.0.1" in doc["detail"]
    # A CAA check of the same name (no connection to it) is allowed.
    r = post(public_only, fleet.keys["p1"].read_bytes().strip(), CAA)
    assert r.status_code == 200 and r.json()["check_passed"] is True


def test_health_and_metrics(fleet: Fleet) -> None:  # noqa: F811
    assert httpx.get(fleet.urls["p3"] + "/health").json() == {
        "status": "ok", "perspective": "p3", "version": "kakuin-perspective/1"}
    post(fleet.urls["p3"], fleet.keys["p3"].read_bytes().strip(), CAA)
    text = httpx.get(fleet.urls["p3"] + "/metrics").text
    assert 'mpic_perspective_checks_total{check="caa",result="passed"}' in text
