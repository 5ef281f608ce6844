"""THE table of the link: one row per method, with its direction, timeout and message types.

Both ends dispatch from it (``dispatch.Handlers``) and call through it (``Peer.ask`` and
``Peer.tell``), so a method, its direction and its params exist in this one place; the
page docs/link-protocol.md is rendered from it (``coordinator.wire.doc``).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final, Generic, TypeVar

from coordinator.wire.dialback import DialBack, DialedBack
from coordinator.wire.messages import (
    NULL,
    Button,
    Display,
    Empty,
    Enrol,
    Enrolled,
    HealthReport,
    Identify,
    MaintenanceMessage,
    Message,
    MessageType,
    Panel,
    Prepare,
    Registered,
    Registration,
    SetFail,
)

P = TypeVar("P", bound=Message)
R = TypeVar("R", bound="Message | None")


class Direction(StrEnum):
    """Who calls whom; the value is how the table says it."""

    TO_COORDINATOR = "dryad → coordinator"
    TO_DRYAD = "coordinator → dryad"

    @property
    def callee(self) -> str:
        return "dryad" if self is Direction.TO_DRYAD else "coordinator"


class Method(str, Generic[P, R]):
    """One row: a method's name, direction, timeout, params and result types.

    A row is a ``str`` equal to the method's name, so it goes on the wire, keys the
    table and compares with a name received as it is. ``timeout`` is how long the caller
    waits for the answer (``None`` for a notification, which has none).
    """

    direction: Direction
    timeout: float | None
    params: MessageType[P]
    result: MessageType[R]
    notification: bool
    summary: str

    def __new__(
        cls,
        name: str,
        direction: Direction,
        timeout: float | None,
        params: MessageType[P],
        result: MessageType[R],
        summary: str,
        *,
        notification: bool = False,
    ) -> Method[P, R]:
        if (timeout is None) != notification:
            raise ValueError(f"{name}: a call has a timeout, a notification none")
        row = super().__new__(cls, name)
        row.direction = direction
        row.timeout = timeout
        row.params = params
        row.result = result
        row.notification = notification
        row.summary = summary
        return row

    @property
    def name(self) -> str:
        return str(self)


_TO_DRYAD: Final = Direction.TO_DRYAD
_TO_COORDINATOR: Final = Direction.TO_COORDINATOR

# ---- dryad → coordinator ---------------------------------------------------------------
# The coordinator answers quickly (a store write at most): tens of seconds cover a busy one.
ENROL: Final = Method(
    "enrol", _TO_COORDINATOR, 30.0, Enrol, Enrolled,
    "The first call of a key the coordinator does not know: binds it to the worker UUID it"
    " logged in as. Any other call of an unknown key is refused with NOT_ENROLLED.",
)  # fmt: skip
REGISTER: Final = Method(
    "register", _TO_COORDINATOR, 30.0, Registration, Registered,
    "After every (re)connection: the board's capabilities, sshd address and sshd host keys"
    " (a bad key is dropped and logged, the others kept). The answer is the worker's"
    " state; the coordinator follows with display.",
)  # fmt: skip
SET_FAIL: Final = Method(
    "set_fail", _TO_COORDINATOR, 10.0, SetFail, NULL,
    "The board cannot serve (its STM is gone, say): the coordinator FAILs the worker.",
)  # fmt: skip
HEALTH: Final = Method(
    "health", _TO_COORDINATOR, 10.0, HealthReport, NULL,
    "A scheduled healthcheck run; a failed critical check FAILs the worker.",
)  # fmt: skip
BUTTON: Final = Method(
    "button", _TO_COORDINATOR, None, Button, NULL,
    "A button on the board was pressed.",
    notification=True,
)  # fmt: skip
PANEL: Final = Method(
    "panel", _TO_COORDINATOR, None, Panel, NULL,
    "What the board's OLED and LEDs show now, after each change (at most four a second).",
    notification=True,
)  # fmt: skip

# ---- coordinator → dryad ---------------------------------------------------------------
# Recreating or removing the job user and drawing maintenance may wait on useradd and the
# STM, and a healthcheck runs every check; the panel and the blink are quick.
PREPARE: Final = Method(
    "prepare", _TO_DRYAD, 60.0, Prepare, NULL,
    "PREPARE: end any job and recreate the job user with this key as its only one.",
)  # fmt: skip
RELEASE: Final = Method(
    "release", _TO_DRYAD, 60.0, Empty, NULL,
    "End the job's access: kill the job user's processes and remove the user.",
)  # fmt: skip
MAINTENANCE: Final = Method(
    "maintenance", _TO_DRYAD, 60.0, MaintenanceMessage, NULL,
    "BUSY: show maintenance (the message on the OLED, the LEDs blinking yellow).",
)  # fmt: skip
HEALTHCHECK: Final = Method(
    "healthcheck", _TO_DRYAD, 60.0, Empty, HealthReport,
    "Run every healthcheck now and answer their results (an admin asked).",
)  # fmt: skip
IDENTIFY: Final = Method(
    "identify", _TO_DRYAD, 10.0, Identify, NULL,
    "Blink brightly so someone can find the board in the rack; answered at once.",
)  # fmt: skip
DISPLAY: Final = Method(
    "display", _TO_DRYAD, 10.0, Display, NULL,
    "Show the worker's state on the OLED and the LEDs; sent on every change of state.",
)  # fmt: skip

# ---- dial-back tunnels (coordinator → dryad) -------------------------------------------
# Answered once the dryad has reached its sshd and dialled back, or failed to: a connect
# each, on a LAN milliseconds; the user's connection waits for it.
DIAL_BACK: Final = Method(
    "dial_back", _TO_DRYAD, 10.0, DialBack, DialedBack,
    "A user connected to the job's tunnel: connect to the local sshd, dial the coordinator's"
    " dial-back port, send the secret, then relay the two (see Dial-back tunnels above).",
)  # fmt: skip

TABLE: Final[Mapping[str, Method[Any, Any]]] = MappingProxyType(
    {
        row: row
        for row in (
            ENROL, REGISTER, SET_FAIL, HEALTH, BUTTON, PANEL,
            PREPARE, RELEASE, MAINTENANCE, HEALTHCHECK, IDENTIFY, DISPLAY,
            DIAL_BACK,
        )
    }
)  # fmt: skip
