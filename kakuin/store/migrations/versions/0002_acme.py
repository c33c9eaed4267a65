"""ACME: accounts, orders, authorizations, challenges, nonces, EAB, ARI overrides

Revision ID: 0002_acme
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_acme"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "acme_nonces",
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("nonce"),
    )
    op.create_index(op.f("ix_acme_nonces_created_at"), "acme_nonces", ["created_at"], unique=False)
    op.create_table(
        "ari_overrides",
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("explanation_url", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("serial"),
    )
    op.create_table(
        "eab_credentials",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("hmac_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("institution_id", sa.Integer(), nullable=False),
        sa.Column("domains", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kid"),
    )
    op.create_index(op.f("ix_eab_credentials_institution_id"), "eab_credentials", ["institution_id"], unique=False)
    op.create_table(
        "acme_accounts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("thumbprint", sa.String(length=64), nullable=False),
        sa.Column("jwk", sa.JSON(), nullable=False),
        sa.Column("contact", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("eab_credential_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("institution_id", sa.Integer(), nullable=True),
        sa.Column("tos_agreed", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["eab_credential_id"],
            ["eab_credentials.id"],
        ),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("eab_credential_id"),
        sa.UniqueConstraint("thumbprint"),
    )
    op.create_table(
        "acme_authorizations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("identifier", sa.String(length=253), nullable=False),
        sa.Column("wildcard", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("expires", sa.DateTime(timezone=True), nullable=False),
        sa.Column("validated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["acme_accounts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_acme_authz_reuse", "acme_authorizations", ["account_id", "identifier", "status"], unique=False)
    op.create_table(
        "acme_orders",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("identifiers", sa.JSON(), nullable=False),
        sa.Column("authz_ids", sa.JSON(), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires", sa.DateTime(timezone=True), nullable=False),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("certificate_serial", sa.String(length=64), nullable=True),
        sa.Column("replaces", sa.String(length=256), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["acme_accounts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_acme_orders_account", "acme_orders", ["account_id", "id"], unique=False)
    op.create_index(op.f("ix_acme_orders_certificate_serial"), "acme_orders", ["certificate_serial"], unique=False)
    op.create_index(op.f("ix_acme_orders_replaces"), "acme_orders", ["replaces"], unique=False)
    op.create_table(
        "acme_challenges",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("authz_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("validated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("record", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["authz_id"],
            ["acme_authorizations.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_acme_challenges_authz_id"), "acme_challenges", ["authz_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_acme_challenges_authz_id"), table_name="acme_challenges")
    op.drop_table("acme_challenges")
    op.drop_index(op.f("ix_acme_orders_replaces"), table_name="acme_orders")
    op.drop_index(op.f("ix_acme_orders_certificate_serial"), table_name="acme_orders")
    op.drop_index("ix_acme_orders_account", table_name="acme_orders")
    op.drop_table("acme_orders")
    op.drop_index("ix_acme_authz_reuse", table_name="acme_authorizations")
    op.drop_table("acme_authorizations")
    op.drop_table("acme_accounts")
    op.drop_index(op.f("ix_eab_credentials_institution_id"), table_name="eab_credentials")
    op.drop_table("eab_credentials")
    op.drop_table("ari_overrides")
    op.drop_index(op.f("ix_acme_nonces_created_at"), table_name="acme_nonces")
    op.drop_table("acme_nonces")
