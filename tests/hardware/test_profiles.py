"""Board profiles: the sim profile assembles working parts; missing hardware raises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hardware import BoardSettings, open_board
from hardware.errors import DeviceNotFound, UnknownProfile
from hardware.generic.config import parse

pytestmark = pytest.mark.anyio


async def test_sim_profile_drives_every_part(tmp_path: Path) -> None:
    settings = BoardSettings(state_file=tmp_path / "state.json", png_file=tmp_path / "oled.png")
    async with open_board("sim", settings) as board:
        assert board.stm is not None and board.leds is not None and board.gpio is not None
        assert board.gpio.powered
        await board.stm.dut()
        await board.leds.set_rgb(1, (0, 128, 0))
        await board.display.show_text("IDLE", "sim board")
    state = json.loads((tmp_path / "state.json").read_text())
    assert (state["power"], state["leds"][0]) == (True, [0, 128, 0])
    assert (tmp_path / "oled.png").exists()


async def test_unknown_profile_is_refused_without_falling_back() -> None:
    with pytest.raises(UnknownProfile, match="'rpi'.*generic.*muxpi.*sim"):
        async with open_board("rpi"):
            pass


async def test_generic_profile_without_an_i2c_bus_names_what_to_check() -> None:
    oled = parse({"display": {"type": "ssd1306", "i2c_port": 97}})
    with pytest.raises(DeviceNotFound, match=r"generic\.display\.i2c_port: .*I2C bus 97"):
        async with open_board("generic", BoardSettings(generic=oled)):
            pass
