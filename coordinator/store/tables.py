"""The schema as SQLAlchemy Core tables: requests, workers, users, transitions, enrolment,
tunnel ports, webhooks, usage and quotas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    TypeDecorator,
)

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def to_micros(value: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime.

    :raises ValueError: for a naive datetime, whose instant is unknown.
    """
    try:
        # Python refuses to subtract a naive datetime from an aware one, so the subtraction
        # is the check (twice as fast as asking for the offset first, on the commit path).
        return (value - EPOCH) // _MICROSECOND
    except TypeError:
        raise ValueError(f"naive datetime {value.isoformat()} cannot be stored") from None


def from_micros(value: int) -> datetime:
    """The aware UTC datetime ``value`` microseconds after the Unix epoch."""
    return EPOCH + timedelta(microseconds=value)


class UtcMicros(TypeDecorator[datetime]):
    """An instant stored as BIGINT microseconds since the epoch, read back as aware UTC.

    Integers are exact and compare the same on SQLite and PostgreSQL, unlike SQLite's
    text timestamps or PostgreSQL's ``timestamptz`` with its own rounding and time zone.
    """

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> int | None:
        return None if value is None else to_micros(value)

    def process_result_value(self, value: int | None, dialect: Dialect) -> datetime | None:
        return None if value is None else from_micros(value)


# Named constraints, so that later Alembic revisions can drop or alter them by name on
# both databases (SQLite would otherwise leave them anonymous).
metadata: Final = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

requests: Final = Table(
    "requests",
    metadata,
    # IDs come from the service's counter, never from the database.
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("priority", Integer, nullable=False),
    Column("owner", Text, nullable=False),
    Column("groups", JSON, nullable=False),
    Column("caps", JSON, nullable=False),
    Column("valid_after", UtcMicros, nullable=False),
    Column("deadline", UtcMicros, nullable=False),
    Column("state", Text, nullable=False),
    Column("created", UtcMicros, nullable=False),
    Column("queued", BigInteger, nullable=False),
    # The job's worker is not a foreign key: a deregistered worker leaves its jobs behind.
    Column("job_worker", Text, nullable=True),
    Column("job_started", UtcMicros, nullable=True),
    Column("job_timeout", UtcMicros, nullable=True),
    Column("reason", Text, nullable=False),
    Column("key_type", Text, nullable=False, server_default="rsa"),  # revision 0008
    Index(None, "state"),
)

workers: Final = Table(
    "workers",
    metadata,
    Column("uuid", Text, primary_key=True),
    Column("state", Text, nullable=False),
    Column("caps", JSON, nullable=False),
    Column("groups", JSON, nullable=False),
    Column("registered", UtcMicros, nullable=False),
    Column("changed", UtcMicros, nullable=False),
    Column("ssh_address", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("key", LargeBinary, nullable=False),
    # The sshd's host keys the dryad reported, a list of "type base64" (revision 0008).
    Column("host_keys", JSON, nullable=False, server_default="[]"),
)


def _serial_id() -> Column[int]:
    """An id the database assigns, 64-bit on PostgreSQL.

    SQLite assigns ids only to an INTEGER PRIMARY KEY (the rowid), not to a BIGINT one.
    """
    return Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )


users: Final = Table(
    "users",
    metadata,
    Column("name", Text, primary_key=True),
    Column("token_hash", Text, nullable=False, unique=True),
    Column("admin", Boolean, nullable=False),
    Column("groups", JSON, nullable=False),
    Column("created", UtcMicros, nullable=False),
)

transitions: Final = Table(
    "transitions",
    metadata,
    _serial_id(),
    Column("at", UtcMicros, nullable=False),
    Column("kind", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("old", Text, nullable=False),
    Column("new", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Index(None, "kind", "subject"),
)

dryad_keys: Final = Table(
    "dryad_keys",
    metadata,
    # A worker UUID enrolled on the dryad link; only this key may act as it from then on.
    Column("uuid", Text, primary_key=True),
    Column("public_key", Text, nullable=False),  # OpenSSH "type base64", no comment
    Column("enrolled_at", UtcMicros, nullable=False),
)

enrol_tokens: Final = Table(
    "enrol_tokens",
    metadata,
    # Stored as a hash like API tokens; reusable until expiry, so a batch shares one.
    Column("token_hash", Text, primary_key=True),
    Column("created_at", UtcMicros, nullable=False),
    Column("expires_at", UtcMicros, nullable=False),
    Column("revoked", Boolean, nullable=False),
)

tunnel_ports: Final = Table(
    "tunnel_ports",
    metadata,
    # The last request given each port; a row outlives its job until the port is reused,
    # which costs nothing and saves a write when a job ends.
    Column("port", Integer, primary_key=True, autoincrement=False),
    Column("request", BigInteger, nullable=False),
)

webhooks: Final = Table(
    "webhooks",
    metadata,
    _serial_id(),
    Column("url", Text, nullable=False),
    Column("kinds", JSON, nullable=False),
    # The shared HMAC key that signs deliveries: kept as given, since a hash cannot sign.
    Column("secret", Text, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("created_at", UtcMicros, nullable=False),
    Column("since_event", BigInteger, nullable=False),  # the newest event when it was made
    # A deleted webhook stays, as the record of who removed it and for its deliveries.
    Column("deleted_by", Text, nullable=True),
    Column("deleted_at", UtcMicros, nullable=True),
)

webhook_deliveries: Final = Table(
    "webhook_deliveries",
    metadata,
    _serial_id(),
    Column("hook_id", BigInteger, ForeignKey("webhooks.id"), nullable=False),
    Column("event_id", BigInteger, nullable=False),
    Column("status", Text, nullable=False),  # pending, delivered or dropped
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=False),
    Column("next_attempt_at", UtcMicros, nullable=True),
    Column("delivered_at", UtcMicros, nullable=True),
    Index(None, "status", "next_attempt_at"),
    Index(None, "hook_id", "event_id", unique=True),
)

feed_cursors: Final = Table(
    "feed_cursors",
    metadata,
    # How far a consumer of the transitions (the webhook dispatcher) has read, so that
    # after a restart it resumes there instead of missing or repeating events.
    Column("name", Text, primary_key=True),
    Column("last_id", BigInteger, nullable=False),
)

usage: Final = Table(
    "usage",
    metadata,
    # A user's decayed board-seconds as of ``at`` (docs/scheduling.md §fair share); not a
    # foreign key to users: usage outlives a removed user, and fades by itself.
    Column("owner", Text, primary_key=True),
    Column("value", Double, nullable=False),
    Column("at", UtcMicros, nullable=False),
)

quotas: Final = Table(
    "quotas",
    metadata,
    Column("kind", Text, primary_key=True),  # "user" or "group"
    Column("name", Text, primary_key=True),
    # NULL is no limit (docs/scheduling.md §quotas).
    Column("max_held", Integer, nullable=True),
    Column("max_waiting", Integer, nullable=True),
    Column("max_job_seconds", BigInteger, nullable=True),
)

store_probe: Final = Table(
    "store_probe",
    metadata,
    # One row, rewritten by the write probe of /healthz (docs/architecture.md §connections).
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("at", UtcMicros, nullable=False),
)


serving: Final = Table(
    "serving",
    metadata,
    # One row: the epoch each new serving coordinator raises, and who that is, so that a
    # coordinator that lost the database never writes again (docs/failover.md §standby).
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("epoch", BigInteger, nullable=False),
    Column("holder", Text, nullable=False),
    # Where the holder's HTTP API is reached by the other coordinators, which forward
    # their clients' requests to it with the farm's peer secret
    # (docs/failover.md §scale-out). The secret is made by the migration; never logged.
    Column("peer_url", Text, nullable=False, server_default=""),
    Column("peer_secret", Text, nullable=False, server_default=""),
)
