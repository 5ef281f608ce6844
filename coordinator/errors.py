"""The coordinator's error tree; each error carries its HTTP status, message and machine code.

Every error answer says its class's ``code`` in the ``Boruta-Error-Code`` header, and the
Python client raises the same class again from it (``coordinator.client.errors``)::

    BorutaError                                      abstract; no code, answered as internal
    ├── InvalidRequest             400 invalid-request  "invalid request: …"
    │   ├── PriorityOutOfBounds        priority-out-of-bounds
    │   ├── DeadlineInThePast          deadline-in-the-past
    │   ├── InvalidTimeRange           invalid-time-range
    │   ├── WorkerNotAssigned          worker-not-assigned
    │   ├── IDMismatch                 id-mismatch
    │   ├── BadID                      bad-id
    │   ├── BadUUID                    bad-uuid
    │   ├── WrongStateArgument         wrong-state-argument
    │   ├── ForbiddenStateChange       forbidden-state-change
    │   ├── NotInFailOrMaintenance     not-in-fail-or-maintenance
    │   ├── InMaintenance              in-maintenance
    │   ├── MissingUUID                missing-uuid
    │   ├── ProlongLimitReached        prolong-limit-reached
    │   ├── WrongSortItem              wrong-sort-item
    │   ├── WrongSortOrder             wrong-sort-order
    │   ├── WrongListDirection         wrong-list-direction
    │   ├── ModificationForbidden      modification-forbidden (carries both states)
    │   ├── BadAddress                 bad-address
    │   ├── BadQuota                   bad-quota            a quota or scheduling value out of range
    │   ├── MalformedInput             malformed-input
    │   │   ├── EmptyBody              empty-body           no prefix
    │   │   ├── InvalidText            invalid-text         not encodable as UTF-8
    │   │   └── OverLimit              over-limit           a stated size limit
    │   └── Conflict               409 conflict             a concurrent change got there first
    ├── Unauthorized               401 unauthorized
    ├── Forbidden                  403 forbidden
    ├── NotFound                   404 not-found            "<what> not found"
    │   └── RouteNotFound          404 route-not-found      no endpoint at this path
    ├── MethodNotAllowed           405 method-not-allowed   the endpoint takes other methods
    ├── DryadUnreachable           409 dryad-unreachable    the worker's dryad did not answer
    ├── BodyTooLarge               413 body-too-large
    ├── QuotaExceeded              429 quota-exceeded       over the user's waiting limit
    │   └── JobQuotaReached        403 job-quota-reached    prolong past the user's longest job
    ├── UnsupportedMediaType       415 unsupported-media-type   a body not sent as JSON
    ├── InternalError              500 internal             a bug; the reason stays in the log
    ├── LeaderAnswerLost           502 leader-answer-lost   forwarded, answer lost: maybe applied
    ├── Unavailable                503 unavailable          try again later
    │   ├── StoreUnavailable           store-unavailable    the database refused a write
    │   │   ├── ServingTaken               serving-taken        another coordinator serves it
    │   │   └── FarmLost                   farm-lost            another one took it over since
    │   ├── TunnelUnavailable          tunnel-unavailable   a job's tunnel cannot open now
    │   └── LeaderUnreachable          leader-unreachable   the farm is changing leader
    ├── ServerUnreachable              server-unreachable   client side: no answer at all
    └── UnexpectedAnswer               unexpected-answer    client side: an answer not of ours

Codes are stable: a class may change its message, never its code (docs in README.md, "The
API").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import ClassVar, Final, Self

ERROR_CODE_HEADER: Final = "Boruta-Error-Code"


class BorutaError(Exception):
    """Root of every error the coordinator reports to a caller."""

    status: ClassVar[int] = 500
    prefix: ClassVar[str] = ""
    code: ClassVar[str] = ""  # every subclass names its own; the root is never sent
    client_side: ClassVar[bool] = False  # raised by the client, never sent by a server

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def wire_message(self) -> str:
        """The ``message`` field of the JSON error body."""
        return self.prefix + self.message

    @classmethod
    def from_wire(cls, wire_message: str) -> Self:
        """The error whose answer carried ``wire_message``: what a client raises again."""
        return cls.from_message(wire_message.removeprefix(cls.prefix))

    @classmethod
    def from_message(cls, message: str) -> Self:
        """An instance with exactly this ``message``.

        It skips the class's own ``__init__``, whose arguments (the states of a forbidden
        change, the "what" of a not found) an answer does not carry, nor need to: the
        message is all an answer says, and a class's extra attributes have defaults.
        """
        error = cls.__new__(cls)
        BorutaError.__init__(error, message)
        return error


class InvalidRequest(BorutaError, ValueError):
    """The original maps every domain error to 400 with this prefix (docs/boruta-api.md §errors)."""

    status = 400
    prefix = "invalid request: "
    code = "invalid-request"


class _FixedMessage(InvalidRequest):
    """An error whose message never varies (abstract: it has no code of its own)."""

    text: ClassVar[str] = ""

    def __init__(self) -> None:
        super().__init__(self.text)


# Messages are the original's, word for word (boruta:requests/errors.go, workers/error.go).
class PriorityOutOfBounds(_FixedMessage):
    text = "requested priority out of bounds"
    code = "priority-out-of-bounds"


class DeadlineInThePast(_FixedMessage):
    text = "deadline in the past"
    code = "deadline-in-the-past"


class InvalidTimeRange(_FixedMessage):
    text = "requested time range illegal - ValidAfter must be before Deadline"
    code = "invalid-time-range"


class WorkerNotAssigned(_FixedMessage):
    text = "worker not assigned"
    code = "worker-not-assigned"


class IDMismatch(_FixedMessage):
    text = "request ID set in JSON doesn't match ID from URL"
    code = "id-mismatch"


class BadID(_FixedMessage):
    text = "ID provided in URL isn't valid"
    code = "bad-id"


class BadUUID(_FixedMessage):
    text = "ID provided in URL isn't valid UUID"
    code = "bad-uuid"


class WrongStateArgument(_FixedMessage):
    text = "Only state changes to IDLE and MAINTENANCE are allowed"
    code = "wrong-state-argument"


class ForbiddenStateChange(_FixedMessage):
    text = "Invalid state transition was requested"
    code = "forbidden-state-change"


class NotInFailOrMaintenance(_FixedMessage):
    text = "Worker is not in FAIL or MAINTENANCE state"
    code = "not-in-fail-or-maintenance"


class InMaintenance(_FixedMessage):
    text = "It is forbidden to set FAIL state when Worker is in MAINTENANCE state"
    code = "in-maintenance"


class MissingUUID(_FixedMessage):
    text = "Capabilities are missing UUID entry"
    code = "missing-uuid"


class ProlongLimitReached(_FixedMessage):
    text = "job has reached the maximum job length and cannot be prolonged"
    code = "prolong-limit-reached"


# The list errors of the original (boruta:lists.go), raised by coordinator.domain.listing.
class WrongSortItem(_FixedMessage):
    text = "unknown name of item by which list should be sorted"
    code = "wrong-sort-item"


class WrongSortOrder(_FixedMessage):
    text = "unknown sort order (valid: ascending or descending)"
    code = "wrong-sort-order"


class WrongListDirection(_FixedMessage):
    text = "unknown direction (valid: forward or backward)"
    code = "wrong-list-direction"


class ModificationForbidden(InvalidRequest):
    """A transition the state machine does not allow; keeps both states for the logs."""

    code = "modification-forbidden"
    from_state: str = ""
    to_state: str = ""

    def __init__(self, from_state: str = "", to_state: str = "") -> None:
        super().__init__("action cannot be executed in current state")
        self.from_state = from_state
        self.to_state = to_state


class BadQuota(InvalidRequest):
    """A quota or scheduling setting that cannot be used: negative, absurd, of the wrong type
    (docs/scheduling.md §quotas)."""

    code = "bad-quota"


class MalformedInput(InvalidRequest):
    """A body or parameter that cannot be parsed (bad JSON, wrong types, bad times)."""

    code = "malformed-input"


class EmptyBody(MalformedInput):
    """The original answers an empty body without the ``invalid request`` prefix."""

    prefix = ""
    code = "empty-body"

    def __init__(self) -> None:
        super().__init__("no body provided in HTTP request")


class InvalidText(MalformedInput):
    """Text holding a lone surrogate (JSON's ``"\\ud800"``): it cannot be stored or shown."""

    code = "invalid-text"


class OverLimit(MalformedInput):
    """Input over one of the size limits the OpenAPI document states (nesting, counts,
    lengths; docs/boruta-api.md §limits)."""

    code = "over-limit"


class BadAddress(InvalidRequest):
    """A worker registered an address with no host or no port."""

    code = "bad-address"


class Conflict(InvalidRequest):
    """Another change to the same object won; the caller may retry."""

    status = 409
    code = "conflict"


class NotFound(BorutaError, LookupError):
    """An unknown ID; the message is the original's ``"<What> not found"``."""

    status = 404
    code = "not-found"

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not found")


class RouteNotFound(NotFound):
    """No endpoint at this path (the original's router: ``"<path> not found"``)."""

    code = "route-not-found"


class MethodNotAllowed(BorutaError):
    """The path has an endpoint, for other methods; the answer's ``Allow`` names them."""

    status = 405
    code = "method-not-allowed"

    def __init__(self) -> None:
        super().__init__("Method Not Allowed")


class Unauthorized(BorutaError, PermissionError):
    """No credentials, or credentials that match no user."""

    status = 401
    code = "unauthorized"


class Forbidden(BorutaError, PermissionError):
    """Authenticated, but the user may not do this (not the owner, not an admin)."""

    status = 403
    code = "forbidden"


class BodyTooLarge(BorutaError, ValueError):
    """A request body over the configured limit."""

    status = 413
    code = "body-too-large"


class QuotaExceeded(BorutaError):
    """A user over a limit an admin set; the message says the limit and the count
    (docs/scheduling.md §quotas)."""

    status = 429
    code = "quota-exceeded"


class JobQuotaReached(QuotaExceeded):
    """A prolong that would take a job past its owner's longest job: the limit is the
    user's own, not the farm's (that one is ``ProlongLimitReached``), hence 403."""

    status = 403
    code = "job-quota-reached"


class UnsupportedMediaType(BorutaError, ValueError):
    """A body whose ``Content-Type`` says it is not JSON, or not UTF-8."""

    status = 415
    code = "unsupported-media-type"


class DryadUnreachable(BorutaError, ConnectionError):
    """The worker's dryad is not connected or did not answer."""

    status = 409
    code = "dryad-unreachable"


class InternalError(BorutaError):
    """A bug: the answer says only this (as the original's panic handler, in plain text);
    the reason goes to the coordinator's log."""

    status = 500
    code = "internal"

    def __init__(self) -> None:
        super().__init__("Internal Server Error:\nsee the coordinator's log")


class Unavailable(BorutaError, OSError):
    """Something the coordinator needs is down for now; the answer says when to retry."""

    status = 503
    code = "unavailable"


class StoreUnavailable(Unavailable):
    """The database refused or failed a write (full disk, corrupt or read-only file)."""

    code = "store-unavailable"


class ServingTaken(StoreUnavailable):
    """Another coordinator serves the database (holds its serving lock)."""

    code = "serving-taken"


class FarmLost(StoreUnavailable):
    """This coordinator served the database, and another one has taken it over since: its
    writes are refused so that two coordinators never decide for one farm."""

    code = "farm-lost"


class TunnelUnavailable(Unavailable):
    """A job's tunnel cannot be opened (say, every port of the range is taken).

    The service answers acquire_worker with this instead of "worker not assigned", so the
    user learns why the matched request is not running yet.
    """

    code = "tunnel-unavailable"


class LeaderUnreachable(Unavailable):
    """This coordinator forwards the API to the one serving the database (the leader) and
    cannot reach it now: it died, or another is taking over (docs/failover.md §scale-out).
    Nothing was applied; retry in a second."""

    code = "leader-unreachable"


class LeaderAnswerLost(BorutaError, ConnectionError):
    """This coordinator forwarded the request to the leader, and the leader's answer was
    lost on the way: the request may have been applied, so check before repeating it."""

    status = 502
    code = "leader-answer-lost"


class ServerUnreachable(BorutaError, ConnectionError):
    """No answer from the coordinator: refused, timed out, name not resolved."""

    code = "server-unreachable"
    client_side = True


class UnexpectedAnswer(BorutaError):
    """An answer that is neither a success nor one of the coordinator's errors."""

    code = "unexpected-answer"
    client_side = True
    http_status: int = 0

    def __init__(self, message: str, http_status: int) -> None:
        super().__init__(message)
        self.http_status = http_status


def error_classes() -> Iterator[type[BorutaError]]:
    """Every public class of the tree below the root, parents first."""
    for sub in BorutaError.__subclasses__():
        yield from _walk(sub)


def _walk(cls: type[BorutaError]) -> Iterator[type[BorutaError]]:
    if not cls.__name__.startswith("_"):  # private helpers are never raised
        yield cls
    for sub in cls.__subclasses__():
        yield from _walk(sub)


# What a server sends; the client-side classes are the client's own.
BY_CODE: Final[Mapping[str, type[BorutaError]]] = {
    cls.code: cls for cls in error_classes() if not cls.client_side
}

# Every 400 whose message never varies, by its message (the wire text without the prefix):
# how a client tells apart the original's answers, which carry no code.
BY_FIXED_MESSAGE: Final[Mapping[str, Callable[[], InvalidRequest]]] = {
    **{cls.text: cls for cls in error_classes() if issubclass(cls, _FixedMessage)},
    ModificationForbidden().message: ModificationForbidden,
}

# The most general class of each status: for a code this client does not know (a newer
# server's) and for HTTP errors the router raises. 409 has none: conflict and dryad-unreachable
# share it and have nothing in common.
BY_STATUS: Final[Mapping[int, type[BorutaError]]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    413: BodyTooLarge,
    429: QuotaExceeded,
    415: UnsupportedMediaType,
    500: InternalError,
    503: Unavailable,
}
