"""registration authority: people, RA certificates, applications, retrievals,
expiry notices, mail outbox

Revision ID: 0004_ra
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_ra"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "people",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("institution_id", sa.Integer(), sa.ForeignKey("institutions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("affiliation", sa.String(128), nullable=True),
        sa.Column("cert_serial", sa.String(64), nullable=True),
        sa.Column("cert_spki_sha256", sa.String(64), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("institution_id", "email", "role", name="uq_people_role"),
    )
    op.create_index("ix_people_institution_id", "people", ["institution_id"])
    op.create_index("ix_people_email", "people", ["email"])
    op.create_index("ix_people_cert_spki_sha256", "people", ["cert_spki_sha256"])
    op.create_table(
        "ra_applications",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("institution_id", sa.Integer(), sa.ForeignKey("institutions.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("filename", sa.String(255), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("errors", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_ra_applications_institution_id", "ra_applications", ["institution_id"])
    op.create_table(
        "ra_certificates",
        sa.Column("serial", sa.String(64), primary_key=True),
        sa.Column("institution_id", sa.Integer(), sa.ForeignKey("institutions.id"), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), sa.ForeignKey("people.id"), nullable=True),
        sa.Column("officer", sa.String(128), nullable=False),
        sa.Column("application_id", sa.Integer(), sa.ForeignKey("ra_applications.id"), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("server_software", sa.String(128), nullable=True),
        sa.Column("download_method", sa.String(16), nullable=True),
        sa.Column("replaces", sa.String(64), nullable=True),
        sa.Column("replaced_by", sa.String(64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_ra_certificates_institution_id", "ra_certificates", ["institution_id"])
    op.create_table(
        "ra_retrievals",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("institution_id", sa.Integer(), sa.ForeignKey("institutions.id"), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("filename", sa.String(128), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=True),
        sa.Column("recipient", sa.String(254), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=True),
        sa.Column("used_from", sa.String(64), nullable=True),
    )
    op.create_index("ix_ra_retrievals_serial", "ra_retrievals", ["serial"])
    op.create_index("ix_ra_retrievals_institution_id", "ra_retrievals", ["institution_id"])
    op.create_table(
        "ra_expiry_notices",
        sa.Column("serial", sa.String(64), primary_key=True),
        sa.Column("threshold", sa.Integer(), primary_key=True),
        sa.Column("noticed_at", TS, nullable=False),
    )
    op.create_table(
        "mail_outbox",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("recipient", sa.String(254), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("message", sa.LargeBinary(), nullable=True),
        sa.Column("sensitive", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("claimed_at", TS, nullable=True),
        sa.Column("sent_at", TS, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.UniqueConstraint("recipient", "kind", "key", name="uq_mail_outbox_key"),
    )
    op.create_index("ix_mail_outbox_pending", "mail_outbox", ["sent_at", "id"])


def downgrade() -> None:
    for table in (
        "mail_outbox",
        "ra_expiry_notices",
        "ra_retrievals",
        "ra_certificates",
        "ra_applications",
        "people",
    ):
        op.drop_table(table)
