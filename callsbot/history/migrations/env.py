"""Alembic environment: callsbot passes its own connection in ``config.attributes``.

Run migrations with ``python -m callsbot db upgrade`` (or let the recorder apply them at start);
this file is not meant for the ``alembic`` command line, which would need a second copy of the
database URL and its password.
"""

from __future__ import annotations

from alembic import context

from callsbot.history.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("history migrations run through `python -m callsbot db upgrade`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things: later migrations get Alembic's copy-and-move batches.
    render_as_batch=connection.dialect.name == "sqlite",
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
