"""A coordinator that cannot start says why in one line: a taken HTTP port, an app start
that fails for a known reason; a bug keeps its traceback."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from coordinator.errors import StoreUnavailable, TunnelUnavailable, Unavailable
from coordinator.httpd.startfail import (
    NotStarted,
    QuietKnownFailure,
    first_known,
    reason_in,
    why_not_started,
)


def _serve(tmp_path: Path, http: str, extra: str = "") -> subprocess.CompletedProcess[str]:
    config = tmp_path / "coordinator.toml"
    with socket.socket() as s:  # a tunnel range of its own: other coordinators may run here
        s.bind(("127.0.0.1", 0))
        first = s.getsockname()[1]
    config.write_text(f'tunnel_ports = "{first}-{first}"\n{extra}')
    args = ["--config", str(config), "--db", str(tmp_path / "b.db"), "serve", "--http", http]
    return subprocess.run(
        [sys.executable, "-m", "coordinator", *args, "--link", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_taken_http_port_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _serve(tmp_path, f"127.0.0.1:{port}")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert (
        last == f"boruta-coordinator: cannot serve HTTP on 127.0.0.1:{port}: address already in use"
    )
    assert "Traceback" not in done.stderr


def test_a_public_host_that_does_not_resolve_is_one_line_and_exit_1(tmp_path: Path) -> None:
    done = _serve(tmp_path, "127.0.0.1:0", 'public_host = "no-such-host.invalid"\n')
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "boruta-coordinator: public_host 'no-such-host.invalid' does not resolve"
    )
    assert "Traceback" not in done.stderr


def test_the_reason_is_found_in_groups_and_causes() -> None:
    reason = TunnelUnavailable("range taken")
    try:
        raise RuntimeError("wrapper") from reason
    except RuntimeError as wrapped:
        group = BaseExceptionGroup("tasks", [ValueError("other"), wrapped])
    assert first_known(group) is reason
    assert first_known(ValueError("a bug")) is None
    assert first_known(None) is None
    nested = BaseExceptionGroup("outer", [BaseExceptionGroup("inner", [NotStarted(reason)])])
    assert reason_in(nested) is reason
    assert reason_in(BaseExceptionGroup("tasks", [ValueError("a bug")])) is None


class _State:
    start_error: BaseException | None = None


def _record(msg: str, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord("uvicorn.error", level, __file__, 1, msg, None, None)


@pytest.mark.parametrize(
    ("error", "kept"),
    [(StoreUnavailable("database away"), False), (ValueError("a bug"), True), (None, True)],
)
def test_only_a_known_failures_traceback_is_dropped(
    error: BaseException | None, kept: bool
) -> None:
    state = _State()
    state.start_error = error
    quiet = QuietKnownFailure(state)
    assert quiet.filter(_record("Traceback (most recent call last):\n  ...")) is kept
    assert quiet.filter(_record("Application startup failed. Exiting.")) is True
    assert quiet.filter(_record("Traceback (most recent call last):", logging.INFO)) is True


def test_an_unknown_socket_failure_still_names_the_address() -> None:
    exit_ = SystemExit(1)
    assert isinstance(why_not_started(exit_, _State(), "127.0.0.1", 1), Unavailable)
    assert "127.0.0.1:1" in why_not_started(exit_, _State(), "127.0.0.1", 1).message
