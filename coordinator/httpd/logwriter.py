"""Log records written by a thread: a write to a slow journal or a full pipe must not hold
the event loop (a line per transition adds up under load)."""

from __future__ import annotations

import logging
from logging.handlers import QueueHandler, QueueListener
from queue import SimpleQueue


class LogWriter:
    """Moves the root logger's handlers behind a queue and a writer thread until
    :meth:`close`, which writes what is queued and puts them back."""

    def __init__(self) -> None:
        self._root = logging.getLogger()
        self._handlers = self._root.handlers[:]
        records: SimpleQueue[logging.LogRecord] = SimpleQueue()
        self._writer: QueueListener | None = QueueListener(
            records, *self._handlers, respect_handler_level=True
        )
        self._root.handlers = [QueueHandler(records)]
        self._writer.start()

    def close(self) -> None:
        """Write what is queued; log directly again from now on. Idempotent. Called at the
        end of a shutdown: uvicorn then raises the signal again, which ends the process
        before any ``finally`` of ours runs."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.stop()
            self._root.handlers = self._handlers
