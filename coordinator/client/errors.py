"""HTTP error answers back to the ``coordinator.errors`` classes the service raises.

A coordinator names the class in the ``Boruta-Error-Code`` header; the original Go Boruta
sends no code, and its answers are told apart by status and message, as before codes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Final

from coordinator.errors import (
    BY_CODE,
    BY_FIXED_MESSAGE,
    BY_STATUS,
    BadAddress,
    BodyTooLarge,
    BorutaError,
    Conflict,
    DryadUnreachable,
    EmptyBody,
    Forbidden,
    InvalidRequest,
    MalformedInput,
    NotFound,
    ServerUnreachable,
    StoreUnavailable,
    Unauthorized,
    UnexpectedAnswer,
)

__all__ = ["ServerUnreachable", "UnexpectedAnswer", "error_from_answer"]


def error_from_answer(status: int, body: bytes, code: str | None = None) -> BorutaError:
    """The error the service would have raised for this answer, with the same message.

    ``code`` is the answer's ``Boruta-Error-Code``: the class, if this client knows it,
    else the most general class of the status; without one, status and message decide.
    """
    if not code:
        return _without_code(status, _message(body, first_line=True))
    message = _message(body, first_line=False)
    kind = BY_CODE.get(code) or BY_STATUS.get(status)
    if kind is None:
        return UnexpectedAnswer(f"HTTP {status}: {message}", status)
    return kind.from_wire(message)


_ADDRESS_MESSAGES: Final = ("IP address is missing from address", "Port is missing from address")


def _without_code(status: int, message: str) -> BorutaError:
    """The original's answers, which carry no code: by status, then by message."""
    prefix = InvalidRequest.prefix
    if status == 400:
        if message == EmptyBody().message:
            return EmptyBody()
        if not message.startswith(prefix):
            return MalformedInput(message)
        text = message.removeprefix(prefix)
        if (fixed := BY_FIXED_MESSAGE.get(text)) is not None:
            return fixed()
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


def _message(body: bytes, *, first_line: bool) -> str:
    """The ``message`` of a JSON error body, or else the body's text (its first line only
    for a server without codes, whose plain-text answers are not ours)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        data = None
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])
    text = body.decode(errors="replace").strip()
    if not text:
        return "no message"
    return text.splitlines()[0] if first_line else text
