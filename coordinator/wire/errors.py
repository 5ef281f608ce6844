"""The link's errors: a malformed message, a JSON-RPC error answer, and the error codes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# JSON-RPC error codes: the standard ones and ours (-32000..-32099 are for servers).
PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601  # also a method that goes the other way (see methods)
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
REFUSED: Final = -32000  # the peer understood the call and refuses it (message says why)
NOT_ENROLLED: Final = -32001  # an unknown key may only call ``enrol``
UNAVAILABLE: Final = -32002  # understood, but cannot be decided now: try again later


class WireError(ValueError):
    """A message that does not follow this protocol."""


@dataclass(frozen=True, slots=True)
class RpcError(Exception):
    """A JSON-RPC error answer, raised on the calling side."""

    code: int
    message: str

    def __str__(self) -> str:
        return self.message
