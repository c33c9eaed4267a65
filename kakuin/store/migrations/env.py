"""Alembic environment: runs on the connection kakuin hands in."""

from alembic import context

import kakuin.acme.models  # noqa: F401,E402  (ACME tables, revision 0002_acme)
import kakuin.incident.models  # noqa: F401,E402  (incidents, ceremony log, revision 0006_incident)
import kakuin.ra.models  # noqa: F401,E402  (RA tables, revision 0004_ra)
import kakuin.status.models  # noqa: F401,E402  (revocation, CRL and OCSP tables)
import kakuin.va.models  # noqa: F401,E402  (validation evidence, revision 0005_mpic)
from kakuin.store.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - kakuin always passes one
    raise RuntimeError("run migrations through kakuin.store.db.Database.migrate()")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
