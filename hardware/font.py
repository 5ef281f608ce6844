"""The OLED's 8x16 glyphs, shared by the simulator's panel and the off-screen canvas."""

from __future__ import annotations

from functools import cache

from luma.core.legacy.font import CP437_FONT
from PIL import ImageDraw

from hardware.muxpi import FONT_HEIGHT, FONT_WIDTH

PRINTABLE = frozenset(chr(c) for c in range(32, 127))


@cache
def glyph(ch: str) -> tuple[int, ...]:
    """Eight 16-bit columns of *ch*, bit 0 at the top, like the firmware's SSD1306 pages.

    The firmware's own 8x16 table is not public in a reusable form, so the CP437 8x8
    glyphs are doubled in height; what matters is that the simulator and the canvas
    draw the very same pixels.
    """
    columns = CP437_FONT[ord(ch) if ch in PRINTABLE else ord("?")]
    doubled = []
    for column in list(columns) + [0] * (FONT_WIDTH - len(columns)):
        value = 0
        for bit in range(8):
            if column & (1 << bit):
                value |= 0b11 << (2 * bit)
        doubled.append(value)
    return tuple(doubled)


def draw_text(draw: ImageDraw.ImageDraw, x: int, y: int, text: str, fill: int = 1) -> None:
    """Draw *text* with its top-left corner at pixel (*x*, *y*) in the OLED font."""
    for index, ch in enumerate(text):
        for dx, column in enumerate(glyph(ch)):
            for dy in range(FONT_HEIGHT):
                if column & (1 << dy):
                    draw.point((x + index * FONT_WIDTH + dx, y + dy), fill=fill)
