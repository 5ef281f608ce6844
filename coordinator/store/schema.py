"""Schema versions: Alembic upgrades, and the check that refuses an unknown newer schema."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from coordinator.errors import StoreUnavailable

MIGRATIONS: Final = Path(__file__).resolve().parent / "migrations"


def _config(connection: Connection | None = None) -> Config:
    # Built in code rather than read from alembic.ini: the installed package carries its
    # revisions, and the store hands Alembic the connection it already holds.
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head() -> str:
    """The newest revision this code knows."""
    heads = _scripts().get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"the store's migrations must have one head, not {heads}")
    return heads[0]


def known_revisions() -> frozenset[str]:
    """Every revision this code could upgrade from."""
    return frozenset(script.revision for script in _scripts().walk_revisions())


def current(connection: Connection) -> tuple[str, ...]:
    """The revisions the database is stamped with; empty for a fresh database."""
    return tuple(MigrationContext.configure(connection).get_current_heads())


def check_known(revisions: tuple[str, ...]) -> None:
    """Refuse a database that a newer coordinator has migrated.

    :raises StoreUnavailable: when a revision is unknown to this code.
    """
    unknown = sorted(set(revisions) - known_revisions())
    if unknown:
        raise StoreUnavailable(
            f"database schema is at revision {', '.join(unknown)}, newer than this "
            f"coordinator knows (its newest is {head()}); upgrade the coordinator"
        )


def upgrade(connection: Connection) -> None:
    """Bring the schema to the head revision inside the caller's transaction.

    :raises StoreUnavailable: when the database is at a revision this code does not know.
    """
    check_known(current(connection))
    command.upgrade(_config(connection), "head")
