"""PKCS#12 in bulk (P12一括, TSV download method 2): one archive link for the
officer who applied, a ZIP with one PKCS#12 per row (named by column 12) and a
manifest without PINs; PINs go to the subscribers; using the archive records a
download for every certificate in it; the link works once; duplicate file
names are refused at check time."""

from __future__ import annotations

import datetime as dt
import io
import shutil
import zipfile

import pytest

from kakuin.clock import UTC
from kakuin.ra.actors import Actor
from kakuin.ra.retrieval import RetrievalGone
from kakuin.ra.services import RA
from kakuin.ra.tsv.parse import TSVRefused
from tests.helpers import run
from tests.ra_helpers import INST, OP, body, client_fields, outbox, pin_of, setup_institution, token_of, tsv

AT = dt.datetime(2025, 6, 2, tzinfo=UTC)
OFFICER = "officer-a@example.ac.jp"


@pytest.fixture
def ra(make_ctx) -> RA:  # type: ignore[no-untyped-def]
    r = RA(make_ctx(AT))
    setup_institution(r)
    return r


def officer(ra: RA) -> Actor:
    from kakuin.store.repos import InstitutionRepo

    with ra.ctx.db.session() as s:
        return Actor(f"officer:{OFFICER}", InstitutionRepo(s).by_name(INST).id)


def row(cn: str, email_addr: str, method: str, *, p12: str = "", pin: str = "") -> list[str]:
    fields = client_fields(cn=cn, email_addr=email_addr, method=method, pin=pin)
    fields[11] = p12
    return fields


def openssl_opens(path, pin: str) -> bool:  # type: ignore[no-untyped-def]
    openssl = shutil.which("openssl")
    assert openssl, "openssl is required for these tests"
    done = run([openssl, "pkcs12", "-info", "-in", path, "-passin", f"pass:{pin}", "-noout"])
    return done.returncode == 0


def test_bulk_rows_make_one_archive_for_the_officer(ra: RA, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rows = [
        row("Hanako Yamada", "hanako@example.ac.jp", "2", p12="hanako.p12", pin="Abcd1234efgh"),
        row("Jiro Suzuki", "jiro@example.ac.jp", "2"),  # no name: <serial>.p12; PIN generated and mailed
        row("Saburo Sato", "saburo@example.ac.jp", "1"),  # individually, as before
    ]
    report = ra.tsv.apply(tsv(rows), institution=INST, actor=officer(ra))
    assert report.status == "applied"
    hanako, jiro, saburo = (r.serial for r in report.results)
    assert hanako and jiro and saburo

    [archive_mail] = outbox(ra.ctx, "retrieval-bulk")
    assert archive_mail["To"] == OFFICER and "manifest.tsv" in body(archive_mail)
    [single] = outbox(ra.ctx, "retrieval")  # the individual row only
    assert single["To"] == "saburo@example.ac.jp"
    pins = {m["To"]: pin_of(m) for m in outbox(ra.ctx, "access-pin")}
    assert set(pins) == {"jiro@example.ac.jp", "saburo@example.ac.jp"}  # not hanako: her PIN came with the TSV
    assert all(p not in body(archive_mail) for p in pins.values())

    before = ra.stats.institution_stats(actor=OP, institution=INST)[0].counts
    assert (before.downloaded, before.not_downloaded) == (0, 3)

    token = token_of(archive_mail)
    info = ra.retrieval.peek(token)
    assert info.kind == "zip" and info.count == 2
    d = ra.retrieval.fetch(token)
    assert d.media_type == "application/zip" and d.filename.endswith(".zip")
    z = zipfile.ZipFile(io.BytesIO(d.content))
    assert sorted(z.namelist()) == sorted(["hanako.p12", f"{jiro}.p12", "manifest.tsv"])
    for name, pin in (("hanako.p12", "Abcd1234efgh"), (f"{jiro}.p12", pins["jiro@example.ac.jp"])):
        path = tmp_path / name
        path.write_bytes(z.read(name))
        assert openssl_opens(path, pin), name
        assert not openssl_opens(path, "wrong-pin-0000")
        assert not openssl_opens(path, "")

    manifest = z.read("manifest.tsv").decode()
    lines = [line.split("\t") for line in manifest.splitlines()]
    assert lines[0] == ["file", "serial", "subject", "email", "not_after"]
    assert {(r[0], r[1], r[3]) for r in lines[1:]} == {
        ("hanako.p12", hanako, "hanako@example.ac.jp"),
        (f"{jiro}.p12", jiro, "jiro@example.ac.jp"),
    }
    assert "CN=Hanako Yamada" in manifest and "PIN" not in manifest.upper()
    assert all(p not in manifest for p in (*pins.values(), "Abcd1234efgh"))

    with pytest.raises(RetrievalGone) as e:
        ra.retrieval.fetch(token)
    assert "使用済み" in e.value.message

    after = ra.stats.institution_stats(actor=OP, institution=INST)[0].counts
    assert (after.downloaded, after.not_downloaded) == (2, 1)
    done = outbox(ra.ctx, "downloaded")
    assert {m["To"] for m in done} == {"hanako@example.ac.jp", "jiro@example.ac.jp"}  # each their own
    summary = outbox(ra.ctx, "downloaded-bulk")  # the officer: one notice for the archive
    assert [m["To"] for m in summary] == [OFFICER]
    text = body(summary[0])
    assert hanako in text and jiro in text and saburo not in text and "2" in summary[0]["Subject"]

    from sqlalchemy import select

    from kakuin.ra.models import Retrieval

    with ra.ctx.db.session() as s:  # no key material stays for the archive's certificates
        kept = s.scalars(select(Retrieval).where(Retrieval.payload.is_not(None))).all()
        assert [r.serial for r in kept] == [saburo]


def test_bulk_link_expires_and_can_be_renewed(ra: RA) -> None:
    ra.tsv.apply(tsv([row("Jiro Suzuki", "jiro@example.ac.jp", "2")]), institution=INST, actor=officer(ra))
    first = token_of(outbox(ra.ctx, "retrieval-bulk")[0])
    serial = outbox(ra.ctx, "access-pin")[0]["Subject"].rsplit(" ", 1)[-1]
    ra.ctx.clock.advance(dt.timedelta(days=ra.ctx.config.ra.retrieval_days, seconds=1))  # type: ignore[attr-defined]
    with pytest.raises(RetrievalGone) as e:
        ra.retrieval.fetch(first)
    assert "expired" in e.value.message
    ra.ctx.clock.advance(dt.timedelta(seconds=-2))  # type: ignore[attr-defined]
    ra.retrieval.renew_link(serial, actor=officer(ra))
    second = token_of(outbox(ra.ctx, "retrieval-bulk")[-1])
    with pytest.raises(RetrievalGone):
        ra.retrieval.fetch(first)
    assert zipfile.ZipFile(io.BytesIO(ra.retrieval.fetch(second).content)).namelist() == [
        f"{serial}.p12",
        "manifest.tsv",
    ]


def test_duplicate_file_names_in_the_archive_are_refused(ra: RA) -> None:
    rows = [
        row("Hanako Yamada", "hanako@example.ac.jp", "2", p12="same.p12"),
        row("Jiro Suzuki", "jiro@example.ac.jp", "1", p12="same.p12"),  # individually: not in the archive
        row("Saburo Sato", "saburo@example.ac.jp", "2", p12="SAME.p12"),
        row("Shiro Ito", "shiro@example.ac.jp", "2", p12="manifest.tsv"),
    ]
    report = ra.tsv.check(tsv(rows), institution=INST, actor=officer(ra))
    assert [(e.row, e.column, e.rule) for e in report.errors] == [
        (3, 12, "p12-name-duplicate"),
        (4, 12, "p12-name-duplicate"),
    ]
    assert "重複" in report.errors[0].message_ja and "appears twice" in report.errors[0].message_en
    with pytest.raises(TSVRefused):
        ra.tsv.apply(tsv(rows), institution=INST, actor=officer(ra))
    assert not outbox(ra.ctx, "retrieval-bulk")


def test_bulk_needs_an_officer_to_send_the_archive_to(ra: RA) -> None:
    report = ra.tsv.check(tsv([row("Jiro Suzuki", "jiro@example.ac.jp", "2")]), institution=INST, actor=OP)
    [err] = report.errors
    assert (err.row, err.column, err.rule) == (1, 3, "bulk-needs-officer")
    assert "登録担当者" in err.message_ja and "officer" in err.message_en
