"""Alembic revisions of the store's schema, append-only; run by ``coordinator.store.schema``."""
