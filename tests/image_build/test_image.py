"""Static checks of the built MuxPi SD image, on x86, without mounting it."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.image_build.commands import run
from tests.image_build.image import (
    UBOOT_OFFSET,
    Partition,
    ext4_cat,
    ext4_ls,
    ext4_stat,
    extract,
    fat_list,
    fat_read,
    partitions,
    spl_header_ok,
)

pytestmark = [pytest.mark.image, pytest.mark.timeout(3600)]

MIB = 1 << 20
DTB = "/dtb/sun8i-h3-nanopi-neo-muxpi.dtb"


@pytest.fixture(scope="module")
def parts(image: Path) -> tuple[str, Partition, Partition]:
    disk_id, found = partitions(image)
    assert len(found) == 2, found
    return disk_id, found[0], found[1]


@pytest.fixture(scope="module")
def rootfs_ext4(
    image: Path, parts: tuple[str, Partition, Partition], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    path = extract(image, parts[2], tmp_path_factory.mktemp("ext4") / "root.ext4")
    yield path
    path.unlink()


def test_partition_table(image: Path, parts: tuple[str, Partition, Partition]) -> None:
    size = image.stat().st_size
    assert size & (size - 1) == 0, "QEMU's SD card model needs a power-of-two size"
    _, boot, root = parts
    assert (boot.start, boot.type, boot.bootable) == (4 * MIB, "c", True)
    assert (root.type, root.bootable) == ("83", False)
    assert root.start == boot.start + boot.size
    assert root.start + root.size == size  # grows from there on the real card


def test_uboot_at_8k(image: Path) -> None:
    """The H3 boot ROM reads the SPL at 8 KiB: a valid eGON header, U-Boot behind it,
    and nothing of it past the first partition's start."""
    with image.open("rb") as f:
        f.seek(UBOOT_OFFSET)
        data = f.read(4 * MIB - UBOOT_OFFSET)
    assert spl_header_ok(data)
    assert b"U-Boot 20" in data
    assert b"NanoPi NEO" in data  # the board's own build, not another H3 board's
    # Byte for byte the nanopi_neo file of u-boot-sunxi the build extracted.
    cache = Path(os.environ.get("BORUTA_IMAGE_CACHE", "/var/cache/boruta-image-build"))
    builds = [p.read_bytes() for p in cache.glob("u-boot/*/u-boot-sunxi-with-spl.bin")]
    assert any(data.startswith(b) for b in builds)


def test_merged_dtb_has_both_uarts(
    image: Path, parts: tuple[str, Partition, Partition], tmp_path: Path
) -> None:
    dtb = tmp_path / "muxpi.dtb"
    dtb.write_bytes(fat_read(image, parts[1], DTB))

    def get(node: str, prop: str) -> str:
        return run(["fdtget", dtb, node, prop]).stdout.strip()

    assert get("/soc/serial@1c28400", "status") == "okay"  # uart1, the DUT console
    assert get("/soc/serial@1c28800", "status") == "okay"  # uart2, the STM
    assert get("/aliases", "serial1") == "/soc/serial@1c28400"
    assert get("/aliases", "serial2") == "/soc/serial@1c28800"
    # uart2 without RTS/CTS: those pins are the red LED and the MuxPi power switch.
    assert len(get("/soc/serial@1c28800", "pinctrl-0").split()) == 1
    assert len(get("/soc/serial@1c28400", "pinctrl-0").split()) == 2
    assert get("/", "model").startswith("FriendlyARM NanoPi NEO")


def test_extlinux_points_at_the_merged_dtb(
    image: Path, parts: tuple[str, Partition, Partition]
) -> None:
    disk_id, boot, _ = parts
    conf = fat_read(image, boot, "/extlinux/extlinux.conf").decode()
    assert re.search(rf"^\s*fdt {re.escape(DTB)}$", conf, re.M), conf
    assert re.search(r"^\s*linux /vmlinuz$", conf, re.M), conf
    assert re.search(r"^\s*initrd /initrd.img$", conf, re.M), conf
    assert f"root=PARTUUID={disk_id}-02 " in conf
    assert "console=ttyS0,115200" in conf
    listing = fat_list(image, boot, "/") + fat_list(image, boot, "/dtb")
    for name in ("vmlinuz", "initrd.img", "sun8i-h3-nanopi-neo-muxpi.dtb", "boruta-seed.toml"):
        assert name in listing, listing


def test_services_enabled(rootfs_ext4: Path) -> None:
    wants = ext4_ls(rootfs_ext4, "/etc/systemd/system/multi-user.target.wants")
    for unit in ("dryad.service", "dryad-seed.service", "muxpi-firstboot.service", "ssh.service"):
        assert unit in wants, wants
    assert "systemd-networkd.service" in wants
    assert "/usr/lib/systemd/system/dryad.service" in ext4_stat(
        rootfs_ext4, "/etc/systemd/system/multi-user.target.wants/dryad.service"
    )


def test_seed_file_path_is_read(
    image: Path, parts: tuple[str, Partition, Partition], rootfs_ext4: Path
) -> None:
    """The seed on the FAT partition is the file dryad-seed.service reads: fstab mounts
    that partition where the unit looks, and the dryad runs after it."""
    disk_id, boot, _ = parts
    fstab = ext4_cat(rootfs_ext4, "/etc/fstab")
    assert re.search(rf"^PARTUUID={disk_id}-01\s+/boot/firmware\s+vfat\s", fstab, re.M), fstab
    unit = ext4_cat(rootfs_ext4, "/usr/lib/systemd/system/dryad-seed.service")
    assert "ConditionPathExists=/boot/firmware/boruta-seed.toml" in unit
    assert "ExecStart=/usr/sbin/dryad-seed /boot/firmware/boruta-seed.toml" in unit
    assert "Before=dryad.service" in unit
    seed = fat_read(image, boot, "/boruta-seed.toml").decode()
    assert 'coordinator = ""' in seed and 'enrol_token = ""' in seed
    config = ext4_cat(rootfs_ext4, "/etc/boruta/dryad.toml")
    assert 'enrol_token_file = "/var/lib/boruta-dryad/enrol-token"' in config


def test_per_board_secrets_not_in_the_image(rootfs_ext4: Path) -> None:
    assert not [n for n in ext4_ls(rootfs_ext4, "/etc/ssh") if n.startswith("ssh_host_")]
    assert ext4_cat(rootfs_ext4, "/etc/machine-id").strip() == "uninitialized"
    assert "uuid" not in ext4_ls(rootfs_ext4, "/var/lib/boruta-dryad")


def test_no_way_in_without_a_seed_key(rootfs_ext4: Path) -> None:
    """Root has no password and no key: only the seed's ssh_authorized_keys let an
    admin in (the QEMU boot logs in with one)."""
    passwd = ext4_cat(rootfs_ext4, "/etc/passwd")
    assert passwd.startswith("root:x:0:0:"), passwd[:80]  # the password is in shadow ...
    shadow = ext4_cat(rootfs_ext4, "/etc/shadow")
    root = [line.split(":")[1] for line in shadow.splitlines() if line.startswith("root:")]
    # ... where mmdebstrap leaves no entry for root (no password at all), or a locked one.
    assert root == [] or root[0] == "*" or root[0].startswith("!"), "root has a password"
    if ".ssh" in ext4_ls(rootfs_ext4, "/root"):
        assert "authorized_keys" not in ext4_ls(rootfs_ext4, "/root/.ssh")


def test_the_dut_network_is_configured(rootfs_ext4: Path) -> None:
    text = ext4_cat(rootfs_ext4, "/etc/systemd/network/30-muxpi-dut.network")
    assert "Address=192.168.69.1/24" in text and "DHCPServer=yes" in text


def test_the_dryad_venv_is_built(rootfs_ext4: Path) -> None:
    site = "/usr/lib/dryad/venv/lib/python3.13/site-packages"
    names = ext4_ls(rootfs_ext4, site)
    assert "gpiozero" in names and "dryad.pth" in names, names
    assert ext4_cat(rootfs_ext4, f"{site}/dryad.pth").strip() == "/usr/lib/dryad/python"


def test_outputs_and_checksums(image: Path) -> None:
    out = image.parent
    stem = image.name
    for suffix in (".xz", ".bmap"):
        assert (out / f"{stem}{suffix}").is_file()
    manifest = (out / stem.replace(".img", ".manifest")).read_text()
    for package in ("linux-image-armmp", "u-boot-sunxi", "dryad", "python3-asyncssh"):
        assert re.search(rf"^{re.escape(package)}\t\S+\t", manifest, re.M), package
    run(["sha256sum", "--check", "--quiet", "SHA256SUMS"], cwd=out)


def test_flashing_with_bmaptool_gives_the_image(image: Path, tmp_path: Path) -> None:
    """The README's flashing command, onto a file instead of a card."""
    card = tmp_path / "card"
    card.touch()
    run(["bmaptool", "-q", "copy", f"{image}.xz", card])
    run(["cmp", image, card])
