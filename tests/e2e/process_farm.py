"""ProcessFarm: a real coordinator and the simulated dryads it starts; ``eventually``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.coordinators import (
    TUNNELS,
    Coordinator,
    client,
    free_port,
    free_range,
    run_cli,
    start,
)

GRACE = 3  # seconds a dryad may be away before its worker FAILS


def eventually(check: Callable[[], Any], seconds: float = 30) -> Any:
    """Ask again until ``check`` gives something true; real processes take their time."""
    deadline = time.monotonic() + seconds
    while True:
        if value := check():
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {check.__doc__ or check}")
        time.sleep(0.1)


class ProcessFarm:
    """A coordinator with a fixed link port, an admin, and the dryads it starts."""

    def __init__(
        self, tmp: Path, coordinators: list[Coordinator], config: str = "", grace: int = GRACE
    ) -> None:
        self.tmp = tmp
        self.db = tmp / "farm.db"
        self.link = f"127.0.0.1:{free_port()}"
        config_file = tmp / "coordinator.toml"
        # Dial-backs on any free port: the one after the link's may be another test's.
        # A tunnel range of its own: other tests' farms may run beside it on this host.
        self.tunnels = free_range("127.0.0.1", TUNNELS)
        if "tunnel_ports" not in config:
            config = f'tunnel_ports = "{self.tunnels[0]}-{self.tunnels[1]}"\n{config}'
        config_file.write_text(
            f'link_grace = {grace}\nlink_keepalive = 1\ndialback = "127.0.0.1:0"\n{config}'
        )
        self.extra = ("--config", str(config_file))
        self.token = run_cli(self.db, "user", "add", "admin", "--admin").splitlines()[-1]
        self.enrol = run_cli(self.db, "enrol-token", "create").splitlines()[-1]
        self.coordinators = coordinators
        self.dryads: list[subprocess.Popen[bytes]] = []
        self.coordinator = self.restart()

    def restart(self) -> Coordinator:
        c = start(self.db, self.tmp / "coordinator.log", self.link, *self.extra)
        self.coordinators.append(c)
        self.coordinator = c
        return c

    def http(self) -> httpx.Client:
        return client(self.coordinator.url, self.token)

    def dryad(
        self,
        n: int,
        device_type: str,
        sshd_port: int = 22,
        job_user: str = "",
        job_groups: tuple[str, ...] = (),
        extra: str = "",
        host_keys: str = "",
        coordinators: tuple[str, ...] = (),
        uuid: str = "",
    ) -> Path:
        """Start simulated dryad ``n``; returns its directory. With ``job_user``, it
        manages that real user (in ``job_groups`` only) for the sshd on ``sshd_port``;
        ``extra`` is more TOML for its config, after every other table; ``host_keys`` is
        the glob of the sshd host keys it reports (default: the system's); with
        ``coordinators``, it is given that list of link addresses instead of the farm's;
        ``uuid`` is its UUID (one made at its first start by default)."""
        home = self.tmp / f"dryad-{n}"
        home.mkdir(exist_ok=True)
        links: str | tuple[str, ...] = coordinators or self.link
        options = DryadOptions(job_user, job_groups, host_keys, extra, uuid)
        self.dryads.append(start_dryad(home, links, self.enrol, device_type, sshd_port, options))
        return home

    def stop_dryads(self) -> None:
        for p in self.dryads:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(20)

    def workers(self) -> dict[str, dict[str, Any]]:
        with self.http() as http:
            return {w["Caps"]["device_type"]: w for w in http.post("/api/v1/workers/list").json()}

    def idle(self, device_type: str) -> str:
        """Wait for the board to register, then put it in service as an admin does."""
        uuid: str = eventually(lambda: self.workers().get(device_type, {}).get("WorkerUUID"))
        with self.http() as http:
            answer = http.post(f"/api/v1/workers/{uuid}/setstate", json={"WorkerState": "IDLE"})
            assert answer.status_code == 202
        eventually(lambda: self.workers()[device_type]["State"] == "IDLE")
        return uuid


def board(home: Path) -> dict[str, Any]:
    """The simulated STM's state as the dryad left it (LEDs, OLED text)."""
    try:
        data: dict[str, Any] = json.loads((home / "board.json").read_text())
    except (OSError, ValueError):
        return {}
    return data


@dataclass(frozen=True)
class DryadOptions:
    """What a test dryad's config may add: the real job user it manages (in ``job_groups``
    only), the glob of the sshd host keys it reports, more TOML after every other table,
    and its UUID, which picks the coordinator it dials first
    (docs/failover.md §the redial order; "": one made at its first start)."""

    job_user: str = ""
    job_groups: tuple[str, ...] = ()
    host_keys: str = ""
    extra: str = ""
    uuid: str = ""


def start_dryad(
    home: Path,
    links: str | Sequence[str],
    enrol: str,
    device_type: str,
    sshd_port: int,
    options: DryadOptions = DryadOptions(),
) -> subprocess.Popen[bytes]:
    """Write ``home``/dryad.toml and start a simulated dryad with it, its output in
    ``home``/dryad.log. ``links`` is one coordinator's link address, or the list of them a
    dryad redials in turn; its tunnels go to the sshd on ``sshd_port``."""
    if isinstance(links, str):
        where = f'coordinator = "{links}"'
    else:
        where = "coordinators = [" + ", ".join(f'"{c}"' for c in links) + "]"
    groups = "[" + ", ".join(f'"{g}"' for g in options.job_groups) + "]"
    user = (
        f'name = "{options.job_user}"\ngroups = {groups}\nmanage = true'
        if options.job_user
        else "manage = false"
    )
    (home / "dryad.toml").write_text(
        f'{where}\nenrol_token = "{enrol}"\nprofile = "sim"\n'
        f'state_dir = "state"\nssh_address = "127.0.0.1:{sshd_port}"\n'
        + (f'sshd_host_keys = "{options.host_keys}"\n' if options.host_keys else "")
        + f'[caps]\ndevice_type = "{device_type}"\n[job_user]\n{user}\n'
        f'[health]\ninterval = 3600\n[sim]\nstate_file = "board.json"\npng_file = "oled.png"\n'
        + options.extra
    )
    if options.uuid:
        (home / "state").mkdir(mode=0o700, exist_ok=True)
        (home / "state" / "uuid").write_text(options.uuid + "\n")
    with (home / "dryad.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "dryad", "--config", str(home / "dryad.toml")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
