"""Dryad memory and idle CPU per board profile, measured after registration.

For each profile a real ``dryad`` process dials a link server run in this process
(store, service and link as in bench/dryad_agent.py), registers, and then sits idle;
its RSS (VmRSS) and CPU time are read from /proc. Profiles:

* ``sim`` - the STM firmware simulator runs inside the dryad process;
* ``muxpi`` - the muxpi profile's code with the GPIO lines mocked and the STM simulator
  in a separate process on a pty: what the dryad itself holds on a MuxPi;
* ``generic`` - the generic board's own simulators (``[generic] simulate = true``): a
  relay, a USB-SD-Mux, an RGB and a plain LED on mock pins, luma's dummy OLED, a button.

Goal (issue 18): RSS <= 60 MB on x86-64 without the simulator; idle CPU <= 1% of a core.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio

from coordinator.domain.clock import SystemClock
from coordinator.domain.ids import WorkerUUID
from coordinator.domain.listing import ListSpec
from coordinator.link.registry import DryadLink
from coordinator.link.server import LinkConfig, LinkServer
from coordinator.service.keys import KeyPool
from coordinator.service.operations import Service
from coordinator.store.sql import SqlStore
from coordinator.tokens import hash_token, new_token
from coordinator.tunnels.none import DirectAccess

BENCH = Path(__file__).resolve().parent
GENERIC = """[generic]
simulate = true
[generic.power]
type = "gpio"
pin = "GPIO17"
[generic.sd]
type = "usbsdmux"
device = "{home}/usb-sd-mux"
[[generic.leds]]
red = "GPIO5"
green = "GPIO6"
blue = "GPIO13"
[[generic.leds]]
pin = "GPIO19"
color = "green"
[generic.display]
type = "ssd1306"
[generic.button]
pin = "GPIO26"
[control]
user_socket = "{home}/stm-user.socket"
admin_socket = "{home}/stm.socket"
"""
TICKS = os.sysconf("SC_CLK_TCK")
GOAL_MB = 60.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def connected(service: Service) -> list[WorkerUUID]:
    everyone = service.list_workers(ListSpec(match=lambda w: True, sort_key=lambda w: w.uuid))
    return [w.uuid for w in everyone.items if service.connected(w.uuid)]


async def until(service: Service, check: Callable[[], bool], seconds: float = 120) -> None:
    with anyio.fail_after(seconds):
        while not check():
            await service.changed()


def stm_simulator(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    sim = subprocess.Popen(
        [sys.executable, "-c", "from hardware.sim.cli import main; main()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=(home / "stm-sim.log").open("wb"),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert sim.stdout is not None
    return sim, sim.stdout.readline().decode().strip()


def start_dryad(home: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(BENCH / "_dryad_as.py"), "--config", str(home / "dryad.toml")],
        stdout=subprocess.DEVNULL,
        stderr=(home / "dryad.log").open("wb"),
    )


async def measure(profile: str, tmp: Path, idle_seconds: float) -> tuple[float, float, float]:
    """(start to registered in s, RSS in MB, idle CPU as a fraction of a core)."""
    store = SqlStore.open(tmp / f"{profile}.db")
    store.migrate()
    token = new_token()
    store.add_enrol_token(hash_token(token), datetime.now(UTC) + timedelta(hours=1))
    clock = SystemClock()
    link = DryadLink(store, clock)
    service = Service(store, link, DirectAccess(), clock, keys=KeyPool())
    link.service = service
    home = tmp / profile
    home.mkdir()
    helpers: list[subprocess.Popen[bytes]] = []
    stm = ""
    if profile == "muxpi":
        sim, pty = stm_simulator(home)
        helpers.append(sim)
        stm = f'[stm]\nport = "{pty}"\n[control]\nenabled = true\n'
        stm += f'user_socket = "{home}/stm-user.socket"\nadmin_socket = "{home}/stm.socket"\n'
    if profile == "generic":
        (home / "usb-sd-mux").write_text("")
        stm = GENERIC.format(home=home)
    config = LinkConfig("127.0.0.1", 0, tmp / f"{profile}_host_key", keepalive=5)
    async with anyio.create_task_group() as tg:
        await tg.start(service.run)
        _, port = await tg.start(LinkServer(config, store, link).run)
        (home / "dryad.toml").write_text(
            f'coordinator = "127.0.0.1:{port}"\nenrol_token = "{token}"\nprofile = "{profile}"\n'
            f'state_dir = "{home}/state"\nssh_address = "127.0.0.1:22"\n'
            '[caps]\ndevice_type = "bench"\n[job_user]\nmanage = false\n'
            "[health]\ninterval = 3600\n" + stm
        )
        started = time.perf_counter()
        dryad = start_dryad(home)
        try:
            await until(service, lambda: bool(connected(service)))
            registered = time.perf_counter() - started
            await anyio.sleep(3)  # start-up work (first panel, first healthcheck) settles
            cpu0, t0 = cpu_seconds(dryad.pid), time.perf_counter()
            await anyio.sleep(idle_seconds)
            idle = (cpu_seconds(dryad.pid) - cpu0) / (time.perf_counter() - t0)
            rss = rss_mb(dryad.pid)
        except TimeoutError:
            print((home / "dryad.log").read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            dryad.terminate()
            dryad.wait(20)
            for helper in helpers:
                helper.terminate()
                helper.wait(10)
            tg.cancel_scope.cancel()
    store.close()
    return registered, rss, idle


async def main(profiles: list[str], idle_seconds: float) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-dryad-memory-"))
    print(f"x86-64, Python {sys.version.split()[0]}; idle CPU over {idle_seconds:.0f} s")
    for profile in profiles:
        registered, rss, idle = await measure(profile, tmp, idle_seconds)
        goal = ""
        if profile != "sim":
            goal = f" (goal <= {GOAL_MB:.0f} MB: {'met' if rss <= GOAL_MB else 'NOT met'})"
        print(
            f"{profile:8} start to registered {registered:5.2f} s  RSS {rss:5.1f} MB{goal}  "
            f"idle CPU {idle * 100:.2f}% of a core (goal <= 1%: "
            f"{'met' if idle <= 0.01 else 'NOT met'})"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profiles", default="sim,muxpi,generic")
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    args = parser.parse_args()
    anyio.run(main, args.profiles.split(","), args.idle_seconds)
