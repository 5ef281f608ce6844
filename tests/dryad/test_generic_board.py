"""A dryad on a simulated generic board: its panel on GPIO LEDs, its button to the coordinator."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from coordinator import wire
from dryad.agent import Agent
from dryad.cli import board_settings
from dryad.health import Health, SerialWatch, check_stm
from dryad.identity import Identity
from dryad.link import Link
from dryad.panel import Panel
from dryad.users import JobUsers
from hardware import open_board
from hardware.generic.stm import GenericStm
from tests.dryad.link_doubles import FAST, FakeCoordinator, settings_for

pytestmark = pytest.mark.anyio

GENERIC = {
    "simulate": True,
    "power": {"type": "gpio", "pin": "GPIO17", "off_time": 0.01},
    "leds": [{"red": "GPIO5", "green": "GPIO6", "blue": "GPIO13"}],
    "button": {"pin": "GPIO26", "bounce_time": 0},
}


@pytest.mark.slow
async def test_the_coordinator_drives_the_leds_and_hears_the_button(
    coordinator: FakeCoordinator, tmp_path: Path
) -> None:
    settings = settings_for(coordinator, tmp_path / "state", profile="generic", generic=GENERIC)
    link = Link(settings, Identity.load(settings.state_dir), backoff=FAST)
    async with (
        open_board("generic", board_settings(settings)) as board,
        anyio.create_task_group() as tg,
    ):
        assert board.stm is not None
        pins = board.mock_pins
        panel = Panel(board.display, board.leds)
        health = Health(board, settings.health)
        users = JobUsers("boruta-user", (), manage=False)
        presses = board.stm.presses()
        agent = Agent(link, panel, users, health, coordinator="c", presses=presses)
        await tg.start(panel.run)
        await tg.start(agent.run)
        await tg.start(link.run, agent.handle, agent.link_state)
        session = (await coordinator.next(wire.REGISTER)).session
        assert session.peer is not None
        await session.peer.call(wire.DISPLAY, {"state": "IDLE"})
        assert [pins.pin(p).state for p in (5, 6, 13)] == [False, True, False]  # green
        pins.pin(26).drive_low()
        assert (await coordinator.next(wire.BUTTON)).params == {"button": 1}
        tg.cancel_scope.cancel()
        await panel.aclose()


async def test_the_healthchecks_pass_a_generic_board_without_a_serial_line() -> None:
    stm = GenericStm(None, None)
    assert (await check_stm(stm)).detail == "generic board (power: none, SD: none)"
    serial = await SerialWatch(stm).check()
    assert serial.passed and serial.detail == "no STM serial line on this board profile"
