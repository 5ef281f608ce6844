"""The latest panel (OLED frame and LED colours) each dryad drew, in memory only."""

from __future__ import annotations

import base64
import binascii
import inspect
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from coordinator.domain.clock import Clock, SystemClock
from coordinator.domain.ids import WorkerUUID
from coordinator.wire import Panel, WireError

logger = logging.getLogger(__name__)

PANEL_EVENT: Final = "panel"
PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
MAX_SIDE: Final = 1024  # pixels; an OLED is far smaller, anything bigger is not a panel


@dataclass(frozen=True, slots=True)
class PanelView:
    """One worker's panel as last reported: PNG bytes, LED 1 and 2 colours, when; also the
    ephemeral ``panel`` event that announces it."""

    worker: WorkerUUID
    png: bytes
    leds: tuple[tuple[int, int, int], tuple[int, int, int]]
    at: datetime


# ``publish_ephemeral(view)`` of the events broadcaster; it may be sync or async.
Publish = Callable[[PanelView], Any]


class Panels:
    """Keeps the newest panel per worker and announces each as an ephemeral event.

    Nothing is stored: after a coordinator restart the dryads send theirs again when
    they reconnect, so a panel is never older than the link that carried it.
    """

    def __init__(self, clock: Clock | None = None, publish: Publish | None = None) -> None:
        self._clock: Clock = clock or SystemClock()
        self.publish = publish
        self._latest: dict[WorkerUUID, PanelView] = {}

    def get(self, worker: WorkerUUID) -> PanelView | None:
        return self._latest.get(worker)

    def forget(self, worker: WorkerUUID) -> None:
        self._latest.pop(worker, None)

    async def update(self, worker: WorkerUUID, panel: Panel) -> PanelView:
        """Keep ``panel`` as ``worker``'s; raises ``WireError`` if the screen is no PNG."""
        view = PanelView(worker, decode_png(panel.screen_png_b64), panel.leds, self._clock.now())
        self._latest[worker] = view
        if self.publish is not None:
            try:
                outcome = self.publish(view)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:  # a mirror going stale must not refuse the dryad's report
                logger.exception("could not publish the panel of %s", worker)
        return view


def decode_png(text: str) -> bytes:
    """The PNG in base64 ``text``, checked as far as its header (signature and size)."""
    try:
        png = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise WireError("screen_png_b64 is not base64") from None
    # IHDR is always the first chunk: length, "IHDR", width, height (big-endian).
    if len(png) < 24 or not png.startswith(PNG_SIGNATURE) or png[12:16] != b"IHDR":
        raise WireError("screen_png_b64 is not a PNG image")
    width, height = struct.unpack(">II", png[16:24])
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise WireError(f"a {width}x{height} screen is not a panel")
    return png
