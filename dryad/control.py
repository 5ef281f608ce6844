"""The dryad's local control sockets: job users and root drive the STM through the dryad.

The dryad is the only owner of the STM's serial port (docs/stm-protocol.md §ownership: the original
ran an ``stm -serve`` daemon for the same reason). It serves two Unix sockets:

* the user socket (mode 0660, group ``stm``): the operations of the original's
  UserInterface plus LEDs and the OLED;
* the admin socket (mode 0600, root): all of those plus raw console commands.

Protocol: one JSON object per line each way, one request at a time per connection.
A request is ``{"op": NAME, ...arguments}``; a reply is ``{"ok": true, "value": V}``
or ``{"ok": false, "error": MESSAGE}``. Commands are serialised with the dryad's own
STM use by the STM client itself.
"""

from __future__ import annotations

import grp
import json
import logging
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final

import anyio
from anyio.abc import SocketAttribute, SocketListener, SocketStream, TaskGroup, TaskStatus

from dryad.errors import DryadError
from dryad.stm_cli import LINE_MAX
from hardware import HardwareError, Stm
from hardware.stm.sampling import CurrentRecorder

logger = logging.getLogger(__name__)

USER_MODE: Final = 0o660
ADMIN_MODE: Final = 0o600
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class ControlSocketError(DryadError, OSError):
    """A control socket could not be set up (in use, or no place to put it)."""


class BadRequest(ValueError):
    """A request the server will not run; the message goes back to the client."""


class Forbidden(BadRequest):
    """An admin operation asked on the user socket."""


Handler = Callable[[Mapping[str, Any]], Awaitable[Any]]


class ControlServer:
    """Serve the user and admin control sockets until cancelled.

    :param stm: the board's STM; the server never opens the port itself.
    :param user_socket: path of the socket for group *group* (created, replaced if stale).
    :param admin_socket: path of the root-only socket.
    :param group: the user socket's group; when it does not exist the socket stays root's.
    """

    def __init__(self, stm: Stm, user_socket: Path, admin_socket: Path, group: str) -> None:
        self._stm = stm
        self.user_socket = user_socket
        self.admin_socket = admin_socket
        self.group = group
        self._recorder: CurrentRecorder | None = None
        self._recording = anyio.CancelScope()
        self._tg: TaskGroup | None = None
        self._user_ops: dict[str, Handler] = {
            "dut": self._dut, "ts": self._ts, "tick": self._tick, "power": self._power,
            "current": self._current, "current-start": self._current_start,
            "current-stop": self._current_stop, "current-get": self._current_get,
            "dyper": self._dyper, "hdmi": self._hdmi, "led": self._led,
            "clear": self._clear, "print": self._print,
        }  # fmt: skip
        self._admin_ops: dict[str, Handler] = {
            **self._user_ops, "raw": self._raw, "status": self._status,
        }  # fmt: skip

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Bind both sockets, report ready, and serve until cancelled; unlinks them on exit."""
        gid = _group_id(self.group)
        listeners: list[tuple[SocketListener, Path, bool]] = []
        try:
            for path, mode, group, admin in (
                (self.user_socket, USER_MODE, gid, False),
                (self.admin_socket, ADMIN_MODE, None, True),
            ):
                sock = _bind(path, mode, group)
                listeners.append((await SocketListener.from_socket(sock), path, admin))
            async with anyio.create_task_group() as tg:
                self._tg = tg
                for listener, path, admin in listeners:
                    tg.start_soon(self._accept, listener, admin)
                    logger.info("control socket ready on %s", path)
                task_status.started()
        finally:
            for _, path, _ in listeners:
                _unlink(path)
            with anyio.CancelScope(shield=True):  # run() usually ends by cancellation
                for listener, _, _ in listeners:
                    await listener.aclose()

    async def _accept(self, listener: SocketListener, admin: bool) -> None:
        async def serve(stream: SocketStream) -> None:
            await self._connection(stream, admin)

        await listener.serve(serve)

    async def _connection(self, stream: SocketStream, admin: bool) -> None:
        peer = _peer(stream)
        logger.info("control: %s connected to the %s socket", peer, "admin" if admin else "user")
        buffer = b""
        async with stream:
            try:
                while True:
                    while b"\n" not in buffer:
                        if len(buffer) > LINE_MAX:
                            await _reply(stream, error=f"request longer than {LINE_MAX} bytes")
                            return
                        buffer += await stream.receive()
                    line, _, buffer = buffer.partition(b"\n")
                    if len(line) > LINE_MAX:
                        await _reply(stream, error=f"request longer than {LINE_MAX} bytes")
                        return
                    await _reply(stream, **await self._answer(line, admin, peer))
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass
        logger.debug("control: %s disconnected", peer)

    async def _answer(self, line: bytes, admin: bool, peer: str) -> dict[str, Any]:
        try:
            request = _decode(line)
            op = request["op"]
            handler = (self._admin_ops if admin else self._user_ops).get(op)
            if handler is None:
                if op in self._admin_ops:
                    raise Forbidden(f"{op!r} is an admin operation; ask as root")
                raise BadRequest(f"unknown operation {op!r}; known: {', '.join(self._admin_ops)}")
            logger.info("control: %s asks %s", peer, _describe(request))
            return {"value": await handler(request)}
        except Forbidden as exc:
            logger.warning("control: %s refused: %s", peer, exc)
            return {"error": str(exc)}
        except (BadRequest, HardwareError) as exc:
            logger.info("control: %s failed: %s", peer, exc)
            return {"error": str(exc)}
        except Exception:
            # A bug must cost one request, not the dryad's task group.
            logger.exception("control: %s: request failed", peer)
            return {"error": "internal error in the dryad; see its log"}

    # User operations ----------------------------------------------------------------

    async def _dut(self, r: Mapping[str, Any]) -> None:
        await self._stm.dut()

    async def _ts(self, r: Mapping[str, Any]) -> None:
        await self._stm.ts()

    async def _tick(self, r: Mapping[str, Any]) -> None:
        await self._stm.power_tick(_number(r, "seconds", 0.001, 3600.0, default=1.0))

    async def _power(self, r: Mapping[str, Any]) -> None:
        await (self._stm.power_on() if _flag(r, "on") else self._stm.power_off())

    async def _current(self, r: Mapping[str, Any]) -> int:
        return await self._stm.current()

    async def _current_start(self, r: Mapping[str, Any]) -> None:
        samples = int(_number(r, "samples", 1, 10**9, default=120, integer=True))
        duration = _number(r, "duration", 0.001, 14 * 86400.0, default=60.0)
        recorder = CurrentRecorder(self._stm, samples, duration)  # may refuse: BadArgument
        # As the original: a new recording replaces one in progress.
        self._recording.cancel()
        self._recording = anyio.CancelScope()
        self._recorder = recorder
        if self._tg is None:  # pragma: no cover - requests arrive only while run() serves
            raise BadRequest("the control server is not running")
        self._tg.start_soon(self._record, recorder, self._recording)

    async def _record(self, recorder: CurrentRecorder, scope: anyio.CancelScope) -> None:
        with scope:
            await recorder.run()

    async def _current_stop(self, r: Mapping[str, Any]) -> None:
        self._recording.cancel()

    async def end_job(self) -> None:
        """A job ended: stop its current recording and forget its samples, so the next
        job's user can read nothing of the last one's."""
        self._recording.cancel()
        self._recorder = None

    async def _current_get(self, r: Mapping[str, Any]) -> list[int]:
        if self._recorder is None:
            raise BadRequest("no sample was recorded")
        return self._recorder.record()

    async def _dyper(self, r: Mapping[str, Any]) -> None:
        number = int(_number(r, "number", 1, 2, integer=True))
        await self._stm.dyper(number, _flag(r, "on"))

    async def _hdmi(self, r: Mapping[str, Any]) -> None:
        await self._stm.hdmi(_flag(r, "on"))

    async def _led(self, r: Mapping[str, Any]) -> None:
        number = int(_number(r, "number", 1, 2, integer=True))
        rgb = r.get("rgb")
        if not (
            isinstance(rgb, list)
            and len(rgb) == 3
            and all(type(c) is int and 0 <= c <= 255 for c in rgb)
        ):
            raise BadRequest(f"rgb must be three integers 0..255, got {rgb!r}")
        await self._stm.set_led(number, (rgb[0], rgb[1], rgb[2]))

    async def _clear(self, r: Mapping[str, Any]) -> None:
        await self._stm.clear()

    async def _print(self, r: Mapping[str, Any]) -> None:
        x = int(_number(r, "x", 0, 127, default=0, integer=True))
        y = int(_number(r, "y", 0, 3, default=0, integer=True))
        await self._stm.text(x, y, _text(r, "text"))

    # Admin operations ---------------------------------------------------------------

    async def _raw(self, r: Mapping[str, Any]) -> list[str]:
        command = _text(r, "command")
        if "\n" in command or "\r" in command:
            raise BadRequest("a raw command is one line")
        return await self._stm.raw(command)

    async def _status(self, r: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "version": await self._stm.version(),
            "power": await self._stm.power(),
            "mux": str(await self._stm.mux()),
            "recording": self._recorder is not None and not self._recording.cancel_called,
        }


def _decode(line: bytes) -> dict[str, Any]:
    try:
        request = json.loads(line)
    except ValueError:
        raise BadRequest("a request is one JSON object per line") from None
    if not isinstance(request, dict) or not isinstance(request.get("op"), str):
        raise BadRequest('a request is a JSON object with a string "op"')
    return request


def _number(
    r: Mapping[str, Any],
    key: str,
    low: float,
    high: float,
    *,
    default: float | None = None,
    integer: bool = False,
) -> float:
    value = r.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (integer and not isinstance(value, int))
    ):
        raise BadRequest(f"{key} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if not low <= value <= high:
        raise BadRequest(f"{key} {value!r} is outside {low:g}..{high:g}")
    return value


def _flag(r: Mapping[str, Any], key: str) -> bool:
    value = r.get(key)
    if not isinstance(value, bool):
        raise BadRequest(f"{key} must be true or false, got {value!r}")
    return value


def _text(r: Mapping[str, Any], key: str) -> str:
    value = r.get(key)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{key} must be a non-empty string, got {value!r}")
    return value


def _describe(request: Mapping[str, Any]) -> str:
    args = " ".join(f"{k}={v!r}" for k, v in request.items() if k != "op")
    return f"{request['op']} {args}".rstrip()


async def _reply(stream: SocketStream, *, value: Any = None, error: str | None = None) -> None:
    reply = {"ok": False, "error": error} if error is not None else {"ok": True, "value": value}
    await stream.send(json.dumps(reply).encode() + b"\n")


def _peer(stream: SocketStream) -> str:
    """``pid=… uid=… gid=…`` of the peer, from SO_PEERCRED (who asked, for the log)."""
    sock = stream.extra(SocketAttribute.raw_socket)
    pid, uid, gid = _CRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))
    return f"pid={pid} uid={uid} gid={gid}"


def _group_id(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        logger.warning(
            "control: group %s does not exist; the user socket stays root's until it does "
            "(job users cannot run stm)",
            name,
        )
        return None


def _bind(path: Path, mode: int, gid: int | None) -> socket.socket:
    """A listening socket at *path* with *mode* and group *gid* from its first moment.

    It is bound under a temporary name, given its mode and group, then renamed over
    *path*, so no one can connect while it still has the umask's permissions.
    """
    try:
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as exc:
        raise ControlSocketError(
            f"control socket {path}: cannot create {path.parent}: {exc.strerror or exc}"
        ) from exc
    _refuse_live(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    _unlink(temporary)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(temporary))
        os.chmod(temporary, mode)
        if gid is not None:
            os.chown(temporary, -1, gid)
        sock.listen(64)
        os.rename(temporary, path)
    except OSError as exc:
        sock.close()
        _unlink(temporary)
        raise ControlSocketError(f"control socket {path}: {exc.strerror or exc}") from exc
    return sock


def _refuse_live(path: Path) -> None:
    """Replace a stale socket, never one another process still serves."""
    try:
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ControlSocketError(f"control socket {path}: exists and is not a socket")
    except FileNotFoundError:
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return  # nobody listens: a leftover of a crashed dryad
    finally:
        probe.close()
    raise ControlSocketError(
        f"control socket {path} is served by another process (a second dryad, or the "
        "original stm -serve); stop it or configure [control] paths"
    )


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
