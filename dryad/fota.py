"""The ``fota`` command: stream images from URLs or files onto the SD card's partitions.

Compatible with the original (muxpi:sw/nanopi/cmd/fota): ``-card``, ``-map``, ``-md5``,
``-q``, ``-remote`` and image URLs or paths. It also writes single compressed images
(``boot.img.xz``), not only tar archives, waits for every target partition rather than
the first one, and refuses an empty map or one naming images that were never found.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import IO, Any, Final, Protocol, cast

from dryad.stm_cli import (
    ControlClient,
    ControlError,
    FlagSet,
    UsageError,
    default_socket,
    die,
    go_duration,
    go_int,
    usage,
)

CHUNK: Final = 1 << 20
POLL: Final = 0.1  # seconds between looks for the card's partitions
_MAGIC: Final = {b"\x1f\x8b": "gz", b"\xfd7zXZ\x00": "xz", b"BZh": "bz2"}


class FotaError(Exception):
    """Flashing failed; the message says what and where, for the job's log."""


class Control(Protocol):
    def call(self, op: str, *, wait: float = 0.0, **args: Any) -> Any: ...


@dataclass
class Devices:
    """How partitions are named and recognised; tests inject regular files instead."""

    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def partition(self, card: str, number: int) -> str:
        # /dev/sda -> /dev/sda1, but /dev/mmcblk0 -> /dev/mmcblk0p1 (kernel naming).
        return f"{card}{'p' if card[-1:].isdigit() else ''}{number}"

    def present(self, path: str) -> bool:
        try:
            return stat.S_ISBLK(os.stat(path).st_mode)
        except FileNotFoundError:
            return False


@dataclass
class Waiting:
    """The original's patience: 10 tries of 30 s, DUT then TS with 2 s between."""

    tries: int = 10
    timeout: float = 30.0
    settle: float = 2.0


@dataclass
class Flasher:
    card: str
    mapping: dict[str, int]
    control: Callable[[], Control]
    devices: Devices = field(default_factory=Devices)
    verbose: bool = True
    checksums: dict[str, str] = field(default_factory=dict)
    flashed: set[str] = field(default_factory=set)

    def log(self, message: str) -> None:
        if self.verbose:
            sys.stderr.write(f"{time.strftime('%Y/%m/%d %H:%M:%S')} {message}\n")

    def targets(self) -> list[str]:
        return [self.devices.partition(self.card, n) for n in sorted(set(self.mapping.values()))]

    def wait_for_card(self, waiting: Waiting) -> None:
        """Return once every target partition exists, re-plugging the card if needed."""
        missing = self._missing()
        for _ in range(waiting.tries):
            if not missing:
                return
            self.log(f"waiting for {', '.join(missing)}: switching the SD card DUT, then TS")
            control = self.control()
            try:
                control.call("dut")
                # As the original: let the reader see the card go before it comes back.
                self.devices.sleep(waiting.settle)
                control.call("ts")
            except ControlError as exc:
                raise FotaError(f"cannot switch the SD card to the test server: {exc}") from exc
            deadline = self.devices.clock() + waiting.timeout
            while (missing := self._missing()) and self.devices.clock() < deadline:
                self.devices.sleep(POLL)
        if missing:
            raise FotaError(
                f"SDcard not found: {', '.join(missing)} did not appear after "
                f"{waiting.tries} tries; is the card in the MuxPi's slot?"
            )

    def _missing(self) -> list[str]:
        return [path for path in self.targets() if not self.devices.present(path)]

    def flash(self, source: str) -> None:
        """Write the images in *source* (archive or single image) and check its MD5."""
        name = PurePosixPath(urllib.parse.unquote(urllib.parse.urlsplit(source).path)).name
        self.log(f"flashing images from {source}")
        with _open(source) as raw:
            hashing = _Hashing(raw)
            self._unpack(_decompressed(hashing), name)
            while hashing.read(CHUNK):  # the MD5 covers the whole file (tar padding too)
                pass
        expected = self.checksums.get(name) or self.checksums.get(source)
        if expected is not None and hashing.md5.hexdigest() != expected.lower():
            raise FotaError(
                f"MD5 checksum mismatch for {name}: {hashing.md5.hexdigest()} != {expected}"
            )

    def _unpack(self, stream: _Prefixed, name: str) -> None:
        head = stream.head
        if len(head) >= 262 and head[257:262] == b"ustar":
            try:
                # Stream mode ("r|") only ever calls read(), which _Prefixed has.
                with tarfile.open(fileobj=cast("IO[bytes]", stream), mode="r|") as tar:
                    for member in tar:
                        image = member.name.removeprefix("./")
                        reader = tar.extractfile(member) if member.isreg() else None
                        if reader is None or image not in self.mapping:
                            self.log(f"{image} is not in the mapping; skipping")
                            continue
                        self._write(image, reader)
            except tarfile.TarError as exc:
                raise FotaError(f"{name}: not a readable tar archive: {exc}") from exc
            return
        image = _strip_suffix(name)
        if image not in self.mapping:
            raise FotaError(
                f"{name}: image {image!r} is not in the partition map "
                f"(it names {', '.join(sorted(self.mapping))})"
            )
        self._write(image, stream)

    def _write(self, image: str, reader: IO[bytes] | _Prefixed) -> None:
        path = self.devices.partition(self.card, self.mapping[image])
        self.log(f"Flashing {image} to {path}")
        start, written = time.monotonic(), 0
        try:
            # No O_CREAT: a missing partition must fail, not become a file in /dev.
            fd = os.open(path, os.O_WRONLY)
        except OSError as exc:
            raise FotaError(f"cannot open partition {path} for {image}: {exc.strerror}") from exc
        try:
            while chunk := _read(reader, image):
                view = memoryview(chunk)
                while view:
                    n = os.write(fd, view)
                    view, written = view[n:], written + n
            os.fsync(fd)
        except OSError as exc:
            raise _write_error(exc, image, path, written) from exc
        finally:
            os.close(fd)
        self.flashed.add(image)
        seconds = max(time.monotonic() - start, 1e-6)
        self.log(f"Flashed {image} to {path}: {written} bytes, {written / seconds / 1000:.2f} kB/s")


def _write_error(exc: OSError, image: str, path: str, written: int) -> FotaError:
    if exc.errno in (errno.ENOSPC, errno.EFBIG):
        return FotaError(
            f"partition {path} is full after {written} bytes of {image}; "
            "the image is larger than the partition (check the map and the card)"
        )
    if exc.errno == errno.EIO:
        return FotaError(
            f"I/O error writing {image} to {path} after {written} bytes; the card may be failing"
        )
    return FotaError(f"writing {image} to {path} failed after {written} bytes: {exc.strerror}")


def _read(reader: IO[bytes] | _Prefixed, image: str) -> bytes:
    try:
        return reader.read(CHUNK)
    except (OSError, EOFError, ValueError) as exc:  # gzip, lzma and bz2 raise these
        raise FotaError(f"{image}: the download is corrupt or cut short: {exc}") from exc


def _strip_suffix(name: str) -> str:
    for suffix in (".gz", ".xz", ".bz2"):
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


@contextmanager
def _open(source: str) -> Iterator[IO[bytes]]:
    """A local path, or a file/http/https URL, opened for streaming."""
    if "://" not in source:
        try:
            f = open(source, "rb")
        except OSError as exc:
            raise FotaError(f"cannot open {source}: {exc.strerror}") from exc
        with f:
            yield f
        return
    try:
        response = urllib.request.urlopen(source, timeout=60)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise FotaError(f"cannot download {source}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FotaError(f"cannot download {source}: {reason}") from exc
    with response:
        yield response


class _Hashing:
    """Reads through, keeping the MD5 of every byte read."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.md5 = hashlib.md5(usedforsecurity=False)

    def read(self, n: int = -1) -> bytes:
        try:
            data = self.raw.read(n)
        except OSError as exc:  # a connection reset mid-download
            raise FotaError(f"the download broke off: {exc}") from exc
        self.md5.update(data)
        return data


class _Prefixed:
    """A stream whose first bytes were read to sniff its format, then put back."""

    def __init__(self, head: bytes, rest: Any) -> None:
        self.head = head
        self._pending = head
        self._rest = rest

    def read(self, n: int = -1) -> bytes:
        if self._pending:
            if n < 0:
                data, self._pending = self._pending + self._rest.read(), b""
                return bytes(data)
            data, self._pending = self._pending[:n], self._pending[n:]
            return data
        return bytes(self._rest.read(n))


def _decompressed(raw: _Hashing) -> _Prefixed:
    """Undo gzip, xz or bzip2 by their magic bytes (not the name); plain data passes."""
    head = raw.read(512)
    source = _Prefixed(head, raw)
    kind = next((k for magic, k in _MAGIC.items() if head.startswith(magic)), None)
    if kind is None:
        return source
    import bz2
    import gzip
    import lzma

    opener: dict[str, Callable[[Any], Any]] = {
        "gz": lambda f: gzip.GzipFile(fileobj=f, mode="rb"),
        "xz": lambda f: lzma.LZMAFile(f),
        "bz2": lambda f: bz2.BZ2File(f),
    }
    stream = opener[kind](source)
    try:
        return _Prefixed(stream.read(512), stream)
    except (OSError, EOFError, ValueError) as exc:
        raise FotaError(f"the {kind} stream is corrupt: {exc}") from exc


def load_mapping(path: str) -> dict[str, int]:
    """The partition map: ``{"boot.img": "1", ...}`` (strings as Weles writes, or numbers)."""
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except OSError as exc:
        raise FotaError(f"failed to open the mapping: {exc.strerror}: {path}") from exc
    except ValueError as exc:
        raise FotaError(f"failed to decode the mapping: {exc}") from exc
    if not isinstance(data, dict):
        raise FotaError('failed to decode the mapping: expected {"image.img": "partition", ...}')
    if not data:
        raise FotaError(f"the mapping {path} is empty; nothing would be flashed")
    mapping: dict[str, int] = {}
    for image, part in data.items():
        text = str(part) if isinstance(part, int | str) and not isinstance(part, bool) else ""
        if not text.isdigit() or not 0 < int(text) < 256:
            raise FotaError(f"mapping: {image!r} -> {part!r} is not a partition number")
        mapping[image] = int(text)
    by_part: dict[int, str] = {}
    for image, number in mapping.items():
        if number in by_part:
            raise FotaError(f"mapping: {by_part[number]} and {image} both go to partition {number}")
        by_part[number] = image
    return mapping


def load_checksums(source: str) -> dict[str, str]:
    """An MD5SUMS file (``HASH  NAME`` lines, as md5sum writes them) from a path or URL."""
    with _open(source) as f:
        try:
            text = f.read().decode()
        except (OSError, UnicodeDecodeError) as exc:
            raise FotaError(f"cannot read MD5 sums {source}: {exc}") from exc
    sums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        digest, _, name = line.strip().partition(" ")
        name = name.strip().removeprefix("*")  # "*" marks md5sum's binary mode
        if len(digest) != 32 or not name:
            raise FotaError(f"MD5 sums {source} line {number} is not 'HASH  NAME': {line!r}")
        sums[name] = digest
    return sums


def _flags() -> FlagSet:
    fs = FlagSet("fota", "fota -card /dev/sdX -map map.json [-md5 MD5SUMS] <url|file>...")
    fs.add("card", "", "path to SDcard")
    fs.add("map", "", "path to JSON formatted mapping")
    fs.add("md5", "", "URL or path to MD5SUMS file")
    fs.add("q", False, "suppress logging")
    fs.add("remote", "", "control socket (default: the admin one for root, else the user one)")
    fs.add("dut", False, "switch the SD card back to the DUT after flashing (not in the original)")
    fs.add("tries", 10, "how many times to re-plug the card while waiting for it", go_int)
    fs.add("wait", 30.0, "how long to wait for the partitions after each re-plug", go_duration)
    return fs


def main(
    argv: Sequence[str] | None = None,
    *,
    devices: Devices | None = None,
    control: Control | None = None,
    waiting: Waiting | None = None,
) -> int:
    """Run ``fota``; exit 0 when every image is written (and matches its MD5), else 1."""
    fs = _flags()
    try:
        v, sources = fs.parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        return usage(fs, exc)
    if not v["map"]:
        return die("missing mapping argument")
    if not v["card"]:
        return die("missing sdcard argument")
    client: list[Control] = [control] if control is not None else []

    def connect() -> Control:
        if not client:
            client.append(ControlClient(v["remote"] or default_socket()))
        return client[0]

    waiting = waiting or Waiting(tries=v["tries"], timeout=v["wait"])
    try:
        flasher = Flasher(v["card"], load_mapping(v["map"]), connect, devices or Devices())
        flasher.verbose = not v["q"]
        flasher.log("FOTA initialized")
        flasher.wait_for_card(waiting)
        flasher.log("SDcard detected")
        if not sources:
            flasher.log("nothing to do")
            return 0
        if v["md5"]:
            flasher.checksums = load_checksums(v["md5"])
        for source in sources:
            flasher.flash(source)
        os.sync()
        missing = sorted(set(flasher.mapping) - flasher.flashed)
        if missing:
            raise FotaError(
                f"the mapping names {', '.join(missing)}, but no image given contained "
                "it; those partitions were not written"
            )
        if v["dut"]:
            connect().call("dut")
    except FotaError as exc:
        return die(f"failed to flash images: {exc}")
    except ControlError as exc:
        return die(f"failed to switch the SD card: {exc}")
    finally:
        for c in client:
            if isinstance(c, ControlClient):
                c.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
