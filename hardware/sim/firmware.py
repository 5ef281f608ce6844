"""A model of the MuxPi control firmware (muxpi:sw/control): board state and commands.

It is pure: bytes in, bytes out. The pty runner (``hardware.sim.pty``) moves the
bytes and sleeps where the firmware would block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from hardware.muxpi import FIRMWARE_VERSION, SPLASH
from hardware.recent import Recent
from hardware.sim.panel import Panel
from hardware.stm.protocol import LINE_MAX, TICK_DEFAULT_MS, TOKENS_MAX, Color, Lthor, Mux

INPUT_QUEUE: Final = 32  # USART_INCOMING_QUEUE_LENGTH: the ISR drops bytes beyond it
ADC_CHANNELS: Final = 5
VREFINT_CAL: Final = 1530

_HELP: Final = (
    ("help", "This help"),
    ("version", "Display version of the firmware"),
    ("echo", "Get (no arguments) or set ('on' or 'off') echo: echo [on|off]"),
    ("power", "Get or set power supply for DUT: power [on|off|tick]"),
    ("hdmi", "Set HDMI HOTPLUG pin: hdmi [on|off]"),
    ("dyper", "Set DyPer state: dyper 1|2 [on|off]"),
    ("mux", "Connect microSD card to DUT or card reader (ts): mux [dut|ts]"),
    ("dut", "Connect microSD card and power to DUT: dut"),
    ("ts", "Connect microSD card and power to TS: ts"),
    ("led", "Get or set ('R G B') color of led (1 | 2), ex: led 1 255 0 255"),
    ("clr", "Clear oled display"),
    ("text", "Print text on the OLED display: text x y color content"),
    ("draw", "Draw an object on the OLED display: draw object x1 y1 [x2 y2], objects are:\n"
     "               - point x y color\n               - line x1 y1 x2 y2 color"),
    ("adc", "Print current adc value of all or one channel, ex: adc 1"),
    ("voltage", "Print current voltage [mV] of all or one channel, ex: voltage 1"),
    ("current", "Print current current [mA] being consumed by DUT"),
    ("lthor", "Get or set state of lthor control signals:\n"
     "               - lthor switch [usb|uart]\n               - lthor vbus [on|off]"),
    ("key", "Get current state of given key or both: key [1|2]"),
    ("uart", "Get or set UART voltage [in millivolts]"),
)  # fmt: skip


@dataclass
class BoardState:
    """Everything the firmware controls or reports, as plain data."""

    power: bool = False
    mux: Mux = Mux.TS
    dypers: list[bool] = field(default_factory=lambda: [False, False])
    hdmi: bool = False
    leds: list[tuple[int, int, int]] = field(default_factory=lambda: [(0, 0, 0), (0, 0, 0)])
    dut_current_ma: int = 0  # what the simulated DUT draws while powered
    idle_current_ma: int = 0
    adc_raw: list[int] = field(default_factory=lambda: [0, 1241, 2482, 1700, 1530])
    keys: list[bool] = field(default_factory=lambda: [False, False])
    uart_mv: int = 0
    lthor_switch: Lthor = Lthor.USB
    lthor_id: Lthor = Lthor.USB
    lthor_vbus: bool = False
    echo_reported: bool = True
    boots: int = 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["leds"] = [list(rgb) for rgb in self.leds]
        return data


class _Refused(Exception):
    """A command callback returned non-zero."""


def _int(token: str) -> int:
    # xatoi accepts an optional sign and decimal digits; anything else fails.
    try:
        return int(token, 10)
    except ValueError:
        raise _Refused from None


def _is(token: str, word: str) -> bool:
    # Arguments match by prefix of the keyword's length, ignoring case (strncasecmp).
    return token[: len(word)].lower() == word


class Firmware:
    """The control firmware: echo, line buffer, command table and terminators.

    :param lthor: offer the ``lthor`` command (an unmerged firmware branch).
    :param draw: offer the ``draw`` command (absent from some early builds).
    :param sticky_echo: echo whatever ``echo off`` says, as the published firmware does.
    """

    def __init__(self, *, lthor: bool = False, draw: bool = True, sticky_echo: bool = True) -> None:
        self.state = BoardState(boots=0)
        self.panel = Panel()
        self._tick_seconds = 0.0
        self._rows_of = b"-"
        self._rows: list[str] = []
        self.log: Recent[str] = Recent()  # the latest commands received
        self._line = bytearray()
        self._sticky_echo = sticky_echo
        self._pending_tick = False
        table: dict[str, Callable[[list[str]], str]] = {
            "help": self._help, "version": self._version, "echo": self._echo,
            "power": self._power, "hdmi": self._hdmi, "dyper": self._dyper,
            "mux": self._mux, "dut": self._dut, "ts": self._ts, "led": self._led,
            "clr": self._clr, "text": self._text, "draw": self._draw, "adc": self._adc,
            "voltage": self._voltage, "current": self._current, "lthor": self._lthor,
            "key": self._key, "uart": self._uart,
        }  # fmt: skip
        if not lthor:
            del table["lthor"]
        if not draw:
            del table["draw"]
        self._table = table
        self.boot()

    def boot(self) -> None:
        """Power-on reset: ``control_setup`` calls ``ts()``, then the splash and dark LEDs."""
        self.state = BoardState(boots=self.state.boots + 1)
        self._line.clear()
        self._pending_tick = False
        self.panel.clear()
        self.panel.text(5, 0, SPLASH[0], Color.ON)
        self.panel.text(5, 2, SPLASH[1], Color.ON)

    @property
    def echo(self) -> bool:
        return self._sticky_echo or self.state.echo_reported

    def receive(self, data: bytes) -> tuple[bytes, float, bytes]:
        """Process input bytes until done or until a command blocks.

        :returns: the output, seconds the firmware now blocks for (0 if none), and the
            input left unprocessed because of that block. Call :meth:`resume` after it.
        """
        out = bytearray()
        for index, byte in enumerate(data):
            if byte in b"\r\n":
                if self.echo:
                    out += b"\n\r"
                line = self._line.decode("ascii", "replace")
                self._line.clear()
                out += self._run(line)
                if self._pending_tick:
                    return bytes(out), self._tick_seconds, data[index + 1 :]
            else:
                if len(self._line) < LINE_MAX:
                    self._line.append(byte)
                if self.echo:
                    out.append(byte)
        return bytes(out), 0.0, b""

    def resume(self) -> bytes:
        """Finish a blocking ``power tick``: power back on, then its ``OK``."""
        self._pending_tick = False
        self.state.power = True
        return b"OK\r\n"

    @staticmethod
    def press(key: int) -> bytes:
        """The line the UART task prints for a key press."""
        return f"pressed: {key}\r\n".encode()

    def _run(self, line: str) -> bytes:
        tokens = line.split()[:TOKENS_MAX]
        if not tokens:
            return b""
        self.log.append(" ".join(tokens))
        callback = self._table.get(tokens[0])
        if callback is None:
            return b"Unknown command\r\n"
        try:
            text = callback(tokens)
        except _Refused:
            return b"Error processing command\r\n"
        if self._pending_tick:
            return text.encode()
        return (text + "OK\n").replace("\n", "\r\n").encode()

    def _help(self, args: list[str]) -> str:
        return "".join(f"{name:>10} --- {text}\n" for name, text in _HELP if name in self._table)

    def _version(self, args: list[str]) -> str:
        return FIRMWARE_VERSION + "\n"

    def _echo(self, args: list[str]) -> str:
        if len(args) > 1:
            if not (_is(args[1], "on") or _is(args[1], "off")):
                raise _Refused
            self.state.echo_reported = _is(args[1], "on")
        else:
            self.state.echo_reported = not self.echo
        return f"Echo is {'on' if self.state.echo_reported else 'off'} now.\n"

    def _power(self, args: list[str]) -> str:
        if len(args) == 1:
            return "on\n" if self.state.power else "off\n"
        if _is(args[1], "on") or _is(args[1], "off"):
            self.state.power = _is(args[1], "on")
        elif _is(args[1], "tick"):
            delay = _int(args[2]) if len(args) > 2 else 0
            self._tick_seconds = (delay if delay > 0 else TICK_DEFAULT_MS) / 1000
            self.state.power = False
            self._pending_tick = True
        else:
            raise _Refused
        return ""

    def _hdmi(self, args: list[str]) -> str:
        # No argument sets the pin off: the help text's "get" was never written.
        if len(args) > 1 and not (_is(args[1], "on") or _is(args[1], "off")):
            raise _Refused
        self.state.hdmi = len(args) > 1 and _is(args[1], "on")
        return ""

    def _dyper(self, args: list[str]) -> str:
        if len(args) < 3 or not (_is(args[2], "on") or _is(args[2], "off")):
            raise _Refused
        number = _int(args[1])
        if number not in (1, 2):
            raise _Refused
        self.state.dypers[number - 1] = _is(args[2], "on")
        return ""

    def _mux(self, args: list[str]) -> str:
        if len(args) == 1:
            return str(self.state.mux)  # no newline: the reply line reads "tsOK"
        if _is(args[1], "ts"):
            self.state.mux = Mux.TS
        elif _is(args[1], "dut"):
            self.state.mux = Mux.DUT
        else:
            raise _Refused
        return ""

    def _dut(self, args: list[str]) -> str:
        self.state.mux, self.state.power = Mux.DUT, True
        return ""

    def _ts(self, args: list[str]) -> str:
        self.state.mux, self.state.power = Mux.TS, False
        return ""

    def _led(self, args: list[str]) -> str:
        if len(args) == 1:
            return "".join(self._led_line(n) for n in (1, 2))
        number = _int(args[1])
        if number not in (1, 2):
            raise _Refused
        if len(args) == 2:
            return self._led_line(number)
        if len(args) != 5:
            raise _Refused
        # led_set_color takes uint8_t channels: larger values wrap on the real board.
        red, green, blue = (_int(v) & 0xFF for v in args[2:5])
        self.state.leds[number - 1] = (red, green, blue)
        return ""

    def _led_line(self, number: int) -> str:
        red, green, blue = self.state.leds[number - 1]
        return f"led{number}: {red},{green},{blue}\n"

    def _clr(self, args: list[str]) -> str:
        self.panel.clear()
        return ""

    def _text(self, args: list[str]) -> str:
        if len(args) < 5:
            raise _Refused
        x, page = _int(args[1]), _int(args[2])
        if not (0 <= x <= 128 and 0 <= page <= 32):
            raise _Refused
        # The real firmware overflows a 17-byte buffer here; the model keeps 16.
        self.panel.text(x, page, " ".join(args[4:])[:16], self._color(args[3]))
        return ""

    @staticmethod
    def _color(token: str) -> Color:
        # oled_color_from_string: exact words, anything else means "on".
        return {"off": Color.OFF, "inv": Color.INVERT, "clean": Color.CLEAN}.get(token, Color.ON)

    def _draw(self, args: list[str]) -> str:
        shapes: dict[str, tuple[int, Callable[..., None]]] = {
            "point": (5, self.panel.point),
            "line": (7, self.panel.line),
            "rectangle": (7, self.panel.rectangle),
            "circle": (6, self.panel.circle),
        }
        for name, (count, paint) in shapes.items():
            if len(args) > 1 and _is(args[1], name):
                if len(args) < count:
                    raise _Refused
                paint(*(_int(v) for v in args[2 : count - 1]), self._color(args[count - 1]))
                return ""
        raise _Refused

    def _channel(self, args: list[str]) -> list[int]:
        if len(args) == 1:
            return []
        channel = _int(args[1])
        if not 0 <= channel <= ADC_CHANNELS:
            raise _Refused
        return [channel]

    def _raw(self, channel: int) -> int:
        return self.state.adc_raw[channel - 1] if channel >= 1 else 0

    def _adc(self, args: list[str]) -> str:
        chosen = self._channel(args)
        lines = [f"adc{c}: {self._raw(c)}\n" for c in chosen or range(1, ADC_CHANNELS + 1)]
        return "".join(lines) + ("" if chosen else f"vrefint: {VREFINT_CAL}\n")

    def _voltage(self, args: list[str]) -> str:
        chosen = self._channel(args) or [1, 2, 3, 4]
        return "".join(f"adc{c}: {self._raw(c) * 3300 // 4095}\n" for c in chosen)

    def _current(self, args: list[str]) -> str:
        state = self.state
        if len(args) > 1:
            if _is(args[1], "auto"):
                state.idle_current_ma = state.dut_current_ma if state.power else 0
                return ""
            state.idle_current_ma = _int(args[1])
            return f"{state.idle_current_ma}\n"
        current = max(state.dut_current_ma - state.idle_current_ma, 0) if state.power else 0
        return f"{current}\n"

    def _lthor(self, args: list[str]) -> str:
        state = self.state
        if len(args) < 2:
            raise _Refused
        if _is(args[1], "switch") or _is(args[1], "id"):
            attr = "lthor_switch" if _is(args[1], "switch") else "lthor_id"
            if len(args) == 2:
                return f"{getattr(state, attr).upper()}\n"
            setattr(state, attr, Lthor.USB if _is(args[2], "usb") else Lthor.UART)
            return ""
        if _is(args[1], "vbus"):
            if len(args) == 2:
                return "ON\n" if state.lthor_vbus else "OFF\n"
            state.lthor_vbus = _is(args[2], "on")
            return ""
        raise _Refused

    def _key(self, args: list[str]) -> str:
        def word(n: int) -> str:
            return "pressed" if self.state.keys[n - 1] else "released"

        if len(args) > 1:
            return word(1 if _int(args[1]) == 1 else 2) + "\n"
        return f"key1: {word(1)}\nkey2: {word(2)}\n"

    def _uart(self, args: list[str]) -> str:
        if len(args) > 1:
            self.state.uart_mv = _int(args[1])
            return ""
        return f"{self.state.uart_mv}\n"

    def snapshot(self) -> dict[str, Any]:
        """The board state plus the OLED as text rows, for ``--state`` files."""
        pages = bytes(self.panel.pages)
        if pages != self._rows_of:  # rendering rows is the costly part: only on change
            self._rows_of, self._rows = pages, self.panel.rows()
        return {**self.state.to_json(), "oled": self._rows}
