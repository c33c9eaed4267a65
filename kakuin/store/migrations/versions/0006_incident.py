"""Incident response: incidents and their certificates, reminders, the key
ceremony log, cross-certificates and scheduled CA revocations (issue #7)

Revision ID: 0006_incident
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_incident"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "key_ceremony_log",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("ca_slug", sa.String(64), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("signature", sa.Text(), nullable=False),
    )
    op.create_index("ix_key_ceremony_log_ca_slug", "key_ceremony_log", ["ca_slug"])
    op.create_table(
        "cross_certificates",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("subject_ca_id", sa.Integer(), sa.ForeignKey("cas.id"), nullable=False),
        sa.Column("issuer_ca_id", sa.Integer(), sa.ForeignKey("cas.id"), nullable=False),
        sa.Column("serial", sa.String(64), nullable=False, unique=True),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("not_before", TS, nullable=False),
        sa.Column("not_after", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_cross_certificates_subject_ca_id", "cross_certificates", ["subject_ca_id"])
    op.create_table(
        "ca_revocation_schedule",
        sa.Column("ca_id", sa.Integer(), sa.ForeignKey("cas.id"), primary_key=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("reason", sa.Integer(), nullable=False),
        sa.Column("scheduled_by", sa.String(128), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("applied_at", TS, nullable=True),
    )
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("issuers", sa.JSON(), nullable=False),
        sa.Column("issued_from", TS, nullable=True),
        sa.Column("issued_to", TS, nullable=True),
        sa.Column("expires_after", TS, nullable=True),
        sa.Column("profile", sa.String(32), nullable=True),
        sa.Column("key_type", sa.String(16), nullable=True),
        sa.Column("rule_text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("opened_by", sa.String(128), nullable=False),
        sa.Column("deadline", TS, nullable=False),
        sa.Column("replacement", sa.String(64), nullable=True),
        sa.Column("explanation_url", sa.Text(), nullable=True),
        sa.Column("summary_ja", sa.Text(), nullable=False),
        sa.Column("summary_en", sa.Text(), nullable=False),
        sa.Column("remind_days", sa.JSON(), nullable=False),
        sa.Column("notified_at", TS, nullable=True),
        sa.Column("executed_at", TS, nullable=True),
        sa.Column("revoke_reason", sa.Integer(), nullable=True),
    )
    op.create_table(
        "incident_certificates",
        sa.Column("incident_id", sa.Integer(), sa.ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("serial", sa.String(64), primary_key=True),
        sa.Column("issuer", sa.String(64), nullable=False),
        sa.Column("profile", sa.String(32), nullable=False),
        sa.Column("key_type", sa.String(16), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("names", sa.Text(), nullable=False),
        sa.Column("institution_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("officer", sa.String(254), nullable=True),
        sa.Column("subscriber", sa.String(254), nullable=True),
        sa.Column("not_before", TS, nullable=False),
        sa.Column("not_after", TS, nullable=False),
        sa.Column("replaced_by", sa.String(64), nullable=True),
        sa.Column("replaced_via", sa.String(16), nullable=True),
        sa.Column("replaced_at", TS, nullable=True),
        sa.Column("ari_set_at", TS, nullable=True),
    )
    op.create_index("ix_incident_certificates_institution_id", "incident_certificates", ["institution_id"])
    op.create_index("ix_incident_certificates_serial", "incident_certificates", ["serial"])
    op.create_table(
        "incident_reminders",
        sa.Column("incident_id", sa.Integer(), sa.ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("label", sa.String(32), primary_key=True),
        sa.Column("sent_at", TS, nullable=False),
        sa.Column("mails", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("incident_reminders")
    op.drop_table("incident_certificates")
    op.drop_table("incidents")
    op.drop_table("ca_revocation_schedule")
    op.drop_table("cross_certificates")
    op.drop_table("key_ceremony_log")
