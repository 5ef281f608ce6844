"""Run ``dryad`` with a board profile redefined for measuring without hardware.

``muxpi``: the muxpi profile's own modules, with the NanoPi's GPIO lines mocked and the
STM a simulator in another process (its pty is ``[stm] port``), so the dryad's memory
holds what it holds on a board. Used by bench/dryad_memory.py only.
"""

from __future__ import annotations

import sys
from contextlib import AsyncExitStack

from dryad.cli import main
from hardware.profiles import PROFILES, Board, BoardSettings


async def _muxpi_over_pty(settings: BoardSettings, stack: AsyncExitStack) -> Board:
    from hardware.gpio import NanoPiGpio
    from hardware.pins import NanoPiMockFactory, PinMap
    from hardware.profiles import _stm_parts
    from hardware.stm.client import SerialStm

    factory = NanoPiMockFactory(settings.pins or PinMap())
    stack.callback(factory.close)
    gpio = NanoPiGpio(factory, settle=0)
    stack.push_async_callback(gpio.aclose)
    await gpio.power_on()
    stm = SerialStm(settings.stm_port, timeout=settings.stm_timeout)
    display, leds = await _stm_parts(stm, factory, stack)
    return Board("muxpi", display, leds, stm, gpio)


if __name__ == "__main__":
    PROFILES["muxpi"] = _muxpi_over_pty
    sys.exit(main())
