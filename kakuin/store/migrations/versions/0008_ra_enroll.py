"""RA: enrollment in the browser (ブラウザ個別) — a checked client/S/MIME TSV
row waiting for the subscriber's browser to make the key pair and send a CSR
(issue #5)

Revision ID: 0008_ra_enroll
Revises: 0007_ra_bulk
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_ra_enroll"
down_revision = "0007_ra_bulk"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "ra_enrollments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("institution_id", sa.Integer(), sa.ForeignKey("institutions.id"), nullable=False),
        sa.Column("application_id", sa.Integer(), sa.ForeignKey("ra_applications.id"), nullable=True),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("officer", sa.String(128), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), sa.ForeignKey("people.id"), nullable=True),
        sa.Column("subscriber_email", sa.String(254), nullable=False),
        sa.Column("profile", sa.String(32), nullable=False),
        sa.Column("profile_id", sa.String(4), nullable=False),
        sa.Column("subject_dn", sa.Text(), nullable=False),
        sa.Column("p12_name", sa.String(128), nullable=True),
        sa.Column("pin_required", sa.Boolean(), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=True),
        sa.Column("used_from", sa.String(64), nullable=True),
        sa.Column("serial", sa.String(64), nullable=True),
    )
    op.create_index("ix_ra_enrollments_institution_id", "ra_enrollments", ["institution_id"])
    op.create_index("ix_ra_enrollments_application_id", "ra_enrollments", ["application_id"])


def downgrade() -> None:
    op.drop_table("ra_enrollments")
