"""Leds: RGB patterns through the STM and the NanoPi's status LEDs through gpiozero."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hardware.leds import StmLeds
from hardware.muxpi import OFF, YELLOW
from hardware.pins import NanoPiMockFactory
from hardware.sim.pty import PtyStm
from hardware.stm.client import SerialStm
from tests.hardware.sim_waits import wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture
def factory() -> NanoPiMockFactory:
    return NanoPiMockFactory()


@pytest.fixture
async def leds(stm: SerialStm, factory: NanoPiMockFactory) -> AsyncIterator[StmLeds]:
    async with StmLeds(stm, factory) as value:
        yield value


async def test_maintenance_alternates_yellow_between_the_leds(leds: StmLeds, sim: PtyStm) -> None:
    await leds.maintenance(period=0.01)
    cycle = ["led 2 0 0 0", "led 1 96 144 0", "led 1 0 0 0", "led 2 96 144 0"] * 2
    await wait_until(sim, lambda: sim.firmware.log[: len(cycle)] == cycle)
    await leds.stop()
    assert sim.firmware.state.leds == [OFF, OFF]


async def test_blink_lights_both_then_a_steady_colour_replaces_it(
    leds: StmLeds, sim: PtyStm
) -> None:
    await leds.blink((255, 255, 255), on_time=0.01, off_time=0.01)
    await wait_until(sim, lambda: sim.firmware.state.leds == [(255, 255, 255)] * 2)
    await leds.set_rgb(2, (0, 0, 128))
    log = len(sim.firmware.log)
    await sim.press(1)  # a round trip on the line, giving a cancelled pattern a chance to act
    assert sim.firmware.state.leds[1] == (0, 0, 128)
    assert len(sim.firmware.log) == log


async def test_status_leds_drive_their_nanopi_lines(
    leds: StmLeds, factory: NanoPiMockFactory
) -> None:
    leds.set_status(green=True, red=False)
    assert (factory.pin("STATUS_LED1").state, factory.pin("STATUS_LED2").state) == (True, False)
    leds.set_status(green=False, red=True)
    factory.pin("gpiochip0:2").assert_states([False, True])


async def test_a_failing_step_does_not_end_the_pattern(leds: StmLeds, sim: PtyStm) -> None:
    sim.mute()
    await leds.maintenance(period=0.01)
    sim.mute(False)
    await wait_until(sim, lambda: YELLOW in sim.firmware.state.leds)


async def test_patterns_need_the_context(stm: SerialStm) -> None:
    with pytest.raises(RuntimeError, match="async with"):
        await StmLeds(stm).maintenance()
