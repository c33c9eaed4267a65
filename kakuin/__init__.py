"""kakuin (角印): a certificate authority and issuance service for institutions.

Packages, split by security context as in Boulder:

- ``policy``: pure rules (profiles, validity schedule, subject rules, key rules).
- ``store``: SQLAlchemy models, repositories and Alembic migrations.
- ``ca``: key stores, the hierarchy, the issuance pipeline and linting. Only
  ``ca`` ever touches a CA private key.
- ``cli``: the Typer command line, a thin edge over the services.
"""

__version__ = "0.1.0"
