"""The coordinator's error tree; each API-visible error carries its HTTP status and message.

::

    BorutaError
    ├── InvalidRequest (400, "invalid request: …")
    │   ├── PriorityOutOfBounds, DeadlineInThePast, InvalidTimeRange
    │   ├── ModificationForbidden (carries both states), WorkerNotAssigned
    │   ├── IDMismatch, BadID, BadUUID, MalformedInput
    │   ├── WrongStateArgument, ForbiddenStateChange, NotInFailOrMaintenance
    │   ├── InMaintenance, MissingUUID, ProlongLimitReached, BadAddress
    ├── NotFound (404, "<what> not found")
    ├── Unauthorized (401), Forbidden (403)
    ├── BodyTooLarge (413)
    ├── Conflict (409, "invalid request: …"): a concurrent change got there first
    ├── DryadUnreachable (409): the worker's dryad is not connected or did not answer
    ├── StoreUnavailable (503): the database refused a write; nothing was acknowledged
    └── TunnelUnavailable (503): a job's tunnel cannot be opened now
"""

from __future__ import annotations

from typing import ClassVar


class BorutaError(Exception):
    """Root of every error the coordinator reports to a caller."""

    status: ClassVar[int] = 500
    prefix: ClassVar[str] = ""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def wire_message(self) -> str:
        """The ``message`` field of the JSON error body."""
        return self.prefix + self.message


class InvalidRequest(BorutaError, ValueError):
    """The original maps every domain error to 400 with this prefix (docs/boruta-api.md §errors)."""

    status = 400
    prefix = "invalid request: "


class _FixedMessage(InvalidRequest):
    """An error whose message never varies."""

    text: ClassVar[str] = ""

    def __init__(self) -> None:
        super().__init__(self.text)


# Messages are the original's, word for word (boruta:requests/errors.go, workers/error.go).
class PriorityOutOfBounds(_FixedMessage):
    text = "requested priority out of bounds"


class DeadlineInThePast(_FixedMessage):
    text = "deadline in the past"


class InvalidTimeRange(_FixedMessage):
    text = "requested time range illegal - ValidAfter must be before Deadline"


class WorkerNotAssigned(_FixedMessage):
    text = "worker not assigned"


class IDMismatch(_FixedMessage):
    text = "request ID set in JSON doesn't match ID from URL"


class BadID(_FixedMessage):
    text = "ID provided in URL isn't valid"


class BadUUID(_FixedMessage):
    text = "ID provided in URL isn't valid UUID"


class WrongStateArgument(_FixedMessage):
    text = "Only state changes to IDLE and MAINTENANCE are allowed"


class ForbiddenStateChange(_FixedMessage):
    text = "Invalid state transition was requested"


class NotInFailOrMaintenance(_FixedMessage):
    text = "Worker is not in FAIL or MAINTENANCE state"


class InMaintenance(_FixedMessage):
    text = "It is forbidden to set FAIL state when Worker is in MAINTENANCE state"


class MissingUUID(_FixedMessage):
    text = "Capabilities are missing UUID entry"


class ProlongLimitReached(_FixedMessage):
    text = "job has reached the maximum job length and cannot be prolonged"


class ModificationForbidden(InvalidRequest):
    """A transition the state machine does not allow; keeps both states for the logs."""

    def __init__(self, from_state: str = "", to_state: str = "") -> None:
        super().__init__("action cannot be executed in current state")
        self.from_state = from_state
        self.to_state = to_state


class MalformedInput(InvalidRequest):
    """A body or parameter that cannot be parsed (bad JSON, wrong types, bad times)."""


class BadAddress(InvalidRequest):
    """A worker registered an address with no host or no port."""


class NotFound(BorutaError, LookupError):
    """An unknown ID; the message is the original's ``"<What> not found"``."""

    status = 404

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not found")


class Unauthorized(BorutaError, PermissionError):
    """No credentials, or credentials that match no user."""

    status = 401


class Forbidden(BorutaError, PermissionError):
    """Authenticated, but the user may not do this (not the owner, not an admin)."""

    status = 403


class BodyTooLarge(BorutaError, ValueError):
    """A request body over the configured limit."""

    status = 413


class Conflict(InvalidRequest):
    """Another change to the same object won; the caller may retry."""

    status = 409


class DryadUnreachable(BorutaError, ConnectionError):
    """The worker's dryad is not connected or did not answer."""

    status = 409


class StoreUnavailable(BorutaError, OSError):
    """The database refused or failed a write (full disk, corrupt or read-only file)."""

    status = 503


class TunnelUnavailable(BorutaError, OSError):
    """A job's tunnel cannot be opened (say, every port of the range is taken).

    The service answers acquire_worker with this instead of "worker not assigned", so the
    user learns why the matched request is not running yet.
    """

    status = 503
