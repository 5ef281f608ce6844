"""Several coordinator processes on one PostgreSQL database, each on its own loopback address
with its own ports and tunnel range, and simulated dryads given every link address, each
with a UUID that picks the coordinator it dials first."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from dryad.candidates import home_position
from tests.e2e.coordinators import READY, client, free_range
from tests.e2e.process_farm import DryadOptions, eventually, start_dryad

STANDBY = re.compile(rb"standby: |standing by for ")  # waiting, or stepped down to wait
TUNNELS = 20  # ports per coordinator's tunnel range: more than the jobs a test runs


def free_port_at(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Member:
    """One coordinator of the group: its addresses never change across restarts."""

    name: str
    host: str  # its own loopback address: its public host, HTTP, link and tunnels
    http_port: int
    link_port: int
    tunnels: tuple[int, int]
    home: Path
    process: subprocess.Popen[bytes] | None = None
    starts: list[int] = field(default_factory=list)  # the log's size at each start

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def link(self) -> str:
        return f"{self.host}:{self.link_port}"

    @property
    def log(self) -> Path:
        return self.home / "coordinator.log"

    def since_start(self) -> bytes:
        """What this run of the process logged."""
        return self.log.read_bytes()[self.starts[-1] :] if self.log.exists() else b""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def serving(self) -> bool:
        """Whether this run's latest news is its ready line (it took the database and bound
        its ports), not that it stands by."""
        return self.alive() and self._latest() == "ready"

    def standby(self) -> bool:
        return self.alive() and self._latest() == "standby"

    def _latest(self) -> str:
        text = self.since_start()
        ready = [m.start() for m in READY.finditer(text)]
        standby = [m.start() for m in STANDBY.finditer(text)]
        if not ready and not standby:
            return ""
        return "ready" if max(ready, default=-1) > max(standby, default=-1) else "standby"

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a power cut of the process."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(20)


class Group:
    """Coordinators on one database; an admin token and an enrolment token; dryads."""

    def __init__(self, tmp: Path, db: str, count: int = 3, config: str = "") -> None:
        self.tmp = tmp
        self.db = db
        self.members: list[Member] = []
        for n in range(count):
            host = f"127.0.0.{11 + n}"
            home = tmp / f"coordinator-{n}"
            home.mkdir()
            member = Member(
                f"c{n}",
                host,
                free_port_at(host),
                free_port_at(host),
                free_range(host, TUNNELS),
                home,
            )
            (home / "coordinator.toml").write_text(
                f'http = "{member.url.removeprefix("http://")}"\nlink = "{member.link}"\n'
                f'dialback = "{host}:0"\ntunnel_ports = "{member.tunnels[0]}-{member.tunnels[1]}"\n'
                f'public_host = "{host}"\nlink_host_key = "{home / "link_host_key"}"\n'
                f"http_max_per_client = 4096\n{config}"
            )
            self.members.append(member)
        self.cli("migrate")
        self.token = self.cli("user", "add", "admin", "--admin").splitlines()[-1]
        self.enrol = self.cli("enrol-token", "create").splitlines()[-1]
        self.dryads: list[subprocess.Popen[bytes]] = []
        self.dryad_homes: list[Path] = []
        self._uuids = 1  # the next dryad UUID tried, as a number
        self._dryad_starts: list[tuple[list[str], str, int, DryadOptions]] = []

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "coordinator", "--db", self.db, *args],
            capture_output=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode()

    def start(self, member: Member, db: str = "") -> None:
        """Start ``member``'s process; it serves, or waits as a standby (see :meth:`wait`).
        ``db`` is the database's URL as this member reaches it (through a proxy, say)."""
        assert not member.alive()
        member.starts.append(member.log.stat().st_size if member.log.exists() else 0)
        command = [sys.executable, "-m", "coordinator", "--db", db or self.db]
        command += ["--config", str(member.home / "coordinator.toml"), "serve"]
        with member.log.open("ab") as sink:
            member.process = subprocess.Popen(
                command,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def start_first(self) -> Member:
        """Start the first member, wait until it serves, and give the farm's link host key
        to the others (docs/failover.md §host keys)."""
        first = self.members[0]
        self.start(first)
        self.wait(first.serving, f"{first.name} serving", seconds=60)
        for other in self.members[1:]:
            shutil.copy2(first.home / "link_host_key", other.home / "link_host_key")
        return first

    def start_all(self) -> Member:
        """Start every member: the first serves, then the others follow it (each ready as
        the load balancer's check sees it); the first."""
        first = self.start_first()
        for m in self.members[1:]:
            self.start(m)
        for m in self.members[1:]:
            self.wait(lambda m=m: following(m), f"{m.name} following", 60)
        return first

    def wait(self, condition: Any, what: str, seconds: float = 60) -> None:
        """Wait for ``condition()``; a member that died meanwhile is shown with its log."""

        def check() -> bool:
            if condition():
                return True
            for m in self.members:
                if m.process is not None and m.process.poll() not in (None, -signal.SIGKILL):
                    raise AssertionError(
                        f"{m.name} exited {m.process.returncode} waiting for {what}:\n"
                        + m.since_start().decode(errors="replace")[-4000:]
                    )
            return False

        check.__doc__ = what
        eventually(check, seconds)

    def active(self) -> Member:
        """The member serving now (exactly one may)."""
        serving = [m for m in self.members if m.serving()]
        assert len(serving) <= 1, f"two serving: {[m.name for m in serving]}"
        assert serving, "no coordinator serves"
        return serving[0]

    def takeover(self, seconds: float = 60) -> Member:
        """Wait until some living member serves; it."""
        self.wait(lambda: any(m.serving() for m in self.members), "a coordinator serving", seconds)
        return self.active()

    def http(self, member: Member) -> httpx.Client:
        return client(member.url, self.token)

    def dryad(
        self,
        n: int,
        device_type: str,
        sshd_port: int,
        job_user: str = "",
        to: list[Member] | None = None,
        home: int = 0,
    ) -> Path:
        """Start simulated dryad ``n`` with every member's link address (or those of
        ``to``), forwarding its tunnels to the sshd on ``sshd_port``; with ``job_user`` it
        manages that real user (the coordinators' ``job_username``), else none. Its UUID
        has it dial the ``home``-th of those addresses first (the first by default)."""
        home_dir = self.tmp / f"dryad-{n}"
        home_dir.mkdir()
        links = [m.link for m in (self.members if to is None else to)]
        options = DryadOptions(job_user=job_user, uuid=self._uuid_at(home, len(links)))
        started = (links, device_type, sshd_port, options)
        self.dryads.append(start_dryad(home_dir, links, self.enrol, *started[1:]))
        self.dryad_homes.append(home_dir)
        self._dryad_starts.append(started)
        return home_dir

    def restart_dryad(self, n: int) -> None:
        """SIGKILL dryad ``n`` (a board's crash) and start it again as it was: its first
        dial goes to its home again."""
        self.dryads[n].kill()
        self.dryads[n].wait(20)
        links, device_type, sshd_port, options = self._dryad_starts[n]
        home = self.dryad_homes[n]
        self.dryads[n] = start_dryad(home, links, self.enrol, device_type, sshd_port, options)

    def _uuid_at(self, home: int, count: int) -> str:
        """A new dryad UUID, above every one given before (matching prefers the lowest),
        whose first dial goes to the ``home``-th of ``count`` link addresses
        (docs/failover.md §the redial order)."""
        while home_position(str(uuid.UUID(int=self._uuids)), count) != home:
            self._uuids += 1
        self._uuids += 1
        return str(uuid.UUID(int=self._uuids - 1))

    @staticmethod
    def uuid_of(directory: Path) -> str:
        """The UUID of the dryad started in ``directory``."""
        return (directory / "state" / "uuid").read_text().strip()

    def _links(self, n: int) -> list[str]:
        """Dryad ``n``'s log lines of each link it made, oldest first."""
        text = (self.dryad_homes[n] / "dryad.log").read_text(errors="replace")
        return [ln for ln in text.splitlines() if "dryad connected to coordinator" in ln]

    def links_made(self, n: int) -> int:
        """How many links dryad ``n`` has made so far."""
        return len(self._links(n))

    def holder(self, n: int) -> Member | None:
        """The member dryad ``n``'s latest link went to (None before it linked)."""
        lines = self._links(n)
        for m in self.members:
            if lines and f"coordinator {m.link}" in lines[-1]:
                return m
        return None

    def linked_to(self, member: Member) -> list[bool]:
        """For each dryad, whether its latest link is to ``member``."""
        return [self.holder(n) is member for n in range(len(self.dryad_homes))]

    def workers(self, member: Member) -> list[dict[str, Any]]:
        with self.http(member) as http:
            answer = http.post("/api/v1/workers/list")
        assert answer.status_code == 200, answer.text
        workers: list[dict[str, Any]] = answer.json()
        return workers

    def stop(self) -> None:
        """Stop every dryad and coordinator (gracefully, so coverage is written)."""
        for p in self.dryads:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.dryads:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        for m in self.members:
            if m.alive():
                assert m.process is not None
                m.process.terminate()
                try:
                    m.process.wait(20)
                except subprocess.TimeoutExpired:
                    m.process.kill()


def following(member: Member) -> bool:
    """Whether ``member`` stands by as a follower whose ``/healthz`` says it is ready (its
    database and leader answer), as the load balancer's check sees it."""
    try:
        answer = httpx.get(f"{member.url}/healthz", timeout=5)
    except httpx.HTTPError:
        return False
    return member.standby() and answer.status_code == 200


def wait_until(check: Any, seconds: float, what: str) -> float:
    """Poll ``check`` every 20 ms until true; the seconds it took (for the bench)."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.02)
    return time.monotonic() - started
