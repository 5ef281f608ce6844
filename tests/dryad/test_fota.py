"""``fota`` writing to regular files standing in for partitions, images served over HTTP."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import socket
import subprocess
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest

from dryad import fota
from dryad.control import ControlServer
from hardware import open_board
from hardware.stm.protocol import Mux

BOOT = b"boot image " * 5000
ROOT = os.urandom(300_000)


class FileDevices(fota.Devices):
    """Regular files as partitions; no real waiting."""

    def __init__(self, present: Callable[[str], bool] = os.path.isfile) -> None:
        super().__init__(sleep=self._sleep, clock=lambda: self.now)
        self.now = 0.0
        self._present = present

    def _sleep(self, seconds: float) -> None:
        self.now += seconds

    def present(self, path: str) -> bool:
        return self._present(path)


@dataclass
class FakeControl:
    calls: list[str] = field(default_factory=list)
    on_ts: Callable[[], None] = lambda: None

    def call(self, op: str, *, wait: float = 0.0, **args: Any) -> Any:
        self.calls.append(op)
        if op == "ts":
            self.on_ts()


@dataclass
class Card:
    """``card1``, ``card2``… as empty files, and the map file."""

    dir: Path

    @property
    def path(self) -> str:
        return str(self.dir / "card")

    def partition(self, number: int) -> Path:
        return self.dir / f"card{number}"

    def make(self, *numbers: int) -> None:
        for number in numbers:
            self.partition(number).touch()

    def map(self, mapping: dict[str, Any]) -> str:
        path = self.dir / "map.json"
        path.write_text(json.dumps(mapping))
        return str(path)


@pytest.fixture
def card(tmp_path: Path) -> Card:
    (tmp_path / "card-dir").mkdir()
    made = Card(tmp_path / "card-dir")
    made.make(1, 2)
    return made


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served over HTTP on 127.0.0.1, and its base URL."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    # A short poll interval: shutdown() waits for serve_forever to look up.
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def tar_gz(**images: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in images.items():
            info = tarfile.TarInfo(f"./{name.replace('_', '.')}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def run(card: Card, mapping: dict[str, Any], *args: str, control: Any = None) -> int:
    argv = ["-q", "-card", card.path, "-map", card.map(mapping), *args]
    return fota.main(argv, devices=FileDevices(), control=control or FakeControl())


def test_a_tar_gz_over_http_writes_each_mapped_image_and_checks_its_md5(
    card: Card, served: tuple[Path, str]
) -> None:
    root, url = served
    archive = tar_gz(boot_img=BOOT, rootfs_img=ROOT, extra_img=b"skipped")
    (root / "images.tar.gz").write_bytes(archive)
    (root / "MD5SUMS").write_text(f"{hashlib.md5(archive).hexdigest()}  images.tar.gz\n")
    mapping = {"boot.img": "1", "rootfs.img": 2}
    assert run(card, mapping, "-md5", f"{url}/MD5SUMS", f"{url}/images.tar.gz") == 0
    assert card.partition(1).read_bytes() == BOOT
    assert card.partition(2).read_bytes() == ROOT


@pytest.mark.parametrize(
    ("suffix", "compress"),
    [(".xz", lzma.compress), (".gz", gzip.compress), (".bz2", bz2.compress), ("", bytes)],
)
def test_single_images_are_decompressed_on_the_fly(
    card: Card, served: tuple[Path, str], suffix: str, compress: Callable[[bytes], bytes]
) -> None:
    root, url = served
    (root / f"boot.img{suffix}").write_bytes(compress(BOOT))
    assert run(card, {"boot.img": "2"}, f"{url}/boot.img{suffix}") == 0
    assert card.partition(2).read_bytes() == BOOT


def test_local_files_are_flashed_too(card: Card, tmp_path: Path) -> None:
    image = tmp_path / "rootfs.img.xz"
    image.write_bytes(lzma.compress(ROOT))
    md5 = tmp_path / "MD5SUMS"
    md5.write_text(f"{hashlib.md5(image.read_bytes()).hexdigest()} *rootfs.img.xz\n")
    assert run(card, {"rootfs.img": "1"}, "-md5", str(md5), str(image)) == 0
    assert card.partition(1).read_bytes() == ROOT


def fails(card: Card, mapping: dict[str, Any], *args: str, capsys: Any) -> str:
    assert run(card, mapping, *args) == 1
    err: str = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def test_an_md5_mismatch_fails(
    card: Card, served: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, url = served
    (root / "boot.img.gz").write_bytes(gzip.compress(BOOT))
    (root / "MD5SUMS").write_text("0" * 32 + "  boot.img.gz\n")
    err = fails(card, {"boot.img": "1"}, "-md5", f"{url}/MD5SUMS", f"{url}/boot.img.gz",
                capsys=capsys)  # fmt: skip
    actual = hashlib.md5((root / "boot.img.gz").read_bytes()).hexdigest()
    assert f"MD5 checksum mismatch for boot.img.gz: {actual} != {'0' * 32}" in err


def test_an_unreachable_url_fails(card: Card, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    err = fails(card, {"boot.img": "1"}, f"http://127.0.0.1:{port}/boot.img", capsys=capsys)
    assert f"cannot download http://127.0.0.1:{port}/boot.img: [Errno 111]" in err


def test_a_missing_file_on_the_server_fails(
    card: Card, served: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    err = fails(card, {"boot.img": "1"}, f"{served[1]}/boot.img", capsys=capsys)
    assert "HTTP 404 File not found" in err


def test_a_cut_short_download_fails(
    card: Card, served: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, url = served
    (root / "boot.img.xz").write_bytes(lzma.compress(BOOT)[:-40])
    err = fails(card, {"boot.img": "1"}, f"{url}/boot.img.xz", capsys=capsys)
    assert "boot.img: the download is corrupt or cut short" in err


def test_an_image_the_map_does_not_know_fails(
    card: Card, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "kernel.img").write_bytes(BOOT)
    err = fails(card, {"boot.img": "1"}, str(tmp_path / "kernel.img"), capsys=capsys)
    assert "image 'kernel.img' is not in the partition map (it names boot.img)" in err


def test_a_map_naming_an_image_that_is_not_given_fails(
    card: Card, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "boot.img").write_bytes(BOOT)
    err = fails(card, {"boot.img": "1", "rootfs.img": "2"}, str(tmp_path / "boot.img"),
                capsys=capsys)  # fmt: skip
    assert "the mapping names rootfs.img, but no image given contained it" in err
    assert card.partition(1).read_bytes() == BOOT  # what was given is written


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({}, "is empty; nothing would be flashed"),
        ({"boot.img": "one"}, "'boot.img' -> 'one' is not a partition number"),
        ({"a.img": "1", "b.img": 1}, "a.img and b.img both go to partition 1"),
        ([], "failed to decode the mapping"),
    ],
)
def test_bad_maps_are_refused(
    card: Card, mapping: Any, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert message in fails(card, mapping, capsys=capsys)


def test_partitions_that_never_appear_fail_after_replugging(
    card: Card, capsys: pytest.CaptureFixture[str]
) -> None:
    control = FakeControl()
    argv = ["-card", card.path, "-map", card.map({"a.img": 1, "b.img": 5}), "-tries", "2"]
    assert fota.main(argv, devices=FileDevices(), control=control) == 1
    assert control.calls == ["dut", "ts", "dut", "ts"]
    assert f"SDcard not found: {card.path}5 did not appear after 2 tries" in capsys.readouterr().err


def test_every_target_partition_is_awaited_not_only_the_first(card: Card, tmp_path: Path) -> None:
    control = FakeControl(on_ts=lambda: card.make(5))  # the reader sees the card again
    (tmp_path / "b.img").write_bytes(BOOT)
    mapping = {"a.img": 1, "b.img": 5}
    argv = ["-q", "-card", card.path, "-map", card.map(mapping), str(tmp_path / "b.img")]
    assert fota.main(argv, devices=FileDevices(), control=control) == 1  # a.img not given
    assert control.calls == ["dut", "ts"]
    assert card.partition(5).read_bytes() == BOOT


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_partition_fails_with_a_clear_message(
    tiny_fs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    card = Card(tiny_fs)
    card.make(1)
    (tmp_path / "rootfs.img").write_bytes(ROOT)  # 300 kB into 64 kB
    err = fails(card, {"rootfs.img": 1}, str(tmp_path / "rootfs.img"), capsys=capsys)
    assert re.search(f"partition {card.path}1 is full after [0-9]+ bytes of rootfs.img", err)


@pytest.mark.anyio
async def test_fota_switches_the_real_board_to_the_test_server_and_back_with_dut(
    card: Card, tmp_path: Path
) -> None:
    (tmp_path / "boot.img").write_bytes(BOOT)
    async with open_board("sim") as board:
        assert board.stm is not None and board.sim is not None
        state = board.sim.firmware.state
        await board.stm.dut()
        server = ControlServer(board.stm, tmp_path / "u.sock", tmp_path / "a.sock", "disk")
        # The partitions exist only while the card is on the test server's reader.
        devices = FileDevices(present=lambda path: state.mux is Mux.TS and os.path.isfile(path))
        argv = ["-q", "-dut", "-remote", str(server.user_socket), "-card", card.path,
                "-map", card.map({"boot.img": 1}), str(tmp_path / "boot.img")]  # fmt: skip
        async with anyio.create_task_group() as tg:
            await tg.start(server.run)
            code = await anyio.to_thread.run_sync(partial(fota.main, argv, devices=devices))
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
        assert code == 0
        assert card.partition(1).read_bytes() == BOOT
        assert state.mux is Mux.DUT and state.power
        assert board.sim.firmware.log[-3:] == ["dut", "ts", "dut"]
