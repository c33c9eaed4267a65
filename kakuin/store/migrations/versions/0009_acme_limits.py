"""ACME rate limits: the indexes their counts use, and acme_orders.names_hash
(the exact set of names of the duplicate-certificate limit, kakuin.acme.limits)

Orders that got a certificate in the last 14 days (the duplicate window plus an
order's lifetime) are given their names_hash here, so the limit counts them
from the first start after the upgrade.

Revision ID: 0009_acme_limits
Revises: 0002_acme
"""

import datetime as dt
import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0009_acme_limits"
down_revision = "0002_acme"
branch_labels = None
depends_on = None


def _names_hash(identifiers: list[dict[str, str]]) -> str:
    # As kakuin.acme.limits.names_hash (a migration does not import the app).
    names = sorted({str(i["value"]).lower() for i in identifiers})
    return hashlib.sha256(",".join(names).encode()).hexdigest()


def upgrade() -> None:
    op.add_column("acme_orders", sa.Column("names_hash", sa.String(length=64), nullable=True))
    op.create_index("ix_acme_orders_account_created", "acme_orders", ["account_id", "created_at"])
    op.create_index("ix_acme_orders_names", "acme_orders", ["names_hash", "created_at"])
    op.create_index(
        "ix_acme_authz_failed",
        "acme_authorizations",
        ["account_id", "identifier", "status", "validated_at"],
    )
    op.create_index("ix_acme_authz_pending", "acme_authorizations", ["account_id", "status", "expires"])
    orders = sa.table(
        "acme_orders",
        sa.column("id", sa.Integer()),
        sa.column("identifiers", sa.JSON()),
        sa.column("certificate_serial", sa.String()),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("names_hash", sa.String()),
    )
    conn = op.get_bind()
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=14)
    rows = conn.execute(
        sa.select(orders.c.id, orders.c.identifiers).where(
            orders.c.certificate_serial.is_not(None), orders.c.created_at >= since
        )
    ).all()
    for oid, identifiers in rows:
        conn.execute(
            orders.update().where(orders.c.id == oid).values(names_hash=_names_hash(identifiers))
        )


def downgrade() -> None:
    op.drop_index("ix_acme_authz_pending", "acme_authorizations")
    op.drop_index("ix_acme_authz_failed", "acme_authorizations")
    op.drop_index("ix_acme_orders_names", "acme_orders")
    op.drop_index("ix_acme_orders_account_created", "acme_orders")
    with op.batch_alter_table("acme_orders") as b:  # SQLite cannot drop a column in place
        b.drop_column("names_hash")
