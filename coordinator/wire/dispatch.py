"""Serving calls from the table: a row's params parsed by its type, its result encoded."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from coordinator.wire.errors import METHOD_NOT_FOUND, RpcError
from coordinator.wire.messages import Message, encode
from coordinator.wire.methods import TABLE, Direction, Method

C = TypeVar("C")
P = TypeVar("P", bound=Message)
R = TypeVar("R", bound="Message | None")


class Handlers(Generic[C]):
    """One end's handlers, one per row that comes its way, each called as
    ``handler(context, params)`` with the params the row's type read off the wire.

    ``dispatch`` is what a ``Peer`` calls: a method not in the table, one that goes the
    other way or one without a handler is a JSON-RPC METHOD_NOT_FOUND; params the row's
    type refuses raise ``WireError``, which the peer answers as INVALID_PARAMS.
    """

    def __init__(self, serves: Direction) -> None:
        self.serves = serves
        self._handlers: dict[str, Callable[[C, Any], Awaitable[Any]]] = {}

    def on(self, method: Method[P, R], handler: Callable[[C, P], Awaitable[R]]) -> None:
        """Serve ``method`` with ``handler``; the row must be the table's and come our way."""
        if TABLE.get(method) is not method:
            raise ValueError(f"{method!r} is not a row of the link's table")
        if method.direction is not self.serves:
            raise ValueError(f"{method} goes {method.direction}, not {self.serves}")
        self._handlers[method] = handler

    def missing(self) -> list[Method[Any, Any]]:
        """The rows coming our way that have no handler (none, once set up)."""
        return [row for row in TABLE.values() if row.direction is self.serves and row not in self]

    def __contains__(self, method: object) -> bool:
        return method in self._handlers

    def row(self, method: str) -> Method[Any, Any]:
        """The row of an incoming call, if this end serves it; raises ``RpcError``."""
        row = TABLE.get(method)
        if row is None:
            raise RpcError(METHOD_NOT_FOUND, f"no method {method!r}")
        if row.direction is not self.serves:
            raise RpcError(
                METHOD_NOT_FOUND,
                f"{row} goes {row.direction}: the {row.direction.callee} serves it",
            )
        if row not in self._handlers:
            raise RpcError(METHOD_NOT_FOUND, f"{row} is not served here")
        return row

    async def dispatch(self, context: C, method: str, params: dict[str, Any]) -> Any:
        """Serve one call: the JSON value of its result (``None`` for ``null``)."""
        row = self.row(method)
        value = await self._handlers[row](context, row.params.from_wire(params))
        return encode(value)
