"""Display: frames drawn off-screen reach the (simulated) OLED with only what changed."""

from __future__ import annotations

from pathlib import Path

import pytest
from luma.core.device import dummy
from luma.core.render import canvas
from PIL import Image

from hardware.display import LumaDisplay, StmDisplay, render_text
from hardware.errors import BadArgument, StmUnsupported
from hardware.sim.firmware import Firmware
from hardware.sim.pty import PtyStm
from hardware.stm.client import SerialStm

pytestmark = pytest.mark.anyio


def same(a: Image.Image, b: Image.Image) -> bool:
    return a.convert("1").tobytes() == b.convert("1").tobytes()


def framed() -> Image.Image:
    device = dummy(width=128, height=32, mode="1")
    with canvas(device) as draw:
        draw.rectangle((0, 0, 127, 31), outline="white")
        draw.ellipse((100, 4, 124, 28), outline="white")
    image: Image.Image = device.image
    return image


async def test_text_screen_is_sent_as_text_and_matches_the_canvas(
    stm: SerialStm, sim: PtyStm, tmp_path: Path
) -> None:
    display = StmDisplay(stm)
    await display.show_text("MAINTENANCE", "dryad-07")
    assert display.sent == ["clr", "text 0 0 on MAINTENANCE", "text 0 2 on dryad-07"]
    assert same(sim.firmware.panel.image(), render_text("MAINTENANCE", "dryad-07"))
    sim.firmware.panel.save_png(tmp_path / "maintenance.png")
    with Image.open(tmp_path / "maintenance.png") as png:
        assert png.size == (512, 128)


async def test_only_the_changed_line_is_rewritten(stm: SerialStm) -> None:
    display = StmDisplay(stm)
    await display.show_text("RUNNING", "alice 12 min")
    display.sent.clear()
    await display.show_text("RUNNING", "alice 11 min")
    assert display.sent == ["text 0 2 clean alice 11 min"]


async def test_an_unchanged_screen_sends_nothing(stm: SerialStm) -> None:
    display = StmDisplay(stm)
    await display.show_text("IDLE")
    display.sent.clear()
    await display.show_text("IDLE")
    assert display.sent == []


async def test_an_image_is_drawn_with_line_runs(stm: SerialStm, sim: PtyStm) -> None:
    display = StmDisplay(stm)
    await display.show(framed())
    assert same(sim.firmware.panel.image(), framed())
    assert all(c == "clr" or c.startswith("draw line") for c in display.sent)
    await display.clear()
    assert not any(sim.firmware.panel.pages)


async def test_firmware_without_draw_falls_back_to_text() -> None:
    async with PtyStm(Firmware(draw=False)) as sim, SerialStm(sim.path) as stm:
        display = StmDisplay(stm)
        await display.show_text("FAIL", "no SD reader")
        assert same(sim.firmware.panel.image(), display.image)
        with pytest.raises(StmUnsupported, match="draw"):
            await display.show(framed())


async def test_text_beyond_the_panel_is_refused(stm: SerialStm) -> None:
    display = StmDisplay(stm)
    with pytest.raises(BadArgument):
        await display.show_text("a", "b", "c")
    with pytest.raises(BadArgument):
        await display.show(Image.new("1", (128, 64)))


async def test_luma_display_draws_directly_and_saves_png(tmp_path: Path) -> None:
    device = dummy(width=128, height=32, mode="1")
    display = LumaDisplay(device, png=tmp_path / "screen.png")
    await display.show_text("generic", "board")
    assert same(device.image, render_text("generic", "board"))
    assert same(display.image, device.image)
    assert (tmp_path / "screen.png").exists()
    await display.clear()
    assert not any(device.image.convert("L").tobytes())
    with pytest.raises(BadArgument):
        await display.show(Image.new("1", (10, 10)))
    await display.aclose()
    await display.aclose()


async def test_months_of_redraws_keep_the_records_of_sent_commands_bounded(
    stm: SerialStm, sim: PtyStm
) -> None:
    display = StmDisplay(stm)
    for minute in range(400):  # a RUNNING board redraws its time left every minute
        await display.show_text("RUNNING", f"alice {minute} min")
    limit = display.sent.limit
    assert limit < len(display.sent) + len(sim.firmware.log) <= 4 * limit
    assert display.sent[-1] == "text 0 2 clean alice 399 min"  # the newest are kept
    assert sim.firmware.log[-1] == "text 0 2 clean alice 399 min"
