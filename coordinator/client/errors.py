"""HTTP error answers back to the ``coordinator.errors`` classes the service raises."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Final

from coordinator.boruta_json import EmptyBody
from coordinator.domain import listing
from coordinator.errors import (
    BadAddress,
    BadID,
    BadUUID,
    BodyTooLarge,
    BorutaError,
    Conflict,
    DeadlineInThePast,
    DryadUnreachable,
    Forbidden,
    ForbiddenStateChange,
    IDMismatch,
    InMaintenance,
    InvalidRequest,
    InvalidTimeRange,
    MalformedInput,
    MissingUUID,
    ModificationForbidden,
    NotFound,
    NotInFailOrMaintenance,
    PriorityOutOfBounds,
    ProlongLimitReached,
    StoreUnavailable,
    Unauthorized,
    WorkerNotAssigned,
    WrongStateArgument,
)

__all__ = ["ServerUnreachable", "UnexpectedAnswer", "error_from_answer"]


class ServerUnreachable(BorutaError, ConnectionError):
    """No answer from the coordinator: refused, timed out, name not resolved."""


class UnexpectedAnswer(BorutaError):
    """An answer that is neither a success nor one of the coordinator's errors."""

    def __init__(self, message: str, http_status: int) -> None:
        super().__init__(message)
        self.http_status = http_status


# Every 400 whose message never varies, by its message (the wire text without the prefix).
_FIXED: Final[dict[str, Callable[[], InvalidRequest]]] = {
    cls().message: cls
    for cls in (
        PriorityOutOfBounds,
        DeadlineInThePast,
        InvalidTimeRange,
        WorkerNotAssigned,
        IDMismatch,
        BadID,
        BadUUID,
        WrongStateArgument,
        ForbiddenStateChange,
        NotInFailOrMaintenance,
        InMaintenance,
        MissingUUID,
        ProlongLimitReached,
        ModificationForbidden,
        listing.WrongSortItem,
        listing.WrongSortOrder,
        listing.WrongListDirection,
    )
}
_ADDRESS_MESSAGES: Final = ("IP address is missing from address", "Port is missing from address")


def error_from_answer(status: int, body: bytes) -> BorutaError:
    """The error the service would have raised for this answer, with the same message."""
    message = _message(body)
    prefix = InvalidRequest.prefix
    if status == 400:
        if message == EmptyBody().message:
            return EmptyBody()
        if not message.startswith(prefix):
            return MalformedInput(message)
        text = message.removeprefix(prefix)
        if text in _FIXED:
            return _FIXED[text]()
        if text in _ADDRESS_MESSAGES:
            return BadAddress(text)
        return MalformedInput(text)
    if status == 404:
        return NotFound(message.removesuffix(" not found"))
    if status == 409:
        if message.startswith(prefix):
            return Conflict(message.removeprefix(prefix))
        return DryadUnreachable(message)
    simple: dict[int, Callable[[str], BorutaError]] = {
        401: Unauthorized,
        403: Forbidden,
        413: BodyTooLarge,
        503: StoreUnavailable,
    }
    if status in simple:
        return simple[status](message)
    return UnexpectedAnswer(f"HTTP {status}: {message}", status)


def _message(body: bytes) -> str:
    """The ``message`` of a JSON error body, or the body's first line for anything else."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        data = None
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])
    text = body.decode(errors="replace").strip()
    return text.splitlines()[0] if text else "no message"
