"""Dial-back tunnels: the ``dial_back`` call's messages and what the dial-back sends first.

For each user connection to a job's tunnel port, the coordinator calls ``dial_back`` on
the worker's dryad with a one-time secret. The dryad connects to its local sshd, then
opens a plain TCP connection to the coordinator's dial-back port, at the host it already
dials the link at, and sends the ``SECRET_SIZE`` bytes of the secret before anything else;
from then on the connection carries the user's SSH session unchanged, relayed at both
ends by ``relay.Relay`` (docs/link-protocol.md §dial-back).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any, Final, Self

from coordinator.wire import limits
from coordinator.wire.errors import WireError

DIALBACK_PORT: Final = 7176  # next to the link's LINK_PORT
SECRET_SIZE: Final = 32  # bytes of a dial-back secret, the first a dial-back sends


@dataclass(frozen=True, slots=True)
class DialBack:
    """``dial_back`` params: where to dial, and the secret to send first."""

    port: int = field(metadata={"doc": "the coordinator's dial-back port (at the link's host)"})
    secret: str = field(
        metadata={"doc": f"{SECRET_SIZE} random bytes in base64, single use, sent raw first"}
    )

    @property
    def secret_bytes(self) -> bytes:
        return base64.b64decode(self.secret)

    @classmethod
    def of(cls, port: int, secret: bytes) -> Self:
        return cls(port, base64.b64encode(secret).decode("ascii"))

    def to_wire(self) -> dict[str, Any]:
        return {"port": self.port, "secret": self.secret}

    @classmethod
    def from_wire(cls, data: Any) -> Self:
        if not isinstance(data, dict):
            raise WireError("expected a JSON object")
        port, secret = data.get("port"), data.get("secret")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise WireError("port must be an integer in 1..65535")
        if not isinstance(secret, str) or len(secret) > limits.MAX_NAME:
            raise WireError("secret must be a string")
        try:
            raw = base64.b64decode(secret, validate=True)
        except (binascii.Error, ValueError):
            raise WireError("secret must be base64") from None
        if len(raw) != SECRET_SIZE:
            raise WireError(f"secret must be {SECRET_SIZE} bytes")
        return cls(port, secret)


@dataclass(frozen=True, slots=True)
class DialedBack:
    """``dial_back`` result: whether the dial-back connection was made, else why not.

    A dryad that cannot reach its own sshd answers REFUSED instead: carrying the
    connection over the link would not reach it either.
    """

    dialled: bool = field(metadata={"doc": "true once the secret was sent"})
    reason: str = field(default="", metadata={"doc": "why the dryad could not dial back"})

    def to_wire(self) -> dict[str, Any]:
        return {"dialled": self.dialled, "reason": self.reason}

    @classmethod
    def from_wire(cls, data: Any) -> Self:
        if not isinstance(data, dict) or not isinstance(data.get("dialled"), bool):
            raise WireError("dialled must be a boolean")
        reason = data.get("reason", "")
        if not isinstance(reason, str):
            raise WireError("reason must be a string")
        # Only logged and shown to a user: made showable rather than refused.
        return cls(data["dialled"], limits.clip(reason))
