"""GenericStm: the ``Stm`` interface of a generic board, from its power, SD, LED and button.

``stm -dut``/``-ts``/``-tick``, ``fota`` and the dryad's control socket speak to the
``Stm`` interface only, so a generic board serves them unchanged. What a generic
board does not have (the STM console, DyPers, HDMI, current, ADC, the OLED's text
commands) is refused with :class:`StmUnsupported` naming what is missing
(docs/generic-board.md §what stm does).
"""

from __future__ import annotations

import logging
from typing import NoReturn

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from hardware.errors import BadArgument, StmUnsupported
from hardware.generic.button import GpioButton
from hardware.generic.power import Power, cycle
from hardware.generic.sdmux import SdSwitch
from hardware.generic.status import GpioLeds
from hardware.stm.protocol import Color, Lthor, Mux, Rgb

logger = logging.getLogger(__name__)

VERSION = "generic board"


class GenericStm:
    """Power and SD switch (and LEDs and button, where fitted) as the MuxPi's STM offers them.

    ``dut`` gives the card to the DUT, then powers it; ``ts`` powers it off, then gives
    the card to the host. A board without a power switch only moves the card.
    """

    def __init__(
        self,
        power: Power | None,
        sd: SdSwitch | None,
        leds: GpioLeds | None = None,
        button: GpioButton | None = None,
    ) -> None:
        self._power = power
        self._sd = sd
        self._leds = leds if leds is not None and len(leds) else None
        self._button = button
        self._lock = anyio.Lock()  # dut, ts and a power tick never interleave

    # Identity and capabilities --------------------------------------------------------

    async def version(self) -> str:
        parts = [
            f"power: {self._power or 'none'}",
            f"SD: {self._sd or 'none'}",
        ]
        return f"{VERSION} ({', '.join(parts)})"

    async def help(self) -> list[str]:
        return sorted(await self.commands())

    async def commands(self) -> frozenset[str]:
        """The console words whose meaning this board offers."""
        names = {"version", "help"}
        if self._power is not None:
            names |= {"power"}
        if self._sd is not None:
            names |= {"dut", "ts", "mux"}
        if self._leds is not None:
            names |= {"led"}
        if self._button is not None:
            names |= {"key"}
        return frozenset(names)

    async def supports(self, command: str) -> bool:
        return command in await self.commands()

    def presses(self) -> MemoryObjectReceiveStream[int]:
        """The button's presses; without a button, a stream that ends at once."""
        if self._button is not None:
            return self._button.presses()
        send, receive = anyio.create_memory_object_stream[int](1)
        send.close()
        return receive

    # DUT power and SD card ------------------------------------------------------------

    def _need_power(self) -> Power:
        if self._power is None:
            self._missing("a power switch", "generic.power")
        return self._power

    def _need_sd(self) -> SdSwitch:
        if self._sd is None:
            self._missing("an SD card switch", "generic.sd")
        return self._sd

    async def power(self) -> bool:
        return bool(self._need_power().powered)

    async def power_on(self) -> None:
        async with self._lock:
            await self._need_power().on()
        logger.info("DUT power on")

    async def power_off(self) -> None:
        async with self._lock:
            await self._need_power().off()
        logger.info("DUT power off")

    async def power_tick(self, seconds: float = 1.0) -> None:
        """Off for *seconds* (at least the configured ``off_time``), then on."""
        if not 0 < seconds <= 3600:
            raise BadArgument(f"power tick of {seconds!r} s is outside 0..3600")
        power = self._need_power()
        async with self._lock:
            await cycle(power, seconds)
        logger.info("DUT power cycled")

    async def dut(self) -> None:
        sd = self._need_sd()
        async with self._lock:
            await sd.to_dut()
            if self._power is not None:
                await self._power.on()
        logger.info("SD card to the DUT, DUT powered")

    async def ts(self) -> None:
        sd = self._need_sd()
        async with self._lock:
            if self._power is not None:
                await self._power.off()
            await sd.to_host()
        logger.info("DUT off, SD card to the host")

    async def mux(self) -> Mux:
        return await self._need_sd().where()

    async def set_mux(self, where: Mux) -> None:
        sd = self._need_sd()
        if where is Mux.INVALID:
            raise BadArgument("SD mux can be set to ts or dut only")
        async with self._lock:
            await (sd.to_dut() if where is Mux.DUT else sd.to_host())

    # LEDs and button ------------------------------------------------------------------

    async def led(self, number: int) -> Rgb:
        if self._leds is None:
            self._missing("LEDs", "generic.leds")
        return Rgb(*self._leds.read(number))

    async def set_led(self, number: int, color: Rgb | tuple[int, int, int]) -> None:
        if self._leds is None:
            self._missing("LEDs", "generic.leds")
        rgb = color if isinstance(color, Rgb) else Rgb(*color)  # checks each channel
        await self._leds.set_rgb(number, (rgb.red, rgb.green, rgb.blue))

    async def key(self, number: int) -> bool:
        if self._button is None or self._button.number != number:
            self._missing(f"button {number}", "generic.button")
        return self._button.held

    # What only a MuxPi has ------------------------------------------------------------

    def _missing(self, what: str, key: str) -> NoReturn:
        raise StmUnsupported(f"this generic board has no {what}; configure {key} to add one")

    def _muxpi_only(self, what: str) -> NoReturn:
        raise StmUnsupported(f"a generic board has no {what}; that needs a MuxPi")

    async def raw(self, command: str, *, within: float | None = None) -> list[str]:
        self._muxpi_only(f"STM console to run {command!r} on")

    async def set_echo(self, on: bool) -> None:
        self._muxpi_only("STM console")

    async def hdmi(self, on: bool) -> None:
        self._muxpi_only("HDMI hot-plug line")

    async def dyper(self, number: int, on: bool) -> None:
        self._muxpi_only("DyPers")

    async def clear(self) -> None:
        self._muxpi_only("STM-driven OLED (the panel shows the dryad's state)")

    async def text(self, x: int, page: int, text: str, color: Color = Color.ON) -> None:
        self._muxpi_only("STM-driven OLED (the panel shows the dryad's state)")

    async def draw_point(self, x: int, y: int, color: Color = Color.ON) -> None:
        self._muxpi_only("STM-driven OLED")

    async def draw_line(self, x1: int, y1: int, x2: int, y2: int, color: Color = Color.ON) -> None:
        self._muxpi_only("STM-driven OLED")

    async def draw_rectangle(
        self, left: int, top: int, width: int, height: int, color: Color = Color.ON
    ) -> None:
        self._muxpi_only("STM-driven OLED")

    async def draw_circle(self, x: int, y: int, radius: int, color: Color = Color.ON) -> None:
        self._muxpi_only("STM-driven OLED")

    async def current(self) -> int:
        self._muxpi_only("current measurement")

    async def set_idle_current(self, ma: int | None = None) -> None:
        self._muxpi_only("current measurement")

    async def voltage(self, channel: int | None = None) -> dict[int, int]:
        self._muxpi_only("ADC")

    async def adc(self, channel: int | None = None) -> dict[int, int]:
        self._muxpi_only("ADC")

    async def uart_voltage(self) -> int:
        self._muxpi_only("DUT UART voltage control")

    async def set_uart_voltage(self, mv: int) -> None:
        self._muxpi_only("DUT UART voltage control")

    async def lthor_switch(self, state: Lthor | None = None) -> Lthor:
        self._muxpi_only("USB-M port (lthor)")

    async def lthor_id(self, state: Lthor | None = None) -> Lthor:
        self._muxpi_only("USB-M port (lthor)")

    async def lthor_vbus(self, on: bool | None = None) -> bool:
        self._muxpi_only("USB-M port (lthor)")

    async def aclose(self) -> None:
        """The parts belong to the board (``hardware.generic.board``), which closes them."""
