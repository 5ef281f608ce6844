"""The simulated job user: its SSH server, driven by the real OpenSSH client."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from dryad.errors import ConfigError, JobUserError
from dryad.health import check_sshd
from dryad.settings import parse
from dryad.sim_users import SimJobUsers, job_users, with_port
from dryad.users import JobUsers

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the OpenSSH client"),
]

NAME = "boruta-user"


def new_key(folder: Path, name: str = "job") -> tuple[Path, str]:
    """A private key file for ssh and its public line."""
    key = ed25519.Ed25519PrivateKey.generate()
    path = folder / name
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return path, public.decode()


def ssh_argv(port: int, key: Path, user: str = NAME, *more: str) -> list[str]:
    return [
        "ssh", "-F", "/dev/null", "-p", str(port), "-i", str(key),
        "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", *more, f"{user}@127.0.0.1",
    ]  # fmt: skip


async def ssh(
    port: int, key: Path, command: str | None, *, user: str = NAME, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    argv = ssh_argv(port, key, user) + ([command] if command is not None else [])
    return await anyio.run_process(argv, input=stdin, check=False)


@pytest.fixture
async def users(tmp_path: Path) -> AsyncIterator[SimJobUsers]:
    u = SimJobUsers(
        NAME,
        home=tmp_path / "board" / "home",
        state_dir=tmp_path / "board" / "state",
        host="127.0.0.1",
        port=0,
        stm_socket=tmp_path / "board" / "state" / "stm-user.socket",
    )
    async with anyio.create_task_group() as tg:
        await tg.start(u.run)
        yield u
        tg.cancel_scope.cancel()


async def test_only_the_jobs_key_for_the_job_user_logs_in(
    users: SimJobUsers, tmp_path: Path
) -> None:
    key, public = new_key(tmp_path)
    other, _ = new_key(tmp_path, "other")
    assert (await ssh(users.port, key, "true")).returncode == 255  # no job yet
    await users.prepare(public)
    done = await ssh(users.port, key, 'echo "$HOME:$PWD:$BORUTA_STM_SOCKET"; exit 3')
    assert done.returncode == 3
    home = str(tmp_path / "board" / "home")
    socket = tmp_path / "board" / "state" / "stm-user.socket"
    assert done.stdout.decode() == f"{home}:{home}:{socket}\n"
    assert (await ssh(users.port, other, "true")).returncode == 255
    wrong_user = await ssh(users.port, key, "true", user="root")
    assert wrong_user.returncode == 255
    assert b"Permission denied" in wrong_user.stderr


async def test_a_shell_reads_its_script_from_stdin_and_finds_stm(
    users: SimJobUsers, tmp_path: Path
) -> None:
    key, public = new_key(tmp_path)
    await users.prepare(public)
    done = await ssh(users.port, key, None, stdin=b"command -v stm\necho done\n")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert lines[-1] == "done"
    assert lines[-2].endswith("/stm")


async def test_a_terminal_session_runs_a_login_shell(users: SimJobUsers, tmp_path: Path) -> None:
    key, public = new_key(tmp_path)
    await users.prepare(public)
    argv = ssh_argv(users.port, key, NAME, "-tt") + ["tty; stty size; exit 4"]
    done = await anyio.run_process(argv, check=False)
    assert done.returncode == 4
    assert b"/dev/pts/" in done.stdout


async def test_release_ends_sessions_and_processes_and_refuses_the_key(
    users: SimJobUsers, tmp_path: Path
) -> None:
    key, public = new_key(tmp_path)
    await users.prepare(public)
    flag = tmp_path / "escaped"
    # A session that waits, and a process that leaves its session (as nohup/setsid do).
    script = f"setsid sh -c 'sleep 30; touch {flag}' & echo up; sleep 60"
    async with await anyio.open_process([*ssh_argv(users.port, key), script]) as session:
        assert session.stdout is not None
        assert await session.stdout.receive() == b"up\n"
        await users.release()
        with anyio.fail_after(10):  # closed by the server: ssh ends at once, not after 60 s
            assert await session.wait() == 255
    assert (await ssh(users.port, key, "true")).returncode == 255
    assert not users.home.exists()
    marked = await anyio.run_process(["pgrep", "-f", f"touch {flag}"], check=False)
    assert marked.returncode == 1, marked.stdout  # the escaped process is gone too


async def test_a_new_job_gets_a_fresh_home_and_the_old_key_stops(
    users: SimJobUsers, tmp_path: Path
) -> None:
    first, first_public = new_key(tmp_path, "first")
    second, second_public = new_key(tmp_path, "second")
    await users.prepare(first_public)
    assert (await ssh(users.port, first, "touch left-over")).returncode == 0
    await users.prepare(second_public)
    assert (await ssh(users.port, first, "true")).returncode == 255
    assert (await ssh(users.port, second, "ls")).stdout == b""


async def test_a_restarted_dryad_serves_the_running_jobs_key(tmp_path: Path) -> None:
    key, public = new_key(tmp_path)
    board = tmp_path / "board"

    def make() -> SimJobUsers:
        return SimJobUsers(
            NAME, home=board / "home", state_dir=board / "state", host="127.0.0.1", port=0,
            stm_socket=board / "stm.socket",
        )  # fmt: skip

    first = make()
    async with anyio.create_task_group() as tg:
        await tg.start(first.run)
        await first.prepare(public)
        port = first.port
        tg.cancel_scope.cancel()
    again = make()
    assert again.port == port  # kept: a changed port means maintenance
    async with anyio.create_task_group() as tg:
        await tg.start(again.run)
        assert (await ssh(again.port, key, "true")).returncode == 0
        await again.release()
        assert (await ssh(again.port, key, "true")).returncode == 255
        tg.cancel_scope.cancel()


async def test_its_healthcheck_reads_the_banner(users: SimJobUsers) -> None:
    result = await check_sshd(users.port)
    assert result.passed
    assert result.detail.startswith(f"127.0.0.1:{users.port}: SSH-2.0-AsyncSSH")


async def test_a_malformed_key_is_refused_and_changes_nothing(
    users: SimJobUsers, tmp_path: Path
) -> None:
    key, public = new_key(tmp_path)
    await users.prepare(public)
    with pytest.raises(JobUserError, match="malformed public key"):
        await users.prepare("ssh-ed25519 !!!")
    assert (await ssh(users.port, key, "true")).returncode == 0


# ---- configuration --------------------------------------------------------------------------

BASE = {"coordinator": "c:7175", "profile": "sim", "state_dir": "state"}


def test_the_configuration_chooses_the_simulated_user(tmp_path: Path) -> None:
    settings = parse(
        {**BASE, "ssh_address": "127.0.0.1:0",
         "job_user": {"manage": False, "simulate": True, "home": "home"}},
        base=tmp_path,
    )  # fmt: skip
    users = job_users(settings)
    assert isinstance(users, SimJobUsers)
    assert users.home == tmp_path / "home"
    settled = with_port(settings, users)
    assert settled.ssh_address == f"127.0.0.1:{users.port}" != "127.0.0.1:0"
    assert settled.health.sshd_port == users.port
    users.server._sock.close()
    plain = parse({**BASE, "job_user": {"manage": False}}, base=tmp_path)
    assert isinstance(job_users(plain), JobUsers)
    assert with_port(plain, job_users(plain)) is plain


def test_the_default_home_is_in_the_state_directory(tmp_path: Path) -> None:
    settings = parse({**BASE, "job_user": {"manage": False, "simulate": True}}, base=tmp_path)
    assert settings.job_user.home_in(settings.state_dir) == tmp_path / "state" / "job-home"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"job_user": {"simulate": True}}, "job_user.simulate: .* set job_user.manage = false"),
        ({"ssh_address": "127.0.0.1:0"}, r"ssh_address: '0' is not a port number \(1-65535\)"),
        ({"job_user": {"simulate": "yes"}}, "job_user.simulate: expected true or false"),
    ],
)
def test_bad_simulated_user_settings_are_refused(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse({**BASE, **data})


def test_a_busy_address_is_a_configuration_error(tmp_path: Path) -> None:
    first = SimJobUsers(
        NAME, home=tmp_path / "h", state_dir=tmp_path, host="127.0.0.1", port=0,
        stm_socket=tmp_path / "s",
    )  # fmt: skip
    try:
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{first.port}"):
            SimJobUsers(
                NAME, home=tmp_path / "h", state_dir=tmp_path, host="127.0.0.1",
                port=first.port, stm_socket=tmp_path / "s",
            )  # fmt: skip
    finally:
        first.server._sock.close()
    assert os.stat(tmp_path / "sim_ssh_host_key").st_mode & 0o777 == 0o600


def test_a_kept_port_that_is_taken_is_replaced(tmp_path: Path) -> None:
    def make() -> SimJobUsers:
        return SimJobUsers(
            NAME, home=tmp_path / "h", state_dir=tmp_path, host="127.0.0.1", port=0,
            stm_socket=tmp_path / "s",
        )  # fmt: skip

    first = make()  # still listening: the next one cannot have its port
    try:
        second = make()
        ports = first.port, second.port
        second.server._sock.close()
    finally:
        first.server._sock.close()
    assert ports[0] != ports[1]
    assert (tmp_path / "sim_ssh_port").read_text() == f"{ports[1]}\n"


async def test_scp_copies_into_the_jobs_home(users: SimJobUsers, tmp_path: Path) -> None:
    key, public = new_key(tmp_path)
    await users.prepare(public)
    source = tmp_path / "image.txt"
    source.write_text("flash me\n")
    argv = ssh_argv(users.port, key)
    options = argv[1:3] + argv[5:-1]  # -F, -i and the -o options; not ssh's -p nor the host
    done = await anyio.run_process(
        ["scp", "-P", str(users.port), *options, str(source), f"{NAME}@127.0.0.1:copied.txt"],
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (users.home / "copied.txt").read_text() == "flash me\n"
