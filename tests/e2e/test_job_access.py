"""Job access with real parts: Debian's sshd and ssh, a coordinator, simulated dryads."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import dryad
from tests.e2e.coordinators import Coordinator, client, free_port, run_cli
from tests.e2e.process_farm import ProcessFarm, eventually

# Longer than any answer takes on a loaded machine, far shorter than ssh's own timeouts:
# crossing it means the user was left hanging.
HANG = 20.0

pytestmark = pytest.mark.e2e

SSHD = "/usr/sbin/sshd"


@dataclass
class Sshd:
    """A real OpenSSH sshd on a loopback port, with its own config and host key."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def start_sshd(tmp: Path, allow: str, port: int = 0) -> Sshd:
    """Start sshd for the job user ``allow`` only: public keys, no PAM, no passwords."""
    tmp.mkdir(parents=True, exist_ok=True)
    key = tmp / "host_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    port = port or free_port()
    config = tmp / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {key}\nPidFile {tmp / 'sshd.pid'}\n"
        "UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nAuthorizedKeysFile .ssh/authorized_keys\n"
        f"StrictModes yes\nPermitRootLogin no\nAllowUsers {allow}\nLogLevel VERBOSE\n"
        "Subsystem sftp internal-sftp\n"  # scp and sshfs (Weles) speak SFTP
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # its privilege separation directory
    log = tmp / "sshd.log"
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)], stdout=sink, stderr=subprocess.STDOUT
        )
    eventually(lambda: b"Server listening" in log.read_bytes() or process.poll() is not None)
    assert process.poll() is None, log.read_text()
    return Sshd(port, process, log)


def remove_user(name: str) -> None:
    """Whatever a test left of a job user goes, processes first (as the dryad does)."""
    subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
    subprocess.run(["userdel", "-r", "-f", name], capture_output=True)


@dataclass
class Access:
    rid: int
    user: str
    host: str
    port: int
    key: Path


def acquire(farm: ProcessFarm, rid: int, tmp: Path, token: str = "") -> Access:
    with client(farm.coordinator.url, token or farm.token) as http:
        answer = http.post(f"/api/v1/reqs/{rid}/acquire_worker", params={"wait": 30})
    assert answer.status_code == 200, answer.text
    return access_of(rid, answer.json(), tmp)


def access_of(rid: int, body: dict[str, Any], tmp: Path) -> Access:
    """The login an ``acquire_worker`` answer gives, its key written under ``tmp``."""
    key = tmp / f"key-{rid}"
    key.write_text(body["Key"])
    key.chmod(0o600)
    return Access(rid, body["Username"], body["Addr"]["IP"], body["Addr"]["Port"], key)


def ssh_argv(
    access: Access, command: str, port: int | None = None, user: str | None = None,
    key: Path | None = None, verbose: bool = False,
) -> list[str]:  # fmt: skip
    """The real ssh client's command line, as a user runs it with the acquired key."""
    return [
        "ssh", "-i", str(key or access.key), "-p", str(port or access.port),
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10",
        *(["-v"] if verbose else ["-o", "LogLevel=ERROR"]),
        f"{user or access.user}@{access.host}", command,
    ]  # fmt: skip


def ssh(
    access: Access, command: str, port: int | None = None, user: str | None = None,
    key: Path | None = None, verbose: bool = False,
) -> subprocess.CompletedProcess[str]:  # fmt: skip
    argv = ssh_argv(access, command, port, user, key, verbose)
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def new_request(farm: ProcessFarm, device_type: str, token: str = "") -> int:
    with client(farm.coordinator.url, token or farm.token) as http:
        answer = http.post("/api/v1/reqs/", json={"Caps": {"device_type": device_type}})
    assert answer.status_code == 201, answer.text
    rid: int = answer.json()["ReqID"]
    return rid


def close(farm: ProcessFarm, rid: int, token: str = "") -> None:
    with client(farm.coordinator.url, token or farm.token) as http:
        assert http.post(f"/api/v1/reqs/{rid}/close").status_code == 204


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def sshds() -> Iterator[list[Sshd]]:
    started: list[Sshd] = []
    yield started
    for s in started:
        s.stop()


@pytest.fixture(params=["dialback", "link"])
def tunnel_mode(request: pytest.FixtureRequest) -> str:
    """Each tunnel test runs with dial-back tunnels and with tunnels inside the link."""
    mode: str = request.param
    return mode


@pytest.fixture
def farm(
    tmp_path: Path, coordinators: list[Coordinator], user: str, sshds: list[Sshd], tunnel_mode: str
) -> Iterator[ProcessFarm]:
    """A coordinator whose jobs log in as ``user``, a real sshd for it, and one
    simulated dryad (``rpi4``) managing that user and forwarding to that sshd."""
    sshds.append(start_sshd(tmp_path / "sshd", user))
    # A long grace: after a coordinator restart the dryad may take its full back-off
    # (up to 30 s) to dial back, and must not be failed for that meanwhile.
    config = f'job_username = "{user}"\ntunnel_mode = "{tunnel_mode}"\n'
    f = ProcessFarm(tmp_path, coordinators, config, grace=60)
    try:
        f.dryad(1, "rpi4", sshds[0].port, user)
        f.idle("rpi4")
        yield f
    finally:
        f.stop_dryads()


def test_a_job_user_logs_in_through_the_tunnel_and_is_gone_after_close(
    farm: ProcessFarm, tmp_path: Path, user: str, sshds: list[Sshd]
) -> None:
    rid = new_request(farm, "rpi4")
    access = acquire(farm, rid, tmp_path)
    assert (access.user, access.host) == (user, "127.0.0.1")
    assert access.port != sshds[0].port  # the tunnel's port, not the sshd's

    who = ssh(access, "id -un")
    assert (who.returncode, who.stdout.strip()) == (0, user), who.stderr
    daemon = ssh(access, "setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $!")
    pid = int(daemon.stdout.strip())
    assert alive(pid)

    close(farm, rid)
    eventually(lambda: not alive(pid))  # the daemonised process died with the job
    # The tunnel is gone, and the same key no longer opens the board even from inside.
    assert ssh(access, "true").returncode == 255
    assert ssh(access, "true", port=sshds[0].port).returncode == 255
    # Dial-back tunnels were dialled back, not carried by the link after all.
    assert "dial-back failed" not in (tmp_path / "coordinator.log").read_text()


def test_scp_copies_a_file_both_ways_through_the_tunnel(farm: ProcessFarm, tmp_path: Path) -> None:
    access = acquire(farm, new_request(farm, "rpi4"), tmp_path)
    source = tmp_path / "payload"
    source.write_bytes(os.urandom(3 << 20))  # a few MiB: many windows of every buffer
    options = ssh_argv(access, "", access.port)[1:-2]
    options[options.index("-p")] = "-P"  # scp's port flag
    remote = f"{access.user}@{access.host}:payload"  # in the job user's home, gone with it
    back = tmp_path / "back"
    up = subprocess.run(["scp", "-q", *options, str(source), remote], capture_output=True)
    assert up.returncode == 0, up.stderr
    down = subprocess.run(["scp", "-q", *options, remote, str(back)], capture_output=True)
    assert down.returncode == 0, down.stderr
    assert back.read_bytes() == source.read_bytes()


def test_a_running_jobs_tunnel_comes_back_on_its_port_after_a_restart(
    farm: ProcessFarm, tmp_path: Path, user: str
) -> None:
    access = acquire(farm, new_request(farm, "rpi4"), tmp_path)
    farm.coordinator.kill()
    farm.restart()
    eventually(lambda: all(w.get("Connected") for w in farm.workers().values()), seconds=75)
    who = eventually(lambda: ssh(access, "id -un").stdout.strip())
    assert who == user


def test_another_users_key_does_not_open_a_tunnel(
    farm: ProcessFarm, tmp_path: Path, user: str
) -> None:
    """Bob's key of his earlier job on this board, or a key of his own, cannot open
    the tunnel of Alice's job; nor can he acquire her request."""
    bob = run_cli(farm.db, "user", "add", "bob").splitlines()[-1]
    alice = run_cli(farm.db, "user", "add", "alice").splitlines()[-1]
    earlier = acquire(farm, new_request(farm, "rpi4", bob), tmp_path, bob)
    close(farm, earlier.rid, bob)
    access = acquire(farm, hers := new_request(farm, "rpi4", alice), tmp_path, alice)
    with client(farm.coordinator.url, bob) as http:
        assert http.post(f"/api/v1/reqs/{hers}/acquire_worker").status_code == 403
    assert ssh(access, "id -un").stdout.strip() == user
    assert ssh(access, "true", key=earlier.key).returncode == 255
    own = tmp_path / "own"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(own)], check=True)
    assert ssh(access, "true", key=own).returncode == 255


def test_a_stopped_sshd_fails_promptly_with_a_reason(
    farm: ProcessFarm, tmp_path: Path, user: str, sshds: list[Sshd]
) -> None:
    uuid = farm.workers()["rpi4"]["WorkerUUID"]
    access = acquire(farm, new_request(farm, "rpi4"), tmp_path)
    sshds[0].stop()

    started = time.monotonic()
    down = ssh(access, "true", verbose=True)
    # Prompt, not a hang (ssh's own timeouts are far longer); the figure is in bench/.
    assert down.returncode == 255 and time.monotonic() - started < HANG
    # ssh -v shows the line the tunnel sends before closing; the log names the worker.
    assert f"boruta: worker {uuid} unreachable: its sshd refused" in down.stderr
    log = tmp_path / "coordinator.log"
    eventually(lambda: f"worker {uuid}): connection from 127.0.0.1" in log.read_text())

    sshds.append(start_sshd(tmp_path / "sshd", user, sshds[0].port))  # back: it works again
    eventually(lambda: ssh(access, "id -un").stdout.strip() == user)


def test_a_dropped_dryad_link_ends_the_users_session(farm: ProcessFarm, tmp_path: Path) -> None:
    access = acquire(farm, new_request(farm, "rpi4"), tmp_path)
    argv = ssh_argv(access, "echo up; sleep 600")
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as session:
        assert session.stdout is not None
        assert session.stdout.readline() == b"up\n"
        farm.dryads[0].send_signal(signal.SIGKILL)  # the board's link drops mid-session
        started = time.monotonic()
        assert session.wait(HANG) == 255
        assert time.monotonic() - started < HANG


@pytest.fixture
def stm_group() -> Iterator[str]:
    """A unique group for the dryad's user control socket (``stm`` on a board)."""
    name = f"brt-stm-{secrets.token_hex(3)}"
    subprocess.run(["groupadd", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["groupdel", name], capture_output=True)


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory the job user can reach: pytest's own temporary tree is root's only."""
    path = Path(tempfile.mkdtemp(prefix="brt-e2e-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_the_job_user_switches_the_sd_card_with_stm_over_ssh(
    tmp_path: Path,
    coordinators: list[Coordinator],
    user: str,
    sshds: list[Sshd],
    stm_group: str,
    public_dir: Path,
) -> None:
    # `stm` needs only the standard library: the job user runs it with the system's python3,
    # as on the board image (the test's virtualenv lies under root's home).
    tools = public_dir / "tools"
    shutil.copytree(
        Path(dryad.__file__).parent, tools / "dryad", ignore=shutil.ignore_patterns("__pycache__")
    )
    socket = public_dir / "stm-user.socket"
    sshds.append(start_sshd(tmp_path / "sshd", user))
    farm = ProcessFarm(tmp_path, coordinators, f'job_username = "{user}"\n', grace=60)
    try:
        control = f'[control]\nuser_socket = "{socket}"\ngroup = "{stm_group}"\n'
        home = farm.dryad(1, "rpi4", sshds[0].port, user, job_groups=(stm_group,), extra=control)
        farm.idle("rpi4")
        access = acquire(farm, new_request(farm, "rpi4"), tmp_path)
        board = home / "board.json"

        def switched_to(mux: str, power: bool) -> bool:
            state = json.loads(board.read_text())
            return state["mux"] == mux and state["power"] is power

        stm = f"PYTHONPATH={tools} /usr/bin/python3 -m dryad.stm_cli -remote {socket}"
        ts = ssh(access, f"{stm} -ts")
        assert ts.returncode == 0, ts.stdout + ts.stderr
        eventually(lambda: switched_to("ts", False))
        dut = ssh(access, f"{stm} -dut")
        assert dut.returncode == 0, dut.stdout + dut.stderr
        eventually(lambda: switched_to("dut", True))

        close(farm, access.rid)
        # The job is over: its user cannot log in to run stm any more.
        assert ssh(access, f"{stm} -ts").returncode == 255
    finally:
        farm.stop_dryads()
