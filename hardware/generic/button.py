"""A push button on a GPIO input: presses as a stream, as the MuxPi's STM keys give them.

gpiozero calls back from its own thread on a real board (synchronously on mock pins),
so each press is handed to the event loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from hardware.generic.config import ButtonSettings
from hardware.generic.lines import open_pin

logger = logging.getLogger(__name__)

QUEUE = 16  # presses kept for a slow reader; more are dropped (a person pressing repeatedly)


class GpioButton:
    """One button; :meth:`presses` gives a stream of its number per press.

    Must be made inside the event loop that reads the presses.
    """

    def __init__(self, settings: ButtonSettings, factory: Any, key: str = "generic.button.pin"):
        from gpiozero import Button

        self.number = settings.number
        self._loop = asyncio.get_running_loop()
        self._subscribers: list[MemoryObjectSendStream[int]] = []
        self._closed = False
        self._button = open_pin(
            key,
            settings.pin,
            lambda: Button(
                settings.pin,
                pull_up=settings.pull_up,
                bounce_time=settings.bounce_time or None,
                pin_factory=factory,
            ),
        )
        self._button.when_pressed = self._pressed

    @property
    def held(self) -> bool:
        return bool(self._button.is_pressed)

    def _pressed(self) -> None:
        self._loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        logger.debug("button %d pressed", self.number)
        for send in list(self._subscribers):
            try:
                send.send_nowait(self.number)
            except anyio.WouldBlock:
                logger.warning("button %d press dropped: nobody is reading", self.number)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                send.close()  # the reader went away
                self._subscribers.remove(send)

    def presses(self) -> MemoryObjectReceiveStream[int]:
        """A new stream of presses; close it to unsubscribe."""
        send, receive = anyio.create_memory_object_stream[int](QUEUE)
        self._subscribers.append(send)
        return receive

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._button.when_pressed = None
        self._button.close()
        for send in self._subscribers:
            send.close()
        self._subscribers.clear()

    def __str__(self) -> str:
        return f"button {self.number} on {self._button.pin}"
