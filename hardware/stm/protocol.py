"""Commands and replies of the STM32 text console as pure functions over text lines.

The firmware is a human console (docs/stm-protocol.md §framing): it echoes every byte, ends
its echo with ``\\n\\r`` and its own lines with ``\\r\\n``, prints ``pressed: N`` at any
time, and closes every command with exactly one terminator line.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Final, Literal, TypeVar

from hardware.errors import BadArgument, StmCommandFailed, StmProtocolError, StmUnknownCommand
from hardware.font import PRINTABLE
from hardware.muxpi import FONT_WIDTH, OLED_HEIGHT, OLED_WIDTH

OK: Final = "OK"
FAILED: Final = "Error processing command"
UNKNOWN: Final = "Unknown command"

LINE_MAX: Final = 64  # cmd.c BUFLEN: longer lines are silently cut
TOKENS_MAX: Final = 10  # commands.c ARGCNT: later tokens are silently dropped
TEXT_MAX: Final = 16  # cb_txt_text strcats into a 17-byte static buffer
TEXT_PAGES: Final = (0, 1, 2)  # y is an 8-px page; a 16-px glyph at page 2 fills the panel
TICK_DEFAULT_MS: Final = 1000  # TICK_DELAY_DEFAULT

PRESS = re.compile(r"pressed: ([0-9]+)$")
_HELP = re.compile(r"^\s*(\S+) --- ")

LedIndex = Literal[1, 2]
_E = TypeVar("_E", bound=enum.StrEnum)


class Color(enum.StrEnum):
    """How a glyph or pixel combines with what is on the panel (oled.c)."""

    ON = "on"  # OR
    OFF = "off"  # AND NOT
    INVERT = "inv"  # XOR
    CLEAN = "clean"  # replace the glyph cell (text only; points treat it as ON)


class Mux(enum.StrEnum):
    """Where the SD card is switched to."""

    TS = "ts"
    DUT = "dut"
    INVALID = "invalid"


class Lthor(enum.StrEnum):
    """Routing of the USB-M data and ID lines."""

    USB = "usb"
    UART = "uart"


@dataclass(frozen=True, slots=True)
class Rgb:
    """A WS2812B colour, each channel 0..255."""

    red: int
    green: int
    blue: int

    def __post_init__(self) -> None:
        for name in ("red", "green", "blue"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= 255:
                raise BadArgument(f"RGB LED {name} value {value!r} is outside 0..255")

    def __str__(self) -> str:
        return f"{self.red} {self.green} {self.blue}"


@dataclass(slots=True)
class Reply:
    """What the firmware printed for one command: value lines and the terminator."""

    command: str
    lines: list[str] = field(default_factory=list)
    terminator: str = ""


def encode(command: str) -> bytes:
    """Return the bytes to send for *command*, refusing what the firmware would mangle.

    :raises BadArgument: on a line the firmware would cut, split or misread.
    """
    if not command or command != command.strip() or "  " in command:
        raise BadArgument(f"STM command {command!r} must be single-spaced words")
    if any(ch not in PRINTABLE for ch in command):
        raise BadArgument(f"STM command {command!r} holds characters outside printable ASCII")
    if len(command) >= LINE_MAX:
        raise BadArgument(f"STM command {command!r} is longer than {LINE_MAX - 1} characters")
    if len(command.split(" ")) > TOKENS_MAX:
        raise BadArgument(f"STM command {command!r} has more than {TOKENS_MAX} words")
    # A plain "\n": "\r\n" would run a second, empty line (docs/stm-protocol.md §framing).
    return command.encode("ascii") + b"\n"


def led_index(led: int) -> LedIndex:
    """Check an RGB LED number (1 bottom-left, 2 right of the OLED)."""
    if led == 1:
        return 1
    if led == 2:
        return 2
    raise BadArgument(f"RGB LED number {led!r} must be 1 or 2")


def text_command(x: int, page: int, text: str, color: Color = Color.ON) -> str:
    """Build ``text x y color words``; *page* is the 8-px row (0..2).

    :raises BadArgument: on more than 16 characters (the firmware would overflow its
        buffer), on spacing the firmware would collapse, or a glyph off the panel.
    """
    if len(text) > TEXT_MAX:
        raise BadArgument(
            f"OLED text {text!r} has {len(text)} characters; the STM takes at most {TEXT_MAX}"
        )
    if not text or text != text.strip(" ") or "  " in text:
        raise BadArgument(f"OLED text {text!r} must be non-empty single-spaced words")
    if not 0 <= x <= OLED_WIDTH - FONT_WIDTH or page not in TEXT_PAGES:
        raise BadArgument(f"OLED text position ({x}, page {page}) is off the 128x32 panel")
    return f"text {x} {page} {color} {text}"


def draw_color(color: Color) -> Color:
    """Check a colour for ``draw``, which knows only on, off and inv."""
    if color is Color.CLEAN:
        raise BadArgument("OLED draw colour must be on, off or inv")
    return color


def check_point(x: int, y: int) -> None:
    """Refuse a pixel off the panel; the firmware writes outside its buffer otherwise."""
    if not (0 <= x < OLED_WIDTH and 0 <= y < OLED_HEIGHT):
        raise BadArgument(f"OLED point ({x}, {y}) is off the 128x32 panel")


def check_range(what: str, value: int, low: int, high: int) -> int:
    """Refuse *value* outside ``low..high`` with a message naming *what*."""
    if not isinstance(value, int) or not low <= value <= high:
        raise BadArgument(f"{what} {value!r} is outside {low}..{high}")
    return value


def press_of(line: str) -> tuple[str, int] | None:
    """Split a ``pressed: N`` line into the text before it and the key number.

    A press can land between echoed characters, so whatever precedes it is returned
    for the caller to join with the rest of the interrupted line.
    """
    match = PRESS.search(line)
    if match is None:
        return None
    return line[: match.start()], int(match.group(1))


def collect(reply: Reply, line: str) -> bool:
    """Add one received *line* to *reply*; return True once the terminator has come.

    The echo of the command is skipped wherever it is (echo cannot be turned off in
    the published firmware, but a fixed firmware would not send it), blank lines
    are skipped, and ``mux``'s value glued to ``OK`` is split off.
    """
    if not line or (line == reply.command and not reply.lines):
        return False
    if line in (OK, FAILED, UNKNOWN):
        reply.terminator = line
        return True
    if line.endswith(OK) and reply.command.split(" ")[0] == "mux":
        reply.lines.append(line[: -len(OK)])
        reply.terminator = OK
        return True
    reply.lines.append(line)
    return False


def check(reply: Reply) -> list[str]:
    """Return the value lines of a finished *reply*, or raise for the firmware's refusal."""
    if reply.terminator == UNKNOWN:
        raise StmUnknownCommand(f"STM does not know the command {reply.command!r}")
    if reply.terminator == FAILED:
        raise StmCommandFailed(f"STM refused {reply.command!r} (Error processing command)")
    for line in reply.lines:
        if any(ch not in PRINTABLE for ch in line):
            raise StmProtocolError(f"STM reply to {reply.command!r} is garbled: {line!r}")
    return reply.lines


def one(reply_lines: list[str], command: str) -> str:
    """The single value line a getter must print."""
    if len(reply_lines) != 1:
        raise StmProtocolError(f"STM reply to {command!r} should be one line: {reply_lines!r}")
    return reply_lines[0]


def integer(text: str, command: str) -> int:
    """Parse a decimal value line."""
    try:
        return int(text)
    except ValueError:
        raise StmProtocolError(f"STM reply to {command!r} is not a number: {text!r}") from None


def labelled(reply_lines: list[str], command: str) -> dict[str, str]:
    """Parse ``name: value`` lines (``led``, ``adc``, ``voltage``, ``key``)."""
    values = {}
    for line in reply_lines:
        name, sep, value = line.partition(": ")
        if not sep:
            raise StmProtocolError(f"STM reply to {command!r} lacks 'name: value': {line!r}")
        values[name] = value
    return values


def rgb(text: str, command: str) -> Rgb:
    """Parse ``r,g,b``."""
    parts = text.split(",")
    if len(parts) != 3:
        raise StmProtocolError(f"STM reply to {command!r} is not r,g,b: {text!r}")
    try:
        return Rgb(*(integer(part, command) for part in parts))
    except ValueError as exc:
        raise StmProtocolError(f"STM reply to {command!r}: {exc}") from None


def choice(kind: type[_E], text: str, command: str) -> _E:
    """Parse a keyword reply (``ts``, ``USB``, ``ON``) case-insensitively."""
    try:
        return kind(text.lower())
    except ValueError:
        raise StmProtocolError(f"STM reply to {command!r} is unexpected: {text!r}") from None


def on_off(text: str, command: str) -> bool:
    """Parse ``on``/``off`` (any case)."""
    value = text.lower()
    if value not in ("on", "off"):
        raise StmProtocolError(f"STM reply to {command!r} is not on/off: {text!r}")
    return value == "on"


def commands_of(help_lines: list[str]) -> frozenset[str]:
    """The command names listed by ``help`` (``%10s --- text`` lines)."""
    return frozenset(m.group(1) for line in help_lines if (m := _HELP.match(line)))


@dataclass(frozen=True, slots=True)
class Press:
    """A ``pressed: N`` line: key N (1 or 2) went down."""

    key: int


class LineSplitter:
    """Cut the byte stream into lines with ``\\r`` stripped, pulling out key presses."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._carry = ""

    @property
    def pending(self) -> str:
        """The start of a line that has not ended yet (a half-written reply)."""
        return self._carry + self._buffer.decode("ascii", "replace").strip("\r")

    def clear(self) -> None:
        self._buffer.clear()
        self._carry = ""

    def feed(self, data: bytes) -> list[str | Press]:
        self._buffer += data
        items: list[str | Press] = []
        while (end := self._buffer.find(b"\n")) >= 0:
            raw = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            # The echo ends "\n\r", so a stray "\r" starts the next line: strip both ends.
            line = self._carry + raw.decode("ascii", "replace").strip("\r")
            self._carry = ""
            press = press_of(line)
            if press is None:
                items.append(line)
            else:
                self._carry, key = press
                items.append(Press(key))
        return items
