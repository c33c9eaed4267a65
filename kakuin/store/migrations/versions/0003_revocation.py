"""revocation requests, CRL numbers and published CRLs, OCSP responders and responses

Revision ID: 0003_revocation
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_revocation"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "revocation_requests",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("serial", sa.String(64), nullable=False, index=True),
        sa.Column("reason", sa.Integer(), nullable=False),
        sa.Column("reported_at", TS, nullable=False),
        sa.Column("reported_by", sa.String(128), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("deadline", TS, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("done_at", TS, nullable=True),
        sa.Column("done_by", sa.String(128), nullable=True),
    )
    op.create_index("ix_revocation_requests_status", "revocation_requests", ["status", "deadline"])
    op.create_table(
        "crl_numbers",
        sa.Column("issuer_id", sa.Integer(), sa.ForeignKey("cas.id"), primary_key=True),
        sa.Column("last", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "crls",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("issuer_id", sa.Integer(), sa.ForeignKey("cas.id"), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.Column("this_update", TS, nullable=False),
        sa.Column("next_update", TS, nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("stale", sa.Boolean(), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.UniqueConstraint("issuer_id", "shard", name="uq_crl_scope"),
    )
    op.create_table(
        "ocsp_responders",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("issuer_id", sa.Integer(), sa.ForeignKey("cas.id"), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("key_backend", sa.String(16), nullable=False),
        sa.Column("key_label", sa.String(128), nullable=False),
        sa.Column("key_type", sa.String(16), nullable=False),
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("not_before", TS, nullable=False),
        sa.Column("not_after", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("issuer_id", "generation", name="uq_ocsp_responder_gen"),
    )
    op.create_table(
        "ocsp_responses",
        sa.Column("serial", sa.String(64), primary_key=True),
        sa.Column("hash_alg", sa.String(8), primary_key=True),
        sa.Column("issuer_id", sa.Integer(), sa.ForeignKey("cas.id"), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("this_update", TS, nullable=False),
        sa.Column("next_update", TS, nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_ocsp_responses_next_update", "ocsp_responses", ["next_update"])
    # Partial covering index of revoked certificates: the CRL query is one index scan.
    revoked = sa.text("revoked_at IS NOT NULL")
    op.create_index("ix_certificates_revoked", "certificates",
                    ["issuer_id", "crl_shard", "not_after", "serial", "revoked_at", "revocation_reason",
                     "invalidity_date"], sqlite_where=revoked, postgresql_where=revoked)


def downgrade() -> None:
    op.drop_index("ix_certificates_revoked", "certificates")
    op.drop_table("ocsp_responses")
    op.drop_table("ocsp_responders")
    op.drop_table("crls")
    op.drop_table("crl_numbers")
    op.drop_table("revocation_requests")
