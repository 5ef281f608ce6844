"""Boot the built image in QEMU's orangepi-pc (the NanoPi NEO's H3 SoC) with the STM
simulator on UART2 and a coordinator on the host, and see the board enrol itself.

The whole path is the real one: the H3 boot ROM model loads the image's U-Boot SPL
from 8 KiB, U-Boot reads extlinux.conf from the FAT partition, boots the kernel with
the merged NanoPi NEO DTB; first boot grows the root partition and makes the keys;
dryad-seed applies the seed written on the FAT partition, as a technician would; the
dryad opens /dev/ttyS2 (a pty on the host running stm-sim) and dials the coordinator
at 10.0.2.2 (QEMU user networking's address of the host).

Then an admin logs in as root with the key the seed carried (QEMU forwards a host port
to the guest's sshd), looks at the unit as systemd sees it (Type=notify, watchdog,
STATUS=), measures the dryad's RSS and idle CPU on the 32-bit ARM guest, runs
`dryad selftest` against the simulated STM, and stops the dryad's process (SIGSTOP: no
more watchdog pings) to see systemd restart it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.e2e.coordinators import client, free_port, run_cli, start
from tests.image_build.commands import run
from tests.image_build.image import extract, partitions

pytestmark = [pytest.mark.image, pytest.mark.timeout(3600)]

BOOT_TIMEOUT = 900  # seconds; TCG emulates four Cortex-A7 on this machine's two cores
DEVICE_TYPE = "qemu-muxpi"


def eventually(check: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        if value := check():
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(1)


class Lab:
    """The host side: coordinator, admin client, STM simulator, QEMU, their logs."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        self.console = tmp / "console.log"
        self.sim_state = tmp / "stm.json"

    def coordinator(self) -> tuple[str, str, int]:
        """Start it with the dryad link on 0.0.0.0; returns (url, admin token, port)."""
        db = self.tmp / "farm.db"
        port = free_port()
        token = run_cli(db, "user", "add", "admin", "--admin").splitlines()[-1]
        enrol = run_cli(db, "enrol-token", "create").splitlines()[-1]
        c = start(db, self.tmp / "coordinator.log", f"0.0.0.0:{port}")
        self.procs.append(c.process)
        self.token = token
        return c.url, enrol, port

    def stm_sim(self) -> str:
        """Start the STM simulator; its first output line is the pty's path."""
        with (self.tmp / "stm-sim.log").open("wb") as log:  # the child keeps its own fd
            sim = subprocess.Popen(
                [sys.executable, "-c", "from hardware.sim.cli import main; main()",
                 "--state", str(self.sim_state)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        self.procs.append(sim)
        assert sim.stdout is not None
        pty = sim.stdout.readline().decode().strip()
        assert pty.startswith("/dev/pts/"), pty
        return pty

    def qemu(self, sd: Path, pty: str, ssh_port: int) -> None:
        with (self.tmp / "qemu.log").open("wb") as log:
            self._qemu(sd, pty, ssh_port, log)

    def _qemu(self, sd: Path, pty: str, ssh_port: int, log: IO[bytes]) -> None:
        self.procs.append(
            subprocess.Popen(
                [
                    "qemu-system-arm", "-M", "orangepi-pc", "-display", "none",
                    "-monitor", "none",
                    "-drive", f"if=sd,format=raw,file={sd}",
                    "-nic", f"user,hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
                    # UART0 the console, UART1 (DUT) unconnected, UART2 the STM.
                    "-chardev", f"file,id=con,path={self.console}", "-serial", "chardev:con",
                    "-serial", "null",
                    "-chardev", f"serial,id=stm,path={pty}", "-serial", "chardev:stm",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )  # fmt: skip

    def console_text(self) -> str:
        try:
            return self.console.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def board(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.sim_state.read_text())
        except (OSError, ValueError):
            return {}
        return data

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.stdin is not None:
                p.stdin.close()
            if p.stdout is not None:
                p.stdout.close()
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    the_lab = Lab(tmp_path)
    yield the_lab
    the_lab.stop()


# Emulation only: TCG runs the H3 some 20 times slower than the board, so systemd's
# 90 s wait for /dev/disk/by-partuuid/... runs out before udev has coldplugged; a
# quiet kernel spends less of that time printing; and one guest CPU instead of four
# on this machine's two shared cores, or the starved vCPUs stall RCU for minutes.
QEMU_CMDLINE = "systemd.default_device_timeout_sec=1200 quiet maxcpus=1"


def _sd_card(image: Path, dest: Path, seed: str) -> Path:
    """A copy of the image twice its size (a bigger card: the root partition grows),
    with the technician's seed file written on its FAT partition."""
    shutil.copyfile(image, dest)
    os.truncate(dest, 2 * image.stat().st_size)
    _, parts = partitions(dest)
    fat = f"{dest}@@{parts[0].start}"
    seed_file = dest.parent / "boruta-seed.toml"
    seed_file.write_text(seed)
    run(["mcopy", "-o", "-i", fat, seed_file, "::/boruta-seed.toml"])
    conf = dest.parent / "extlinux.conf"
    text = run(["mtype", "-i", fat, "::/extlinux/extlinux.conf"]).stdout
    conf.write_text(re.sub(r"^(\s*append .*)$", rf"\1 {QEMU_CMDLINE}", text, flags=re.M))
    run(["mcopy", "-o", "-i", fat, conf, "::/extlinux/extlinux.conf"])
    return dest


def _journal(sd: Path, tmp: Path) -> str:
    """The board's journal of the dryad's units, read from the stopped card."""
    _, parts = partitions(sd)
    root = extract(sd, parts[1], tmp / "root.ext4")
    journal = tmp / "journal"
    run(["debugfs", "-R", f"rdump /var/log/journal {tmp}", root], check=False)
    files = [str(p) for p in journal.rglob("*.journal")]
    if not files:
        return "(no journal)"
    units = ["-u", "dryad.service", "-u", "dryad-seed.service", "-u", "muxpi-firstboot.service"]
    out = run(["journalctl", "--no-pager", *[f"--file={f}" for f in files], *units], check=False)
    return out.stdout + out.stderr


class Guest:
    """Root on the booted board over SSH, with the admin key from the seed."""

    def __init__(self, key: Path, port: int) -> None:
        self.key = key
        self.port = port

    def run(self, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(
            ["ssh", "-i", self.key, "-p", str(self.port), "-o", "BatchMode=yes",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "ConnectTimeout=30", "-o", "LogLevel=ERROR", "root@127.0.0.1", command],
            timeout=300,
            check=check,
        )  # fmt: skip

    def unit(self) -> dict[str, str]:
        out = self.run(
            "systemctl show dryad -p Type -p WatchdogUSec -p NRestarts -p MainPID "
            "-p ActiveState -p StatusText"
        ).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _admin_key(tmp: Path) -> tuple[Path, str]:
    key = tmp / "admin_ed25519"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "admin@lab", "-f", key])
    return key, Path(f"{key}.pub").read_text().strip()


def _usage(guest: Guest, pid: str, seconds: int) -> tuple[float, float]:
    """RSS in MB and CPU as a fraction of a core over ``seconds``, read in the guest."""
    script = (
        f"t=$(getconf CLK_TCK); a=$(cut -d' ' -f14,15 /proc/{pid}/stat); sleep {seconds}; "
        f"b=$(cut -d' ' -f14,15 /proc/{pid}/stat); grep VmRSS /proc/{pid}/status; "
        'echo "$t $a $b"'
    )
    lines = guest.run(script).stdout.splitlines()
    rss_kb = int(lines[0].split()[1])
    ticks, u0, s0, u1, s1 = (int(v) for v in lines[1].split())
    return rss_kb / 1024, (u1 + s1 - u0 - s0) / ticks / seconds


def test_boots_and_registers(image: Path, lab: Lab, tmp_path: Path) -> None:
    url, enrol, port = lab.coordinator()
    pty = lab.stm_sim()
    key, public = _admin_key(tmp_path)
    sd = _sd_card(
        image,
        tmp_path / "sd.img",
        f'coordinator = "10.0.2.2:{port}"\nenrol_token = "{enrol}"\n'
        f'ssh_authorized_keys = ["{public}"]\n'
        f'[caps]\ndevice_type = "{DEVICE_TYPE}"\n',
    )
    ssh_port = free_port()
    started = time.monotonic()
    lab.qemu(sd, pty, ssh_port)

    def registered() -> dict[str, Any] | None:
        with client(url, lab.token) as http:
            try:
                workers = http.post("/api/v1/workers/list").json()
            except httpx.HTTPError:
                return None
        return next((w for w in workers if w["Caps"].get("device_type") == DEVICE_TYPE), None)

    try:
        worker = eventually(registered, BOOT_TIMEOUT, "the dryad in QEMU registers")
    except AssertionError as exc:  # the board's console and journal explain it
        lab.stop()
        raise AssertionError(
            f"{exc}\n--- console\n{lab.console_text()[-6000:]}\n"
            f"--- journal\n{_journal(sd, tmp_path)[-10000:]}"
        ) from None
    boot_to_registered = time.monotonic() - started
    sys.stderr.write(f"\nQEMU boot to registered: {boot_to_registered:.0f} s\n")
    (tmp_path / "boot-to-registered.txt").write_text(f"{boot_to_registered:.1f}\n")

    console = lab.console_text()
    assert "U-Boot SPL" in console and "Model: FriendlyARM NanoPi NEO" in console
    assert "muxpi-firstboot: hostname muxpi-" in console, console[-5000:]
    assert "dryad UUID: " + worker["WorkerUUID"] in console
    assert worker["State"] == "MAINTENANCE"  # new boards wait for an admin
    with client(url, lab.token) as http:
        assert http.get(f"/api/v1/workers/{worker['WorkerUUID']}").json()["Connected"] is True
    # The dryad talks to the STM: the panel shows MAINTENANCE as the yellow blink.
    eventually(
        lambda: [96, 144, 0] in lab.board().get("leds", []),
        120,
        "the simulated STM's LEDs show MAINTENANCE",
    )
    assert any(row.strip() for row in lab.board().get("oled", [])), lab.board()
    try:
        _as_admin(Guest(key, ssh_port), lab, url, worker["WorkerUUID"], tmp_path)
    except AssertionError as exc:
        lab.stop()
        raise AssertionError(f"{exc}\n--- journal\n{_journal(sd, tmp_path)[-10000:]}") from None


def _as_admin(guest: Guest, lab: Lab, url: str, uuid: str, tmp: Path) -> None:
    # The seed's key lets root in (sshd may still be finishing its first start).
    eventually(
        lambda: guest.run("true", check=False).returncode == 0,
        300,
        "root logs in with the seed key",
    )
    assert guest.run("id -u").stdout.strip() == "0"
    # systemd's view: started by READY=1, watched, and the link's state in STATUS=.
    unit = guest.unit()
    assert unit["Type"] == "notify" and unit["ActiveState"] == "active", unit
    assert unit["WatchdogUSec"] == "1min", unit
    assert unit["StatusText"].startswith("connected to 10.0.2.2:"), unit
    assert unit["NRestarts"] == "0", unit  # fed all along since the boot
    rss, cpu = _usage(guest, unit["MainPID"], 60)
    sys.stderr.write(f"armhf guest: dryad RSS {rss:.1f} MB, idle CPU {cpu * 100:.1f}% of a core\n")
    (tmp / "armhf-usage.txt").write_text(f"rss_mb {rss:.1f}\nidle_cpu {cpu:.4f}\n")
    # The technician's check, on the image against the STM simulator on UART2.
    selftest = guest.run(
        "systemctl stop dryad; dryad selftest --no-button --show 0 --report /root/st.txt;"
        " echo status=$?; systemctl start dryad",
    ).stdout
    sys.stderr.write(selftest)
    assert "status=0" in selftest and "dryad selftest: PASS" in selftest, selftest
    assert "MuxPi firmware" in guest.run("cat /root/st.txt").stdout
    # A hung dryad (stopped: no task runs, no ping goes out) is killed and restarted.
    unit = eventually(
        lambda: (u := guest.unit())["ActiveState"] == "active" and u, 600, "the dryad is back"
    )
    hung = time.monotonic()
    guest.run(f"kill -STOP {unit['MainPID']}")
    restarted = eventually(
        lambda: (
            (u := guest.unit())["NRestarts"] != unit["NRestarts"]
            and u["ActiveState"] == "active"
            and u
        ),
        600,
        "systemd restarts the dryad whose watchdog went unfed",
    )
    assert restarted["MainPID"] != unit["MainPID"]
    journal = guest.run("journalctl -u dryad --no-pager -o cat").stdout
    assert "Watchdog timeout" in journal, journal[-3000:]

    def reconnected() -> bool:
        with client(url, lab.token) as http:
            return bool(http.get(f"/api/v1/workers/{uuid}").json()["Connected"])

    eventually(reconnected, 600, "the restarted dryad is back on the link")
    sys.stderr.write(f"hung dryad restarted and back in {time.monotonic() - hung:.0f} s\n")
