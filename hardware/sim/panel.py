"""The simulated 128x32 OLED: the firmware's page buffer and its drawing rules."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from hardware.font import glyph
from hardware.muxpi import FONT_WIDTH, OLED_HEIGHT, OLED_WIDTH
from hardware.stm.protocol import Color

PAGES = OLED_HEIGHT // 8


class Panel:
    """A copy of oled.c's shadow buffer: one byte per column per 8-px page."""

    def __init__(self) -> None:
        self.pages = bytearray(OLED_WIDTH * PAGES)

    def clear(self) -> None:
        self.pages[:] = bytes(len(self.pages))

    def _combine(self, index: int, bits: int, color: Color, replace: bool) -> None:
        current = self.pages[index]
        if replace:
            new = bits
        elif color is Color.OFF:
            new = current & ~bits
        elif color is Color.INVERT:
            new = current ^ bits
        else:
            new = current | bits
        self.pages[index] = new & 0xFF

    def point(self, x: int, y: int, color: Color) -> None:
        # Unlike the firmware, which scribbles over its neighbours' memory,
        # the simulator ignores off-panel pixels; the client refuses them anyway.
        if 0 <= x < OLED_WIDTH and 0 <= y < OLED_HEIGHT:
            self._combine(x * PAGES + y // 8, 1 << (y % 8), color, replace=False)

    def text(self, x: int, page: int, text: str, color: Color) -> None:
        for index, ch in enumerate(text):
            left = x + index * FONT_WIDTH
            # oled_display_char skips a glyph whose cell would leave the panel.
            if left > OLED_WIDTH - FONT_WIDTH or page > PAGES - 2:
                continue
            for dx, column in enumerate(glyph(ch)):
                base = (left + dx) * PAGES + page
                self._combine(base, column & 0xFF, color, replace=color is Color.CLEAN)
                self._combine(base + 1, column >> 8, color, replace=color is Color.CLEAN)

    def line(self, x1: int, y1: int, x2: int, y2: int, color: Color) -> None:
        # Bresenham, stepping along the major axis like oled_draw_line.
        dx, dy = abs(x2 - x1), abs(y2 - y1)
        sx, sy = (1 if x2 >= x1 else -1), (1 if y2 >= y1 else -1)
        x, y, err = x1, y1, dx - dy
        while True:
            self.point(x, y, color)
            if (x, y) == (x2, y2):
                return
            twice = 2 * err
            if twice > -dy:
                err -= dy
                x += sx
            if twice < dx:
                err += dx
                y += sy

    def rectangle(self, left: int, top: int, width: int, height: int, color: Color) -> None:
        # Like the firmware, edges are drawn point by point, so corners XOR twice with inv.
        for j in range(height):
            self.point(left, top + j, color)
            self.point(left + width - 1, top + j, color)
        for j in range(width):
            self.point(left + j, top, color)
            self.point(left + j, top + height - 1, color)

    def circle(self, cx: int, cy: int, radius: int, color: Color) -> None:
        x, y, err = radius, 0, 1 - radius
        while x >= y:
            for px, py in ((x, y), (y, x), (-y, x), (-x, y), (-x, -y), (-y, -x), (y, -x), (x, -y)):
                self.point(cx + px, cy + py, color)
            y += 1
            if err < 0:
                err += 2 * y + 1
            else:
                x -= 1
                err += 2 * (y - x) + 1

    def lit(self, x: int, y: int) -> bool:
        return bool(self.pages[x * PAGES + y // 8] & (1 << (y % 8)))

    def image(self) -> Image.Image:
        """The panel as a 1-bit PIL image."""
        img = Image.new("1", (OLED_WIDTH, OLED_HEIGHT))
        img.putdata([int(self.lit(x, y)) for y in range(OLED_HEIGHT) for x in range(OLED_WIDTH)])
        return img

    def save_png(self, path: Path, scale: int = 4) -> None:
        """Write the panel as a PNG, enlarged *scale* times so a person can read it."""
        img = self.image()
        img.resize((OLED_WIDTH * scale, OLED_HEIGHT * scale), Image.Resampling.NEAREST).save(path)

    def rows(self) -> list[str]:
        """The panel as text art, one string per pixel row ('#' lit), for test messages."""
        return [
            "".join("#" if self.lit(x, y) else "." for x in range(OLED_WIDTH))
            for y in range(OLED_HEIGHT)
        ]
