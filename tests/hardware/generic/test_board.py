"""The generic profile: every fitted part opened and named at start, or none at all."""

from __future__ import annotations

import logging
import os
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import pytest
from gpiozero import OutputDevice
from gpiozero.pins.mock import MockFactory

from hardware import BoardSettings, open_board
from hardware.errors import BadConfig, CommandFailed, DeviceNotFound
from hardware.generic.board import open_parts
from hardware.generic.config import parse as parse_generic
from hardware.generic.stm import GenericStm
from hardware.stm.protocol import Mux
from tests.hardware.generic.conftest import simulated

pytestmark = pytest.mark.anyio

ROOT = str(Path(__file__).parents[3])
POWER = {"type": "gpio", "pin": "GPIO17", "off_time": 0.01}


async def test_a_simulated_board_opens_every_part_and_logs_what_it_found(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    generic = simulated(
        power=POWER,
        sd={"type": "usbsdmux", "device": str(tmp_path / "mux")},
        leds=[{"pin": "GPIO19"}],
        display={"type": "ssd1306"},
        button={"pin": "GPIO26"},
    )
    settings = BoardSettings(generic=generic, png_file=tmp_path / "oled.png")
    async with open_board("generic", settings) as board:
        assert isinstance(board.stm, GenericStm) and board.leds is not None
        await board.stm.dut()
        assert (tmp_path / "mux").read_text() == "dut\n" and board.mock_pins.pin(17).state
        await board.display.show_text("IDLE", "generic board")
        presses = board.stm.presses()
        board.mock_pins.pin(26).drive_low()
        with presses, anyio.fail_after(5):
            assert await presses.receive() == 1
    assert (tmp_path / "oled.png").exists()
    found = [r.message for r in caplog.records if r.message.startswith("generic board:")]
    assert found == [
        "generic board: power relay on GPIO17; SD card USB-SD-Mux "
        f"{tmp_path / 'mux'}; LEDs single; display ssd1306 128x32 on I2C bus 1 at 0x3c; "
        "button 1 on GPIO26; simulated"
    ]


async def test_a_board_with_nothing_fitted_still_draws_its_screen_and_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with open_board("generic", BoardSettings(generic=simulated())) as board:
        assert board.leds is None and board.stm is not None
        await board.display.show_text("IDLE")
        assert board.display.image.getbbox() is not None  # mirrored on the dashboard
    warned = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert any("nothing at generic.power" in m for m in warned)
    assert any("nothing at generic.sd" in m for m in warned)


async def test_a_wrong_pin_stops_the_board_and_frees_what_was_opened(factory: MockFactory) -> None:
    generic = simulated(power=POWER, sd={"type": "gpio", "pin": "GPIO99"})
    with pytest.raises(BadConfig, match=r"^generic\.sd\.pin: GPIO99 does not exist"):
        async with AsyncExitStack() as stack:
            await open_parts(generic, stack, factory=factory)
    OutputDevice("GPIO17", pin_factory=factory).close()  # the power relay's line is free


async def test_a_missing_mux_stops_the_board(tmp_path: Path) -> None:
    generic = simulated(power=POWER, sd={"type": "usbsdmux", "device": str(tmp_path / "no/mux")})
    with pytest.raises(DeviceNotFound, match=r"^generic\.sd\.device: "):
        async with open_board("generic", BoardSettings(generic=generic)):
            pass


async def test_a_power_command_that_fails_at_start_stops_the_board() -> None:
    generic = simulated(power={"type": "command", "on": ["true"], "off": ["false"]})
    with pytest.raises(CommandFailed, match=r"^generic\.power\.off: `false` exited with 1"):
        async with open_board("generic", BoardSettings(generic=generic)):
            pass


async def test_a_real_board_without_its_i2c_bus_names_the_key() -> None:
    generic = simulated(display={"type": "sh1106", "i2c_port": 97})
    real = BoardSettings(generic=type(generic)(display=generic.display))
    with pytest.raises(DeviceNotFound, match=r"^generic\.display\.i2c_port: sh1106 on I2C bus 97"):
        async with open_board("generic", real):
            pass


async def test_a_tall_panel_and_two_leds_are_described(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    generic = simulated(
        leds=[{"red": 5, "green": 6, "blue": 13}, {"pin": 19, "color": "green"}],
        display={"type": "sh1106", "height": 64, "i2c_address": 0x3D},
    )
    async with open_board("generic", BoardSettings(generic=generic)) as board:
        assert board.leds is not None
    assert "LEDs RGB, single green; display sh1106 128x64 on I2C bus 1 at 0x3d" in caplog.text


def farm_toml(tmp_path: Path) -> Path:
    """scripts/generic-sim.toml, with the farm's directory in *tmp_path*."""
    text = (Path(__file__).parents[3] / "scripts/generic-sim.toml").read_text()
    (tmp_path / "generic.toml").write_text(text.replace("../farm/", ""))
    (tmp_path / "dryad-generic").mkdir()  # the farm's board directory
    return tmp_path / "generic.toml"


async def test_the_ready_farm_toml_opens_a_simulated_board(tmp_path: Path) -> None:
    from dryad.cli import board_settings
    from dryad.settings import load

    settings = load(farm_toml(tmp_path))
    async with open_board(settings.profile, board_settings(settings)) as board:
        assert board.stm is not None
        await board.stm.dut()
        assert await board.stm.mux() is Mux.DUT
        assert await board.stm.power() is True


IMPORTS = """
import sys, anyio
from hardware import BoardSettings, open_board
from hardware.generic.config import parse
table = {"simulate": True, "power": {"type": "command", "on": ["true"], "off": ["true"]},
         "sd": {"type": "usbsdmux", "device": sys.argv[1]}}
async def main():
    async with open_board("generic", BoardSettings(generic=parse(table))):
        print(sorted({"gpiozero", "usbsdmux", "luma.oled"} & set(sys.modules)))
anyio.run(main)
"""


@pytest.mark.slow
async def test_a_board_without_gpio_parts_never_loads_gpiozero(tmp_path: Path) -> None:
    done = await anyio.run_process(
        [sys.executable, "-c", IMPORTS, str(tmp_path / "mux")],
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert done.stdout.decode().strip() == "[]"


async def test_a_button_on_a_gpiochip_line_is_refused_on_a_real_board() -> None:
    generic = parse_generic({"button": {"pin": "gpiochip0:26"}})
    with pytest.raises(BadConfig, match=r"^generic\.button\.pin: gpiochip0:26: .* outputs only"):
        async with open_board("generic", BoardSettings(generic=generic)):
            pass


async def test_a_simulated_board_on_gpiochip_lines(tmp_path: Path) -> None:
    generic = simulated(
        power={"type": "gpio", "pin": "gpiochip0:3"},
        leds=[{"pin": "gpiochip0:6", "color": "green"}],
        button={"pin": "gpiochip0:203", "bounce_time": 0},
    )
    async with open_board("generic", BoardSettings(generic=generic)) as board:
        assert board.stm is not None and board.leds is not None
        await board.stm.power_on()
        await board.leds.set_rgb(1, (0, 128, 0))
        pins = board.mock_pins
        assert (pins.pin("gpiochip0:3").state, pins.pin("gpiochip0:6").state) == (True, True)
        with board.stm.presses() as presses, anyio.fail_after(5):
            pins.pin("gpiochip0:203").drive_low()
            assert await presses.receive() == 1
