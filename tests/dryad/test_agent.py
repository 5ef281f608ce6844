"""The agent: the coordinator's calls over a real link, validation, buttons, health reports."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
from anyio.streams.memory import MemoryObjectSendStream
from PIL import ImageChops

from coordinator import wire
from dryad.agent import HANDLERS, Agent
from dryad.errors import HealthcheckFailed, JobUserError, LinkError
from dryad.identity import Identity
from dryad.link import Link
from dryad.panel import Panel
from dryad.states import LinkState, WorkerState
from hardware import BoardSettings, open_board
from hardware.display import render_text
from tests.dryad.link_doubles import FAST, FakeCoordinator, Received, StateLog, settings_for

pytestmark = pytest.mark.anyio

P = TypeVar("P", bound=wire.Message)
R = TypeVar("R", bound="wire.Message | None")

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB7oUxXzL5oRyXqtkmrQx7n6Qs1J3P4bJ1tM7x0fFq2C job"
REPORT = wire.HealthReport(
    (
        wire.CheckResult("stm", True, True, "MuxPi firmware v1.0"),
        wire.CheckResult("temperature", False, False, "81 C"),
    )
)


@dataclass
class FakePanel:
    calls: list[tuple[str, Any]] = field(default_factory=list)

    async def show(self, view: wire.Display) -> None:
        self.calls.append(("show", view))

    async def disconnected(self, coordinator: str) -> None:
        self.calls.append(("disconnected", coordinator))

    async def refused(self, coordinator: str) -> None:
        self.calls.append(("refused", coordinator))

    async def identify(self, seconds: float) -> None:
        self.calls.append(("identify", seconds))


@dataclass
class FakeUsers:
    fail: str = ""
    log: list[str] = field(default_factory=list)
    gate: anyio.Event | None = None  # holds prepare until set

    async def prepare(self, public_key: str) -> None:
        self.log.append(f"prepare start {public_key.split()[0]}")
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise JobUserError(self.fail)
        self.log.append("prepare end")

    async def release(self) -> None:
        self.log.append("release start")
        if self.fail:
            raise JobUserError(self.fail)
        self.log.append("release end")


@dataclass
class FakeHealth:
    broken: bool = False

    async def check(self) -> wire.HealthReport:
        if self.broken:
            raise HealthcheckFailed("the STM port is gone")
        return REPORT


class Offline:
    """A link that is never up."""

    connected = False

    async def call(self, method: wire.Method[P, R], params: P) -> R:
        raise LinkError("not connected")

    async def notify(self, method: wire.Method[P, Any], params: P) -> None:
        raise LinkError("not connected")


@dataclass
class Dryad:
    link: Link
    agent: Agent
    panel: FakePanel
    users: FakeUsers
    health: FakeHealth
    log: StateLog
    buttons: MemoryObjectSendStream[int]
    coordinator: FakeCoordinator
    session: Received | None = None

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        assert self.session is not None and self.session.session.peer is not None
        return await self.session.session.peer.call(method, params, seconds=5)


@asynccontextmanager
async def dryad_on(coordinator: FakeCoordinator, tmp_path: Path) -> AsyncIterator[Dryad]:
    settings = settings_for(coordinator, tmp_path / "state")
    link = Link(settings, Identity.load(tmp_path / "state"), backoff=FAST)
    panel, users, health, log = FakePanel(), FakeUsers(), FakeHealth(), StateLog()
    send, presses = anyio.create_memory_object_stream[int](math.inf)
    agent = Agent(link, panel, users, health, coordinator=settings.coordinator, presses=presses)

    async def on_state(state: LinkState, detail: str) -> None:
        await agent.link_state(state, detail)
        await log(state, detail)

    async with send, anyio.create_task_group() as tg:
        await tg.start(agent.run)
        await tg.start(link.run, agent.handle, on_state)
        dryad = Dryad(link, agent, panel, users, health, log, send, coordinator)
        dryad.session = await coordinator.next(wire.REGISTER)
        await log.wait_for(LinkState.CONNECTED)
        yield dryad
        tg.cancel_scope.cancel()


async def test_serves_every_call_of_the_coordinator(
    coordinator: FakeCoordinator, tmp_path: Path
) -> None:
    async with dryad_on(coordinator, tmp_path) as d:
        assert await d.call(wire.PREPARE, {"public_key": KEY}) is None
        assert d.users.log == ["prepare start ssh-ed25519", "prepare end"]
        running = wire.Display(
            WorkerState.RUNNING, owner="alice", until="2025-03-01T13:00:00+00:00"
        )
        assert await d.call(wire.DISPLAY, running.to_wire()) is None
        assert await d.call(wire.IDENTIFY, {"seconds": 30}) is None
        assert await d.call(wire.HEALTHCHECK, {}) == REPORT.to_wire()
        assert wire.HealthReport.from_wire(REPORT.to_wire()) == REPORT
        assert await d.call(wire.MAINTENANCE, {"message": "new SD card"}) is None
        assert await d.call(wire.RELEASE, {}) is None
        assert d.users.log[2:] == ["release start", "release end"]
        assert d.panel.calls == [
            ("show", wire.Display(WorkerState.MAINTENANCE)),  # as registered, at once
            ("show", running),
            ("identify", 30.0),
            ("show", wire.Display(WorkerState.MAINTENANCE, message="new SD card")),
        ]


async def test_failed_job_user_steps_reach_the_coordinator_with_their_reason(
    coordinator: FakeCoordinator, tmp_path: Path
) -> None:
    async with dryad_on(coordinator, tmp_path) as d:
        d.users.fail = "useradd: can't create home directory"
        with pytest.raises(wire.RpcError) as prepare:
            await d.call(wire.PREPARE, {"public_key": KEY})
        assert prepare.value.code == wire.REFUSED
        assert prepare.value.message == "prepare failed: useradd: can't create home directory"
        with pytest.raises(wire.RpcError, match="release failed: useradd"):
            await d.call(wire.RELEASE, {})
        d.health.broken = True
        with pytest.raises(wire.RpcError, match="healthcheck could not run: the STM port"):
            await d.call(wire.HEALTHCHECK, {})


@pytest.mark.parametrize(
    ("method", "params"),
    [
        (wire.PREPARE, {}),
        (wire.PREPARE, {"public_key": 5}),
        (wire.PREPARE, {"public_key": "  "}),
        (wire.IDENTIFY, {}),
        (wire.IDENTIFY, {"seconds": "10"}),
        (wire.IDENTIFY, {"seconds": True}),
        (wire.IDENTIFY, {"seconds": 0}),
        (wire.IDENTIFY, {"seconds": 86400}),
        (wire.DISPLAY, {"state": 5}),
        (wire.DISPLAY, {}),
        (wire.MAINTENANCE, {"message": ["x"]}),
    ],
)
async def test_bad_params_are_invalid_params(method: str, params: dict[str, Any]) -> None:
    panel, users = FakePanel(), FakeUsers()
    agent = Agent(Offline(), panel, users, FakeHealth(), coordinator="c:1")
    with pytest.raises(wire.WireError):
        await agent.handle(method, params)
    assert panel.calls == [] and users.log == []


async def test_bad_params_are_answered_as_invalid_params_on_the_wire(
    coordinator: FakeCoordinator, tmp_path: Path
) -> None:
    async with dryad_on(coordinator, tmp_path) as d:
        with pytest.raises(wire.RpcError) as bad:
            await d.call(wire.IDENTIFY, {"seconds": -1})
        assert bad.value.code == wire.INVALID_PARAMS
        with pytest.raises(wire.RpcError) as unknown:
            await d.call("reboot", {})
        assert unknown.value.code == wire.METHOD_NOT_FOUND


@pytest.mark.parametrize("method", [wire.REGISTER, wire.HEALTH, wire.BUTTON, wire.ENROL])
async def test_a_method_of_the_other_direction_is_method_not_found(method: str) -> None:
    panel, users = FakePanel(), FakeUsers()
    agent = Agent(Offline(), panel, users, FakeHealth(), coordinator="c:1")
    with pytest.raises(wire.RpcError) as refused:
        await agent.handle(method, {"button": 1, "checks": [], "token": "t"})
    assert refused.value.code == wire.METHOD_NOT_FOUND
    assert "dryad → coordinator" in refused.value.message
    assert panel.calls == [] and users.log == []


def test_the_agent_serves_every_method_that_comes_to_the_dryad() -> None:
    assert HANDLERS.missing() == []


async def test_maintenance_without_a_message_shows_the_originals() -> None:
    panel = FakePanel()
    agent = Agent(Offline(), panel, FakeUsers(), FakeHealth(), coordinator="c:1")
    await agent.handle(wire.MAINTENANCE, {})
    assert panel.calls == [("show", wire.Display(WorkerState.MAINTENANCE, message="maintenance"))]


async def test_one_job_user_operation_at_a_time() -> None:
    users = FakeUsers(gate=anyio.Event())
    agent = Agent(Offline(), FakePanel(), users, FakeHealth(), coordinator="c:1")
    async with anyio.create_task_group() as tg:
        tg.start_soon(agent.handle, wire.PREPARE, {"public_key": KEY})
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(agent.handle, wire.RELEASE, {})
        await anyio.wait_all_tasks_blocked()
        assert users.log == ["prepare start ssh-ed25519"]  # release waits for the lock
        users.gate.set()  # type: ignore[union-attr]
    assert users.log == ["prepare start ssh-ed25519", "prepare end", "release start", "release end"]


async def test_the_end_of_a_job_is_announced_before_its_user_goes() -> None:
    users = FakeUsers()
    agent = Agent(Offline(), FakePanel(), users, FakeHealth(), coordinator="c:1")
    ended: list[list[str]] = []

    async def hook() -> None:
        ended.append(list(users.log))

    agent.on_job_end(hook)
    await agent.handle(wire.PREPARE, {"public_key": KEY})
    await agent.handle(wire.RELEASE, {})
    assert ended == [[], ["prepare start ssh-ed25519", "prepare end"]]


async def test_button_presses_reach_the_coordinator(
    coordinator: FakeCoordinator, tmp_path: Path
) -> None:
    async with dryad_on(coordinator, tmp_path) as d:
        await d.buttons.send(2)
        received = await coordinator.next(wire.BUTTON)
        assert received.params == {"button": 2}


async def test_health_reports_are_sent(coordinator: FakeCoordinator, tmp_path: Path) -> None:
    async with dryad_on(coordinator, tmp_path) as d:
        await d.agent.report_health(REPORT)
        assert (await coordinator.next(wire.HEALTH)).params == REPORT.to_wire()


class Switch(Offline):
    """A link that is down until switched on; records what it sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, wire.Message]] = []

    async def call(self, method: wire.Method[P, R], params: P) -> R:
        if not self.connected:
            raise LinkError("not connected")
        self.sent.append((method, params))
        return method.result.from_wire(None)


async def test_a_health_report_made_while_away_is_sent_on_reconnection() -> None:
    link = Switch()
    agent = Agent(link, FakePanel(), FakeUsers(), FakeHealth(), coordinator="c:1")
    await agent.report_health(REPORT)
    assert link.sent == []
    link.connected = True
    await agent.link_state(LinkState.CONNECTED, "")
    assert link.sent == [(wire.HEALTH, REPORT)]
    await agent.link_state(LinkState.CONNECTED, "")
    assert len(link.sent) == 1  # sent once, not at every reconnection


async def test_the_panel_follows_the_link(coordinator: FakeCoordinator, tmp_path: Path) -> None:
    coordinator.registered_state = WorkerState.IDLE
    async with dryad_on(coordinator, tmp_path) as d:
        idle = wire.Display(WorkerState.IDLE)
        await d.call(wire.DISPLAY, idle.to_wire())
        assert d.session is not None
        d.session.session.drop()
        await d.log.wait_for(LinkState.CONNECTED, count=2)
        where = f"127.0.0.1:{coordinator.port}"
        # Registered: its state at once. Away: "disconnected"; back: the coordinator's
        # last word until it speaks again.
        assert d.panel.calls == [
            ("show", idle), ("show", idle), ("disconnected", where), ("show", idle)
        ]  # fmt: skip


async def test_a_new_board_draws_its_registered_state_at_once() -> None:
    """A restarted dryad has only its boot screen: the register answer replaces it."""
    panel = FakePanel()
    agent = Agent(Switch(), panel, FakeUsers(), FakeHealth(), coordinator="c:1")
    await agent.link_state(LinkState.CONNECTED, "IDLE")
    running = wire.Display(WorkerState.RUNNING, owner="alice", until="2025-03-01T13:00:00+00:00")
    await agent.handle(wire.DISPLAY, running.to_wire())
    # A board with a view keeps it (the coordinator's display may overtake the answer).
    await agent.link_state(LinkState.CONNECTED, "FAILED")
    assert panel.calls == [
        ("show", wire.Display(WorkerState.IDLE)),
        ("show", running),
        ("show", running),
    ]
    other = Agent(Switch(), FakePanel(), FakeUsers(), FakeHealth(), coordinator="c:1")
    await other.link_state(LinkState.CONNECTED, "not a state")
    assert other._view is None


async def test_refusals_are_shown() -> None:
    panel = FakePanel()
    agent = Agent(Offline(), panel, FakeUsers(), FakeHealth(), coordinator="c:1")
    await agent.link_state(LinkState.ENROLMENT_REFUSED, "enrolment refused")
    await agent.link_state(LinkState.HOST_KEY_MISMATCH, "host key changed")
    assert panel.calls == [
        ("refused", "c:1"),
        ("show", wire.Display(WorkerState.FAILED, reason="host key changed")),
    ]


async def test_set_fail_is_sent_and_survives_a_down_link(
    coordinator: FakeCoordinator, tmp_path: Path
) -> None:
    await Agent(Offline(), FakePanel(), FakeUsers(), FakeHealth(), coordinator="c").set_fail("x")
    async with dryad_on(coordinator, tmp_path) as d:
        await d.agent.set_fail("SD reader missing")
        assert (await coordinator.next(wire.SET_FAIL)).params == {"reason": "SD reader missing"}


async def test_calls_drive_the_simulated_board(
    coordinator: FakeCoordinator, tmp_path: Path
) -> None:
    """The real panel on the sim board: what the coordinator sends is what the OLED shows."""
    settings = settings_for(coordinator, tmp_path / "state")
    link = Link(settings, Identity.load(tmp_path / "state"), backoff=FAST)
    async with open_board("sim", BoardSettings()) as board, anyio.create_task_group() as tg:
        assert board.sim is not None and board.stm is not None
        panel = Panel(board.display, board.leds, flash=0.01)
        agent = Agent(
            link,
            panel,
            FakeUsers(),
            FakeHealth(),
            coordinator=settings.coordinator,
            presses=board.stm.presses(),
        )
        await tg.start(panel.run)
        await tg.start(agent.run)
        await tg.start(link.run, agent.handle, agent.link_state)
        session = (await coordinator.next(wire.REGISTER)).session
        assert session.peer is not None
        await session.peer.call(wire.DISPLAY, {"state": "FAILED", "reason": "no SD card"})
        assert panel.screen is not None and panel.screen.lines == ("FAILED", "no SD card")
        shown = board.sim.firmware.panel.image().convert("L")
        expected = render_text(*panel.screen.lines).convert("L")
        assert ImageChops.difference(shown, expected).getbbox() is None
        await board.sim.press(1)
        assert (await coordinator.next(wire.BUTTON)).params == {"button": 1}
        tg.cancel_scope.cancel()
        await panel.aclose()


async def test_the_panel_names_the_coordinator_the_link_is_at_now() -> None:
    panel = FakePanel()
    at = ["a.lab:7175"]
    agent = Agent(Offline(), panel, FakeUsers(), FakeHealth(), coordinator=lambda: at[0])
    await agent.link_state(LinkState.DISCONNECTED, "connection refused")
    at[0] = "b.lab:7175"  # the link moved on to the next coordinator
    await agent.link_state(LinkState.ENROLMENT_REFUSED, "enrolment refused")
    assert panel.calls == [("disconnected", "a.lab:7175"), ("refused", "b.lab:7175")]
