"""RFC 8555 in process: the happy path and each refusal with its problem type."""

from __future__ import annotations

import pytest
from cryptography import x509

from kakuin.acme.models import ACMEAccount, ACMEAuthorization, ACMEOrder
from kakuin.store.models import Certificate
from tests.acme_client import Client, Key, b64, csr_der
from tests.acme_fixtures import Env, env_fixture  # noqa: F401
from tests.helpers import ec_key

ERR = "urn:ietf:params:acme:error:"


def ready_order(c: Client, names: list[str]) -> dict:
    r = c.new_order(names)
    assert r.status_code == 201, r.text
    order_url = r.headers["Location"]
    for az in r.json()["authorizations"]:
        authz = c.get(az).json()
        if authz["status"] == "valid":
            continue
        ch = next(x for x in authz["challenges"] if x["type"] in ("http-01", "dns-01"))
        assert c.post(ch["url"], {}).status_code == 200
        assert c.wait(az, ("valid", "invalid"))["status"] == "valid"
    order = c.wait(order_url, ("ready", "invalid"))
    order["url"] = order_url
    return order


def issue(c: Client, names: list[str], key=None) -> tuple[dict, str]:  # type: ignore[no-untyped-def]
    order = ready_order(c, names)
    r = c.post(order["finalize"], {"csr": b64(csr_der(key or ec_key(), names))})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "valid"
    cert = c.get(r.json()["certificate"])
    return r.json(), cert.text


def test_directory_and_nonces(env: Env) -> None:
    d = env.http.get("/acme/directory").json()
    assert d["meta"]["externalAccountRequired"] is True
    assert {"newNonce", "newAccount", "newOrder", "revokeCert", "keyChange", "renewalInfo"} <= set(
        d
    )
    head = env.http.head("/acme/new-nonce")
    get = env.http.get("/acme/new-nonce")
    assert head.status_code == 200 and get.status_code == 204
    assert head.headers["Replay-Nonce"] != get.headers["Replay-Nonce"]
    assert head.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("make_key", [Key.es256, Key.es384, Key.rs256, Key.eddsa])
def test_register_with_each_algorithm(env: Env, make_key) -> None:  # type: ignore[no-untyped-def]
    c = env.client(key=make_key())
    r = c.register(env.cred)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "valid"
    # RFC 8555 §7.3.1: the same key again returns the same account, 200.
    again = c.register()
    assert again.status_code == 200 and again.headers["Location"] == r.headers["Location"]


def test_full_flow_issue_download_ari_revoke(env: Env) -> None:
    c = env.registered()
    order, pem = issue(env.client(key=c.key, kid=c.kid), ["www.example.ac.jp", "example.ac.jp"])
    certs = x509.load_pem_x509_certificates(pem.encode())
    assert len(certs) == 2
    leaf = certs[0]
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {"www.example.ac.jp", "example.ac.jp"}
    # RFC 8555 §6.3: a plain GET of the certificate is 405 malformed; POST-as-GET reads it.
    get = env.http.get(order["certificate"])
    assert get.status_code == 405 and get.json()["type"] == ERR + "malformed"
    assert get.headers["Allow"] == "POST" and get.headers["Replay-Nonce"]
    dl = c.get(order["certificate"])
    assert dl.headers["content-type"].startswith("application/pem-certificate-chain")
    assert 'rel="up"' in dl.headers["link"]
    assert env.va.caa_calls == ["www.example.ac.jp", "example.ac.jp"]
    # ARI: the normal window is in the last third of the lifetime.
    from kakuin.acme.ari import cert_id

    cid = cert_id(leaf)
    ri = env.http.get(f"/acme/renewal-info/{cid}")
    assert ri.status_code == 200 and ri.headers["Retry-After"] == str(6 * 3600)
    start = ri.json()["suggestedWindow"]["start"]
    assert start > leaf.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (
        env.ctx.acme.set_renewal_now([format(leaf.serial_number, "x")], "https://example/incident")
        == 1
    )
    ri2 = env.http.get(f"/acme/renewal-info/{cid}").json()
    assert ri2["explanationURL"] == "https://example/incident"
    assert ri2["suggestedWindow"]["end"] < env.ctx.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    # replaces: accepted once; a second replacement after the first is valid is refused.
    replacement = c.new_order(["www.example.ac.jp"], replaces=cid)
    assert replacement.status_code == 201, replacement.text
    assert replacement.json()["replaces"] == cid
    # Revoke with a bad reason, then properly, then again.
    der = b64(
        leaf.public_bytes(
            __import__(
                "cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]
            ).Encoding.DER
        )
    )
    bad = c.post(c.dir["revokeCert"], {"certificate": der, "reason": 9})
    assert bad.json()["type"] == ERR + "badRevocationReason"
    boolean = c.post(c.dir["revokeCert"], {"certificate": der, "reason": True})  # not keyCompromise (1)
    assert boolean.json()["type"] == ERR + "badRevocationReason"
    ok = c.post(c.dir["revokeCert"], {"certificate": der, "reason": 4})
    assert ok.status_code == 200, ok.text
    again = c.post(c.dir["revokeCert"], {"certificate": der, "reason": 4})
    assert again.json()["type"] == ERR + "alreadyRevoked"
    # Another account may not revoke it.
    other = env.registered()
    assert other.post(c.dir["revokeCert"], {"certificate": der}).json()["type"] in (
        ERR + "unauthorized",
        ERR + "alreadyRevoked",
    )
    orders = c.get(c.kid + "/orders").json()["orders"]
    assert order_url_in(orders, order)


def order_url_in(urls: list[str], order: dict) -> bool:
    return any(order["finalize"].startswith(u) for u in urls)


def test_eab_required(env: Env) -> None:
    before = env.count(ACMEAccount)
    r = env.client().register()
    assert r.json()["type"] == ERR + "externalAccountRequired"
    assert r.status_code == 400 and "Replay-Nonce" in r.headers
    assert env.count(ACMEAccount) == before


def test_eab_wrong_hmac(env: Env) -> None:
    before = env.count(ACMEAccount)
    kid, _ = env.cred
    r = env.client().register((kid, b64(b"\x00" * 32)))
    assert r.json()["type"] == ERR + "unauthorized"
    assert env.count(ACMEAccount) == before


def test_eab_kid_reused(env: Env) -> None:
    assert env.client().register(env.cred).status_code == 201
    before = env.count(ACMEAccount)
    r = env.client().register(env.cred)
    assert r.json()["type"] == ERR + "unauthorized"
    assert env.count(ACMEAccount) == before


def test_eab_revoked(env: Env) -> None:
    kid, key = env.new_cred()
    env.ctx.acme.eab.revoke(kid)
    assert env.client().register((kid, key)).json()["type"] == ERR + "unauthorized"


def test_replayed_nonce(env: Env) -> None:
    c = env.registered()
    n = c.nonce()
    assert c.new_order(["a.example.ac.jp"]).status_code == 201
    first = c.post(
        c.dir["newOrder"], {"identifiers": [{"type": "dns", "value": "b.example.ac.jp"}]}, nonce=n
    )
    assert first.status_code == 201
    before = env.count(ACMEOrder), env.count(ACMEAuthorization)
    replay = c.post(
        c.dir["newOrder"], {"identifiers": [{"type": "dns", "value": "c.example.ac.jp"}]}, nonce=n
    )
    assert replay.json()["type"] == ERR + "badNonce"
    assert "Replay-Nonce" in replay.headers
    bogus = c.post(
        c.dir["newOrder"],
        {"identifiers": [{"type": "dns", "value": "c.example.ac.jp"}]},
        nonce="not-a-nonce",
    )
    assert bogus.json()["type"] == ERR + "badNonce"
    assert (env.count(ACMEOrder), env.count(ACMEAuthorization)) == before


def test_kid_of_a_signed_by_b(env: Env) -> None:
    a, b = env.registered(), env.registered()
    before = env.count(ACMEOrder)
    r = a.post(
        a.dir["newOrder"],
        {"identifiers": [{"type": "dns", "value": "x.example.ac.jp"}]},
        key=b.key,
        kid=a.kid,
    )
    assert r.status_code == 400 and r.json()["type"] == ERR + "malformed"
    assert env.count(ACMEOrder) == before


def test_name_outside_institution(env: Env) -> None:
    c = env.registered()
    before = env.count(ACMEOrder), env.count(ACMEAuthorization)
    r = c.new_order(["www.example.ac.jp", "www.other.ac.jp"])
    assert r.json()["type"] == ERR + "rejectedIdentifier"
    assert (env.count(ACMEOrder), env.count(ACMEAuthorization)) == before


def test_credential_domains_restrict_further(env: Env) -> None:
    c = env.client()
    assert c.register(env.new_cred(domains=("lab.example.ac.jp",))).status_code == 201
    assert c.new_order(["www.lab.example.ac.jp"]).status_code == 201
    assert c.new_order(["www.example.ac.jp"]).json()["type"] == ERR + "rejectedIdentifier"


@pytest.mark.parametrize(
    "problem,error",
    [
        ("caa", 'CAA record for example.ac.jp names another CA (issue "ca.example.net")'),
        ("caa", "SERVFAIL looking up CAA for example.ac.jp"),
    ],
)
def test_caa_refusal_at_finalize(env: Env, problem: str, error: str) -> None:
    c = env.registered()
    order = ready_order(c, ["www.example.ac.jp"])
    env.va.caa["www.example.ac.jp"] = (problem, error)
    before = env.count(Certificate)
    r = c.post(order["finalize"], {"csr": b64(csr_der(ec_key(), ["www.example.ac.jp"]))})
    assert r.status_code == 403
    assert r.json()["type"] == ERR + "caa"
    assert "error 338" in r.json()["detail"]
    assert env.count(Certificate) == before
    assert c.get(order["url"]).json()["status"] == "ready"  # nothing changed


def test_finalize_refusals(env: Env) -> None:
    c = env.registered()
    r = c.new_order(["www.example.ac.jp"])
    early = c.post(r.json()["finalize"], {"csr": b64(csr_der(ec_key(), ["www.example.ac.jp"]))})
    assert early.json()["type"] == ERR + "orderNotReady" and early.status_code == 403
    order = ready_order(c, ["www.example.ac.jp"])
    before = env.count(Certificate)
    wrong = c.post(order["finalize"], {"csr": b64(csr_der(ec_key(), ["other.example.ac.jp"]))})
    assert wrong.json()["type"] == ERR + "badCSR"
    garbage = c.post(order["finalize"], {"csr": b64(b"\x30\x03\x02\x01\x00")})
    assert garbage.json()["type"] == ERR + "badCSR"
    own = c.post(order["finalize"], {"csr": b64(csr_der(c.key.private, ["www.example.ac.jp"]))})
    assert own.json()["type"] == ERR + "badCSR"
    assert env.count(Certificate) == before


def test_blocked_key_refused_after_keycompromise(env: Env) -> None:
    c = env.registered()
    key = ec_key()
    order, pem = issue(c, ["www.example.ac.jp"], key)
    from cryptography.hazmat.primitives.serialization import Encoding

    leaf = x509.load_pem_x509_certificates(pem.encode())[0]
    r = c.post(
        c.dir["revokeCert"], {"certificate": b64(leaf.public_bytes(Encoding.DER)), "reason": 1}
    )
    assert r.status_code == 200
    order2 = ready_order(c, ["www.example.ac.jp"])
    before = env.count(Certificate)
    again = c.post(order2["finalize"], {"csr": b64(csr_der(key, ["www.example.ac.jp"]))})
    assert again.json()["type"] in (ERR + "badCSR", ERR + "badPublicKey")
    assert env.count(Certificate) == before


def test_revoke_with_certificate_key(env: Env) -> None:
    c = env.registered()
    key = ec_key()
    _, pem = issue(c, ["www.example.ac.jp"], key)
    from cryptography.hazmat.primitives.serialization import Encoding

    leaf = x509.load_pem_x509_certificates(pem.encode())[0]
    certkey = Key(key, "ES256")
    r = c.post(
        c.dir["revokeCert"],
        {"certificate": b64(leaf.public_bytes(Encoding.DER))},
        key=certkey,
        kid=None,
    )
    assert r.status_code == 200, r.text
    with env.ctx.db.session() as s:
        from kakuin.store.repos import CertificateRepo

        row = CertificateRepo(s).by_serial(format(leaf.serial_number, "x"))
        assert row.revoked_at is not None and row.revocation_reason == 1


def test_jws_refusals(env: Env) -> None:
    c = env.registered()
    url = c.dir["newOrder"]
    payload = {"identifiers": [{"type": "dns", "value": "www.example.ac.jp"}]}
    before = env.count(ACMEOrder)
    wrong_url = c.post(url, payload, header={"url": "http://127.0.0.1:8080/acme/new-account"})
    assert wrong_url.json()["type"] == ERR + "unauthorized"
    no_nonce = c.post(url, payload, nonce=None)
    assert no_nonce.json()["type"] == ERR + "badNonce"
    hs = c.post(url, payload, header={"alg": "HS256"})
    assert hs.json()["type"] == ERR + "badSignatureAlgorithm"
    assert "ES256" in hs.json()["algorithms"]
    rs_on_ec = c.post(url, payload, header={"alg": "RS256"})
    assert rs_on_ec.json()["type"] == ERR + "badSignatureAlgorithm"
    both = c.post(url, payload, header={"jwk": c.key.jwk})
    assert both.json()["type"] == ERR + "malformed"
    not_json = env.http.post(url, content=b"{", headers={"Content-Type": "application/jose+json"})
    assert not_json.json()["type"] == ERR + "malformed"
    wrong_ct = env.http.post(url, content=b"{}", headers={"Content-Type": "application/json"})
    assert wrong_ct.status_code == 415 and wrong_ct.json()["type"] == ERR + "malformed"  # RFC 8555 §6.2
    assert wrong_ct.headers["content-type"].startswith("application/problem+json")
    no_ct = env.http.post(url, content=b"{}")
    assert no_ct.status_code == 415 and no_ct.headers.get("Replay-Nonce")
    huge = env.http.post(url, content=b"{" + b" " * (300 * 1024) + b"}",
                         headers={"Content-Type": "application/jose+json"})
    assert huge.status_code == 400 and huge.json()["type"] == ERR + "malformed"
    assert "bytes" in huge.json()["detail"] and huge.headers.get("Replay-Nonce")
    unknown = c.post(url, payload, kid="http://127.0.0.1:8080/acme/acct/999999")
    assert unknown.json()["type"] == ERR + "accountDoesNotExist"
    ip = c.new_order([])
    assert ip.json()["type"] == ERR + "malformed"
    ipid = c.post(url, {"identifiers": [{"type": "ip", "value": "192.0.2.1"}]})
    assert ipid.json()["type"] == ERR + "unsupportedIdentifier"
    assert env.count(ACMEOrder) == before


def test_account_lookup_contacts_rollover_deactivation(env: Env) -> None:
    stranger = env.client()
    r = stranger.post(stranger.dir["newAccount"], {"onlyReturnExisting": True}, kid=None)
    assert r.json()["type"] == ERR + "accountDoesNotExist"
    c = env.client()
    kid, key = env.new_cred()
    assert (
        c.register((kid, key), contact=["tel:+81312345678"]).json()["type"]
        == ERR + "unsupportedContact"
    )
    assert (
        c.register((kid, key), contact=["mailto:not an address"]).json()["type"]
        == ERR + "invalidContact"
    )
    assert c.register((kid, key)).status_code == 201
    upd = c.post(c.kid, {"contact": ["mailto:new@example.ac.jp"]})
    assert upd.json()["contact"] == ["mailto:new@example.ac.jp"]
    # Key rollover (RFC 8555 §7.3.5).
    new = Key.es256()
    from tests.acme_client import jws

    inner = jws(new, c.dir["keyChange"], {"account": c.kid, "oldKey": c.key.jwk}, nonce=None)
    rolled = c.post(c.dir["keyChange"], inner)
    assert rolled.status_code == 200, rolled.text
    stale = c.new_order(["www.example.ac.jp"])
    assert stale.json()["type"] == ERR + "malformed"
    c.key = new
    assert c.new_order(["www.example.ac.jp"]).status_code == 201
    # A key that belongs to another account: 409 with its URL.
    other = env.registered()
    clash = jws(other.key, c.dir["keyChange"], {"account": c.kid, "oldKey": c.key.jwk}, nonce=None)
    conflict = c.post(c.dir["keyChange"], clash)
    assert conflict.status_code == 409 and conflict.headers["Location"] == other.kid
    # Deactivation: nothing works afterwards.
    assert c.post(c.kid, {"status": "deactivated"}).json()["status"] == "deactivated"
    assert c.new_order(["www.example.ac.jp"]).json()["type"] == ERR + "unauthorized"


def test_wildcard_only_dns01(env: Env) -> None:
    c = env.registered()
    r = c.new_order(["*.example.ac.jp"])
    authz = c.get(r.json()["authorizations"][0]).json()
    assert authz["wildcard"] is True
    assert [ch["type"] for ch in authz["challenges"]] == ["dns-01"]
    normal = c.get(c.new_order(["www.example.ac.jp"]).json()["authorizations"][0]).json()
    assert {ch["type"] for ch in normal["challenges"]} == {"http-01", "dns-01", "tls-alpn-01"}


def test_failed_validation_invalidates(env: Env) -> None:
    env.va.validation_ok = False
    c = env.registered()
    r = c.new_order(["www.example.ac.jp"])
    az = r.json()["authorizations"][0]
    ch = next(x for x in c.get(az).json()["challenges"] if x["type"] == "http-01")
    c.post(ch["url"], {})
    done = c.wait(az, ("valid", "invalid"))
    assert done["status"] == "invalid"
    assert done["challenges"][0]["error"]["type"] in (ERR + "unauthorized",) or any(
        x.get("error") for x in done["challenges"]
    )
    assert c.get(r.headers["Location"]).json()["status"] == "invalid"


def raw_post(env: Env, c: Client, url: str, prot: dict, payload_b64: str) -> object:
    """A JWS built by hand (a header or encoding the client helper would not make)."""
    import json

    p64 = b64(json.dumps(prot).encode())
    body = {"protected": p64, "payload": payload_b64, "signature": b64(c.key.sign(f"{p64}.{payload_b64}".encode()))}
    return env.http.post(url, content=json.dumps(body), headers={"Content-Type": "application/jose+json"})


def test_post_as_get_directory_nonce_and_wrong_methods(env: Env) -> None:
    c = env.registered()
    # RFC 8555 §6.3: the directory and newNonce also answer POST-as-GET.
    d = c.post(c.dir["newAccount"].replace("new-account", "directory"), None)
    assert d.status_code == 200 and d.json()["newOrder"] == c.dir["newOrder"] and d.headers["Replay-Nonce"]
    n = c.post(c.dir["newNonce"], None)
    assert n.status_code == 200 and n.headers["Replay-Nonce"] and n.headers["Cache-Control"] == "no-store"
    assert c.post(c.dir["newNonce"], {}).json()["type"] == ERR + "malformed"
    # Any other resource: GET is 405 malformed, with Allow and a nonce.
    for url in (c.dir["newOrder"], c.kid, c.dir["revokeCert"]):
        r = env.http.get(url)
        assert r.status_code == 405 and r.json()["type"] == ERR + "malformed", r.text
        assert r.headers["Allow"] == "POST" and r.headers["Replay-Nonce"]
    put = env.http.put(c.dir["newNonce"], content=b"")
    assert put.status_code == 405 and put.headers["Allow"] == "GET, HEAD, POST"
    assert env.http.get(c.dir["newNonce"]).status_code == 204


def test_jws_encoding_and_header_strictness(env: Env) -> None:
    c = env.registered()
    url = c.dir["newOrder"]
    good = {"alg": "ES256", "kid": c.kid, "url": url}
    payload = b64(b'{"identifiers":[{"type":"dns","value":"www.example.ac.jp"}]}')
    before = env.count(ACMEOrder)
    # RFC 8555 §6.1: padding (and anything outside the URL-safe alphabet) is refused.
    for bad in (payload + "=" * (-len(payload) % 4 or 4), payload[:-2] + " " + payload[-2:],
                payload.replace("-", "+").replace("_", "/") + "+"):
        r = raw_post(env, c, url, {**good, "nonce": c.nonce()}, bad)
        assert r.json()["type"] == ERR + "malformed", (bad, r.text)
    # RFC 7515 §4.1.11: no "crit" extension is understood; RFC 8555 §6.2: no b64.
    for extra in ({"crit": ["exp"], "exp": 1}, {"b64": False, "crit": ["b64"]}, {"b64": True}):
        r = raw_post(env, c, url, {**good, "nonce": c.nonce(), **extra}, payload)
        assert r.json()["type"] == ERR + "malformed", (extra, r.text)
    assert env.count(ACMEOrder) == before
    assert raw_post(env, c, url, {**good, "nonce": c.nonce()}, payload).status_code == 201
    # keyChange: the inner JWS must not carry a nonce (RFC 8555 §7.3.5).
    from tests.acme_client import jws

    new = Key.es256()
    inner = jws(new, c.dir["keyChange"], {"account": c.kid, "oldKey": c.key.jwk}, nonce=c.nonce())
    assert c.post(c.dir["keyChange"], inner).json()["type"] == ERR + "malformed"


def test_challenge_fields_csr_sans_and_not_after(env: Env) -> None:
    import datetime as dt

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    c = env.registered()
    now = env.ctx.clock.now()
    # RFC 8555 §7.5.1: fields a challenge response does not define are ignored.
    r = c.new_order(["www.example.ac.jp"])
    order_url, order = r.headers["Location"], r.json()
    ch = c.get(order["authorizations"][0]).json()["challenges"][0]
    assert c.post(ch["url"], {"keyAuthorization": "ignored"}).status_code == 200
    assert c.wait(order_url, ("ready", "invalid"))["status"] == "ready"
    # A CSR that also asks for an IP address or a URI: badCSR, the order stays ready.
    key = ec_key()
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.example.ac.jp")]))
           .add_extension(x509.SubjectAlternativeName([
               x509.DNSName("www.example.ac.jp"), x509.UniformResourceIdentifier("https://www.example.ac.jp/"),
           ]), False).sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
    bad = c.post(order["finalize"], {"csr": b64(csr)})
    assert bad.json()["type"] == ERR + "badCSR" and "UniformResourceIdentifier" in bad.json()["detail"]
    assert c.get(order_url).json()["status"] == "ready"
    # notBefore cannot be honoured (a certificate is valid from issuance): refused.
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    nb = c.new_order(["www.example.ac.jp"], notBefore=now.strftime(stamp))
    assert nb.json()["type"] == ERR + "malformed" and "notBefore" in nb.json()["detail"]
    # A notAfter beyond the validity limit, or not a whole second: refused at newOrder.
    far = c.new_order(["www.example.ac.jp"], notAfter=(now + dt.timedelta(days=400)).strftime(stamp))
    assert far.json()["type"] == ERR + "malformed" and "beyond the limit" in far.json()["detail"], far.text
    frac = c.new_order(["www.example.ac.jp"], notAfter=(now + dt.timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%S.5Z"))
    assert frac.json()["type"] == ERR + "malformed"
    # A notAfter that can be honoured is, to the second.
    want = (now + dt.timedelta(days=10, hours=1)).replace(microsecond=0)
    o = c.new_order(["www.example.ac.jp"], notAfter=want.strftime(stamp))
    assert o.status_code == 201 and o.json()["notAfter"] == want.strftime(stamp)
    ready = c.wait(o.headers["Location"], ("ready", "invalid"))  # the valid authorization is reused
    done = c.post(ready["finalize"], {"csr": b64(csr_der(ec_key(), ["www.example.ac.jp"]))})
    assert done.status_code == 200, done.text
    leaf = x509.load_pem_x509_certificates(c.get(done.json()["certificate"]).content)[0]
    assert leaf.not_valid_after_utc == want
    assert leaf.not_valid_before_utc == now.replace(microsecond=0)


def test_account_object_eab_contacts_status_and_deactivation(env: Env) -> None:
    c = env.client()
    kid, key = env.new_cred()
    r = c.register((kid, key), contact=["mailto:Admin@Example.AC.JP"])
    assert r.status_code == 201
    # RFC 8555 §7.3.4: the verified binding comes back as it was sent.
    body = r.json()
    assert body["externalAccountBinding"]["protected"] and body["externalAccountBinding"]["signature"]
    assert body["contact"] == ["mailto:Admin@example.ac.jp"]  # the domain, case-insensitive, lowered
    # §7.3.2: a status other than "deactivated" is ignored, not refused.
    assert c.post(c.kid, {"status": "valid", "orders": "x"}).json()["status"] == "valid"
    pending = c.new_order(["pending.example.ac.jp"])
    failed = c.new_order(["failed.example.ac.jp"])
    env.va.validation_ok = False
    ch = c.get(failed.json()["authorizations"][0]).json()["challenges"][0]
    c.post(ch["url"], {})
    assert c.wait(failed.headers["Location"], ("invalid",))["status"] == "invalid"
    # §7.1.2.1: the orders list leaves invalid orders out.
    orders = c.post(c.kid + "/orders", None).json()["orders"]
    assert orders == [pending.headers["Location"]]
    # §7.3.6: deactivation cancels pending work; afterwards every request is 401.
    assert c.post(c.kid, {"status": "deactivated"}).json()["status"] == "deactivated"
    with env.ctx.db.session() as s:
        from sqlalchemy import select

        states = s.scalars(select(ACMEAuthorization.status).where(
            ACMEAuthorization.identifier == "pending.example.ac.jp")).all()
    assert states == ["deactivated"]
    refused = c.get(pending.headers["Location"])
    assert refused.status_code == 401 and refused.json()["type"] == ERR + "unauthorized"
    again = c.post(c.dir["newAccount"], {"onlyReturnExisting": True}, kid=None)
    assert again.status_code == 401 and again.json()["type"] == ERR + "unauthorized"


def test_ari_replaces_canonical_ids_and_renew_now(env: Env) -> None:
    from kakuin.acme.ari import cert_id

    c = env.registered()
    _, pem = issue(c, ["ari.example.ac.jp"])
    leaf = x509.load_pem_x509_certificates(pem.encode())[0]
    cid = cert_id(leaf)
    aki, serial = cid.split(".")
    # Only the canonical spelling names the certificate (RFC 9773 §4.1: the DER
    # serial, minimal): a needless leading zero or stray trailing bits are 400.
    n = leaf.serial_number
    padded = aki + "." + b64(bytes(1) + n.to_bytes((n.bit_length() + 7) // 8, "big"))
    if padded != cid:  # (a serial with its top bit set has the zero octet already)
        assert env.http.get(f"/acme/renewal-info/{padded}").json()["type"] == ERR + "malformed"
        assert c.new_order(["ari.example.ac.jp"], replaces=padded).json()["type"] == ERR + "malformed"
    stray = aki[:-1] + chr(ord(aki[-1]) + 1) if aki[-1] in "AEIMQUYcgkosw048" else None
    if stray:
        assert env.http.get(f"/acme/renewal-info/{stray}.{serial}").json()["type"] == ERR + "malformed"
    assert env.http.get(f"/acme/renewal-info/{cid}").status_code == 200
    # Another account may not name it; the owner may, once: a second order while the
    # first replacement is still pending is 409 alreadyReplaced (§5).
    other = env.registered()
    assert other.new_order(["ari.example.ac.jp"], replaces=cid).json()["type"] == ERR + "unauthorized"
    first = c.new_order(["ari.example.ac.jp"], replaces=cid)
    assert first.status_code == 201, first.text
    second = c.new_order(["ari.example.ac.jp"], replaces=cid)
    assert second.status_code == 409 and second.json()["type"] == ERR + "alreadyReplaced"
    # Once the first replacement is invalid (its authorization deactivated), it may be named again.
    az = first.json()["authorizations"][0]
    c.post(az, {"status": "deactivated"})
    assert c.new_order(["ari.example.ac.jp"], replaces=cid).status_code == 201
    # The operator's "renew now" takes the serial as openssl prints it.
    printed = "serial=" + format(leaf.serial_number, "X").rjust(40, "0")
    assert env.ctx.acme.set_renewal_now([printed]) == 1
    assert env.http.get(f"/acme/renewal-info/{cid}").json()["suggestedWindow"]["end"] < env.ctx.clock.now().strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def test_two_replacements_of_one_certificate_at_once_one_wins(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes (two contexts on one database) take newOrders naming the same
    certificate in ``replaces`` at the same moment, both past the first check:
    the check made again under the account's lock lets one insert, and the other
    is alreadyReplaced."""
    import json
    import threading

    from kakuin.acme.ari import cert_id
    from kakuin.acme.errors import AlreadyReplaced
    from kakuin.context import Context
    from tests.acme_client import jws

    c = env.registered()
    _, pem = issue(c, ["twice.example.ac.jp"])
    cid = cert_id(x509.load_pem_x509_certificates(pem.encode())[0])
    other = Context.open(env.ctx.config.data_dir, clock=env.ctx.clock)
    try:
        services = [env.ctx.acme.service, other.acme.service]
        url = c.dir["newOrder"]
        payload = {"identifiers": [{"type": "dns", "value": "twice.example.ac.jp"}], "replaces": cid}
        bodies = [json.dumps(jws(c.key, url, payload, nonce=c.nonce(), kid=c.kid)).encode() for _ in services]
        barrier = threading.Barrier(2)
        for svc in services:
            inner = svc.ledger.new_order

            def gated(*a: object, inner=inner, **kw: object):  # type: ignore[no-untyped-def]
                barrier.wait(timeout=10)  # both have passed the first check
                return inner(*a, **kw)

            monkeypatch.setattr(svc.ledger, "new_order", gated)
        outcomes: list[str] = []

        def order(svc, body: bytes) -> None:  # type: ignore[no-untyped-def]
            try:
                svc.new_order(svc.authenticate(body, url))
                outcomes.append("created")
            except AlreadyReplaced:
                outcomes.append("alreadyReplaced")

        threads = [threading.Thread(target=order, args=(svc, body)) for svc, body in zip(services, bodies, strict=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert sorted(outcomes) == ["alreadyReplaced", "created"]
        with env.ctx.db.session() as s:
            assert len(s.query(ACMEOrder).filter(ACMEOrder.replaces == cid).all()) == 1
    finally:
        other.db.dispose()


def test_key_compromise_revokes_the_same_key_everywhere_and_is_not_for_others(env: Env) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    from tests.acme_client import jws

    key = ec_key()
    c = env.registered()
    _, pem1 = issue(c, ["a.example.ac.jp"], key)
    _, pem2 = issue(c, ["b.example.ac.jp"], key)  # the same key, another certificate
    leaf1, leaf2 = (x509.load_pem_x509_certificates(p.encode())[0] for p in (pem1, pem2))

    def status(leaf: x509.Certificate) -> tuple:
        with env.ctx.db.session() as s:
            row = s.query(Certificate).filter_by(serial=format(leaf.serial_number, "x")).one()
            return row.revoked_at is not None, row.revocation_reason

    # Another account holding authorizations for the name may revoke, but only as
    # cessationOfOperation (Boulder): it proved no compromise, no key is blocked.
    other = env.registered()
    ready_order(other, ["a.example.ac.jp"])
    r = other.post(c.dir["revokeCert"], {"certificate": b64(leaf1.public_bytes(Encoding.DER)), "reason": 1})
    assert r.status_code == 200, r.text
    assert status(leaf1) == (True, 5) and status(leaf2) == (False, None)
    # The key's holder proves it compromised by signing with it: the reason becomes
    # keyCompromise (the date stays), the key is blocked and the other certificate
    # with it is revoked at once (BR 4.9.1.1 #3).
    body = jws(Key(key, "ES256"), c.dir["revokeCert"], {"certificate": b64(leaf1.public_bytes(Encoding.DER))},
               nonce=c.nonce())
    r = c.post(c.dir["revokeCert"], None, body=body)
    assert r.status_code == 200, r.text
    assert status(leaf1) == (True, 1) and status(leaf2) == (True, 1)
    again = c.post(c.dir["revokeCert"], None, body=jws(
        Key(key, "ES256"), c.dir["revokeCert"], {"certificate": b64(leaf1.public_bytes(Encoding.DER))},
        nonce=c.nonce()))
    assert again.json()["type"] == ERR + "alreadyRevoked"
    order = ready_order(c, ["c.example.ac.jp"])
    blocked = c.post(order["finalize"], {"csr": b64(csr_der(key, ["c.example.ac.jp"]))})
    assert blocked.json()["type"] == ERR + "badCSR"


def test_concurrent_revocations_one_wins(env: Env) -> None:
    import threading

    from kakuin.errors import AlreadyRevokedError

    c = env.registered()
    _, pem = issue(c, ["race.example.ac.jp"])
    serial = format(x509.load_pem_x509_certificates(pem.encode())[0].serial_number, "x")
    results: list[object] = []
    barrier = threading.Barrier(4)

    def go(reason: int) -> None:
        barrier.wait()
        try:
            results.append(env.ctx.revocation.revoke(serial, reason, actor=f"t{reason}", comment="race"))
        except AlreadyRevokedError as exc:
            results.append(exc)

    threads = [threading.Thread(target=go, args=(r,)) for r in (3, 4, 5, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [r for r in results if not isinstance(r, Exception)]
    assert len(won) == 1 and len(results) == 4, results
    with env.ctx.db.session() as s:
        row = s.query(Certificate).filter_by(serial=serial).one()
        assert row.revocation_reason == won[0].reason  # type: ignore[attr-defined]


def test_invalid_a_labels_and_unknown_paths(env: Env) -> None:
    c = env.registered()
    bad = c.new_order(["xn--zz.example.ac.jp"])
    assert bad.status_code == 400 and bad.json()["type"] == ERR + "rejectedIdentifier", bad.text
    assert c.new_order(["xn--bcher-kva.example.ac.jp"]).status_code == 201
    r = env.http.get("/acme/no-such-thing")
    assert r.status_code == 404 and r.json()["type"] == ERR + "malformed" and r.headers["Replay-Nonce"]


def _challenge_of(env: Env, c: Client, name: str) -> tuple[str, int, int, str]:
    r = c.new_order([name])
    az_url = r.json()["authorizations"][0]
    ch = next(x for x in c.get(az_url).json()["challenges"] if x["type"] == "http-01")
    cid = int(ch["url"].rsplit("/", 1)[1])
    return r.headers["Location"], int(az_url.rsplit("/", 1)[1]), cid, az_url


def test_a_validation_does_not_revive_a_deactivated_authorization(env: Env) -> None:
    """RFC 8555 §7.1.6: deactivated is final, even when a validation that was
    already running finishes afterwards."""
    c = env.registered()
    order_url, aid, cid, az_url = _challenge_of(env, c, "slow.example.ac.jp")
    ledger = env.ctx.acme.service.ledger
    assert ledger.claim_challenge(cid, aid)  # the validation is under way ("processing")
    assert c.post(az_url, {"status": "deactivated"}).json()["status"] == "deactivated"
    challenge, _ = ledger.challenge(cid)  # type: ignore[misc]
    rec = env.ctx.va.record("http-01", "slow.example.ac.jp", ok=True, observed={})
    env.ctx.acme.flow._record(challenge, aid, rec)
    assert c.get(az_url).json()["status"] == "deactivated"
    assert c.get(order_url).json()["status"] == "invalid"


def test_validations_are_reused_only_within_the_br_period(env: Env) -> None:
    import datetime as dt

    from kakuin.clock import UTC

    c = env.registered()
    env.ctx.clock.set(dt.datetime(2029, 3, 10, tzinfo=UTC))  # type: ignore[attr-defined]
    first = ready_order(c, ["reuse.example.ac.jp"])
    authz = c.get(first["authorizations"][0]).json()
    assert authz["expires"] == "2029-04-09T00:00:00Z"  # 30 days while the BR allow 100
    # 15 days later the BR allow 10 (from 2029-03-15): the validation is too old.
    env.ctx.clock.set(dt.datetime(2029, 3, 25, tzinfo=UTC))  # type: ignore[attr-defined]
    assert c.get(first["authorizations"][0]).json()["status"] == "expired"
    assert c.get(first["url"]).json()["status"] == "invalid"
    again = c.new_order(["reuse.example.ac.jp"])
    assert c.get(again.json()["authorizations"][0]).json()["status"] == "pending"
    # A validation made now lives 10 days, the BR's limit then.
    second = ready_order(c, ["reuse.example.ac.jp"])
    assert c.get(second["authorizations"][0]).json()["expires"] == "2029-04-04T00:00:00Z"


def test_finalize_rechecks_after_caa_and_reports_ca_failures(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from kakuin.errors import NotFound

    c = env.registered()
    order = ready_order(c, ["caa-race.example.ac.jp"])
    az_id = int(order["authorizations"][0].rsplit("/", 1)[1])
    inner = env.ctx.va.check_caa

    async def deactivating_caa(domain: str, **kw: object):  # type: ignore[no-untyped-def]
        env.ctx.acme.service.ledger.set_authz(az_id, status="deactivated")  # meanwhile, elsewhere
        return await inner(domain, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(env.ctx.va, "check_caa", deactivating_caa)
    before = env.count(Certificate)
    r = c.post(order["finalize"], {"csr": b64(csr_der(ec_key(), ["caa-race.example.ac.jp"]))})
    assert r.status_code == 403 and r.json()["type"] == ERR + "orderNotReady", r.text
    assert env.count(Certificate) == before
    monkeypatch.setattr(env.ctx.va, "check_caa", inner)
    # A CA-side gap after the claim is serverInternal (500), not a 404 "malformed".
    order = ready_order(c, ["gap.example.ac.jp"])

    def no_intermediate(*a: object, **kw: object) -> object:
        raise NotFound("no active tls-ecdsa intermediate")

    monkeypatch.setattr(env.ctx.acme.flow.issuance, "issue", no_intermediate)
    r = c.post(order["finalize"], {"csr": b64(csr_der(ec_key(), ["gap.example.ac.jp"]))})
    assert r.status_code == 500 and r.json()["type"] == ERR + "serverInternal", r.text
    stored = c.get(order["url"]).json()
    assert stored["status"] == "invalid" and stored["error"]["type"] == ERR + "serverInternal"


def test_an_order_left_processing_becomes_invalid_at_expiry(env: Env) -> None:
    import datetime as dt

    c = env.registered()
    order = ready_order(c, ["stuck.example.ac.jp"])
    oid = int(order["url"].rsplit("/", 1)[1])
    assert env.ctx.acme.service.ledger.claim_order(oid)  # a process took it, then died
    assert c.get(order["url"]).json()["status"] == "processing"
    env.ctx.clock.advance(dt.timedelta(days=8))  # type: ignore[attr-defined]
    assert c.get(order["url"]).json()["status"] == "invalid"


def test_account_keys_canonical_and_checked(env: Env) -> None:
    """One key, one spelling: a JWK with a padded or non-minimal member is refused
    (else the same key could hold several accounts); malformed members are 400,
    never 500; a blocked (compromised) key registers no account."""
    import json

    from cryptography.hazmat.primitives.serialization import Encoding

    from tests.acme_client import jws

    key = Key.rs256()
    canonical = key.jwk
    n_raw = __import__("base64").urlsafe_b64decode(canonical["n"] + "==")
    variants = [
        {**canonical, "n": b64(b"\x00" + n_raw)},  # a leading zero octet
        {**canonical, "n": canonical["n"] + "=" * (-len(canonical["n"]) % 4 or 4)},  # padding
        {**canonical, "n": 123}, {**canonical, "e": None}, {**canonical, "n": [1]},
    ]
    c = env.client(key=key)
    for jwk in variants:
        body = jws(key, c.dir["newAccount"], {"termsOfServiceAgreed": True}, nonce=c.nonce(),
                   header={"jwk": jwk})
        r = env.http.post(c.dir["newAccount"], content=json.dumps(body),
                          headers={"Content-Type": "application/jose+json"})
        assert r.status_code == 400 and r.json()["type"] in (ERR + "badPublicKey", ERR + "malformed"), (jwk, r.text)
    assert env.count(ACMEAccount) == 0
    # A key on the compromised-key blocklist signs for no new account.
    blocked = env.registered()
    _, pem = issue(blocked, ["kc.example.ac.jp"], blocked_key := ec_key())
    leaf = x509.load_pem_x509_certificates(pem.encode())[0]
    assert blocked.post(c.dir["revokeCert"], {"certificate": b64(leaf.public_bytes(Encoding.DER)),
                                               "reason": 1}).status_code == 200
    thief = env.client(key=Key(blocked_key, "ES256"))
    kid, hmac_key = env.new_cred()
    r = thief.register((kid, hmac_key))
    assert r.status_code == 400 and r.json()["type"] == ERR + "badPublicKey", r.text


def test_serials_are_found_however_an_operator_writes_them(env: Env) -> None:
    from kakuin.store.repos import CertificateRepo, canonical_serial

    c = env.registered()
    _, pem = issue(c, ["serial.example.ac.jp"])
    n = x509.load_pem_x509_certificates(pem.encode())[0].serial_number
    stored = format(n, "x")
    padded = format(n, "X").rjust(40, "0")
    colons = ":".join(padded[i:i + 2] for i in range(0, 40, 2))
    for written in (stored, padded, "serial=" + padded, "0x" + stored, colons):
        assert canonical_serial(written) == stored, written
    assert canonical_serial("not-hex") is None and canonical_serial("") is None
    with env.ctx.db.session() as s:
        assert CertificateRepo(s).by_serial("serial=" + padded).serial == stored
    r = env.ctx.revocation.revoke("serial=" + padded, 4, actor="operator:test", comment="superseded")
    assert r.serial == stored
