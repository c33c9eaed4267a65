"""RA: PKCS#12 in bulk (P12一括) as one archive per application — each
certificate's retrieval row points at the archive's row (issue #5)

Revision ID: 0007_ra_bulk
Revises: 0004_ra
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_ra_bulk"
down_revision = "0004_ra"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # No FOREIGN KEY: SQLite cannot add one to an existing table without a rebuild.
    op.add_column("ra_retrievals", sa.Column("bundle_id", sa.Integer(), nullable=True))
    op.create_index("ix_ra_retrievals_bundle_id", "ra_retrievals", ["bundle_id"])


def downgrade() -> None:
    op.drop_index("ix_ra_retrievals_bundle_id", "ra_retrievals")
    op.drop_column("ra_retrievals", "bundle_id")
