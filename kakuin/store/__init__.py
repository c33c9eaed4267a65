"""Storage: SQLAlchemy 2 models, repositories and Alembic migrations.

SQLite in the data directory by default; PostgreSQL when configured. Anything
that must be unique across processes (serials, CRL numbers, nonces, EAB use)
is made unique by a database constraint, not by a lock in memory."""
