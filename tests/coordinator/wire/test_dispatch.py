"""Dispatching from the table: each end serves its own direction only, and calls through rows."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from coordinator import wire

pytestmark = pytest.mark.anyio


class Pipe:
    """One direction of an in-memory stream: what one end writes, the other reads."""

    def __init__(self) -> None:
        self._lines: asyncio.Queue[bytes] = asyncio.Queue()

    def write(self, data: bytes) -> None:
        self._lines.put_nowait(data)

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        self._lines.put_nowait(b"")

    async def readline(self) -> bytes:
        return await self._lines.get()


class Dryad:
    """The dryad's end of the table, as a test needs it."""

    def __init__(self) -> None:
        self.shown: list[wire.Display] = []

    async def display(self, view: wire.Display) -> None:
        self.shown.append(view)

    async def healthcheck(self, _: wire.Empty) -> wire.HealthReport:
        return wire.HealthReport((wire.CheckResult("stm", True, True),))


DRYAD = wire.Handlers[Dryad](wire.Direction.TO_DRYAD)
DRYAD.on(wire.DISPLAY, Dryad.display)
DRYAD.on(wire.HEALTHCHECK, Dryad.healthcheck)


async def coordinator_register(_: None, reg: wire.Registration) -> wire.Registered:
    return wire.Registered(wire.WorkerState.IDLE)


COORDINATOR = wire.Handlers[None](wire.Direction.TO_COORDINATOR)
COORDINATOR.on(wire.REGISTER, coordinator_register)


@asynccontextmanager
async def linked(dryad: Dryad) -> AsyncIterator[tuple[wire.Peer, wire.Peer]]:
    """A coordinator's peer and a dryad's, served from their tables, wired together."""
    up, down = Pipe(), Pipe()

    async def to_dryad(method: str, params: dict[str, Any]) -> Any:
        return await DRYAD.dispatch(dryad, method, params)

    async def to_coordinator(method: str, params: dict[str, Any]) -> Any:
        return await COORDINATOR.dispatch(None, method, params)

    coordinator = wire.Peer(up, down, to_coordinator, calls=wire.Direction.TO_DRYAD)
    board = wire.Peer(down, up, to_dryad, calls=wire.Direction.TO_COORDINATOR)
    tasks = [asyncio.create_task(coordinator.serve()), asyncio.create_task(board.serve())]
    try:
        yield coordinator, board
    finally:
        up.close()
        down.close()
        await asyncio.gather(*tasks)


async def test_calls_go_through_rows_typed_both_ways() -> None:
    dryad = Dryad()
    async with linked(dryad) as (coordinator, board):
        view = wire.Display(wire.WorkerState.IDLE)
        await coordinator.ask(wire.DISPLAY, view)
        report = await coordinator.ask(wire.HEALTHCHECK, wire.Empty())
        assert report == wire.HealthReport((wire.CheckResult("stm", True, True),))
        registration = wire.Registration({"UUID": "u"}, ":22")
        assert await board.ask(wire.REGISTER, registration) == wire.Registered(
            wire.WorkerState.IDLE
        )
    assert dryad.shown == [view]


@pytest.mark.parametrize(
    ("method", "params"),
    [(wire.REGISTER, {"caps": {"UUID": "u"}, "ssh_address": ":22"}), (wire.HEALTH, {"checks": []})],
)
async def test_the_dryads_dispatcher_refuses_a_method_of_the_other_direction(
    method: str, params: dict[str, Any]
) -> None:
    with pytest.raises(wire.RpcError) as refused:
        await DRYAD.dispatch(Dryad(), method, params)
    assert refused.value.code == wire.METHOD_NOT_FOUND
    assert "dryad → coordinator" in refused.value.message


async def test_the_coordinators_dispatcher_refuses_a_method_of_the_other_direction() -> None:
    with pytest.raises(wire.RpcError) as refused:
        await COORDINATOR.dispatch(None, wire.DISPLAY, {"state": "IDLE"})
    assert refused.value.code == wire.METHOD_NOT_FOUND
    assert "coordinator → dryad" in refused.value.message


async def test_the_wrong_direction_on_the_wire_is_method_not_found() -> None:
    async with linked(Dryad()) as (coordinator, board):
        with pytest.raises(wire.RpcError) as to_dryad:
            await coordinator.call(wire.REGISTER, {"caps": {}, "ssh_address": ":22"})
        with pytest.raises(wire.RpcError) as to_coordinator:
            await board.call(wire.DISPLAY, {"state": "IDLE"})
    assert to_dryad.value.code == to_coordinator.value.code == wire.METHOD_NOT_FOUND


async def test_unknown_unserved_and_malformed_calls() -> None:
    with pytest.raises(wire.RpcError, match="no method 'reboot'"):
        await DRYAD.dispatch(Dryad(), "reboot", {})
    with pytest.raises(wire.RpcError, match="not served here") as unserved:
        await DRYAD.dispatch(Dryad(), wire.PREPARE, {"public_key": "k"})
    assert unserved.value.code == wire.METHOD_NOT_FOUND
    with pytest.raises(wire.WireError):
        await DRYAD.dispatch(Dryad(), wire.DISPLAY, {"state": 5})
    async with linked(Dryad()) as (coordinator, _):
        with pytest.raises(wire.RpcError) as invalid:
            await coordinator.call(wire.DISPLAY, {"state": "\ud800"})
    assert invalid.value.code == wire.INVALID_PARAMS


def test_a_handler_serves_only_a_row_of_the_table_that_comes_its_way() -> None:
    handlers = wire.Handlers[Dryad](wire.Direction.TO_DRYAD)
    with pytest.raises(ValueError, match="goes dryad → coordinator"):
        handlers.on(wire.REGISTER, coordinator_register)  # type: ignore[arg-type]
    impostor = wire.Method("display", wire.Direction.TO_DRYAD, 1.0, wire.Display, wire.NULL, "")
    with pytest.raises(ValueError, match="not a row"):
        handlers.on(impostor, Dryad.display)
    assert set(DRYAD.missing()) == {
        wire.PREPARE, wire.RELEASE, wire.MAINTENANCE, wire.IDENTIFY, wire.DIAL_BACK
    }  # fmt: skip


async def test_a_peer_calls_only_its_own_direction_and_notifies_only_notifications() -> None:
    async with linked(Dryad()) as (coordinator, board):
        with pytest.raises(ValueError, match="this end calls coordinator → dryad"):
            await coordinator.ask(wire.REGISTER, wire.Registration({}, ":22"))
        with pytest.raises(ValueError, match="is a notification"):
            await board.ask(wire.BUTTON, wire.Button(1))
        with pytest.raises(ValueError, match="is a call"):
            await board.tell(wire.SET_FAIL, wire.SetFail("x"))


async def test_a_notification_goes_out_without_an_id() -> None:
    pipe = Pipe()

    async def nothing(method: str, params: dict[str, Any]) -> None:
        return None

    await wire.Peer(Pipe(), pipe, nothing).tell(wire.BUTTON, wire.Button(2))
    line = json.loads(await pipe.readline())
    assert line == {"jsonrpc": "2.0", "method": "button", "params": {"button": 2}}
