"""Alembic revisions of the store's schema, append-only; run through ``coordinator.store.schema``."""
