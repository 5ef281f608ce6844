"""SerialStm: one typed async method per STM32 console command."""

from __future__ import annotations

from types import TracebackType

from anyio.streams.memory import MemoryObjectReceiveStream

from hardware.errors import BadArgument, StmProtocolError, StmUnsupported
from hardware.muxpi import STM_BAUD, STM_PORT
from hardware.stm import protocol as p
from hardware.stm.link import StmLink
from hardware.stm.protocol import Color, Lthor, Mux, Rgb

ADC_CHANNELS = 5


class SerialStm:
    """The MuxPi's STM32 over its serial console; use as ``async with SerialStm(...)``.

    Every method sends one command and waits for its terminator; calls from many
    tasks are queued, never pipelined (the firmware's input queue is 32 bytes).

    :param port: device path (``/dev/ttyS2`` on a MuxPi, a pty for the simulator).
    :param timeout: seconds one reply may take; ``power_tick`` adds the tick to it.
    """

    def __init__(self, port: str = STM_PORT, *, baud: int = STM_BAUD, timeout: float = 1.0):
        self.link = StmLink(port, baud=baud, timeout=timeout)
        self._commands: frozenset[str] | None = None

    async def __aenter__(self) -> SerialStm:
        await self.link.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.link.__aexit__(et, e, tb)

    async def aclose(self) -> None:
        """Release the port; idempotent."""
        await self.link.aclose()

    def presses(self) -> MemoryObjectReceiveStream[int]:
        """Key presses (1 or 2) as they happen; close the stream to unsubscribe."""
        return self.link.presses()

    async def raw(self, command: str, *, within: float | None = None) -> list[str]:
        """Run any console command and return its value lines."""
        return await self.link.command(command, within=within)

    # Identity and capabilities --------------------------------------------------------

    async def version(self) -> str:
        return p.one(await self.raw("version"), "version")

    async def help(self) -> list[str]:
        # help prints ~2 KB; at 115200 baud that is about 0.2 s on the wire.
        return await self.raw("help", within=self.link.timeout + 1.0)

    async def commands(self) -> frozenset[str]:
        """The command names this firmware offers (from ``help``, asked once)."""
        if self._commands is None:
            self._commands = p.commands_of(await self.help())
        return self._commands

    async def supports(self, command: str) -> bool:
        return command in await self.commands()

    async def _require(self, command: str) -> None:
        if not await self.supports(command):
            raise StmUnsupported(
                f"the STM firmware on {self.link.port} has no {command!r} command; "
                "flash a firmware that offers it"
            )

    async def set_echo(self, on: bool) -> None:
        """Ask for echo on or off; the published firmware keeps echoing regardless."""
        await self.raw(f"echo {'on' if on else 'off'}")

    # DUT power and SD mux -------------------------------------------------------------

    async def power(self) -> bool:
        return p.on_off(p.one(await self.raw("power"), "power"), "power")

    async def power_on(self) -> None:
        await self.raw("power on")

    async def power_off(self) -> None:
        await self.raw("power off")

    async def power_tick(self, seconds: float = 1.0) -> None:
        """Power the DUT off, wait, power it on; the firmware blocks for the whole tick."""
        ms = p.check_range("power tick milliseconds", round(seconds * 1000), 1, 3_600_000)
        await self.raw(f"power tick {ms}", within=self.link.timeout + ms / 1000)

    async def dut(self) -> None:
        """SD card to the DUT, then DUT power on."""
        await self.raw("dut")

    async def ts(self) -> None:
        """SD card to the test server's reader, DUT power off."""
        await self.raw("ts")

    async def mux(self) -> Mux:
        return p.choice(Mux, p.one(await self.raw("mux"), "mux"), "mux")

    async def set_mux(self, where: Mux) -> None:
        if where is Mux.INVALID:
            raise BadArgument("SD mux can be set to ts or dut only")
        await self.raw(f"mux {where}")

    # Relays and lines -----------------------------------------------------------------

    async def hdmi(self, on: bool) -> None:
        """Set the HDMI hot-plug pin (the firmware cannot read it back)."""
        await self.raw(f"hdmi {'on' if on else 'off'}")

    async def dyper(self, number: int, on: bool) -> None:
        """Switch DyPer 1 or 2 (the firmware cannot read it back)."""
        p.check_range("DyPer number", number, 1, 2)
        await self.raw(f"dyper {number} {'on' if on else 'off'}")

    # RGB LEDs -------------------------------------------------------------------------

    async def led(self, number: int) -> Rgb:
        command = f"led {p.led_index(number)}"
        values = p.labelled(await self.raw(command), command)
        return p.rgb(values.get(f"led{number}", ""), command)

    async def set_led(self, number: int, color: Rgb | tuple[int, int, int]) -> None:
        rgb = color if isinstance(color, Rgb) else Rgb(*color)
        await self.raw(f"led {p.led_index(number)} {rgb}")

    # OLED -----------------------------------------------------------------------------

    async def clear(self) -> None:
        await self.raw("clr")

    async def text(self, x: int, page: int, text: str, color: Color = Color.ON) -> None:
        """Print up to 16 characters at pixel column *x*, 8-px *page* 0..2."""
        await self.raw(p.text_command(x, page, text, color))

    async def draw_point(self, x: int, y: int, color: Color = Color.ON) -> None:
        p.check_point(x, y)
        await self.raw(f"draw point {x} {y} {p.draw_color(color)}")

    async def draw_line(self, x1: int, y1: int, x2: int, y2: int, color: Color = Color.ON) -> None:
        p.check_point(x1, y1)
        p.check_point(x2, y2)
        await self.raw(f"draw line {x1} {y1} {x2} {y2} {p.draw_color(color)}")

    async def draw_rectangle(
        self, left: int, top: int, width: int, height: int, color: Color = Color.ON
    ) -> None:
        p.check_point(left, top)
        p.check_point(left + width - 1, top + height - 1)
        await self.raw(f"draw rectangle {left} {top} {width} {height} {p.draw_color(color)}")

    async def draw_circle(self, x: int, y: int, radius: int, color: Color = Color.ON) -> None:
        p.check_point(x - radius, y - radius)
        p.check_point(x + radius, y + radius)
        await self.raw(f"draw circle {x} {y} {radius} {p.draw_color(color)}")

    # Measurements ---------------------------------------------------------------------

    async def current(self) -> int:
        """DUT current in mA above the idle offset; 0 while DUT power is off."""
        return p.integer(p.one(await self.raw("current"), "current"), "current")

    async def set_idle_current(self, ma: int | None = None) -> None:
        """Set the zero offset to *ma*, or to the present reading when None."""
        if ma is None:
            await self.raw("current auto")
        else:
            await self.raw(f"current {p.check_range('idle current mA', ma, 0, 5000)}")

    async def _channels(self, command: str, channel: int | None) -> dict[int, int]:
        if channel is not None:
            p.check_range("ADC channel", channel, 1, ADC_CHANNELS)
            command = f"{command} {channel}"
        values = p.labelled(await self.raw(command), command)
        return {
            int(name[3:]): p.integer(value, command)
            for name, value in values.items()
            if name.startswith("adc") and name[3:].isdigit()
        }

    async def voltage(self, channel: int | None = None) -> dict[int, int]:
        """Millivolts per ADC channel (all, or one)."""
        return await self._channels("voltage", channel)

    async def adc(self, channel: int | None = None) -> dict[int, int]:
        """Raw ADC counts per channel (all, or one)."""
        return await self._channels("adc", channel)

    async def key(self, number: int) -> bool:
        """Whether key 1 or 2 is held down now."""
        command = f"key {p.check_range('key number', number, 1, 2)}"
        word = p.one(await self.raw(command), command)
        if word not in ("pressed", "released"):
            raise StmProtocolError(f"STM reply to {command!r} is unexpected: {word!r}")
        return word == "pressed"

    async def uart_voltage(self) -> int:
        """The DUT UART reference voltage Vloc in mV."""
        return p.integer(p.one(await self.raw("uart"), "uart"), "uart")

    async def set_uart_voltage(self, mv: int) -> None:
        await self.raw(f"uart {p.check_range('UART voltage mV', mv, 0, 5000)}")

    # lthor (USB-M port), only on firmware that has it ------------------------------

    async def lthor_switch(self, state: Lthor | None = None) -> Lthor:
        """Route the USB-M data lines (set when *state* is given); returns the routing."""
        return await self._lthor("switch", state)

    async def lthor_id(self, state: Lthor | None = None) -> Lthor:
        """Set or read the USB-M ID line."""
        return await self._lthor("id", state)

    async def _lthor(self, what: str, state: Lthor | None) -> Lthor:
        await self._require("lthor")
        if state is not None:
            await self.raw(f"lthor {what} {state}")
            return state
        command = f"lthor {what}"
        return p.choice(Lthor, p.one(await self.raw(command), command), command)

    async def lthor_vbus(self, on: bool | None = None) -> bool:
        """Switch or read VBUS of the USB-M port."""
        await self._require("lthor")
        if on is not None:
            await self.raw(f"lthor vbus {'on' if on else 'off'}")
            return on
        return p.on_off(p.one(await self.raw("lthor vbus"), "lthor vbus"), "lthor vbus")
