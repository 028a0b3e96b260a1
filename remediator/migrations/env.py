"""Alembic environment: run on the connection the remediator passes in (Store.migrate)."""

from __future__ import annotations

from alembic import context
from vigil.remediator.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic -x url=...` from the command line
    import sqlalchemy as sa

    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("pass -x url=DATABASE_URL")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=Base.metadata)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()
