"""Board profiles (muxpi, generic, sim): each assembles Stm, Display, Leds and Gpio.

Each builder imports its own parts, so a dryad loads only what its profile uses.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hardware.errors import UnknownProfile
from hardware.generic.config import GenericSettings
from hardware.interfaces import Display, Gpio, Leds, Stm
from hardware.muxpi import STM_PORT

if TYPE_CHECKING:
    from hardware.pins import PinMap
    from hardware.sim.pty import PtyStm
    from hardware.stm.client import SerialStm

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BoardSettings:
    """What a profile may need; each profile reads only its own fields."""

    stm_port: str = STM_PORT
    stm_timeout: float = 1.0
    pins: PinMap | None = None  # muxpi and sim: the NanoPi lines; None: the MuxPi's own
    power_cycle_on_open: bool = True  # muxpi-power on before the port is opened
    generic: GenericSettings = field(default_factory=GenericSettings)  # the [generic] table
    state_file: Path | None = None  # sim: board state as JSON
    png_file: Path | None = None  # sim and generic: the screen as PNG


@dataclass
class Board:
    """The hardware one dryad drives. ``stm`` and ``gpio`` are None where a board has none."""

    profile: str
    display: Display
    leds: Leds | None
    stm: Stm | None
    gpio: Gpio | None
    sim: PtyStm | None = None
    mock_pins: Any = None  # a simulated generic board's gpiozero MockFactory, for tests


Builder = Callable[[BoardSettings, AsyncExitStack], Awaitable[Board]]
PROFILES: dict[str, Builder] = {}


def profile(name: str) -> Callable[[Builder], Builder]:
    """Register a profile builder under *name*."""

    def register(builder: Builder) -> Builder:
        PROFILES[name] = builder
        return builder

    return register


@asynccontextmanager
async def open_board(name: str, settings: BoardSettings | None = None) -> AsyncIterator[Board]:
    """Open the board of profile *name*; everything is released on exit.

    :raises UnknownProfile: *name* is not registered (there is no fallback to ``sim``).
    :raises DeviceNotFound, PortInUse, BadConfig, ...: the profile's hardware is missing,
        busy or wrongly configured; whatever was opened before is closed again.
    """
    builder = PROFILES.get(name)
    if builder is None:
        raise UnknownProfile(f"no board profile {name!r}; choose one of {sorted(PROFILES)}")
    async with AsyncExitStack() as stack:
        board = await builder(settings or BoardSettings(), stack)
        logger.info("board profile %s ready", name)
        yield board


async def _stm_parts(stm: SerialStm, factory: Any, stack: AsyncExitStack) -> tuple[Display, Leds]:
    from hardware.display import StmDisplay
    from hardware.leds import StmLeds

    await stack.enter_async_context(stm)
    leds = await stack.enter_async_context(StmLeds(stm, factory))
    return StmDisplay(stm), leds


@profile("muxpi")
async def _muxpi(settings: BoardSettings, stack: AsyncExitStack) -> Board:  # pragma: no cover
    # Real lines and a real UART: covered by the opt-in hardware run, not by CI.
    from hardware.gpio import NanoPiGpio
    from hardware.pins import GpiodFactory, PinMap
    from hardware.stm.client import SerialStm

    factory = GpiodFactory(settings.pins or PinMap())
    stack.callback(factory.close)
    gpio = NanoPiGpio(factory)
    stack.push_async_callback(gpio.aclose)
    if settings.power_cycle_on_open:
        await gpio.power_on()
    stm = SerialStm(settings.stm_port, timeout=settings.stm_timeout)
    display, leds = await _stm_parts(stm, factory, stack)
    return Board("muxpi", display, leds, stm, gpio)


@profile("sim")
async def _sim(settings: BoardSettings, stack: AsyncExitStack) -> Board:
    from hardware.gpio import NanoPiGpio
    from hardware.pins import NanoPiMockFactory, PinMap
    from hardware.sim.firmware import Firmware
    from hardware.sim.pty import PtyStm
    from hardware.stm.client import SerialStm

    firmware = Firmware()
    firmware.state.dut_current_ma = 250
    sim = PtyStm(firmware, state_file=settings.state_file, png_file=settings.png_file)
    await stack.enter_async_context(sim)
    factory = NanoPiMockFactory(settings.pins or PinMap())
    stack.callback(factory.close)
    gpio = NanoPiGpio(factory, settle=0)
    stack.push_async_callback(gpio.aclose)
    await gpio.power_on()
    stm = SerialStm(sim.path, timeout=settings.stm_timeout)
    display, leds = await _stm_parts(stm, factory, stack)
    return Board("sim", display, leds, stm, gpio, sim=sim)


@profile("generic")
async def _generic(settings: BoardSettings, stack: AsyncExitStack) -> Board:
    # docs/generic-board.md §configuration: the parts come from the [generic] table.
    from hardware.generic.board import open_parts

    stm, display, leds, pins = await open_parts(settings.generic, stack, png=settings.png_file)
    return Board("generic", display, leds, stm, None, mock_pins=pins)
