"""The portal's pages in process (real officer certificates through the TLS
extension): an officer of A cannot see, issue for or revoke anything of B;
every POST needs the CSRF token; language by Accept-Language, link and
cookie; the refusal page; the expiry chart; deadline clocks."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from kakuin.clock import UTC
from kakuin.portal.app import create_portal_app
from kakuin.portal.i18n import negotiate
from kakuin.portal.views import expiry_chart
from kakuin.ra.services import RA
from tests.helpers import ec_key
from tests.portal_helpers import INST_A, INST_B, client, csrf_of, two_institutions
from tests.ra_helpers import OP, server_fields, tsv

AT = dt.datetime(2025, 6, 2, tzinfo=UTC)


@pytest.fixture
def world(make_ctx):  # type: ignore[no-untyped-def]
    ra = RA(make_ctx(AT))
    a, b = two_institutions(ra)
    row_b = server_fields(ec_key(ec.SECP384R1()), cn="www.other.ac.jp", o=INST_B, email_addr="jiro@other.ac.jp")
    serial_b = ra.tsv.apply(tsv([row_b]), institution=INST_B, actor=OP).results[0].serial
    kid_b = ra.ctx.acme.eab.new(INST_B).kid
    app = create_portal_app(ra.ctx)
    return ra, client(ra, a.pem, app), serial_b, kid_b


def test_officer_of_a_cannot_touch_b(world) -> None:  # type: ignore[no-untyped-def]
    ra, ca, serial_b, kid_b = world
    home = ca.get("/")
    assert home.status_code == 200 and INST_A in home.text and INST_B not in home.text
    token = csrf_of(ca.get("/eab").text)
    assert serial_b not in ca.get("/certificates").text
    assert "該当する証明書はありません" in ca.get("/certificates", params={"q": serial_b}).text
    assert ca.get(f"/certificates/{serial_b}").status_code == 404
    r = ca.post(f"/certificates/{serial_b}/revoke", data={"csrf": token, "reason": "4"})
    assert r.status_code == 404
    assert ca.get("/revocations").status_code == 200
    assert kid_b not in ca.get("/eab").text
    assert ca.post(f"/eab/{kid_b}/revoke", data={"csrf": token}).status_code == 404
    assert ca.post("/eab", data={"csrf": token, "institution": INST_B}).status_code == 403
    row = server_fields(ec_key(ec.SECP384R1()), cn="www.other.ac.jp", o=INST_B)
    r = ca.post(
        "/tsv",
        data={"csrf": token, "institution": INST_B, "action": "apply"},
        files={"file": ("b.tsv", tsv([row]), "text/tab-separated-values")},
    )
    assert r.status_code == 403
    # B's certificate and credential are untouched.
    assert [c.state for c in ra.ctx.acme.eab.list() if c.kid == kid_b] == ["unused"]
    from kakuin.ra.certificates import CertificateService

    svc = CertificateService(ra.ctx.db, ra.ctx.clock, ra.ctx.revocation)
    assert svc.get(serial_b, actor=OP).summary.status == "valid"


def test_every_post_needs_the_token(world) -> None:  # type: ignore[no-untyped-def]
    ra, ca, _serial_b, _kid_b = world
    good = ra.tsv.apply(tsv([server_fields(ec_key(ec.SECP384R1()))]), institution=INST_A, actor=OP)
    serial = good.results[0].serial
    for path, data in [
        (f"/certificates/{serial}/revoke", {"reason": "4"}),
        ("/eab", {}),
        ("/tsv", {"action": "check"}),
    ]:
        for token in (None, "forged"):
            r = ca.post(path, data={**data, **({"csrf": token} if token else {})})
            assert r.status_code == 403, path
            assert "フォームの有効期限が切れたか" in r.text
    page = ca.get(f"/certificates/{serial}")
    token = csrf_of(page.text)
    r = ca.post(f"/certificates/{serial}/revoke", data={"csrf": token, "reason": "0"})
    assert r.status_code == 422 and "needs a comment" in r.text  # reason 0 without comment
    r = ca.post(f"/certificates/{serial}/revoke", data={"csrf": token, "reason": "4", "comment": "renewed"})
    assert r.status_code == 200 and f"証明書 {serial} を失効しました" in r.text


def test_language_negotiation_and_switch(world) -> None:  # type: ignore[no-untyped-def]
    _ra, ca, _s, _k = world
    assert '<html lang="ja">' in ca.get("/").text
    en = ca.get("/", headers={"Accept-Language": "en-US,en;q=0.9,ja;q=0.5"})
    assert '<html lang="en">' in en.text and "Dashboard" in en.text
    switched = ca.get("/?lang=en")
    assert '<html lang="en">' in switched.text and "kakuin_lang=en" in switched.headers["set-cookie"]
    assert '<html lang="en">' in ca.get("/tsv").text  # the cookie holds
    assert '<html lang="ja">' in ca.get("/tsv?lang=ja").text
    assert negotiate(None, None, "fr, en;q=0.3") == "en"
    assert negotiate(None, None, "") == "ja"
    assert negotiate("xx", "en", None) == "en"


def test_refusal_page_is_bilingual(world) -> None:  # type: ignore[no-untyped-def]
    ra, _ca, _s, _k = world
    r = client(ra, None).get("/certificates")
    assert r.status_code == 403
    assert "アクセスできません" in r.text and "Access refused" in r.text
    assert 'lang="en"' in r.text and "kakuin officer add" in r.text


def test_pending_revocations_show_deadline_clocks(world) -> None:  # type: ignore[no-untyped-def]
    ra, ca, _s, _k = world
    serial = ra.tsv.apply(tsv([server_fields(ec_key(ec.SECP384R1()))]), institution=INST_A, actor=OP).results[0]
    ra.ctx.revocation.report(serial.serial, 1, reported_by="subscriber:taro@example.ac.jp")
    page = ca.get("/revocations").text
    assert serial.serial in page and "1d 0h 00m" in page and "期限超過" not in page
    ra.ctx.clock.set(AT + dt.timedelta(hours=25))  # type: ignore[attr-defined]
    page = ca.get("/revocations").text
    assert "期限超過" in page and "−1h 00m" in page
    assert "未処理の失効申請: 1" in ca.get("/").text


def test_expiry_chart_is_zero_filled_by_week() -> None:
    monday = dt.date(2025, 6, 2)
    chart = expiry_chart([(monday + dt.timedelta(weeks=2), 3), (monday, 1)], 4, dt.date(2025, 6, 4))
    assert [b["count"] for b in chart["bars"]] == [1, 0, 3, 0]
    assert [b["week"] for b in chart["bars"]] == [monday + dt.timedelta(weeks=i) for i in range(4)]
    assert chart["total"] == 4 and chart["bars"][2]["h"] > chart["bars"][0]["h"] > 0 == chart["bars"][1]["h"]
