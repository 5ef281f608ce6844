"""Alembic revision files; Alembic skips this module when it scans for revisions."""
