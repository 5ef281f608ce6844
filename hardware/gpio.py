"""Gpio: the NanoPi lines powering the MuxPi board and choosing the STM's boot mode."""

from __future__ import annotations

import logging

import anyio
from gpiozero import DigitalOutputDevice, Factory

logger = logging.getLogger(__name__)


class NanoPiGpio:
    """PWR_CTRL (board power, the STM included) and STM BOOT0, as ``muxpi-power`` drives them.

    :param factory: the gpiozero pin factory (gpiod lines on the board, a mock in tests).
    :param settle: seconds the board stays unpowered during a power cycle, so the
        STM really resets (the shell script relied on its own slowness for this).
    """

    def __init__(self, factory: Factory, *, settle: float = 0.2) -> None:
        self.settle = settle
        # Both start low: the board stays off until power_on() says otherwise.
        self._power = DigitalOutputDevice("PWR_CTRL", pin_factory=factory, initial_value=False)
        self._boot0 = DigitalOutputDevice("STM_BOOT0", pin_factory=factory, initial_value=False)

    @property
    def powered(self) -> bool:
        return bool(self._power.value)

    @property
    def bootloader(self) -> bool:
        """Whether BOOT0 is high: the STM will start its ROM bootloader."""
        return bool(self._boot0.value)

    async def power_off(self) -> None:
        """``muxpi-power off``: board power off, BOOT0 back to normal."""
        self._power.off()
        self._boot0.off()
        logger.info("MuxPi board power off")

    async def _cycle(self, boot0: bool) -> None:
        self._power.off()
        self._boot0.value = boot0
        await anyio.sleep(self.settle)
        self._power.on()

    async def power_on(self) -> None:
        """``muxpi-power on``: off, BOOT0 low (run firmware), on."""
        await self._cycle(False)
        logger.info("MuxPi board power on, STM runs its firmware")

    async def flashing(self) -> None:
        """``muxpi-power flashing``: off, BOOT0 high (ROM bootloader for stm32flash), on."""
        await self._cycle(True)
        logger.info("MuxPi board power on, STM in its ROM bootloader")

    async def aclose(self) -> None:
        """Release the lines, leaving their levels as they are (the board keeps power)."""
        self._power.close()
        self._boot0.close()
