"""JobUsers: the exact commands, key file modes, exit-code messages, and a real user."""

from __future__ import annotations

import logging
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import anyio
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from dryad.errors import ConfigError, JobUserError
from dryad.users import LIVING, JobUsers, SystemRunner, authorized_key

pytestmark = pytest.mark.anyio

NAME = "boruta-user"
GROUPS = ("disk", "dialout", "stm", "uucp")


def new_key() -> str:
    return (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


KEY = new_key()


class FakeSystem:
    """A recording runner that plays passwd, group, useradd, userdel, pkill and pgrep."""

    def __init__(self, home_root: Path, groups: Sequence[str] = ("disk", "dialout")) -> None:
        self.home_root = home_root
        self.users: dict[str, int] = {}
        self.groups = set(groups)
        self.processes: dict[int, int] = {}  # uid -> processes left
        self.stubborn = 0  # processes that come back after each pkill (forking)
        self.keep_home = False  # userdel "succeeds" but leaves the home
        self.fail: dict[str, tuple[int, str, str]] = {}
        self.calls: list[list[str]] = []

    async def run(self, argv: Sequence[str]) -> tuple[int, str, str]:
        argv = list(argv)
        self.calls.append(argv)
        if argv[0] in self.fail:
            return self.fail[argv[0]]
        name = argv[-1]
        if argv[:2] == ["getent", "passwd"]:
            if name not in self.users:
                return 2, "", ""
            uid = self.users[name]
            return 0, f"{name}:x:{uid}:{uid}::{self.home_root / name}:/bin/sh\n", ""
        if argv[:2] == ["getent", "group"]:
            return (0, f"{name}:x:1:\n", "") if name in self.groups else (2, "", "")
        if argv[0] == "groupadd":
            self.groups.add(name)
            return 0, "", ""
        if argv[0] == "useradd":
            uid = 40000 + len(self.calls)
            self.users[name] = uid
            (self.home_root / name).mkdir()
            (self.home_root / name / ".profile").write_text("skel\n")
            return 0, "", ""
        if argv[0] == "userdel":
            if name not in self.users:
                return 6, "", f"userdel: user '{name}' does not exist\n"
            del self.users[name]
            if not self.keep_home:
                shutil.rmtree(self.home_root / name)
            return 0, "", ""
        if argv[0] == "pkill":
            uid = self.users[name]
            if self.processes.get(uid, 0) == 0:
                return 1, "", ""
            self.processes[uid] = self.stubborn
            return 0, "", ""
        if argv[0] == "pgrep":
            left = self.processes.get(int(name), 0)
            return (0, "4242\n", "") if left else (1, "", "")
        raise AssertionError(f"unexpected command {argv}")


@pytest.fixture
def system(tmp_path: Path) -> FakeSystem:
    return FakeSystem(tmp_path)


def users(system: FakeSystem, groups: Sequence[str] = GROUPS) -> JobUsers:
    return JobUsers(NAME, groups, manage=True, runner=system, home_root=system.home_root)


async def test_prepare_of_a_new_user_runs_the_originals_steps(system: FakeSystem) -> None:
    await users(system).prepare(KEY)
    home = str(system.home_root / NAME)
    assert system.calls == [
        ["getent", "passwd", NAME],
        ["userdel", "-r", "-f", NAME],
        ["getent", "group", "disk"],
        ["getent", "group", "dialout"],
        ["getent", "group", "stm"],
        ["groupadd", "-f", "stm"],
        ["getent", "group", "uucp"],
        ["groupadd", "-f", "uucp"],
        ["useradd", "-p", "*", "-m", "-d", home, "-G", "disk,dialout,stm,uucp", NAME],
        ["getent", "passwd", NAME],
    ]


async def test_the_key_is_the_only_line_with_exact_modes_and_owner(system: FakeSystem) -> None:
    await users(system).prepare(KEY + "\n")
    ssh = system.home_root / NAME / ".ssh"
    keys = ssh / "authorized_keys"
    assert keys.read_text() == KEY + "\n"
    uid = system.users[NAME]
    for path, mode in ((ssh, 0o700), (keys, 0o600)):
        info = path.lstat()
        assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (mode, uid, uid)


async def test_prepare_again_kills_and_recreates_with_the_new_key(system: FakeSystem) -> None:
    jobs = users(system, ())
    await jobs.prepare(KEY)
    (system.home_root / NAME / "job-output").write_text("old job's file")
    system.processes[system.users[NAME]] = 3
    system.calls.clear()
    second = new_key()
    await jobs.prepare(second)
    assert system.calls[:4] == [
        ["getent", "passwd", NAME],
        ["pkill", "-KILL", *LIVING, "-u", NAME],
        ["pkill", "-KILL", *LIVING, "-u", NAME],
        ["userdel", "-r", "-f", NAME],
    ]
    assert system.calls[4][:6] == ["useradd", "-p", "*", "-m", "-d", str(system.home_root / NAME)]
    assert "-G" not in system.calls[4]
    assert not (system.home_root / NAME / "job-output").exists()
    assert (system.home_root / NAME / ".ssh/authorized_keys").read_text() == second + "\n"


async def test_a_leftover_home_of_an_absent_user_is_not_adopted(system: FakeSystem) -> None:
    (system.home_root / NAME / ".ssh").mkdir(parents=True)
    (system.home_root / NAME / ".ssh/authorized_keys").write_text("ssh-ed25519 AAAA stranger\n")
    await users(system, ()).prepare(KEY)
    assert (system.home_root / NAME / ".ssh/authorized_keys").read_text() == KEY + "\n"


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "empty public key"),
        ("   \n", "empty public key"),
        ("ssh-ed25519", "malformed public key"),
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "malformed public key"),
        ("ssh-ed25519 not*base64", "does not decode"),
        (KEY.replace("ssh-ed25519", "ssh-rsa"), "is a 'ssh-ed25519' key, not ssh-rsa"),
        (KEY + "\n" + KEY, "malformed public key"),
        ('command="sh" ' + KEY, "malformed public key"),
    ],
)
async def test_bad_keys_are_refused_before_anything_runs(
    system: FakeSystem, key: str, message: str
) -> None:
    with pytest.raises(JobUserError, match=message):
        await users(system).prepare(key)
    assert system.calls == []


def test_a_comment_is_kept_on_the_one_line() -> None:
    assert authorized_key(f"  {KEY} alice@laptop \n") == f"{KEY} alice@laptop\n"


def _rsa_line() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    return key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()


@pytest.mark.parametrize("line", [KEY, _rsa_line()], ids=["ssh-ed25519", "ssh-rsa"])
async def test_either_job_key_type_the_coordinator_makes_is_installed(
    system: FakeSystem, line: str
) -> None:
    """The coordinator gives an Ed25519 key to clients that ask and RSA to the others."""
    await users(system).prepare(line)
    assert (system.home_root / NAME / ".ssh" / "authorized_keys").read_text() == line + "\n"


@pytest.mark.parametrize(
    ("command", "code", "message"),
    [
        ("useradd", 9, "useradd boruta-user failed: username already in use \\(exit 9\\)"),
        ("useradd", 12, "can't create home directory"),
        ("useradd", 6, "specified group doesn't exist"),
        ("useradd", 77, "useradd boruta-user failed: useradd: oops \\(exit 77\\)"),
        ("userdel", 8, "userdel boruta-user failed: user currently logged in"),
        ("userdel", 12, "can't remove home directory"),
        ("userdel", 1, "can't update password file"),
        ("groupadd", 10, "groupadd boruta-user failed: groupadd: oops"),
    ],
)
async def test_exit_codes_become_the_originals_messages(
    system: FakeSystem, command: str, code: int, message: str
) -> None:
    system.fail[command] = (code, "", f"{command}: oops\n")
    with pytest.raises(JobUserError, match=message):
        await users(system).prepare(KEY)


async def test_userdel_of_an_absent_user_is_fine(system: FakeSystem) -> None:
    await users(system).release()
    assert system.calls == [
        ["getent", "passwd", NAME],
        ["userdel", "-r", "-f", NAME],
        ["getent", "passwd", NAME],
    ]


async def test_release_kills_removes_and_verifies(system: FakeSystem) -> None:
    jobs = users(system, ())
    await jobs.prepare(KEY)
    uid = system.users[NAME]
    system.processes[uid] = 5
    system.calls.clear()
    await jobs.release()
    assert system.calls == [
        ["getent", "passwd", NAME],
        ["pkill", "-KILL", *LIVING, "-u", NAME],
        ["pkill", "-KILL", *LIVING, "-u", NAME],
        ["userdel", "-r", "-f", NAME],
        ["getent", "passwd", NAME],
        ["pgrep", *LIVING, "-u", str(uid)],
    ]
    assert not (system.home_root / NAME).exists()


async def test_release_fails_when_the_home_remains(system: FakeSystem) -> None:
    jobs = users(system, ())
    await jobs.prepare(KEY)
    system.keep_home = True
    with pytest.raises(JobUserError, match=f"not removed: its home {system.home_root / NAME}"):
        await jobs.release()


async def test_release_fails_when_a_process_survives(system: FakeSystem) -> None:
    jobs = users(system, ())
    await jobs.prepare(KEY)
    uid = system.users[NAME]
    system.processes[uid] = 1
    system.fail["pkill"] = (1, "", "")  # a process pkill cannot see, still there after userdel
    with pytest.raises(JobUserError, match=f"processes of uid {uid} \\(4242\\)"):
        await jobs.release()


async def test_release_fails_when_the_passwd_entry_remains(system: FakeSystem) -> None:
    jobs = users(system, ())
    await jobs.prepare(KEY)
    system.fail["userdel"] = (0, "", "")
    with pytest.raises(JobUserError, match="its passwd entry"):
        await jobs.release()


@pytest.mark.slow
async def test_a_forking_user_is_killed_in_bounded_rounds(system: FakeSystem) -> None:
    jobs = users(system, ())
    await jobs.prepare(KEY)
    system.processes[system.users[NAME]] = 1
    system.stubborn = 1
    with pytest.raises(JobUserError, match="survive 20 rounds of pkill -KILL"):
        await jobs.release()


async def test_unmanaged_users_warn_once_and_do_nothing(
    system: FakeSystem, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="dryad.users"):
        jobs = JobUsers(NAME, GROUPS, manage=False, runner=system)
        await jobs.prepare(KEY)
        await jobs.release()
    assert [r.message for r in caplog.records] == ["job users are not managed on this dryad"]
    assert system.calls == []


async def test_keys_stay_out_of_the_log(
    system: FakeSystem, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        await users(system).prepare(KEY)
        with pytest.raises(JobUserError):
            await users(system).prepare(KEY.split()[0] + " AAAA" + KEY.split()[1])
    assert KEY.split()[1] not in caplog.text


@pytest.mark.parametrize("name", ["root:x", "../etc", "Alice", "", "a" * 40])
def test_unsafe_names_are_a_configuration_error(name: str) -> None:
    with pytest.raises(ConfigError, match="not a valid user or group name"):
        JobUsers(name, (), manage=True)
    with pytest.raises(ConfigError):
        JobUsers(NAME, (name,), manage=True)


# ---- the real thing ---------------------------------------------------------------------


@pytest.fixture
def real_name() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("creating system users needs root and shadow's useradd")
    name = f"brt-test-{secrets.token_hex(4)}"
    try:
        yield name
    finally:
        # Always clean up, even when the test failed half-way.
        subprocess.run(["pkill", "-KILL", "-u", name], check=False, capture_output=True)
        subprocess.run(["userdel", "-r", "-f", name], check=False, capture_output=True)
        subprocess.run(["groupdel", f"{name}-g"], check=False, capture_output=True)


async def test_a_real_user_is_created_keyed_and_removed_with_its_processes(
    real_name: str, tmp_path: Path
) -> None:
    group = f"{real_name}-g"  # missing: prepare must create it
    jobs = JobUsers(real_name, [group], manage=True, runner=SystemRunner(), home_root=tmp_path)
    await jobs.prepare(KEY)
    entry = pwd.getpwnam(real_name)
    home = tmp_path / real_name
    assert entry.pw_dir == str(home)
    keys = home / ".ssh" / "authorized_keys"
    assert keys.read_text() == KEY + "\n"
    assert (keys.stat().st_uid, stat.S_IMODE(keys.stat().st_mode)) == (entry.pw_uid, 0o600)
    assert stat.S_IMODE((home / ".ssh").stat().st_mode) == 0o700
    groups = await anyio.run_process(["id", "-nG", real_name])
    assert group in groups.stdout.decode().split()

    # A daemonised process of the job user: it left its session and its parent.
    setpriv = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups"]
    # Its output goes nowhere: a pipe it held open would keep run_process waiting.
    daemon = [*setpriv, "setsid", "-f", "sleep", "600"]
    await anyio.run_process(daemon, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    alive = await anyio.run_process(["pgrep", "-u", str(entry.pw_uid)], check=False)
    assert alive.returncode == 0

    second = new_key()
    await jobs.prepare(second)  # the next job: the old sleep is gone, a new key
    assert keys.read_text() == second + "\n"

    await jobs.release()
    with pytest.raises(KeyError):
        pwd.getpwnam(real_name)
    assert not home.exists()
    gone = await anyio.run_process(["pgrep", *LIVING, "-u", str(entry.pw_uid)], check=False)
    assert gone.returncode == 1


def zombie_of(entry: pwd.struct_passwd) -> subprocess.Popen[bytes]:
    """A process of the user that exited and that its parent (this test) has not reaped.

    SIGKILL cannot remove it; only the parent's wait can.
    """
    setpriv = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups"]
    child = subprocess.Popen([*setpriv, "true"])
    for _ in range(500):
        if Path(f"/proc/{child.pid}/stat").read_text().split(") ")[1][0] == "Z":
            return child
        time.sleep(0.01)
    child.wait()
    raise AssertionError("the child never became a zombie")


async def test_a_zombie_of_the_job_user_does_not_block_its_release(
    real_name: str, tmp_path: Path
) -> None:
    jobs = JobUsers(real_name, [], manage=True, runner=SystemRunner(), home_root=tmp_path)
    await jobs.prepare(KEY)
    entry = pwd.getpwnam(real_name)
    child = zombie_of(entry)
    try:
        await jobs.prepare(new_key())
        await jobs.release()
        with pytest.raises(KeyError):
            pwd.getpwnam(real_name)
    finally:
        child.wait()
