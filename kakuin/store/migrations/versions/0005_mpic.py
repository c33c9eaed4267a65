"""MPIC: validation evidence per perspective, linked to certificates (issue #6)

Revision ID: 0005_mpic
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_mpic"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "validation_evidence",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("check_id", sa.String(32), nullable=False),
        sa.Column("domain", sa.String(253), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("perspective", sa.String(64), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("corroborates", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("observed", sa.JSON(), nullable=False),
        sa.Column("dnssec", sa.String(16), nullable=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("perspective_at", sa.String(40), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
    )
    op.create_index("ix_validation_evidence_check_id", "validation_evidence", ["check_id"])
    op.create_index("ix_validation_evidence_domain", "validation_evidence", ["domain", "at"])
    op.create_table(
        "validation_evidence_links",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("check_id", sa.String(32), nullable=False),
        sa.Column("certificate_serial", sa.String(64), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("authz_id", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("check_id", "certificate_serial", name="uq_evidence_link"),
    )
    op.create_index("ix_validation_evidence_links_check_id", "validation_evidence_links", ["check_id"])
    op.create_index("ix_validation_evidence_links_certificate_serial", "validation_evidence_links",
                    ["certificate_serial"])


def downgrade() -> None:
    op.drop_table("validation_evidence_links")
    op.drop_table("validation_evidence")
