"""The ``[generic]`` table: typed, validated settings of a generic board's backends.

Pure: no third-party imports. Every refusal is a :class:`BadConfig` naming its key,
so ``dryad.settings`` can pass it on as it is (docs/generic-board.md §configuration).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from hardware.errors import BadConfig

PREFIX: Final = "generic"
MAX_SECONDS: Final = 600.0  # any longer off time or command timeout is a typo
MAX_ARGV: Final = 64
MAX_ARG: Final = 4096
I2C_ADDRESSES: Final = range(0x03, 0x78)  # 7-bit addresses outside the reserved blocks
I2C_PORTS: Final = range(256)
# gpiozero names ("GPIO17", "BCM17", "BOARD11", "J8:11", "WPI0") or a line number.
_PIN: Final = re.compile(r"[A-Za-z0-9_:.\-]{1,32}")
# A line of a GPIO character device, for boards gpiozero has no table of (the NanoPi).
CHIP_LINE: Final = re.compile(r"(gpiochip\d{1,3}):(\d{1,4})")

Pin = str | int
Channel = Literal["red", "green", "blue", "any"]
CHANNELS: Final[tuple[Channel, ...]] = ("red", "green", "blue", "any")
DisplayKind = Literal["ssd1306", "sh1106"]


@dataclass(frozen=True, slots=True)
class GpioPowerSettings:
    """DUT power through a relay on a GPIO line."""

    pin: Pin
    active_high: bool = True  # False: the relay closes when the line is low
    off_time: float = 1.0


@dataclass(frozen=True, slots=True)
class CommandPowerSettings:
    """DUT power through commands (a USB hub port, a PDU): argv lists run without a shell."""

    on: tuple[str, ...]
    off: tuple[str, ...]
    timeout: float = 10.0
    off_time: float = 1.0


@dataclass(frozen=True, slots=True)
class GpioSdSettings:
    """An SD switch driven by one GPIO line."""

    pin: Pin
    dut_high: bool = True  # the level that gives the card to the DUT


@dataclass(frozen=True, slots=True)
class UsbSdMuxSettings:
    """A USB-SD-Mux, by its SCSI generic device (``/dev/usb-sd-mux/id-…``)."""

    device: Path


@dataclass(frozen=True, slots=True)
class RgbLed:
    red: Pin
    green: Pin
    blue: Pin
    active_high: bool = True


@dataclass(frozen=True, slots=True)
class SingleLed:
    """One plain LED, lit when the wanted colour has its channel (``any``: any colour)."""

    pin: Pin
    color: Channel = "any"
    active_high: bool = True


@dataclass(frozen=True, slots=True)
class OledSettings:
    kind: DisplayKind = "ssd1306"
    i2c_port: int = 1
    i2c_address: int = 0x3C
    height: int = 32  # 128x32 or 128x64 panels; the screen is drawn in the top 32 rows


@dataclass(frozen=True, slots=True)
class ButtonSettings:
    pin: Pin
    pull_up: bool = True  # the button connects the line to ground
    bounce_time: float = 0.05
    number: int = 1  # the button number the coordinator sees, as the MuxPi's keys 1 and 2


@dataclass(frozen=True, slots=True)
class GenericSettings:
    """The fitted parts of a generic board; None (or no LEDs) where nothing is fitted."""

    simulate: bool = False  # mock pins, luma's dummy display, a file as USB-SD-Mux
    power: GpioPowerSettings | CommandPowerSettings | None = None
    sd: GpioSdSettings | UsbSdMuxSettings | None = None
    leds: tuple[RgbLed | SingleLed, ...] = ()
    display: OledSettings | None = None
    button: ButtonSettings | None = None

    def chip_lines(self) -> dict[str, tuple[str, int]]:
        """Every ``gpiochipN:OFFSET`` pin, as (chip, offset) by its name."""
        pins: list[Pin] = []
        if isinstance(self.power, GpioPowerSettings):
            pins.append(self.power.pin)
        if isinstance(self.sd, GpioSdSettings):
            pins.append(self.sd.pin)
        for led in self.leds:
            pins += [led.red, led.green, led.blue] if isinstance(led, RgbLed) else [led.pin]
        if self.button is not None:
            pins.append(self.button.pin)
        lines = {}
        for pin in pins:
            match = CHIP_LINE.fullmatch(str(pin))
            if match:
                lines[str(pin)] = (match[1], int(match[2]))
        return lines

    @property
    def uses_gpio(self) -> bool:
        """Whether any fitted part is on a GPIO line (else gpiozero is never loaded)."""
        gpio_parts = (self.leds, self.button, isinstance(self.power, GpioPowerSettings))
        return any(gpio_parts) or isinstance(self.sd, GpioSdSettings)


def parse(table: Any, *, base: Path = Path(".")) -> GenericSettings:
    """Build :class:`GenericSettings` from the parsed ``[generic]`` table.

    :param base: relative paths (the USB-SD-Mux device) are taken from here.
    :raises BadConfig: naming the first wrong key.
    """
    t = _table(table, PREFIX, {"simulate", "power", "sd", "leds", "display", "button"})
    pins: dict[str, Pin] = {}  # key -> pin: a line is used once
    return GenericSettings(
        simulate=_bool(t, "simulate", PREFIX, False),
        power=_power(t.get("power"), pins),
        sd=_sd(t.get("sd"), pins, base),
        leds=_leds(t.get("leds", []), pins),
        display=_display(t.get("display")),
        button=_button(t.get("button"), pins),
    )


def _show(value: Any) -> str:
    """*value* for a message, cut short: a hostile file must not flood the log."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _table(value: Any, key: str, known: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise BadConfig(key, f"expected a table, got {_show(value)}")
    for name in value:
        if name not in known:
            raise BadConfig(
                f"{key}.{name}", f"unknown key; known keys are {', '.join(sorted(known))}"
            )
    return value


def _bool(t: Mapping[str, Any], name: str, key: str, default: bool) -> bool:
    value = t.get(name, default)
    if not isinstance(value, bool):
        raise BadConfig(f"{key}.{name}", f"expected true or false, got {_show(value)}")
    return value


def _seconds(t: Mapping[str, Any], name: str, key: str, default: float, low: float) -> float:
    value = t.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadConfig(f"{key}.{name}", f"expected a number of seconds, got {_show(value)}")
    # TOML has inf and nan; neither is a time to wait.
    if not math.isfinite(value) or not low <= value <= MAX_SECONDS:
        raise BadConfig(
            f"{key}.{name}", f"{_show(value)} is outside {low:g}..{MAX_SECONDS:g} seconds"
        )
    return float(value)


def _int(t: Mapping[str, Any], name: str, key: str, default: int, allowed: range) -> int:
    value = t.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadConfig(f"{key}.{name}", f"expected an integer, got {_show(value)}")
    if value not in allowed:
        low, high = allowed[0], allowed[-1]
        span = f"{low:#04x}..{high:#04x}" if name == "i2c_address" else f"{low}..{high}"
        raise BadConfig(f"{key}.{name}", f"{value} is outside {span}")
    return value


def _pin(t: Mapping[str, Any], name: str, key: str, pins: dict[str, Pin]) -> Pin:
    full = f"{key}.{name}"
    if name not in t:
        raise BadConfig(full, 'required, e.g. "GPIO17" (gpiozero pin names) or 17')
    raw = t[name]
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise BadConfig(full, f"expected a pin name or number, got {_show(raw)}")
    value: Pin = raw
    if isinstance(value, int) and not 0 <= value <= 9999:
        raise BadConfig(full, f"{value} is not a GPIO number")
    if isinstance(value, str) and not _PIN.fullmatch(value):
        raise BadConfig(full, f"{_show(value)} is not a pin name (like GPIO17, BOARD11 or J8:11)")
    line = CHIP_LINE.fullmatch(str(value))
    if line:
        value = f"{line[1]}:{int(line[2])}"  # one spelling per line: gpiochip0:017 is :17
    for other, pin in pins.items():
        if str(pin).upper() == str(value).upper():
            raise BadConfig(full, f"{value} is already used by {other}")
        if bool(CHIP_LINE.fullmatch(str(pin))) != bool(line):
            raise BadConfig(
                full,
                f"{value} and {other} = {pin} mix gpiozero pin names and gpiochip lines; "
                "name every pin of a board the same way",
            )
    pins[full] = value
    return value


def _kind(t: Mapping[str, Any], key: str, kinds: tuple[str, ...]) -> str:
    value = t.get("type")
    if value not in kinds:
        raise BadConfig(f"{key}.type", f"expected one of {', '.join(kinds)}, got {_show(value)}")
    return str(value)


def _power(value: Any, pins: dict[str, Pin]) -> GpioPowerSettings | CommandPowerSettings | None:
    if value is None:
        return None
    key = f"{PREFIX}.power"
    raw = _table(value, key, {"type", "pin", "active_high", "on", "off", "timeout", "off_time"})
    kind = _kind(raw, key, ("gpio", "command"))
    off_time = _seconds(raw, "off_time", key, 1.0, 0.0)
    if kind == "gpio":
        _table(raw, key, {"type", "pin", "active_high", "off_time"})
        return GpioPowerSettings(
            _pin(raw, "pin", key, pins), _bool(raw, "active_high", key, True), off_time
        )
    _table(raw, key, {"type", "on", "off", "timeout", "off_time"})
    return CommandPowerSettings(
        _argv(raw, "on", key),
        _argv(raw, "off", key),
        _seconds(raw, "timeout", key, 10.0, 0.1),
        off_time,
    )


def _argv(t: Mapping[str, Any], name: str, key: str) -> tuple[str, ...]:
    full = f"{key}.{name}"
    value = t.get(name)
    if value is None:
        raise BadConfig(full, 'required: the command as a list, e.g. ["uhubctl", "-a", "on"]')
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise BadConfig(
            full, f"expected a list of strings (run without a shell), got {_show(value)}"
        )
    if not 1 <= len(value) <= MAX_ARGV:
        raise BadConfig(full, f"expected 1..{MAX_ARGV} arguments, got {len(value)}")
    for arg in value:
        if not isinstance(arg, str) or not arg or "\0" in arg or len(arg) > MAX_ARG:
            raise BadConfig(full, f"each argument is a non-empty string without NUL: {_show(arg)}")
    return tuple(value)


def _sd(value: Any, pins: dict[str, Pin], base: Path) -> GpioSdSettings | UsbSdMuxSettings | None:
    if value is None:
        return None
    key = f"{PREFIX}.sd"
    raw = _table(value, key, {"type", "pin", "dut_high", "device"})
    if _kind(raw, key, ("gpio", "usbsdmux")) == "gpio":
        _table(raw, key, {"type", "pin", "dut_high"})
        return GpioSdSettings(_pin(raw, "pin", key, pins), _bool(raw, "dut_high", key, True))
    _table(raw, key, {"type", "device"})
    device = raw.get("device")
    if not isinstance(device, str) or not device or "\0" in device:
        raise BadConfig(f"{key}.device", f"expected a device path, got {_show(device)}")
    return UsbSdMuxSettings(base / Path(device).expanduser())


def _leds(value: Any, pins: dict[str, Pin]) -> tuple[RgbLed | SingleLed, ...]:
    key = f"{PREFIX}.leds"
    if not isinstance(value, list):
        raise BadConfig(
            key, f"expected a list of LED tables ([[generic.leds]]), got {_show(value)}"
        )
    if len(value) > 2:
        raise BadConfig(key, f"at most 2 LEDs (the panel's LED 1 and LED 2), got {len(value)}")
    leds: list[RgbLed | SingleLed] = []
    for number, item in enumerate(value, start=1):
        at = f"{key}[{number}]"
        raw = _table(item, at, {"red", "green", "blue", "pin", "color", "active_high"})
        active_high = _bool(raw, "active_high", at, True)
        if "pin" in raw:
            _table(raw, at, {"pin", "color", "active_high"})
            color = raw.get("color", "any")
            if color not in CHANNELS:
                raise BadConfig(
                    f"{at}.color", f"expected one of {', '.join(CHANNELS)}, got {_show(color)}"
                )
            leds.append(SingleLed(_pin(raw, "pin", at, pins), color, active_high))
        else:
            red, green, blue = (_pin(raw, c, at, pins) for c in ("red", "green", "blue"))
            leds.append(RgbLed(red, green, blue, active_high))
    return tuple(leds)


def _display(value: Any) -> OledSettings | None:
    if value is None:
        return None
    key = f"{PREFIX}.display"
    raw = _table(value, key, {"type", "i2c_port", "i2c_address", "height"})
    kind = _kind(raw, key, ("ssd1306", "sh1106"))
    height = raw.get("height", 32)
    if height not in (32, 64) or isinstance(height, bool):
        raise BadConfig(f"{key}.height", f"expected 32 or 64 (pixels), got {_show(height)}")
    return OledSettings(
        "ssd1306" if kind == "ssd1306" else "sh1106",
        _int(raw, "i2c_port", key, 1, I2C_PORTS),
        _int(raw, "i2c_address", key, 0x3C, I2C_ADDRESSES),
        int(height),
    )


def _button(value: Any, pins: dict[str, Pin]) -> ButtonSettings | None:
    if value is None:
        return None
    key = f"{PREFIX}.button"
    raw = _table(value, key, {"pin", "pull_up", "bounce_time", "number"})
    return ButtonSettings(
        _pin(raw, "pin", key, pins),
        _bool(raw, "pull_up", key, True),
        _seconds(raw, "bounce_time", key, 0.05, 0.0),
        _int(raw, "number", key, 1, range(1, 3)),
    )
