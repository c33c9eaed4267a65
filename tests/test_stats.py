"""Statistics per institution and per domain, and who may see them."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from kakuin.clock import UTC
from kakuin.errors import Unauthorized
from kakuin.ra.actors import Actor
from kakuin.ra.services import RA
from tests.helpers import ec_key
from tests.ra_helpers import INST, OP, client_fields, outbox, server_fields, setup_institution, token_of, tsv

AT = dt.datetime(2025, 6, 2, tzinfo=UTC)


def test_counts_per_institution_and_domain(make_ctx) -> None:  # type: ignore[no-untyped-def]
    ra = RA(make_ctx(AT))
    setup_institution(ra, domains=("example.ac.jp", "lab.example.jp"))
    rows = [server_fields(ec_key(ec.SECP384R1()), cn=cn) for cn in ("a.example.ac.jp", "b.example.ac.jp")]
    rows.append(server_fields(ec_key(ec.SECP384R1()), cn="www.lab.example.jp"))
    serials = [r.serial for r in ra.tsv.apply(tsv(rows), institution=INST, actor=OP).results]
    ra.tsv.apply(tsv([client_fields(pin="Abcd1234efgh")]), institution=INST, actor=OP)
    ra.retrieval.fetch(token_of(outbox(ra.ctx, "retrieval")[0]))  # a.example.ac.jp downloaded
    ra.revoke(str(serials[1]), 4, actor=OP)
    [st] = ra.stats.institution_stats(actor=OP, institution=INST)
    c = st.counts
    assert (c.issued, c.revoked, c.valid, c.downloaded, c.not_downloaded, c.expiring_30d) == (4, 1, 3, 1, 3, 0)
    by = {d.domain: d.counts for d in st.domains}
    assert (by["example.ac.jp"].issued, by["example.ac.jp"].revoked, by["example.ac.jp"].downloaded) == (3, 1, 1)
    assert (by["lab.example.jp"].issued, by["lab.example.jp"].valid) == (1, 1)
    assert sum(b.count for b in st.expiring_by_week) == 0
    # Near expiry: the valid ones fall within 30 days and into weekly buckets.
    ra.ctx.clock.advance(dt.timedelta(days=380))  # type: ignore[attr-defined]
    [st] = ra.stats.institution_stats(actor=OP, institution=INST)
    assert st.counts.expiring_30d == 2 and sum(b.count for b in st.expiring_by_week) == 2
    assert all(b.week_start.weekday() == 0 for b in st.expiring_by_week)
    assert st.as_dict()["expiring_30d"] == 2


def test_officer_sees_only_own_institution(make_ctx) -> None:  # type: ignore[no-untyped-def]
    ra = RA(make_ctx(AT))
    a = setup_institution(ra)
    b = setup_institution(ra, "Other University", domains=("other.ac.jp",))
    officer_a = Actor("officer:o@example.ac.jp", a)
    assert [s.institution for s in ra.stats.institution_stats(actor=officer_a)] == [INST]
    with pytest.raises(Unauthorized):
        ra.stats.institution_stats(actor=officer_a, institution="Other University")
    assert len(ra.stats.institution_stats(actor=OP)) == 2
    assert b != a
