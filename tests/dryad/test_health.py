"""Healthchecks: each check passing and failing, the report, the apscheduler schedule."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import SocketStream
from anyio.streams.stapled import MultiListener

import dryad.health as health_module
from coordinator.wire import CheckResult, HealthReport
from dryad.health import (
    Health,
    HealthSettings,
    SerialWatch,
    check_disk,
    check_memory,
    check_sd_reader,
    check_sshd,
    check_stm,
    check_temperature,
)
from hardware import Board, BoardSettings, open_board
from hardware.muxpi import FIRMWARE_VERSION

pytestmark = pytest.mark.anyio


@pytest.fixture
async def board(tmp_path: Path) -> AsyncIterator[Board]:
    async with open_board("sim", BoardSettings(stm_timeout=0.3)) as b:
        yield b


@pytest.fixture
async def listener() -> AsyncIterator[MultiListener[SocketStream]]:
    """A loopback port that answers as an sshd does: its banner, first."""
    async with await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0) as lst:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lst.serve, answer(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"))
            yield lst
            tg.cancel_scope.cancel()


def answer(data: bytes | None, *, then_wait: bool = False) -> Any:
    """A connection handler: send ``data`` (None: nothing), then close or keep waiting."""

    async def handle(stream: SocketStream) -> None:
        async with stream:
            if data is not None:
                await stream.send(data)
            if then_wait:
                await anyio.sleep_forever()

    return handle


@asynccontextmanager
async def serving(handler: Any) -> AsyncIterator[int]:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0) as lst:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lst.serve, handler)
            yield port_of(lst)
            tg.cancel_scope.cancel()


def port_of(listener: MultiListener[SocketStream]) -> int:
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    assert isinstance(port, int)
    return port


async def closed_port() -> int:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0) as lst:
        return port_of(lst)


@pytest.fixture
def sd_device(tmp_path: Path) -> Path:
    """A block device node (root may make one anywhere; the check only stats it)."""
    node = tmp_path / "sda"
    try:
        os.mknod(node, stat.S_IFBLK | 0o600, os.makedev(8, 0))
    except PermissionError:
        pytest.skip("making a device node needs root")
    return node


def meminfo(tmp_path: Path, kb: int) -> Path:
    path = tmp_path / "meminfo"
    path.write_text(f"MemTotal:        1000000 kB\nMemAvailable:   {kb} kB\n")
    return path


def sensor(tmp_path: Path, millidegrees: str) -> Path:
    path = tmp_path / "temp"
    path.write_text(millidegrees + "\n")
    return path


# ---- each check ---------------------------------------------------------------------------


async def test_stm_answers_with_its_firmware_version(board: Board) -> None:
    assert await check_stm(board.stm) == CheckResult("stm", True, True, FIRMWARE_VERSION)


@pytest.mark.slow
async def test_a_mute_stm_fails_the_critical_stm_check(board: Board) -> None:
    assert board.sim is not None
    board.sim.mute()
    result = await check_stm(board.stm)
    assert (result.name, result.passed, result.critical) == ("stm", False, True)
    assert "no answer to version" in result.detail


async def test_without_an_stm_there_is_nothing_to_fail() -> None:
    assert (await check_stm(None)).passed
    assert (await SerialWatch(None).check()).passed


@pytest.mark.slow
async def test_serial_passes_when_commands_answer_and_fails_when_they_do_not(
    board: Board,
) -> None:
    watch = SerialWatch(board.stm)
    ok = await watch.check()
    assert (ok.name, ok.passed, ok.critical) == ("serial", True, True)
    assert ok.detail.endswith("3 of 3 commands answered")
    assert board.sim is not None
    board.sim.mute()
    bad = await watch.check()
    assert (bad.passed, bad.critical) == (False, True)
    assert "3 of 3 commands failed" in bad.detail
    assert "port reopened 3 times" in bad.detail  # each timeout made the link resync
    board.sim.mute(False)
    again = await watch.check()
    assert again.passed and "reopened" not in again.detail


async def test_serial_fails_when_the_port_is_gone() -> None:
    class Link:
        port = "/dev/ttyNOPE9"
        reopened = 0

    class Stm:
        link = Link()

    result = await SerialWatch(Stm()).check()  # type: ignore[arg-type]
    assert result == CheckResult("serial", False, True, "serial port /dev/ttyNOPE9 is gone")


def test_sd_reader(sd_device: Path, tmp_path: Path) -> None:
    assert check_sd_reader(str(sd_device)) == CheckResult(
        "sd_reader", True, False, f"{sd_device} present"
    )
    missing = check_sd_reader(str(tmp_path / "sdz"))
    assert (missing.passed, missing.critical, missing.detail) == (
        False,
        False,
        f"{tmp_path / 'sdz'} is missing",
    )
    (tmp_path / "file").write_text("")
    assert "not a block device" in check_sd_reader(str(tmp_path / "file")).detail


def test_disk(tmp_path: Path) -> None:
    ok = check_disk(tmp_path, 0)
    assert (ok.name, ok.passed, ok.critical) == ("disk", True, False)
    assert ok.detail.endswith(f"MB free on {tmp_path} (min 0)")
    assert not check_disk(tmp_path, 10**12).passed
    gone = check_disk(tmp_path / "nope", 0)
    assert not gone.passed and "No such file" in gone.detail


def test_memory(tmp_path: Path) -> None:
    path = meminfo(tmp_path, 64 * 1024)
    assert check_memory(32, path) == CheckResult("memory", True, False, "64 MB available (min 32)")
    assert check_memory(100, path) == CheckResult(
        "memory", False, False, "64 MB available (min 100)"
    )
    path.write_text("MemTotal: 1 kB\n")
    assert "no MemAvailable" in check_memory(1, path).detail
    assert not check_memory(1, tmp_path / "none").passed
    assert check_memory(0).passed  # this machine's real /proc/meminfo


def test_temperature(tmp_path: Path) -> None:
    assert check_temperature(80, sensor(tmp_path, "45250")) == CheckResult(
        "temperature", True, False, "45.2 °C (max 80)"
    )
    hot = check_temperature(80, sensor(tmp_path, "85000"))
    assert (hot.passed, hot.critical, hot.detail) == (False, False, "85.0 °C (max 80)")
    assert check_temperature(80, tmp_path / "none") == CheckResult(
        "temperature", True, False, "no sensor"
    )
    assert not check_temperature(80, sensor(tmp_path, "garbage")).passed


async def test_sshd_passes_with_the_servers_banner(
    listener: MultiListener[SocketStream],
) -> None:
    port = port_of(listener)
    assert await check_sshd(port) == CheckResult(
        "sshd", True, True, f"127.0.0.1:{port}: SSH-2.0-OpenSSH_9.2p1 Debian-2"
    )


async def test_sshd_banner_may_follow_other_lines() -> None:
    async with serving(answer(b"welcome\r\nSSH-2.0-x\r\n")) as port:
        assert (await check_sshd(port)).detail == f"127.0.0.1:{port}: SSH-2.0-x"


async def test_sshd_refused_says_nothing_listens() -> None:
    closed = await closed_port()
    refused = await check_sshd(closed)
    assert (refused.passed, refused.critical) == (False, True)
    assert refused.detail == f"127.0.0.1:{closed}: connection refused (nothing listens)"


async def test_sshd_closed_before_a_banner() -> None:
    async with serving(answer(None)) as port:
        result = await check_sshd(port)
    assert not result.passed
    assert result.detail == f"127.0.0.1:{port}: closed the connection before its SSH banner"


async def test_sshd_silent_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health_module, "SSHD_TIMEOUT", 0.2)
    async with serving(answer(None, then_wait=True)) as port:
        result = await check_sshd(port)
    assert not result.passed
    assert result.detail == f"127.0.0.1:{port}: accepted but sent no SSH banner within 0.2 s"


async def test_sshd_answer_that_is_not_ssh() -> None:
    async with serving(answer(b"HTTP/1.1 400 Bad Request\r\n\r\n" * 80)) as port:
        result = await check_sshd(port)
    assert not result.passed
    shown = "'HTTP/1.1 400 Bad Request'"
    assert result.detail == f"127.0.0.1:{port}: answered {shown}, not an SSH banner"


async def test_sshd_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    async def never(*args: object, **kwargs: object) -> None:
        await anyio.sleep_forever()

    monkeypatch.setattr(health_module, "SSHD_TIMEOUT", 0.1)
    monkeypatch.setattr(anyio, "connect_tcp", never)
    result = await check_sshd(22, "192.0.2.1")
    assert result.detail == "192.0.2.1:22: connection timed out after 0.1 s"


# ---- the whole report ---------------------------------------------------------------------


def settings(tmp_path: Path, sd: Path, port: int, **overrides: object) -> HealthSettings:
    values: dict[str, object] = {
        "sd_reader": str(sd),
        "sshd_port": port,
        "state_dir": tmp_path,
        "min_disk_free_mb": 0,
        **overrides,
    }
    return HealthSettings(**values)  # type: ignore[arg-type]


async def test_check_runs_every_check_and_leaves_dut_power_alone(
    board: Board, tmp_path: Path, sd_device: Path, listener: MultiListener[SocketStream]
) -> None:
    assert board.sim is not None
    board.sim.firmware.state.power = True
    health = Health(
        board,
        settings(tmp_path, sd_device, port_of(listener)),
        meminfo=meminfo(tmp_path, 512 * 1024),
        thermal=sensor(tmp_path, "40000"),
    )
    report = await health.check()
    assert [c.name for c in report.checks] == [
        "stm", "serial", "sd_reader", "disk", "memory", "temperature", "sshd",
    ]  # fmt: skip
    assert all(c.passed for c in report.checks), report
    assert report.failed_critical == []
    assert board.sim.firmware.state.power is True


async def test_a_critical_failure_is_named_in_the_report(
    board: Board, tmp_path: Path, sd_device: Path
) -> None:
    health = Health(board, settings(tmp_path, sd_device, await closed_port(), max_temp_c=10))
    report = await health.check()
    assert [c.name for c in report.failed_critical] == ["sshd"]
    assert report.to_wire() == HealthReport.from_wire(report.to_wire()).to_wire()


@pytest.mark.slow
async def test_power_cycle_only_when_configured(
    board: Board, tmp_path: Path, sd_device: Path, listener: MultiListener[SocketStream]
) -> None:
    assert board.stm is not None
    health = Health(board, settings(tmp_path, sd_device, port_of(listener), power_cycle=True))
    await board.stm.power_on()
    report = await health.check()
    assert report.checks[-1] == CheckResult("power_cycle", True, True, "DUT power-cycled for 1 s")
    assert await board.stm.power() is True  # power tick: off, then on again


async def test_the_schedule_delivers_reports(
    board: Board, tmp_path: Path, sd_device: Path, listener: MultiListener[SocketStream]
) -> None:
    health = Health(board, settings(tmp_path, sd_device, port_of(listener), interval=0.05))
    reports: list[HealthReport] = []
    three = anyio.Event()

    async def report(result: HealthReport) -> None:
        reports.append(result)
        if len(reports) == 2:
            raise ConnectionError("link down")  # one lost report does not stop the schedule
        if len(reports) == 3:
            three.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(health.run, report)
            await three.wait()
            tg.cancel_scope.cancel()
    assert all(len(r.checks) == 7 for r in reports)


def test_settings_defaults_match_the_original_layout() -> None:
    s = HealthSettings()
    assert (s.interval, s.power_cycle, s.sd_reader, s.sshd_port) == (300, False, "/dev/sda", 22)
    assert (s.min_disk_free_mb, s.min_mem_free_mb, s.max_temp_c) == (100, 32, 80.0)
