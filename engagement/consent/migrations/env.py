"""Alembic environment: runs on the connection that ``Registry`` hands over, already inside the one transaction
``Registry._migrate`` opens for each migration (so ``begin_transaction`` below adds none, and a failed migration is
rolled back whole)."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
