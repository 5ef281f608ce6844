"""Healthchecks of the MuxPi: STM, serial line, SD reader, disk, memory, temperature, sshd."""

from __future__ import annotations

import logging
import os
import shutil
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

import anyio
import anyio.abc
from anyio.abc import TaskStatus
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from coordinator.wire import CheckResult, HealthReport
from hardware import Board, HardwareError, Stm

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
MEMINFO = Path("/proc/meminfo")
THERMAL = Path("/sys/class/thermal/thermal_zone0/temp")
STM_TIMEOUT = 5.0  # a whole check; SerialStm has its own per-command timeout
SSHD_TIMEOUT = 3.0
BANNER_MAX = 255  # RFC 4253, section 4.2: the identification line's maximum length
SERIAL_PROBES = 3


@dataclass(frozen=True)
class HealthSettings:
    """What the healthchecks look at and how often they run."""

    interval: float = 300.0  # seconds between scheduled runs
    power_cycle: bool = False  # power-cycle the DUT during a check, as the original did
    sd_reader: str = "/dev/sda"
    min_disk_free_mb: int = 100
    min_mem_free_mb: int = 32
    max_temp_c: float = 80.0
    sshd_port: int = 22
    state_dir: Path = Path("/var/lib/boruta-dryad")  # the disk check's filesystem


async def check_stm(stm: Stm | None) -> CheckResult:
    """The STM answers ``version``; the detail is its firmware version. Critical."""
    if stm is None:
        return CheckResult("stm", True, True, "no STM on this board profile")
    try:
        with anyio.fail_after(STM_TIMEOUT):
            version = await stm.version()
    except (HardwareError, TimeoutError) as exc:
        return CheckResult("stm", False, True, f"no answer to version: {exc or 'timeout'}")
    return CheckResult("stm", True, True, version)


class SerialWatch:
    """The serial check: the port is still there and a few commands in a row succeed.

    It also notes how often the link had to reopen the port since the last check
    (the link's ``reopened`` count, where the STM client has one).
    """

    def __init__(self, stm: Stm | None) -> None:
        self._stm = stm
        self._reopened = self._reopen_count()

    def _link(self) -> object | None:
        return getattr(self._stm, "link", None)

    def _reopen_count(self) -> int:
        count = getattr(self._link(), "reopened", 0)
        return count if isinstance(count, int) else 0

    async def check(self) -> CheckResult:
        """Critical: a dryad that cannot talk to its STM cannot serve a job."""
        if self._stm is None or self._link() is None:
            # A generic board's Stm is made of GPIO lines and commands: no serial line.
            return CheckResult("serial", True, True, "no STM serial line on this board profile")
        port = getattr(self._link(), "port", None)
        if isinstance(port, str) and port.startswith("/") and not await anyio.Path(port).exists():
            return CheckResult("serial", False, True, f"serial port {port} is gone")
        failures = []
        for _ in range(SERIAL_PROBES):
            try:
                with anyio.fail_after(STM_TIMEOUT):
                    await self._stm.led(1)  # a read: harmless to whatever the LEDs show
            except (HardwareError, TimeoutError) as exc:
                failures.append(str(exc) or "timeout")
        now = self._reopen_count()
        resyncs, self._reopened = now - self._reopened, now
        where = f"{port}: " if isinstance(port, str) else ""
        note = f"; port reopened {resyncs} times since the last check" if resyncs else ""
        if failures:
            detail = f"{where}{len(failures)} of {SERIAL_PROBES} commands failed: {failures[-1]}"
            return CheckResult("serial", False, True, detail + note)
        detail = f"{where}{SERIAL_PROBES} of {SERIAL_PROBES} commands answered"
        return CheckResult("serial", True, True, detail + note)


def check_sd_reader(device: str) -> CheckResult:
    """The SD card reader's block device exists. Not critical."""
    try:
        mode = os.stat(device).st_mode
    except OSError:
        return CheckResult("sd_reader", False, False, f"{device} is missing")
    if not stat.S_ISBLK(mode):
        return CheckResult("sd_reader", False, False, f"{device} is not a block device")
    return CheckResult("sd_reader", True, False, f"{device} present")


def check_disk(state_dir: Path, min_free_mb: int) -> CheckResult:
    """Free space on the state directory's filesystem. Not critical."""
    try:
        free = shutil.disk_usage(state_dir).free // MIB
    except OSError as exc:
        return CheckResult("disk", False, False, f"{state_dir}: {exc.strerror or exc}")
    passed = free >= min_free_mb
    return CheckResult("disk", passed, False, f"{free} MB free on {state_dir} (min {min_free_mb})")


def check_memory(min_free_mb: int, meminfo: Path = MEMINFO) -> CheckResult:
    """MemAvailable of /proc/meminfo. Not critical."""
    try:
        for line in meminfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key == "MemAvailable":
                available = int(value.split()[0]) // 1024  # the kernel writes kB
                break
        else:
            return CheckResult("memory", False, False, f"no MemAvailable in {meminfo}")
    except (OSError, ValueError, IndexError) as exc:
        return CheckResult("memory", False, False, f"{meminfo} unreadable: {exc}")
    passed = available >= min_free_mb
    detail = f"{available} MB available (min {min_free_mb})"
    return CheckResult("memory", passed, False, detail)


def check_temperature(max_c: float, sensor: Path = THERMAL) -> CheckResult:
    """SoC temperature, where the board has a thermal zone. Not critical."""
    try:
        text = sensor.read_text()
    except FileNotFoundError:
        return CheckResult("temperature", True, False, "no sensor")
    except OSError as exc:
        return CheckResult("temperature", False, False, f"{sensor} unreadable: {exc}")
    try:
        celsius = int(text.strip()) / 1000  # the kernel writes millidegrees
    except ValueError:
        return CheckResult("temperature", False, False, f"{sensor} holds {text.strip()!r}")
    passed = celsius <= max_c
    return CheckResult("temperature", passed, False, f"{celsius:.1f} °C (max {max_c:g})")


async def check_sshd(port: int, host: str = "127.0.0.1") -> CheckResult:
    """The local sshd answers with an SSH banner: jobs reach the board through it. Critical.

    A failure says which way it failed: refused, timed out, closed without a banner, or
    answered with something that is not SSH (docs/simulated-board.md §Health).
    """
    where = f"{host}:{port}"
    try:
        with anyio.fail_after(SSHD_TIMEOUT):
            stream = await anyio.connect_tcp(host, port)
    except TimeoutError:
        return _sshd_failed(f"{where}: connection timed out after {SSHD_TIMEOUT:g} s")
    except OSError as exc:
        # anyio wraps the socket's error: "All connection attempts failed" from it.
        cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
        if isinstance(cause, ConnectionRefusedError):
            return _sshd_failed(f"{where}: connection refused (nothing listens)")
        return _sshd_failed(f"{where}: cannot connect: {cause.strerror or cause}")
    try:
        banner = await _read_banner(stream)
    except TimeoutError:
        return _sshd_failed(f"{where}: accepted but sent no SSH banner within {SSHD_TIMEOUT:g} s")
    except (OSError, anyio.BrokenResourceError, anyio.EndOfStream):
        return _sshd_failed(f"{where}: closed the connection before its SSH banner")
    finally:
        await stream.aclose()
    if not banner.startswith(b"SSH-"):
        shown = banner[:40].decode("ascii", "replace")
        return _sshd_failed(f"{where}: answered {shown!r}, not an SSH banner")
    return CheckResult("sshd", True, True, f"{where}: {banner.decode('ascii', 'replace')}")


async def _read_banner(stream: anyio.abc.SocketStream) -> bytes:
    """The server's identification line (RFC 4253, section 4.2 lets other lines come first);
    the first line when none is SSH's within a few lines."""
    data = b""
    with anyio.fail_after(SSHD_TIMEOUT):
        while True:
            data += await stream.receive()
            lines = data.split(b"\n")
            for line in lines[:-1]:
                if line.startswith(b"SSH-"):
                    return line.rstrip(b"\r")
            if len(data) > 4 * BANNER_MAX:
                return lines[0].rstrip(b"\r")


def _sshd_failed(detail: str) -> CheckResult:
    return CheckResult("sshd", False, True, detail)


class Health:
    """Runs every check, on demand (:meth:`check`) and on a schedule (:meth:`run`).

    :param meminfo, thermal, sshd_host: what the checks read, for tests.
    """

    def __init__(
        self,
        board: Board,
        settings: HealthSettings,
        *,
        meminfo: Path = MEMINFO,
        thermal: Path = THERMAL,
        sshd_host: str = "127.0.0.1",
    ) -> None:
        self._board = board
        self._settings = settings
        self._meminfo = meminfo
        self._thermal = thermal
        self._sshd_host = sshd_host
        self._serial = SerialWatch(board.stm)
        self._lock = anyio.Lock()

    async def check(self) -> HealthReport:
        """Run every check once (one run at a time); power-cycle the DUT only if configured."""
        s = self._settings
        async with self._lock:
            checks = [
                await check_stm(self._board.stm),
                await self._serial.check(),
                check_sd_reader(s.sd_reader),
                check_disk(s.state_dir, s.min_disk_free_mb),
                check_memory(s.min_mem_free_mb, self._meminfo),
                check_temperature(s.max_temp_c, self._thermal),
                await check_sshd(s.sshd_port, self._sshd_host),
            ]
            if s.power_cycle:
                checks.append(await self._power_cycle())
        failed = [c.name for c in checks if not c.passed]
        logger.info("healthcheck: %s", f"failed {', '.join(failed)}" if failed else "all passed")
        return HealthReport(tuple(checks))

    async def _power_cycle(self) -> CheckResult:
        # The original dryad's Healthcheck was exactly this: power tick 1000.
        stm = self._board.stm
        if stm is None:
            return CheckResult("power_cycle", False, True, "no STM to power-cycle the DUT with")
        try:
            with anyio.fail_after(STM_TIMEOUT):
                await stm.power_tick(1.0)
        except (HardwareError, TimeoutError) as exc:
            return CheckResult("power_cycle", False, True, f"power tick failed: {exc or 'timeout'}")
        return CheckResult("power_cycle", True, True, "DUT power-cycled for 1 s")

    async def run(
        self,
        report: Callable[[HealthReport], Awaitable[None]],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Check every ``interval`` seconds (apscheduler) and hand each report to *report*.

        apscheduler only rings the bell; the checks themselves run here, in this task,
        so cancelling :meth:`run` cancels a check in progress too.
        """
        send, receive = anyio.create_memory_object_stream[None](1)

        async def due() -> None:
            try:
                send.send_nowait(None)
            except anyio.WouldBlock:
                logger.warning("healthcheck still running when the next one was due; skipped")

        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.add_job(
            due, "interval", seconds=self._settings.interval, coalesce=True, max_instances=1
        )
        scheduler.start()
        try:
            task_status.started()
            async with receive:
                async for _ in receive:
                    result = await self.check()
                    try:
                        await report(result)
                    except Exception:
                        # A lost report (link down) must not stop the schedule.
                        logger.exception("could not deliver the health report")
        finally:
            scheduler.shutdown(wait=False)
            send.close()
