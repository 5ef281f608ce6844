"""``Recent``: a list of the latest commands that never grows past twice its limit."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")

LIMIT = 256


class Recent(list[T]):
    """The latest items, for tests and diagnostics, as a plain list.

    A board redraws its OLED every minute for months: a record of every command sent
    would grow without end. Reaching twice ``limit``, it forgets its oldest items down to
    ``limit`` (in one step, so appending stays cheap).
    """

    def __init__(self, limit: int = LIMIT) -> None:
        super().__init__()
        self.limit = limit

    def append(self, item: T) -> None:
        super().append(item)
        if len(self) > 2 * self.limit:
            del self[: len(self) - self.limit]
