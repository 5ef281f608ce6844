"""Reading the built SD image on x86 without mounting it: partitions by sfdisk, the
FAT partition by mtools, the ext4 root by debugfs."""

from __future__ import annotations

import json
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.image_build.commands import run

SECTOR = 512
UBOOT_OFFSET = 8 * 1024
# The sunxi boot ROM's header check: the sum of the SPL's 32-bit words, computed with
# the checksum field holding this stamp, must equal the checksum field.
EGON_STAMP = 0x5F0A6C39


@dataclass(frozen=True)
class Partition:
    start: int  # bytes
    size: int  # bytes
    type: str
    bootable: bool


def partitions(image: Path) -> tuple[str, list[Partition]]:
    """The MBR's disk identifier (8 hex digits) and its partitions."""
    table = json.loads(run(["sfdisk", "--json", image]).stdout)["partitiontable"]
    assert table["label"] == "dos", table
    parts = [
        Partition(
            start=p["start"] * SECTOR,
            size=p["size"] * SECTOR,
            type=p["type"],
            bootable=bool(p.get("bootable", False)),
        )
        for p in table["partitions"]
    ]
    return table["id"].removeprefix("0x"), parts


def spl_header_ok(data: bytes) -> bool:
    """True if ``data`` starts with a valid eGON.BT0 SPL header and checksum."""
    if data[4:12] != b"eGON.BT0":
        return False
    checksum: int
    length: int
    checksum, length = struct.unpack_from("<II", data, 12)
    if length % 4 or length > len(data):
        return False
    words: list[int] = list(struct.unpack_from(f"<{length // 4}I", data))
    words[3] = EGON_STAMP
    total: int = sum(words) & 0xFFFFFFFF
    return total == checksum


def fat_read(image: Path, part: Partition, path: str) -> bytes:
    """A file of the FAT partition, by mtools' image@@offset addressing."""
    proc = subprocess.run(
        ["mtype", "-i", f"{image}@@{part.start}", f"::{path}"], capture_output=True, check=True
    )
    return proc.stdout


def fat_list(image: Path, part: Partition, path: str = "/") -> str:
    return run(["mdir", "-b", "-i", f"{image}@@{part.start}", f"::{path}"]).stdout


def extract(image: Path, part: Partition, dest: Path) -> Path:
    """Copy one partition out, for debugfs (it has no offset option)."""
    run(
        ["dd", f"if={image}", f"of={dest}", "bs=1M", f"skip={part.start // (1 << 20)}",
         f"count={part.size // (1 << 20)}", "conv=sparse", "status=none"]
    )  # fmt: skip
    return dest


def ext4_cat(fs: Path, path: str) -> str:
    return run(["debugfs", "-R", f"cat {path}", fs]).stdout


def ext4_ls(fs: Path, path: str) -> list[str]:
    out = run(["debugfs", "-R", f"ls -p {path}", fs]).stdout
    # -p: /inode/mode/uid/gid/name/size/ per entry
    return [line.split("/")[5] for line in out.splitlines() if line.startswith("/")]


def ext4_stat(fs: Path, path: str) -> str:
    return run(["debugfs", "-R", f"stat {path}", fs]).stdout
