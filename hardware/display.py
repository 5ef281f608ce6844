"""Display: screens drawn off-screen with luma.core, then shown on the panel of the board."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from hardware.errors import BadArgument, StmUnsupported
from hardware.font import draw_text
from hardware.interfaces import Stm
from hardware.muxpi import FONT_HEIGHT, FONT_WIDTH, OLED_HEIGHT, OLED_WIDTH
from hardware.recent import Recent
from hardware.sim.firmware import Firmware
from hardware.stm.protocol import TEXT_MAX, Color, text_command

logger = logging.getLogger(__name__)

LINES = OLED_HEIGHT // FONT_HEIGHT
_WORDS = re.compile(r"\S+(?: \S+)*")


def blank() -> Image.Image:
    return Image.new("1", (OLED_WIDTH, OLED_HEIGHT))


def render_text(*lines: str) -> Image.Image:
    """Draw up to two 16-character lines in the panel's font on a blank frame."""
    if len(lines) > LINES or any(len(line) > TEXT_MAX for line in lines):
        raise BadArgument(f"OLED shows {LINES} lines of {TEXT_MAX} characters: {lines!r}")
    # Straight on a PIL image: a luma device per frame would register an exit hook each
    # time, and those keep every device (and its frame) alive: 5.7 KB per redraw.
    image = blank()
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(lines):
        draw_text(draw, 0, row * FONT_HEIGHT, line)
    return image


def _lit(image: Image.Image) -> bytes:
    return image.convert("L").tobytes()


def _runs(row: Iterable[bool]) -> list[tuple[int, int]]:
    """(first, last) columns of each run of True in *row*."""
    runs, start = [], None
    for x, on in enumerate([*row, False]):
        if on and start is None:
            start = x
        elif not on and start is not None:
            runs.append((start, x - 1))
            start = None
    return runs


def _lines_for(now: bytes, target: bytes) -> list[str]:
    """``draw line`` commands, one per horizontal run, turning *now* into *target*."""
    commands = []
    for y in range(OLED_HEIGHT):
        row = slice(y * OLED_WIDTH, (y + 1) * OLED_WIDTH)
        old, new = now[row], target[row]
        for color, wanted in ((Color.ON, True), (Color.OFF, False)):
            changed = (
                bool(n) == wanted and bool(o) != wanted for o, n in zip(old, new, strict=True)
            )
            commands += [f"draw line {a} {y} {b} {y} {color}" for a, b in _runs(changed)]
    return commands


def _text_for(
    lines: tuple[str, ...], color: Color = Color.ON, rows: Iterable[int] = (0, 1)
) -> list[str]:
    """``text`` commands for each single-spaced word group of the chosen lines, at its column."""
    return [
        text_command(m.start() * FONT_WIDTH, row * 2, m.group(), color)
        for row, line in enumerate(lines)
        if row in rows
        for m in _WORDS.finditer(line)
    ]


class StmDisplay:
    """The MuxPi OLED, reached through the STM's ``clr``/``text``/``draw`` commands.

    A model of the firmware's panel predicts what each plan of commands leaves on
    screen; of the plans that reach the wanted frame, the fewest bytes are sent.

    :param text_only: send only ``clr`` and ``text`` (firmware without ``draw``);
        None asks the firmware's ``help`` on first use.
    """

    def __init__(self, stm: Stm, *, text_only: bool | None = None) -> None:
        self._stm = stm
        self._text_only = text_only
        self._model = Firmware(draw=True)
        self._known = False  # the splash or an earlier owner's frame is on the panel
        self.sent: Recent[str] = Recent()  # the latest commands, for tests

    @property
    def image(self) -> Image.Image:
        return self._model.panel.image()

    async def _can_draw(self) -> bool:
        if self._text_only is None:
            self._text_only = not await self._stm.supports("draw")
            if self._text_only:
                logger.warning("STM firmware has no draw command: OLED falls back to text")
        return not self._text_only

    async def show_text(self, *lines: str) -> None:
        target = render_text(*lines)
        # "clean" replaces whole glyph cells, so a changed line can be rewritten in place.
        now, wanted = _lit(self._model.panel.image()), _lit(target)
        band = OLED_WIDTH * FONT_HEIGHT
        changed = [
            r
            for r in range(LINES)
            if now[r * band : (r + 1) * band] != wanted[r * band : (r + 1) * band]
        ]
        plans = [["clr", *_text_for(lines)], _text_for(lines, Color.CLEAN, changed)]
        await self._show(target, plans)

    async def show(self, image: Image.Image) -> None:
        if image.size != (OLED_WIDTH, OLED_HEIGHT):
            raise BadArgument(f"OLED image must be {OLED_WIDTH}x{OLED_HEIGHT}, not {image.size}")
        if not await self._can_draw():
            raise StmUnsupported("this STM firmware has no draw command; show_text only")
        await self._show(image.convert("1"), [])

    async def clear(self) -> None:
        await self._show(blank(), [["clr"]])

    async def _show(self, target: Image.Image, plans: list[list[str]]) -> None:
        wanted = _lit(target)
        now = _lit(self._model.panel.image())
        if self._known and now == wanted:
            return
        if await self._can_draw():
            plans.append(["clr", *_lines_for(bytes(len(wanted)), wanted)])
            if self._known:
                plans.append(_lines_for(now, wanted))
        for plan in sorted(plans, key=lambda plan: sum(len(c) + 1 for c in plan)):
            if self._predict(plan) == wanted:
                await self._send(plan)
                return
        raise StmUnsupported("this frame cannot be drawn with text commands alone")

    def _predict(self, plan: list[str]) -> bytes:
        model = Firmware(draw=True)
        model.panel.pages[:] = self._model.panel.pages
        for command in plan:
            model.receive(command.encode() + b"\n")
        return _lit(model.panel.image())

    async def _send(self, plan: list[str]) -> None:
        self._known = False  # until every command is through, the panel is uncertain
        for command in plan:
            await self._stm.raw(command)
            self._model.receive(command.encode() + b"\n")
            self.sent.append(command)
        self._known = True

    async def aclose(self) -> None:
        """Nothing to release: the STM belongs to its owner."""


class LumaDisplay:
    """A luma device drawn directly: an SSD1306 on I2C (``generic``) or a dummy (tests).

    :param device: any luma.core device of 128x32 pixels.
    :param png: write each frame here as a PNG (the ``sim`` profile's screen).
    """

    def __init__(self, device: Any, *, png: Path | None = None) -> None:
        self._device = device
        self._png = png
        self._image = blank()

    @property
    def image(self) -> Image.Image:
        return self._image.copy()

    async def show_text(self, *lines: str) -> None:
        await self.show(render_text(*lines))

    async def show(self, image: Image.Image) -> None:
        if image.size != (OLED_WIDTH, OLED_HEIGHT):
            raise BadArgument(f"OLED image must be {OLED_WIDTH}x{OLED_HEIGHT}, not {image.size}")
        frame = image.convert("1")
        if _lit(frame) == _lit(self._image):
            return
        self._image = frame
        self._device.display(frame.convert(self._device.mode))
        if self._png is not None:
            frame.resize((OLED_WIDTH * 4, OLED_HEIGHT * 4), Image.Resampling.NEAREST).save(
                self._png
            )

    async def clear(self) -> None:
        await self.show(blank())

    async def aclose(self) -> None:
        cleanup = getattr(self._device, "cleanup", None)
        if cleanup is not None:
            self._device.cleanup = lambda: None  # luma's cleanup is not idempotent
            cleanup()
