"""Alembic migrations of the consent registry; run programmatically by ``Registry.open``."""
