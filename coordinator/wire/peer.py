"""One end of the link: JSON-RPC both ways over one stream pair, raw or through the table."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from coordinator.wire.errors import INTERNAL_ERROR, INVALID_PARAMS, PARSE_ERROR, RpcError, WireError
from coordinator.wire.framing import Incoming, decode, error, notification, request, result
from coordinator.wire.messages import Message
from coordinator.wire.methods import Direction, Method

logger = logging.getLogger(__name__)

P = TypeVar("P", bound=Message)
R = TypeVar("R", bound="Message | None")

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

    ``ask`` and ``tell`` call through a row of the table: params and result typed, the
    row's timeout. With ``calls`` set they refuse a row that goes the other way, which
    is a bug of ours rather than of the other end. ``call`` and ``notify`` send raw JSON.
    """

    def __init__(
        self,
        reader: LineReader,
        writer: LineWriter,
        handler: Handler,
        *,
        calls: Direction | None = None,
        log: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._handler = handler
        self._calls = calls
        self._log = log or logger  # the coordinator's names the dryad
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def ask(self, method: Method[P, R], params: P, seconds: float | None = None) -> R:
        """Call a row of the table and read its answer by the row's result type.

        :raises RpcError, TimeoutError, ConnectionError: as ``call``.
        :raises WireError: when the answer is not the row's result.
        """
        self._outgoing(method)
        if method.timeout is None:
            raise ValueError(f"{method} is a notification: tell it")
        answer = await self.call(
            method, params.to_wire(), method.timeout if seconds is None else seconds
        )
        return method.result.from_wire(answer)

    async def tell(self, method: Method[P, Any], params: P) -> None:
        """Send a notification row of the table."""
        self._outgoing(method)
        if not method.notification:
            raise ValueError(f"{method} is a call: ask it")
        await self.notify(method, params.to_wire())

    def _outgoing(self, method: Method[Any, Any]) -> None:
        if self._calls is not None and method.direction is not self._calls:
            raise ValueError(f"{method} goes {method.direction}; this end calls {self._calls}")

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
                    self._log.warning("link: malformed message refused: %s", exc)
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
            self._log.exception("link: %s failed", method)
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
