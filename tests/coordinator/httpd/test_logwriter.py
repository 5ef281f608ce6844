"""The log writer thread: records are written off the calling thread, and closing writes
what is queued and puts the handlers back."""

from __future__ import annotations

import logging
import threading

from coordinator.httpd.logwriter import LogWriter


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((threading.current_thread().name, record.getMessage()))


def test_records_are_written_by_a_thread_and_all_written_at_close() -> None:
    root = logging.getLogger()
    recorder = _Recorder()
    root.addHandler(recorder)
    before = root.handlers[:]
    try:
        logs = LogWriter()
        assert root.handlers != before
        for n in range(200):
            logging.getLogger("coordinator").warning("transition %d", n)
        logs.close()  # as the server's shutdown does, before the signal ends the process
        assert root.handlers == before
        assert [line for _, line in recorder.lines] == [f"transition {n}" for n in range(200)]
        assert {thread for thread, _ in recorder.lines} != {threading.current_thread().name}
        logs.close()  # idempotent
        logging.getLogger("coordinator").warning("after")
        assert recorder.lines[-1] == (threading.current_thread().name, "after")  # directly
    finally:
        root.removeHandler(recorder)
