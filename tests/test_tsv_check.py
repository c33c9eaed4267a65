"""Row checks against the institution and the shared rules, and whole-file vs
row-by-row application. Errors are asserted exactly (row, column, rule, both
languages)."""

from __future__ import annotations

import datetime as dt

import pytest

from kakuin.clock import UTC
from kakuin.errors import Unauthorized
from kakuin.ra.actors import Actor
from kakuin.ra.services import RA
from kakuin.ra.tsv.parse import RowError, TSVRefused
from tests.helpers import ec_key, ov_name, rsa_key
from tests.ra_helpers import INST, OP, server_fields, setup_institution, tsv

AT = dt.datetime(2025, 6, 2, tzinfo=UTC)


@pytest.fixture
def ra(make_ctx) -> RA:  # type: ignore[no-untyped-def]
    r = RA(make_ctx(AT))
    setup_institution(r)
    return r


def _errors(ra: RA, rows: list[list[str]]) -> list[RowError]:
    return list(ra.tsv.check(tsv(rows), institution=INST, actor=OP).errors)


def test_good_server_rows_pass(ra: RA) -> None:
    rows = [server_fields(p384()), server_fields(rsa_key(), cn="mail.example.ac.jp", profile_id="1")]
    r = ra.tsv.check(tsv(rows), institution=INST, actor=OP)
    assert r.ok and r.rows == 2 and r.encoding == "shift_jis"
    assert [row.dns_names for row in r.checked] == [("www.example.ac.jp",), ("mail.example.ac.jp",)]


def p384():  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec_key(ec.SECP384R1())


def test_unknown_profile(ra: RA) -> None:
    assert _errors(ra, [server_fields(p384(), profile_id="9")]) == [
        RowError(
            1,
            2,
            "unknown-profile",
            "証明書プロファイルID(#2): 証明書プロファイルID「9」は使用できません(使用可能: 1, 11)",
            "profile ID (#2): profile ID '9' is not known (known: 1, 11)",
        )
    ]


def test_profile_and_key_must_agree(ra: RA) -> None:
    [e] = _errors(ra, [server_fields(rsa_key(), profile_id="11")])
    assert (e.row, e.column, e.rule) == (1, 2, "profile-key-mismatch")


def test_bad_dn_uses_the_subject_rules(ra: RA) -> None:
    [e] = _errors(
        ra,
        [server_fields(p384(), cn="www.example.ac.jp", dn="CN=.www.example.ac.jp,O=Example University,ST=Tokyo,C=JP")],
    )
    assert e == RowError(
        1,
        1,
        "cn-leading-symbol",
        "主体者DN(#1): CNの先頭に記号は使用できません",
        "subject DN (#1): CN must not start with a symbol",
    )


def test_dn_order_and_registered_name(ra: RA) -> None:
    [e] = _errors(ra, [server_fields(p384(), dn="O=Example University,CN=www.example.ac.jp,ST=Tokyo,C=JP")])
    assert (e.column, e.rule) == (1, "dn-order")
    [e] = _errors(ra, [server_fields(p384(), o="Other University")])
    assert (e.column, e.rule) == (1, "o-mismatch")
    assert "登録済みの機関名「Example University」" in e.message_ja


def test_prefecture_must_be_the_institution_s(ra: RA) -> None:
    [e] = _errors(ra, [server_fields(p384(), dn="CN=www.example.ac.jp,O=Example University,ST=Osaka,C=JP")])
    assert e.rule == "st-mismatch" and e.message_en.endswith("does not match the institution's prefecture Tokyo")


def test_csr_dn_must_match(ra: RA) -> None:
    fields = server_fields(p384(), csr_name=ov_name(cn="www.example.ac.jp", o=INST, st="Osaka", l=None))
    [e] = _errors(ra, [fields])
    assert (e.row, e.column, e.rule) == (1, 7, "csr-dn-mismatch")
    assert e.message_ja.startswith("CSR(#7): CSRのDN(")
    assert e.message_en.endswith("does not match the subject DN (#1)")


def test_broken_csr(ra: RA) -> None:
    fields = server_fields(p384())
    fields[6] = fields[6][:60] + "AAAA" + fields[6][64:]
    [e] = _errors(ra, [fields])
    assert (e.column, e.rule) == (7, "csr-invalid")


def test_cn_must_equal_fqdn_and_domain_must_be_registered(ra: RA) -> None:
    fields = server_fields(p384())
    fields[10] = "web.example.ac.jp"
    [e] = _errors(ra, [fields])
    assert (e.column, e.rule) == (11, "cn-fqdn-mismatch")
    [e] = _errors(ra, [server_fields(p384(), cn="www.example.com")])
    assert (e.column, e.rule) == (11, "domain-not-registered")
    assert e.message_ja == "サーバFQDN(#11): 機関に登録・承認されたドメインではありません"
    [e] = _errors(ra, [server_fields(p384(), extra="a.example.ac.jp www.other.jp")])
    assert (e.column, e.rule) == (13, "domain-not-registered")


def test_errors_on_several_rows_all_reported(ra: RA) -> None:
    rows = [server_fields(p384()), server_fields(p384(), profile_id="2"), server_fields(p384(), cn="x.example.com")]
    assert [(e.row, e.column, e.rule) for e in _errors(ra, rows)] == [
        (2, 2, "unknown-profile"),
        (3, 11, "domain-not-registered"),
    ]


def test_whole_file_refused_unless_row_by_row(ra: RA) -> None:
    data = tsv([server_fields(p384()), server_fields(p384(), profile_id="2")])
    with pytest.raises(TSVRefused) as e:
        ra.tsv.apply(data, institution=INST, actor=OP)
    assert [(x.row, x.rule) for x in e.value.errors] == [(2, "unknown-profile")]
    from kakuin.store.repos import CertificateFilter, CertificateRepo

    with ra.ctx.db.session() as s:
        assert not CertificateRepo(s).find(CertificateFilter())
    report = ra.tsv.apply(data, institution=INST, actor=OP, row_by_row=True)
    assert report.status == "partial"
    assert [(r.row, r.ok) for r in report.results] == [(1, True), (2, False)]
    assert report.results[0].serial


def test_renew_refuses_the_old_key_and_a_changed_dn(ra: RA) -> None:
    key = p384()
    issued = ra.tsv.apply(tsv([server_fields(key)]), institution=INST, actor=OP).results[0].serial
    assert issued
    [e] = _errors(ra, [server_fields(key, replaces=issued)])
    assert e == RowError(
        1,
        7,
        "renew-same-key",
        f"CSR(#7): 旧証明書(シリアル番号 {issued})の鍵ペアは更新申請に使用できません。"
        "新しい鍵ペアでCSRを作成してください",
        f"CSR (#7): the key pair of the old certificate {issued} cannot be reused; make a new key pair and CSR",
    )
    [e] = _errors(ra, [server_fields(p384(), cn="w2.example.ac.jp", replaces=issued)])
    assert (e.column, e.rule) == (1, "renew-dn-mismatch")
    report = ra.tsv.apply(tsv([server_fields(p384(), replaces=issued)]), institution=INST, actor=OP)
    assert report.status == "applied" and report.kind == "server-renew"


def test_revoke_reason_zero_needs_a_comment(ra: RA) -> None:
    serial = ra.tsv.apply(tsv([server_fields(p384())]), institution=INST, actor=OP).results[0].serial
    assert serial
    assert _errors(ra, [[serial, "0", ""]]) == [
        RowError(
            1,
            3,
            "revocation-comment",
            "失効理由コメント(#3): 失効理由が0(unspecified)の場合は失効理由コメントが必須です",
            "comment (#3): reason 0 (unspecified) needs a comment",
        )
    ]
    [e] = _errors(ra, [[serial, "2", "x"]])
    assert (e.column, e.rule) == (2, "revocation-reason")
    [e] = _errors(ra, [["abcdef", "4", ""]])
    assert (e.column, e.rule) == (1, "unknown-serial")
    report = ra.tsv.apply(tsv([[serial, "0", "サーバ廃止"]]), institution=INST, actor=OP)
    assert report.status == "applied"
    [e] = _errors(ra, [[serial, "4", ""]])
    assert e.rule == "already-revoked"


def test_caa_refusal_when_configured(make_ctx) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx(AT)
    cfg = ctx.config.data_dir / "kakuin.toml"
    cfg.write_text(cfg.read_text() + "\n[ra]\ncheck_caa = true\n")
    from kakuin.clock import FixedClock
    from kakuin.context import Context

    ra = RA(Context.open(ctx.config.data_dir, clock=FixedClock(AT)))
    setup_institution(ra)
    seen: list[list[str]] = []

    def caa(names: list[str]) -> dict[str, str | None]:
        seen.append(names)
        return {n: ('issue "other.example"' if n.startswith("www") else None) for n in names}

    ra.tsv.caa = caa
    [e] = _errors(ra, [server_fields(p384())])
    assert (e.column, e.rule) == (11, "caa") and "338" in e.message_ja and "error 338" in e.message_en
    assert seen == [["www.example.ac.jp"]]


def test_officer_of_another_institution_cannot_apply(ra: RA) -> None:
    other = ra.institutions.register("Other University", actor=OP, prefecture="Osaka", domains=("other.ac.jp",))
    officer_b = Actor("officer:b@other.ac.jp", other.id)
    with pytest.raises(Unauthorized):
        ra.tsv.apply(tsv([server_fields(p384())]), institution=INST, actor=officer_b)
    with pytest.raises(Unauthorized):
        ra.tsv.check(tsv([server_fields(p384())]), institution=INST, actor=officer_b)


def test_officer_cannot_revoke_another_institution_s_certificate(ra: RA) -> None:
    serial = ra.tsv.apply(tsv([server_fields(p384())]), institution=INST, actor=OP).results[0].serial
    other = ra.institutions.register("Other University", actor=OP, prefecture="Osaka", domains=("other.ac.jp",))
    ra.institutions.confirm("Other University", actor=OP)
    officer_b = Actor("officer:b@other.ac.jp", other.id)
    [e] = ra.tsv.check(tsv([[serial, "4", ""]]), institution="Other University", actor=officer_b).errors
    assert (e.column, e.rule) == (1, "other-institution")
    with pytest.raises(Unauthorized):
        ra.revoke(serial, 4, actor=officer_b)


def test_unconfirmed_institution_is_refused_before_checking_rows(ra: RA) -> None:
    from kakuin.store.repos import InstitutionRepo

    with ra.ctx.db.session() as s:
        InstitutionRepo(s).by_name(INST).confirmed_until = AT - dt.timedelta(days=1)
    with pytest.raises(TSVRefused) as e:
        ra.tsv.check(tsv([server_fields(p384())]), institution=INST, actor=OP)
    assert [(x.row, x.rule) for x in e.value.errors] == [(0, "institution-unconfirmed")]
    assert "年次確認の期限" in e.value.errors[0].message_ja
    assert "yearly confirmation has lapsed" in e.value.errors[0].message_en


def test_eab_rows_make_credentials_mailed_to_the_subscriber(ra: RA) -> None:
    from tests.ra_helpers import body, outbox

    rows = [
        ["国立 太郎", "taro@example.ac.jp", "www.example.ac.jp", "90"],
        ["山田 花子", "hanako@example.ac.jp", "", ""],
    ]
    report = ra.tsv.apply(tsv(rows, encoding="utf-8", bom=True, newline="\n", final=False), institution=INST, actor=OP)
    assert report.kind == "eab" and report.status == "applied"
    kids = [r.kid for r in report.results]
    assert all(k and k.startswith("kid-") for k in kids)
    mails = outbox(ra.ctx, "eab")
    assert [m["To"] for m in mails] == ["taro@example.ac.jp", "hanako@example.ac.jp"]
    # "--eab-hmac-key=" with "=": a base64url key may start with "-"
    assert f"--eab-kid {kids[0]}" in body(mails[0]) and "--eab-hmac-key=" in body(mails[0])
    creds = {c.kid: c for c in ra.ctx.acme.eab.list()}
    assert creds[kids[0]].domains == ("www.example.ac.jp",) and creds[kids[1]].domains == ()
    [e] = _errors(ra, [["x", "x@example.ac.jp", "www.other.jp", ""]])
    assert (e.column, e.rule) == (3, "domain-not-registered")
