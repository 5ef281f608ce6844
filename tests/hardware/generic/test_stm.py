"""GenericStm: the Stm interface's power and SD parts from backends; the rest refused."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from gpiozero.pins.mock import MockFactory

from hardware.errors import BadArgument, StmUnsupported
from hardware.generic.button import GpioButton
from hardware.generic.config import (
    ButtonSettings,
    CommandPowerSettings,
    GpioPowerSettings,
    GpioSdSettings,
    SingleLed,
)
from hardware.generic.power import CommandPower, GpioPower
from hardware.generic.sdmux import GpioSdSwitch
from hardware.generic.status import GpioLeds
from hardware.generic.stm import GenericStm
from hardware.stm.protocol import Mux, Rgb
from tests.hardware.generic.conftest import recorder

pytestmark = pytest.mark.anyio


def stm_on(factory: MockFactory, *, off_time: float = 0.0) -> GenericStm:
    power = GpioPower(GpioPowerSettings("GPIO17", off_time=off_time), factory)
    return GenericStm(power, GpioSdSwitch(GpioSdSettings("GPIO27"), factory))


async def test_ts_cuts_power_before_the_card_moves_and_dut_the_other_way(tmp_path: Path) -> None:
    log = tmp_path / "log"
    power = CommandPower(
        CommandPowerSettings(tuple(recorder(log, "power-on")), tuple(recorder(log, "power-off")))
    )

    class Card:
        async def where(self) -> Mux:
            return Mux.TS

        async def to_host(self) -> None:
            with log.open("a") as f:
                f.write("card-host\n")

        async def to_dut(self) -> None:
            with log.open("a") as f:
                f.write("card-dut\n")

        async def aclose(self) -> None: ...

    stm = GenericStm(power, Card())
    await stm.dut()
    await stm.ts()
    assert log.read_text().split() == ["card-dut", "power-on", "power-off", "card-host"]


async def test_power_and_mux_read_back(factory: MockFactory) -> None:
    stm = stm_on(factory)
    await stm.dut()
    assert (await stm.mux(), await stm.power()) == (Mux.DUT, True)
    await stm.set_mux(Mux.TS)
    await stm.power_off()
    assert (await stm.mux(), await stm.power()) == (Mux.TS, False)
    with pytest.raises(BadArgument):
        await stm.set_mux(Mux.INVALID)


async def test_a_tick_ends_powered(factory: MockFactory) -> None:
    stm = stm_on(factory)
    await stm.power_tick(0.01)
    assert await stm.power() is True
    with pytest.raises(BadArgument):
        await stm.power_tick(0)


async def test_without_a_power_switch_only_the_card_moves(factory: MockFactory) -> None:
    stm = GenericStm(None, GpioSdSwitch(GpioSdSettings("GPIO27"), factory))
    await stm.dut()
    assert await stm.mux() is Mux.DUT
    with pytest.raises(StmUnsupported, match="no a power switch; configure generic.power"):
        await stm.power_tick()


async def test_a_board_with_nothing_fitted_refuses_naming_the_keys() -> None:
    stm = GenericStm(None, None)
    for call, key in (
        (stm.dut, "generic.sd"),
        (stm.power, "generic.power"),
        (lambda: stm.led(1), "generic.leds"),
        (lambda: stm.key(1), "generic.button"),
    ):
        with pytest.raises(StmUnsupported, match=key):
            await call()
    assert await stm.commands() == {"version", "help"}
    async with stm.presses() as presses:
        assert [press async for press in presses] == []  # ends at once: no button


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.raw("version"), lambda s: s.hdmi(True), lambda s: s.dyper(1, True),
        lambda s: s.text(0, 0, "x"), lambda s: s.clear(), lambda s: s.current(),
        lambda s: s.voltage(), lambda s: s.adc(), lambda s: s.uart_voltage(),
        lambda s: s.set_uart_voltage(3300), lambda s: s.lthor_switch(), lambda s: s.lthor_id(),
        lambda s: s.lthor_vbus(), lambda s: s.set_idle_current(), lambda s: s.set_echo(True),
        lambda s: s.draw_point(0, 0), lambda s: s.draw_line(0, 0, 1, 1),
        lambda s: s.draw_rectangle(0, 0, 1, 1), lambda s: s.draw_circle(5, 5, 1),
    ],
)  # fmt: skip
async def test_what_only_a_muxpi_has_is_refused_clearly(call: object) -> None:
    with pytest.raises(StmUnsupported, match="a generic board has no .*; that needs a MuxPi"):
        await call(GenericStm(None, None))  # type: ignore[operator]


async def test_leds_and_button_serve_stm_led_and_key(factory: MockFactory) -> None:
    async with GpioLeds((SingleLed("GPIO4", "red"),), factory) as leds:
        button = GpioButton(ButtonSettings("GPIO26", bounce_time=0), factory)
        stm = GenericStm(None, None, leds, button)
        await stm.set_led(1, (128, 0, 0))
        assert await stm.led(1) == Rgb(128, 0, 0)
        with pytest.raises(BadArgument):
            await stm.set_led(1, (300, 0, 0))
        factory.pin(26).drive_low()
        assert await stm.key(1) is True
        with stm.presses() as presses:
            factory.pin(26).drive_high()
            factory.pin(26).drive_low()
            with anyio.fail_after(5):
                assert await presses.receive() == 1
        assert await stm.commands() == {"version", "help", "led", "key"}
        await button.aclose()


async def test_the_version_names_the_fitted_parts(factory: MockFactory) -> None:
    version = await stm_on(factory).version()
    assert version == "generic board (power: relay on GPIO17, SD: switch on GPIO27)"
    assert await GenericStm(None, None).help() == ["help", "version"]
