"""Every method's params and result as a typed value that checks what it reads off the wire.

``to_wire()`` gives the JSON value to send; ``from_wire(data)`` checks a received one and
raises ``WireError`` for a wrong type, a missing field or text that is not valid Unicode
(a lone surrogate such as ``"\\ud800"`` decodes from JSON but can be neither stored nor
shown). What a dryad sends is held to the limits of ``wire.limits`` too (over them is a
``WireError``; the dryad clips its texts before sending). Fields a message does not know
are ignored, so either end may add one first.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Protocol, Self, TypeVar

from coordinator.wire import limits
from coordinator.wire.errors import WireError
from coordinator.wire.hostkeys import MAX_HOST_KEY_LINE, MAX_HOST_KEYS
from coordinator.wire.states import WorkerState

MAX_PANEL_PNG: Final = 16 << 10  # bytes; a 1-bit 128x32 PNG takes a few hundred
MAX_IDENTIFY: Final = 600.0  # seconds; a typo must not leave a rack blinking for a day
ORIGINAL_MAINTENANCE: Final = "maintenance"  # what the original always showed


class Message(Protocol):
    """A value that goes on the wire."""

    def to_wire(self) -> Any: ...


T_co = TypeVar("T_co", covariant=True)


class MessageType(Protocol[T_co]):
    """What reads a message off the wire: a message class, or ``NULL``."""

    def from_wire(self, data: Any, /) -> T_co: ...


def encode(value: Message | None) -> Any:
    """The JSON value of a params or result value (``None`` is ``null``)."""
    return None if value is None else value.to_wire()


class Null:
    """The result of a method that answers ``null`` (or of a notification)."""

    @staticmethod
    def from_wire(data: Any, /) -> None:
        if data is not None:
            raise WireError("the result must be null")


NULL: Final = Null()


@dataclass(frozen=True, slots=True)
class Empty:
    """The params of a method that takes none: ``{}``."""

    def to_wire(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_wire(cls, data: Any) -> Self:
        _object(data)
        return cls()


# ---- dryad → coordinator ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Enrol:
    """``enrol`` params: the enrolment token that binds this key to its worker UUID."""

    token: str = field(metadata={"doc": "as `boruta-coordinator enrol-token create` made it"})

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, data: Any) -> Self:
        return cls(_str(_object(data), "token", limit=limits.MAX_CAP_VALUE))


@dataclass(frozen=True, slots=True)
class Enrolled:
    """``enrol`` result: the worker UUID the key is now bound to."""

    uuid: str

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, data: Any) -> Self:
        return cls(_str(_object(data), "uuid"))


@dataclass(frozen=True, slots=True)
class Registration:
    """``register`` params: what the dryad offers. ``caps`` must hold ``UUID``."""

    caps: dict[str, str] = field(metadata={"doc": "the board's capabilities, `UUID` among them"})
    ssh_address: str = field(
        metadata={"doc": "`host:port` of the board's sshd for users; an empty host is the"
                  " address the coordinator sees the dryad at"}
    )  # fmt: skip
    version: str = field(default="", metadata={"doc": "the dryad's version"})
    host_keys: tuple[str, ...] = field(
        default=(),
        metadata={"doc": "the board sshd's host public keys, `type base64` each, at most"
                  f" {MAX_HOST_KEYS} of at most {MAX_HOST_KEY_LINE} characters; the"
                  " coordinator vouches for the valid ones to users"},
    )  # fmt: skip

    def to_wire(self) -> dict[str, Any]:
        data = asdict(self)
        if self.host_keys:  # additive: absent, it reads as none
            data["host_keys"] = list(self.host_keys)
        else:
            del data["host_keys"]
        return data

    @classmethod
    def from_wire(cls, data: Any) -> Self:
        data = _object(data)
        caps = data.get("caps")
        if not isinstance(caps, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in caps.items()
        ):
            raise WireError("caps must be an object of strings")
        _limited(limits.caps, caps, "caps")
        return cls(
            dict(caps),
            _str(data, "ssh_address", limit=limits.MAX_CAP_VALUE),
            _str(data, "version", "", limits.MAX_NAME),
            _host_keys(data),
        )


@dataclass(frozen=True, slots=True)
class Registered:
    """``register`` result: the worker's state as the coordinator has it now."""

    state: WorkerState

    def to_wire(self) -> dict[str, Any]:
        return {"state": self.state.value}

    @classmethod
    def from_wire(cls, data: Any) -> Self:
        return cls(_state(_object(data)))


@dataclass(frozen=True, slots=True)
class SetFail:
    """``set_fail`` params: why the board cannot serve (the coordinator FAILs the worker)."""

    reason: str

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, data: Any) -> Self:
        return cls(_str(_object(data), "reason", limit=limits.MAX_TEXT))


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One healthcheck's outcome."""

    name: str
    passed: bool
    critical: bool = field(metadata={"doc": "whether failing it FAILs the worker"})
    detail: str = field(default="", metadata={"doc": "what was seen, for people"})

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, data: Any) -> Self:
        if not isinstance(data, dict):
            raise WireError("a check result must be an object")
        passed, critical = data.get("passed"), data.get("critical")
        if not isinstance(passed, bool) or not isinstance(critical, bool):
            raise WireError("passed and critical must be booleans")
        return cls(
            _str(data, "name", limit=limits.MAX_NAME),
            passed,
            critical,
            _str(data, "detail", "", limits.MAX_TEXT),
        )


@dataclass(frozen=True, slots=True)
class HealthReport:
    """``health`` params and the ``healthcheck`` result: every check of one run."""

    checks: tuple[CheckResult, ...] = field(metadata={"doc": "every check of the run"})

    @property
    def failed_critical(self) -> list[CheckResult]:
        return [c for c in self.checks if c.critical and not c.passed]

    def to_wire(self) -> dict[str, Any]:
        return {"checks": [c.to_wire() for c in self.checks]}

    @classmethod
    def from_wire(cls, data: Any) -> Self:
        if not isinstance(data, dict) or not isinstance(data.get("checks"), list):
            raise WireError("health needs a list of checks")
        _limited(limits.count, len(data["checks"]), "checks", limits.MAX_CHECKS)
        return cls(tuple(CheckResult.from_wire(c) for c in data["checks"]))


@dataclass(frozen=True, slots=True)
class Button:
    """``button`` params: which of the board's buttons was pressed (1 or 2 on a MuxPi)."""

    button: int = field(metadata={"doc": "1 or 2 on a MuxPi"})

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, data: Any) -> Self:
        number = _object(data).get("button")
        if not isinstance(number, int) or isinstance(number, bool):
            raise WireError("button must be an integer")
        return cls(number)


Rgb = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class Panel:
    """``panel`` params: the OLED frame as a base64 PNG and the two RGB LEDs' colours, as
    the board shows them now."""

    screen_png_b64: str = field(
        metadata={"doc": f"the OLED frame, a PNG of at most {MAX_PANEL_PNG} bytes, in base64"}
    )
    leds: tuple[Rgb, Rgb] = field(metadata={"doc": "LED 1 and LED 2, each [r, g, b] in 0..255"})

    def to_wire(self) -> dict[str, Any]:
        return {"screen_png_b64": self.screen_png_b64, "leds": [list(c) for c in self.leds]}

    @classmethod
    def from_wire(cls, data: Any) -> Self:
        data = _object(data)
        screen = _str(data, "screen_png_b64")
        # base64 grows by 4/3: bound the text before anyone decodes it.
        if len(screen) > MAX_PANEL_PNG * 4 // 3 + 4:
            raise WireError(f"screen_png_b64 over {MAX_PANEL_PNG} bytes")
        leds = data.get("leds")
        if not isinstance(leds, list) or len(leds) != 2:
            raise WireError("leds must be a list of two [r, g, b] colours")
        return cls(screen, (_rgb(leds[0]), _rgb(leds[1])))


# ---- coordinator → dryad ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prepare:
    """``prepare`` params: recreate the job user with this as its only authorized key."""

    public_key: str = field(metadata={"doc": "one OpenSSH public key line, not empty"})

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, data: Any) -> Self:
        key = _str(_object(data), "public_key").strip()
        if not key:
            raise WireError("public_key must be a non-empty string")
        return cls(key)


@dataclass(frozen=True, slots=True)
class MaintenanceMessage:
    """``maintenance`` params, and what a board in BUSY or MAINTENANCE shows on its OLED."""

    message: str = field(default=ORIGINAL_MAINTENANCE, metadata={"doc": "shown on the OLED"})

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, data: Any) -> Self:
        return cls(_str(_object(data), "message", ORIGINAL_MAINTENANCE))


@dataclass(frozen=True, slots=True)
class Identify:
    """``identify`` params: blink brightly for this many seconds, up to ``MAX_IDENTIFY``."""

    seconds: float = field(metadata={"doc": f"more than 0, at most {MAX_IDENTIFY:g}"})

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, data: Any) -> Self:
        seconds = _object(data).get("seconds")
        if (
            not isinstance(seconds, int | float)
            or isinstance(seconds, bool)
            or not math.isfinite(seconds)
            or not 0 < seconds <= MAX_IDENTIFY
        ):
            raise WireError(f"seconds must be a number in (0, {MAX_IDENTIFY:g}]")
        return cls(float(seconds))


@dataclass(frozen=True, slots=True)
class Display:
    """``display`` params: what the board should show for its worker state."""

    state: WorkerState
    owner: str = field(default="", metadata={"doc": "the job's owner, while RUNNING"})
    until: str = field(default="", metadata={"doc": "the job's timeout (RFC 3339), while RUNNING"})
    message: str = field(
        default="", metadata={"doc": "the maintenance message, while BUSY or MAINTENANCE"}
    )
    reason: str = field(default="", metadata={"doc": "why the worker FAILED"})

    @classmethod
    def for_maintenance(
        cls, note: MaintenanceMessage, state: WorkerState = WorkerState.MAINTENANCE
    ) -> Self:
        """The view of a board in maintenance (or BUSY, on its way there) with ``note``."""
        return cls(state, message=note.message)

    @property
    def maintenance(self) -> MaintenanceMessage:
        """The maintenance message to show; the original's when none was given."""
        return MaintenanceMessage(self.message or ORIGINAL_MAINTENANCE)

    def to_wire(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state.value}

    @classmethod
    def from_wire(cls, data: Any) -> Self:
        data = _object(data)
        return cls(
            _state(data),
            _str(data, "owner", ""),
            _str(data, "until", ""),
            _str(data, "message", ""),
            _str(data, "reason", ""),
        )


# ---- checks ------------------------------------------------------------------------------


def _object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise WireError("expected a JSON object")
    return data


def _str(
    data: dict[str, Any], key: str, default: str | None = None, limit: int | None = None
) -> str:
    """The text at ``key``: valid Unicode, and within ``limit`` characters when given."""
    value = data.get(key, default)
    if not isinstance(value, str):
        raise WireError(f"{key} must be a string")
    checked: str = _limited(limits.text, value, key, len(value) if limit is None else limit)
    return checked


def _limited(check: Callable[..., Any], *args: Any) -> Any:
    """``check(*args)`` of ``wire.limits``, its refusal as a ``WireError``."""
    try:
        return check(*args)
    except limits.TextRefused as exc:
        raise WireError(str(exc)) from None


def _host_keys(data: dict[str, Any]) -> tuple[str, ...]:
    """The list's shape and size only: each key's content is checked by the coordinator,
    which drops a bad one and keeps the rest (``wire.hostkeys``)."""
    keys = data.get("host_keys", [])
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise WireError("host_keys must be a list of strings")
    if len(keys) > MAX_HOST_KEYS:
        raise WireError(f"host_keys: over {MAX_HOST_KEYS} keys")
    return tuple(_str({"host_keys": k}, "host_keys", limit=MAX_HOST_KEY_LINE) for k in keys)


def _state(data: dict[str, Any]) -> WorkerState:
    value = _str(data, "state")
    try:
        return WorkerState(value)
    except ValueError:
        known = ", ".join(WorkerState)
        raise WireError(f"state must be one of {known}, not {value!r}") from None


def _rgb(value: Any) -> Rgb:
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value)
    ):
        raise WireError("an LED colour must be [r, g, b] with each in 0..255")
    return (value[0], value[1], value[2])
