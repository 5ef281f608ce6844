"""The dryad link's wire: JSON-RPC 2.0 method names and messages, stdlib only.

Both ends import this module (the dryad imports nothing else of the coordinator), so it
must stay free of third-party imports. Messages are one JSON object per line (UTF-8,
``\\n``-terminated) on a single SSH session channel, in both directions; each side
numbers its own requests. The dryad opens the channel as the subsystem ``LINK_SUBSYSTEM``
after authenticating with its identity key as SSH user ``<worker UUID>``.

Dryad → coordinator: ``enrol`` (first call of an unknown key), ``register``, ``set_fail``,
``health``, ``button``, ``panel`` (what the board drew). Coordinator → dryad:
``prepare``, ``release``, ``maintenance``, ``healthcheck``, ``identify``, ``display``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal, Protocol

logger = logging.getLogger(__name__)

LINK_PORT: Final = 7175  # the original Boruta's RPC port
LINK_SUBSYSTEM: Final = "boruta-link@v1"
MAX_LINE: Final = 1 << 20  # a longer line is a protocol error; the channel is closed
# Job tunnels: once registered, the dryad asks for a remote port forward of this virtual
# address (no port opens on the coordinator for it); each user connection to a job's
# tunnel port then arrives at the dryad as a forwarded-tcpip channel to it, which the
# dryad connects to its local sshd.
TUNNEL_HOST: Final = "boruta-sshd"
TUNNEL_PORT: Final = 22

# Method names.
ENROL: Final = "enrol"
REGISTER: Final = "register"
SET_FAIL: Final = "set_fail"
HEALTH: Final = "health"
BUTTON: Final = "button"
PREPARE: Final = "prepare"
RELEASE: Final = "release"
MAINTENANCE: Final = "maintenance"
HEALTHCHECK: Final = "healthcheck"
IDENTIFY: Final = "identify"
DISPLAY: Final = "display"
PANEL: Final = "panel"

# JSON-RPC error codes: the standard ones and ours (-32000..-32099 are for servers).
PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
REFUSED: Final = -32000  # the peer understood the call and refuses it (message says why)
NOT_ENROLLED: Final = -32001  # an unknown key may only call ``enrol``


class WireError(ValueError):
    """A message that does not follow this protocol."""


@dataclass(frozen=True, slots=True)
class RpcError(Exception):
    """A JSON-RPC error answer, raised on the calling side."""

    code: int
    message: str

    def __str__(self) -> str:
        return self.message


def request(rid: int, method: str, params: dict[str, Any]) -> bytes:
    return _line({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})


def notification(method: str, params: dict[str, Any]) -> bytes:
    return _line({"jsonrpc": "2.0", "method": method, "params": params})


def result(rid: int, value: Any) -> bytes:
    return _line({"jsonrpc": "2.0", "id": rid, "result": value})


def error(rid: int | None, code: int, message: str) -> bytes:
    return _line({"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}})


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


@dataclass(frozen=True, slots=True)
class Incoming:
    """One decoded line: a call (``method`` set) or an answer (``method`` is None)."""

    id: int | None
    method: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: RpcError | None = None


def decode(line: bytes) -> Incoming:
    """Parse one line; raises ``WireError`` for anything that is not JSON-RPC 2.0."""
    if len(line) > MAX_LINE:
        raise WireError("line too long")
    try:
        data = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WireError(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("jsonrpc") != "2.0":
        raise WireError("not a JSON-RPC 2.0 object")
    rid = data.get("id")
    if rid is not None and (not isinstance(rid, int) or isinstance(rid, bool)):
        raise WireError("id must be an integer")
    method = data.get("method")
    if method is not None:
        params = data.get("params", {})
        if not isinstance(method, str) or not isinstance(params, dict):
            raise WireError("method must be a string and params an object")
        return Incoming(rid, method, params)
    if "error" in data:
        err = data["error"]
        if not isinstance(err, dict):
            raise WireError("error must be an object")
        return Incoming(
            rid, error=RpcError(int(err.get("code", INTERNAL_ERROR)), str(err.get("message", "")))
        )
    if "result" not in data:
        raise WireError("neither method, result nor error")
    return Incoming(rid, result=data["result"])


# ---- message bodies (params and results) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Registration:
    """``register`` params: what the dryad offers. ``caps`` must hold ``UUID``."""

    caps: dict[str, str]
    ssh_address: str  # host:port users reach the board's sshd at (direct access)
    version: str = ""

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Registration:
        caps = data.get("caps")
        if not isinstance(caps, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in caps.items()
        ):
            raise WireError("caps must be an object of strings")
        return cls(caps, _str(data, "ssh_address"), _str(data, "version", ""))


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One healthcheck's outcome."""

    name: str
    passed: bool
    critical: bool
    detail: str = ""

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, data: Any) -> CheckResult:
        if not isinstance(data, dict):
            raise WireError("a check result must be an object")
        passed, critical = data.get("passed"), data.get("critical")
        if not isinstance(passed, bool) or not isinstance(critical, bool):
            raise WireError("passed and critical must be booleans")
        return cls(_str(data, "name"), passed, critical, _str(data, "detail", ""))


@dataclass(frozen=True, slots=True)
class HealthReport:
    """``health`` params and the ``healthcheck`` result: every check of one run."""

    checks: tuple[CheckResult, ...]

    @property
    def failed_critical(self) -> list[CheckResult]:
        return [c for c in self.checks if c.critical and not c.passed]

    def to_wire(self) -> dict[str, Any]:
        return {"checks": [c.to_wire() for c in self.checks]}

    @classmethod
    def from_wire(cls, data: Any) -> HealthReport:
        if not isinstance(data, dict) or not isinstance(data.get("checks"), list):
            raise WireError("health needs a list of checks")
        return cls(tuple(CheckResult.from_wire(c) for c in data["checks"]))


PanelState = Literal["IDLE", "RUNNING", "PREPARE", "MAINTENANCE", "FAILED", "BUSY"]


@dataclass(frozen=True, slots=True)
class Display:
    """``display`` params: what the board should show for its worker state."""

    state: str  # a WorkerState wire value
    owner: str = ""  # the job's owner, while RUNNING
    until: str = ""  # RFC 3339 job timeout, while RUNNING
    message: str = ""  # the maintenance message
    reason: str = ""  # why it FAILED

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Display:
        return cls(
            _str(data, "state"),
            _str(data, "owner", ""),
            _str(data, "until", ""),
            _str(data, "message", ""),
            _str(data, "reason", ""),
        )


MAX_PANEL_PNG: Final = 16 << 10  # bytes; a 1-bit 128x32 PNG takes a few hundred


@dataclass(frozen=True, slots=True)
class Panel:
    """``panel`` params (a notification): the OLED frame as a base64 PNG and the two
    RGB LEDs' colours, as the board shows them now."""

    screen_png_b64: str
    leds: tuple[tuple[int, int, int], tuple[int, int, int]]

    def to_wire(self) -> dict[str, Any]:
        return {"screen_png_b64": self.screen_png_b64, "leds": [list(c) for c in self.leds]}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Panel:
        screen = _str(data, "screen_png_b64")
        # base64 grows by 4/3: bound the text before anyone decodes it.
        if len(screen) > MAX_PANEL_PNG * 4 // 3 + 4:
            raise WireError(f"screen_png_b64 over {MAX_PANEL_PNG} bytes")
        leds = data.get("leds")
        if not isinstance(leds, list) or len(leds) != 2:
            raise WireError("leds must be a list of two [r, g, b] colours")
        return cls(screen, (_rgb(leds[0]), _rgb(leds[1])))


def _rgb(value: Any) -> tuple[int, int, int]:
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value)
    ):
        raise WireError("an LED colour must be [r, g, b] with each in 0..255")
    return (value[0], value[1], value[2])


def _str(data: dict[str, Any], key: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise WireError(f"{key} must be a string")
    return value


# ---- the peer: JSON-RPC both ways over one stream pair -----------------------------------

Handler = Callable[[str, dict[str, Any]], Awaitable[Any]]


class LineReader(Protocol):
    """What the peer reads from (asyncio's and asyncssh's stream readers qualify)."""

    async def readline(self) -> bytes: ...


class LineWriter(Protocol):
    """What the peer writes to (asyncio's and asyncssh's stream writers qualify)."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...


class Peer:
    """One end of the link: calls the other end and serves its calls, concurrently.

    ``serve()`` reads until the stream ends; every call in flight then fails with
    ``ConnectionError``. A malformed line is answered with a JSON-RPC error and skipped,
    so one bad message never takes the link down.
    """

    def __init__(self, reader: LineReader, writer: LineWriter, handler: Handler) -> None:
        self._reader = reader
        self._writer = writer
        self._handler = handler
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def call(self, method: str, params: dict[str, Any], seconds: float = 30.0) -> Any:
        """Call ``method`` on the other end; raises ``RpcError``, ``TimeoutError`` or
        ``ConnectionError``."""
        if self._closed:
            raise ConnectionError("link closed")
        rid = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        try:
            async with asyncio.timeout(seconds):
                await self._send(request(rid, method, params))
                return await future
        finally:
            self._pending.pop(rid, None)

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        """Send a call that expects no answer."""
        await self._send(notification(method, params))

    async def serve(self) -> None:
        """Read and handle lines until the other end closes the stream."""
        try:
            while line := await self._reader.readline():
                try:
                    incoming = decode(line)
                except WireError as exc:
                    await self._send(error(None, PARSE_ERROR, str(exc)))
                    continue
                if incoming.method is not None:
                    task = asyncio.create_task(self._dispatch(incoming))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                elif (future := self._pending.get(incoming.id or 0)) and not future.done():
                    if incoming.error is not None:
                        future.set_exception(incoming.error)
                    else:
                        future.set_result(incoming.result)
        finally:
            self.close()

    def close(self) -> None:
        """Fail every call in flight and stop serving calls; idempotent."""
        self._closed = True
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("link closed"))
        for task in self._tasks:
            task.cancel()

    async def _dispatch(self, incoming: Incoming) -> None:
        method = incoming.method or ""  # serve() dispatches only calls, which have one
        try:
            value = await self._handler(method, incoming.params)
        except RpcError as exc:
            answer = error(incoming.id, exc.code, exc.message)
        except WireError as exc:
            answer = error(incoming.id, INVALID_PARAMS, str(exc))
        except Exception as exc:  # the peer gets the reason; our log gets the trace
            logger.exception("link: %s failed", method)
            answer = error(incoming.id, INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
        else:
            answer = result(incoming.id, value) if incoming.id is not None else b""
        if incoming.id is not None and answer:
            try:
                await self._send(answer)
            except ConnectionError:  # the stream ended while we worked; nobody to answer
                logger.debug("link: answer to %s dropped, stream closed", method)

    async def _send(self, line: bytes) -> None:
        if self._closed:
            raise ConnectionError("link closed")
        self._writer.write(line)
        await self._writer.drain()
