"""DUT power of a generic board: a relay on a GPIO line, or on/off commands.

Both start with the DUT off (docs/generic-board.md §power). A power cycle keeps the
DUT off for at least the configured ``off_time``, however short a cycle is asked for:
a supply whose capacitors hold the DUT up needs that long to really reset it.
"""

from __future__ import annotations

import logging
import shlex
import shutil
from typing import Any, Protocol

import anyio

from hardware.errors import BadConfig, CommandFailed
from hardware.generic.config import CommandPowerSettings, GpioPowerSettings
from hardware.generic.lines import open_pin

logger = logging.getLogger(__name__)

OUTPUT_TAIL = 300  # characters of a failed command's output kept in the error


class Power(Protocol):
    """Switches the DUT's supply. ``powered`` is None while the state is unknown."""

    off_time: float

    @property
    def powered(self) -> bool | None: ...
    async def on(self) -> None: ...
    async def off(self) -> None: ...
    async def aclose(self) -> None: ...


async def cycle(power: Power, seconds: float = 0.0) -> None:
    """Off, wait *seconds* but at least the backend's ``off_time``, on."""
    await power.off()
    await anyio.sleep(max(seconds, power.off_time))
    await power.on()


class GpioPower:
    """A relay (or a MOSFET) on one GPIO line, through gpiozero's ``OutputDevice``.

    :param factory: the gpiozero pin factory (None: gpiozero's default; a mock in tests).
    :param key: the configuration key of the pin, named in every error.
    """

    def __init__(
        self, settings: GpioPowerSettings, factory: Any, key: str = "generic.power.pin"
    ) -> None:
        from gpiozero import OutputDevice  # only a board with a power relay loads gpiozero

        self.off_time = settings.off_time
        self._line = open_pin(
            key,
            settings.pin,
            lambda: OutputDevice(
                settings.pin,
                active_high=settings.active_high,
                initial_value=False,
                pin_factory=factory,
            ),
        )

    @property
    def powered(self) -> bool | None:
        return bool(self._line.value)

    async def on(self) -> None:
        self._line.on()

    async def off(self) -> None:
        self._line.off()

    async def aclose(self) -> None:
        self._line.close()

    def __str__(self) -> str:
        return f"relay on {self._line.pin}"


class CommandPower:
    """Power switched by commands: ``uhubctl`` on a USB hub port, a PDU's client, ….

    Each command is an argv list run without a shell, within ``timeout``; a non-zero
    exit, a timeout or a missing program raises :class:`CommandFailed` naming the key.
    The state is what the last command that succeeded set (commands cannot read back).
    """

    def __init__(self, settings: CommandPowerSettings, key: str = "generic.power") -> None:
        self.off_time = settings.off_time
        self._settings = settings
        self._key = key
        self._powered: bool | None = None
        for name, argv in (("on", settings.on), ("off", settings.off)):
            if shutil.which(argv[0]) is None:
                raise BadConfig(f"{key}.{name}", f"program {argv[0]!r} not found (PATH or path)")

    @property
    def powered(self) -> bool | None:
        return self._powered

    async def on(self) -> None:
        await self._run("on", self._settings.on)
        self._powered = True

    async def off(self) -> None:
        await self._run("off", self._settings.off)
        self._powered = False

    async def _run(self, name: str, argv: tuple[str, ...]) -> None:
        key, command = f"{self._key}.{name}", shlex.join(argv)
        self._powered = None  # until the command says it worked
        try:
            with anyio.fail_after(self._settings.timeout):
                done = await anyio.run_process(argv, check=False)  # anyio kills it on timeout
        except TimeoutError as exc:
            raise CommandFailed(
                f"{key}: `{command}` did not finish within {self._settings.timeout:g} s"
            ) from exc
        except OSError as exc:
            raise CommandFailed(f"{key}: `{command}` could not start: {exc}") from exc
        if done.returncode != 0:
            output = (done.stderr or done.stdout).decode(errors="replace").strip()
            raise CommandFailed(
                f"{key}: `{command}` exited with {done.returncode}: "
                f"{output[-OUTPUT_TAIL:] or 'no output'}"
            )
        logger.debug("%s: `%s` done", key, command)

    async def aclose(self) -> None:
        """Nothing is held between commands."""

    def __str__(self) -> str:
        return f"commands `{shlex.join(self._settings.on)}` / `{shlex.join(self._settings.off)}`"
