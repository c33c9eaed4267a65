"""Hostile input at every ACME resource, through the app in process, generated
by hypothesis (derandomized, bounded): JWS whose signature is good but whose
payload or protected header holds arbitrary JSON, and envelopes that are not
JWS at all. Every answer must be a success or an RFC 7807 problem with an
ACME error type and a fresh Replay-Nonce, never a server error, and a refused
request must leave the accounts, orders, authorizations, challenges and
certificates as they were."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kakuin.acme.models import ACMEAccount, ACMEAuthorization, ACMEChallenge, ACMEOrder
from kakuin.store.models import Certificate
from tests.acme_client import b64, csr_der
from tests.acme_fixtures import Env, env_fixture  # noqa: F401
from tests.helpers import ec_key

ERR = "urn:ietf:params:acme:error:"
FIELDS = ["identifiers", "type", "value", "csr", "contact", "termsOfServiceAgreed", "onlyReturnExisting",
          "externalAccountBinding", "status", "notBefore", "notAfter", "replaces", "reason", "certificate",
          "account", "oldKey", "protected", "payload", "signature", "kid", "alg", "url", "nonce", "jwk",
          "kty", "crv", "x", "y", "n", "e", "profile"]
scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=False) | st.text(max_size=40)
           | st.sampled_from(["dns", "ip", "*.example.ac.jp", "www.example.ac.jp", "valid", "deactivated",
                              "2025-01-01T00:00:00Z", "mailto:a@example.ac.jp", "", "AAAA", "ES256", "P-256"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=5),
                      max_leaves=12)
objects = st.dictionaries(st.sampled_from(FIELDS), values, max_size=5)
BASE = dict(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
TABLES = (ACMEAccount, ACMEOrder, ACMEAuthorization, ACMEChallenge, Certificate)


def check(r: Any) -> None:
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/problem+json"), r.headers
        assert r.json()["type"].startswith(ERR), r.text
    assert r.headers.get("Replay-Nonce"), r.headers


def test_hostile_payloads_headers_and_envelopes(env: Env) -> None:
    c = env.registered()
    r = c.new_order(["fz.example.ac.jp"])
    order, order_url = r.json(), r.headers["Location"]
    authz_url = order["authorizations"][0]
    ch_url = c.get(authz_url).json()["challenges"][0]["url"]
    urls = [c.dir["newAccount"], c.dir["newOrder"], c.dir["revokeCert"], c.dir["keyChange"], c.kid,
            order_url, order["finalize"], authz_url, ch_url]

    def counts() -> list[int]:
        return [env.count(t) for t in TABLES]

    def post_and_check(send: Any) -> None:
        before = counts()
        r = send()
        check(r)
        if r.status_code >= 400:
            assert counts() == before, r.text

    @given(i=st.integers(0, len(urls) - 1), payload=objects | values, jwk=st.booleans(),
           header=st.dictionaries(st.sampled_from(["kid", "jwk", "url", "nonce", "alg", "b64", "crit",
                                                   "typ", "x5c"]), values, max_size=2))
    @settings(max_examples=300, **BASE)
    def signed(i: int, payload: Any, header: dict[str, Any], jwk: bool) -> None:
        post_and_check(lambda: c.post(urls[i], payload, kid=None if jwk else "self", header=header))

    @given(i=st.integers(0, len(urls) - 1),
           envelope=values | st.fixed_dictionaries(
               {"protected": st.one_of(values.map(lambda v: b64(json.dumps(v).encode())), values),
                "payload": st.one_of(values.map(lambda v: b64(json.dumps(v).encode())), values),
                "signature": st.one_of(st.binary(max_size=80).map(b64), values)}))
    @settings(max_examples=150, **BASE)
    def unsigned(i: int, envelope: Any) -> None:
        post_and_check(lambda: c.post(urls[i], None, body=envelope))

    signed()
    unsigned()
    # The account and its order still work afterwards.
    assert c.post(ch_url, {}).status_code == 200
    assert c.wait(order_url, ("ready", "invalid"))["status"] == "ready"
    r = c.post(order["finalize"], {"csr": b64(csr_der(ec_key(), ["fz.example.ac.jp"]))})
    check(r)
    assert r.status_code == 200 and r.json()["status"] == "valid", r.text
