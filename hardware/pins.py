"""gpiozero pin factories for the NanoPi NEO: a board table, a mock, and gpiod lines.

gpiozero resolves pin names through a Raspberry Pi board table and refuses
``LED(203)`` even under MockFactory (docs/muxpi.md §gpiozero), so the factories
here bring their own table built from a configurable line map.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from typing import Any

from gpiozero.compat import frozendict
from gpiozero.pins import BoardInfo, HeaderInfo, PinInfo
from gpiozero.pins.mock import MockFactory
from gpiozero.pins.pi import PiFactory, PiPin

from hardware import muxpi
from hardware.errors import BadArgument, DeviceNotFound


@dataclass(frozen=True, slots=True)
class Line:
    """One GPIO line: a character-device chip (name or path) and an offset on it."""

    chip: str
    offset: int
    header_pin: int = 0


def _default(offset: int) -> Line:
    return Line(muxpi.GPIO_CHIP, offset, muxpi.HEADER_PIN[offset])


@dataclass(frozen=True, slots=True)
class PinMap:
    """The four NanoPi lines MuxPi uses, by label; override any from configuration."""

    lines: dict[str, Line] = field(
        default_factory=lambda: {
            "STATUS_LED1": _default(muxpi.LINE_GREEN_LED),
            "STATUS_LED2": _default(muxpi.LINE_RED_LED),
            "PWR_CTRL": _default(muxpi.LINE_PWR_CTRL),
            "STM_BOOT0": _default(muxpi.LINE_STM_BOOT0),
        }
    )

    def __post_init__(self) -> None:
        names = [f"{line.chip}:{line.offset}" for line in self.lines.values()]
        if len(set(names)) != len(names):
            raise BadArgument(f"GPIO pin map uses one line twice: {sorted(names)}")

    def board_info(self) -> BoardInfo:
        """A gpiozero board table whose pins answer to their labels and line numbers."""
        pins = {}
        for number, (label, line) in enumerate(sorted(self.lines.items()), start=1):
            name = f"GPIO{number}"  # PiPin reads a number after "GPIO"; ours is an index
            names = {name, label, f"{line.chip}:{line.offset}"}
            if line.header_pin:
                names.add(f"J1:{line.header_pin}")
            pins[number] = PinInfo(
                number=number,
                name=name,
                names=frozenset(names),
                pull="",
                row=number,
                col=1,
                interfaces=frozenset({"gpio"}),
            )
        header = HeaderInfo(name="J1", rows=len(pins), columns=1, pins=frozendict(pins))
        return BoardInfo(
            revision="0", model="NanoPi-NEO", pcb_revision="1.x", released="2016", soc="H3",
            manufacturer="FriendlyElec", memory=512, storage="MicroSD", usb=3, usb3=0,
            ethernet=1, eth_speed=100, wifi=False, bluetooth=False, csi=0, dsi=0,
            headers=frozendict({"J1": header}), board="",
        )  # fmt: skip

    def line_of(self, pin_info: PinInfo) -> Line:
        for label, line in self.lines.items():
            if label in pin_info.names:
                return line
        raise BadArgument(f"no GPIO line is mapped for {pin_info.name}")  # pragma: no cover


class NanoPiMockFactory(MockFactory):  # type: ignore[misc]
    """gpiozero's MockFactory with the NanoPi's MuxPi lines instead of a Pi header."""

    def __init__(self, pin_map: PinMap | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pin_map = pin_map or PinMap()
        self._board = self.pin_map.board_info()

    def _get_board_info(self) -> BoardInfo:
        return self._board


class GpiodFactory(PiFactory):  # type: ignore[misc]
    """Real lines through the Linux GPIO character device, using the ``gpiod`` bindings.

    Output only: MuxPi's NanoPi lines are two LEDs, board power and BOOT0.
    """

    def __init__(self, pin_map: PinMap | None = None) -> None:
        super().__init__()
        self.pin_map = pin_map or PinMap()
        self._board = self.pin_map.board_info()
        self.pin_class = GpiodPin

    def _get_board_info(self) -> BoardInfo:
        return self._board

    @staticmethod
    def ticks() -> float:
        return time.monotonic()

    @staticmethod
    def ticks_diff(later: float, earlier: float) -> float:
        return later - earlier


def _gpiod() -> Any:
    try:
        return importlib.import_module("gpiod")
    except ImportError as exc:
        raise DeviceNotFound(
            "the gpiod Python bindings are not installed; install python3-libgpiod "
            "(Debian) or the gpiod wheel to drive the NanoPi's GPIO lines"
        ) from exc


class GpiodPin(PiPin):  # type: ignore[misc]  # pragma: no cover - needs /dev/gpiochip*
    """One output line held through a gpiod line request while the pin is open."""

    def __init__(self, factory: GpiodFactory, info: PinInfo) -> None:
        super().__init__(factory, info)
        self._line: Line = factory.pin_map.line_of(info)
        self._request: Any = None
        self._state = False

    def _open(self) -> Any:
        if self._request is None:
            gpiod = _gpiod()
            chip = self._line.chip
            path = chip if chip.startswith("/") else f"/dev/{chip}"
            settings = gpiod.LineSettings(direction=gpiod.line.Direction.OUTPUT)
            try:
                self._request = gpiod.request_lines(
                    path, consumer="boruta-dryad", config={self._line.offset: settings}
                )
            except FileNotFoundError as exc:
                raise DeviceNotFound(
                    f"GPIO chip {path} does not exist; check the chip name in the pin map"
                ) from exc
        return self._request

    def close(self) -> None:
        if self._request is not None:
            self._request.release()
            self._request = None

    def _get_function(self) -> str:
        return "output"

    def _set_function(self, value: str) -> None:
        if value != "output":
            raise BadArgument(f"{self._line} is used as an output only, not {value}")
        self._open()

    def _get_state(self) -> bool:
        return self._state

    def _set_state(self, value: float) -> None:
        gpiod = _gpiod()
        self._state = bool(value)
        level = gpiod.line.Value.ACTIVE if self._state else gpiod.line.Value.INACTIVE
        self._open().set_value(self._line.offset, level)

    def _call_when_changed(self, ticks: float = 0.0, state: bool = False) -> None:
        raise BadArgument("MuxPi's NanoPi lines are outputs; no edge events")

    def _enable_event_detect(self) -> None:
        raise BadArgument("MuxPi's NanoPi lines are outputs; no edge events")

    def _disable_event_detect(self) -> None:
        """Nothing was enabled."""
