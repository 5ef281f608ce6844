"""sd_notify: the messages on a fake $NOTIFY_SOCKET, the watchdog fed from the event loop
(and not while it hangs), and the dryad telling systemd it is ready."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
from anyio.abc import UNIXDatagramSocket

import dryad.cli
from coordinator import wire
from dryad.identity import Identity
from dryad.systemd import Notifier
from dryad.users import JobUsers
from tests.dryad.link_doubles import FAST, FakeCoordinator, settings_for

pytestmark = pytest.mark.anyio


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: a socket's path must fit in 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="sdn-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def systemd(short_dir: Path) -> AsyncIterator[tuple[str, UNIXDatagramSocket]]:
    """systemd's end: the notification socket's path and the socket receiving on it."""
    path = short_dir / "notify"
    async with await anyio.create_unix_datagram_socket(local_path=path) as sock:
        yield str(path), sock


async def messages(sock: UNIXDatagramSocket, count: int, within: float = 10) -> list[str]:
    got = []
    with anyio.fail_after(within):
        for _ in range(count):
            data, _ = await sock.receive()
            got.append(data.decode())
    return got


async def test_ready_status_stopping(systemd: tuple[str, UNIXDatagramSocket]) -> None:
    path, sock = systemd
    notifier = Notifier(path)
    assert notifier.enabled
    assert notifier.ready("dialling  boruta.lab:7175\n")
    assert notifier.status("x" * 500)
    assert notifier.stopping()
    assert notifier.watchdog()
    got = await messages(sock, 4)
    assert got[0] == "READY=1\nSTATUS=dialling boruta.lab:7175\n"
    assert got[1] == "STATUS=" + "x" * 200 + "\n"  # one line for `systemctl status`
    assert got[2] == "STOPPING=1\nSTATUS=stopping\n"
    assert got[3] == "WATCHDOG=1\n"
    notifier.close()


async def test_abstract_socket_address() -> None:
    """'@name' is the abstract namespace, as systemd hands it out."""
    name = f"boruta-test-{os.getpid()}-{time.monotonic_ns()}"
    async with await anyio.create_unix_datagram_socket(local_path="\0" + name) as sock:
        notifier = Notifier("@" + name)
        assert notifier.ready()
        assert await messages(sock, 1) == ["READY=1\n"]
        notifier.close()


def test_outside_systemd_nothing_is_sent() -> None:
    notifier = Notifier.from_environ({})
    assert not notifier.enabled
    assert notifier.watchdog_period is None
    assert not notifier.ready() and not notifier.watchdog()


def test_environment_is_read_and_removed() -> None:
    env = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}
    notifier = Notifier.from_environ(env)
    assert notifier.enabled and notifier.watchdog_period == 60.0
    assert env == {}  # so useradd and a job's commands do not inherit them


@pytest.mark.parametrize(
    "env",
    [
        {"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"},  # meant for another process
        {"WATCHDOG_USEC": "soon"},
        {"WATCHDOG_USEC": "0"},
        {"WATCHDOG_USEC": "-5"},
    ],
)
def test_no_watchdog_unless_meant_for_us(env: dict[str, str]) -> None:
    assert Notifier.from_environ({"NOTIFY_SOCKET": "/run/x", **env}).watchdog_period is None


def test_a_missing_socket_is_logged_once_never_raised(
    short_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(str(short_dir / "gone"))
    assert not notifier.ready()
    assert not notifier.watchdog()
    warnings = [r for r in caplog.records if "cannot notify systemd" in r.message]
    assert len(warnings) == 1
    notifier.close()


async def test_the_watchdog_is_fed_while_alive(systemd: tuple[str, UNIXDatagramSocket]) -> None:
    path, sock = systemd
    notifier = Notifier(path, watchdog_usec=300_000)  # fed every 0.1 s
    async with anyio.create_task_group() as tg:
        await tg.start(notifier.feed)
        assert await messages(sock, 3) == ["WATCHDOG=1\n"] * 3
        tg.cancel_scope.cancel()
    notifier.close()


async def test_no_feeding_once_the_work_stopped(
    systemd: tuple[str, UNIXDatagramSocket], caplog: pytest.LogCaptureFixture
) -> None:
    path, sock = systemd
    notifier = Notifier(path, watchdog_usec=300_000)
    alive = True
    async with anyio.create_task_group() as tg:
        await tg.start(notifier.feed, lambda: alive)
        await messages(sock, 1)
        alive = False
        with anyio.move_on_after(0.5):  # five periods of feeding
            while True:
                data, _ = await sock.receive()
                # One ping may have been on its way when alive turned False.
                assert data == b"WATCHDOG=1\n"
                if any("no longer feeding" in r.message for r in caplog.records):
                    break
        with anyio.move_on_after(0.4) as quiet:
            await sock.receive()
        assert quiet.cancelled_caught, "fed after the work stopped"
        tg.cancel_scope.cancel()
    notifier.close()


async def test_a_hung_event_loop_is_not_fed(
    systemd: tuple[str, UNIXDatagramSocket], caplog: pytest.LogCaptureFixture
) -> None:
    """The point of feeding from the loop: while it is blocked, no ping goes out."""
    path, sock = systemd
    notifier = Notifier(path, watchdog_usec=150_000)  # fed every 0.05 s
    caplog.set_level(logging.WARNING)
    arrivals: list[float] = []

    async with anyio.create_task_group() as tg:
        await tg.start(notifier.feed)
        await messages(sock, 2)
        hang_start = time.monotonic()
        time.sleep(1.5)  # noqa: ASYNC251  # the whole loop hangs, as a blocking call would
        hang_end = time.monotonic()
        with anyio.fail_after(10):
            while not arrivals or arrivals[-1] < hang_end:
                await sock.receive()
                arrivals.append(time.monotonic())
        tg.cancel_scope.cancel()
    # Datagrams sent before the hang may be read after it; none was sent during it.
    sent_during = [t for t in arrivals if hang_start + 0.2 < t < hang_end]
    assert sent_during == []
    assert any("event loop was blocked" in r.message for r in caplog.records)
    notifier.close()


async def test_the_dryad_says_ready_status_and_feeds(
    coordinator: FakeCoordinator,
    tmp_path: Path,
    systemd: tuple[str, UNIXDatagramSocket],
) -> None:
    path, sock = systemd
    settings = settings_for(coordinator, tmp_path / "state", job_user={"manage": False})
    identity = Identity.load(settings.state_dir)
    users = JobUsers("boruta-user", (), manage=False)
    notifier = Notifier(path, watchdog_usec=600_000)
    seen: list[str] = []

    async def until(text: str, start: int = 0) -> None:
        with anyio.fail_after(30):
            while not any(text in m for m in seen[start:]):
                data, _ = await sock.receive()
                seen.append(data.decode())

    async with anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: dryad.cli.run(settings, identity, users, backoff=FAST, notifier=notifier)
        )
        await until("READY=1")
        await coordinator.next(wire.REGISTER, within=20)
        await until(f"STATUS=connected to {settings.coordinator}")
        await until("WATCHDOG=1", start=len(seen))  # fed on, connected
        os.kill(os.getpid(), signal.SIGTERM)
        await until("STOPPING=1")
    ready = next(m for m in seen if "READY=1" in m)
    assert ready == f"READY=1\nSTATUS=dialling {settings.coordinator}\n"
    # Ready comes once every part runs, before the first watchdog ping.
    assert seen.index(ready) < seen.index("WATCHDOG=1\n")
    notifier.close()
