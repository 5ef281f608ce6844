"""Weles's commands on a generic board: ``stm -dut``/``-ts``/``-tick`` and ``fota``, unchanged."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path

import anyio
import pytest

from dryad import fota, stm_cli
from dryad.control import ControlServer
from hardware import Board, BoardSettings, open_board
from hardware.generic.config import parse
from hardware.stm.protocol import Mux
from tests.dryad.test_fota import BOOT, Card, FileDevices

pytestmark = pytest.mark.anyio


@pytest.fixture
def sockets() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="boruta-generic-"))  # short: socket paths are limited
    yield path
    path.rmdir()


@pytest.fixture
async def generic(tmp_path: Path, sockets: Path) -> AsyncIterator[tuple[Board, Path]]:
    table = {
        "simulate": True,
        "power": {"type": "gpio", "pin": "GPIO17", "off_time": 0.01},
        "sd": {"type": "usbsdmux", "device": str(tmp_path / "usb-sd-mux")},
    }
    async with open_board("generic", BoardSettings(generic=parse(table))) as board:
        assert board.stm is not None
        server = ControlServer(board.stm, sockets / "user", sockets / "admin", "disk")
        async with anyio.create_task_group() as tg:
            await tg.start(server.run)
            yield board, sockets / "admin"
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()


async def stm(socket: Path, *flags: str) -> int:
    return await anyio.to_thread.run_sync(stm_cli.main, ["-remote", str(socket), *flags])


async def test_dut_ts_and_tick_work_unchanged(generic: tuple[Board, Path], tmp_path: Path) -> None:
    board, socket = generic
    assert board.stm is not None
    assert await stm(socket, "-dut") == 0
    assert (tmp_path / "usb-sd-mux").read_text() == "dut\n" and await board.stm.power()
    assert await stm(socket, "-tick", "-m", "10ms") == 0
    assert await stm(socket, "-ts") == 0
    assert (await board.stm.mux(), await board.stm.power()) == (Mux.TS, False)


async def test_what_the_board_lacks_is_refused_with_the_reason(
    generic: tuple[Board, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, socket = generic
    assert await stm(socket, "-dyper1", "on") == 1
    assert "a generic board has no DyPers; that needs a MuxPi" in capsys.readouterr().err


async def test_fota_flashes_through_the_usb_sd_mux_and_gives_the_card_back(
    generic: tuple[Board, Path], tmp_path: Path
) -> None:
    board, socket = generic
    mux = tmp_path / "usb-sd-mux"
    (tmp_path / "card-dir").mkdir()
    card = Card(tmp_path / "card-dir")
    card.make(1)
    (tmp_path / "boot.img").write_bytes(BOOT)
    # The partition exists only while the mux gives the card to the host's reader.
    devices = FileDevices(present=lambda path: mux.read_text() == "host\n" and Path(path).is_file())
    argv = ["-q", "-dut", "-remote", str(socket), "-card", card.path,
            "-map", card.map({"boot.img": 1}), str(tmp_path / "boot.img")]  # fmt: skip
    assert await anyio.to_thread.run_sync(partial(fota.main, argv, devices=devices)) == 0
    assert card.partition(1).read_bytes() == BOOT
    assert board.stm is not None and (await board.stm.mux(), await board.stm.power()) == (
        Mux.DUT,
        True,
    )
