"""The sshd host keys the dryad reports: read from the configured files (bad ones logged and
skipped), or the simulated sshd's own key, and sent afresh at every registration."""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

import anyio
import pytest

from coordinator import wire
from coordinator.wire.hostkeys import MAX_HOST_KEYS, host_key
from dryad.cli import host_keys as key_source
from dryad.errors import ConfigError
from dryad.host_keys import read
from dryad.identity import Identity
from dryad.link import Backoff, Link
from dryad.settings import DEFAULT_HOST_KEYS, parse
from dryad.sim_users import SimJobUsers, job_users
from dryad.users import JobUsers
from tests.dryad.link_doubles import FakeCoordinator, StateLog, settings_for
from tests.host_key_samples import ECDSA_256, ED25519, ED25519_PUB, RSA_2048

pytestmark = pytest.mark.anyio


def _pub(folder: Path, name: str, text: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"ssh_host_{name}_key.pub").write_text(text)


def test_the_files_keys_are_read_in_name_order_without_comments(tmp_path: Path) -> None:
    _pub(tmp_path, "rsa", f"{RSA_2048} root@board\n")
    _pub(tmp_path, "ecdsa", f"{ECDSA_256} root@board\n")
    _pub(tmp_path, "ed25519", ED25519_PUB)
    assert read(str(tmp_path / "ssh_host_*_key.pub")) == (ECDSA_256, ED25519, RSA_2048)


def test_a_bad_or_unreadable_file_is_logged_and_the_others_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _pub(tmp_path, "ed25519", ED25519_PUB)
    _pub(tmp_path, "junk", "ssh-ed25519 AAAA\n")
    (tmp_path / "ssh_host_dir_key.pub").mkdir()
    assert read(str(tmp_path / "ssh_host_*_key.pub")) == (ED25519,)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("ssh_host_junk_key.pub refused: " in w for w in warned)
    assert any("ssh_host_dir_key.pub: unreadable" in w for w in warned)


def test_no_key_at_all_is_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert read(str(tmp_path / "none_*.pub")) == ()
    assert "users' ssh cannot check this board" in caplog.text


def test_at_most_the_limit_is_read(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for n in range(MAX_HOST_KEYS + 1):
        blob = b"\0\0\0\x0bssh-ed25519\0\0\0\x20" + bytes([n]) * 32
        _pub(tmp_path, f"k{n}", f"ssh-ed25519 {base64.b64encode(blob).decode()}\n")
    assert len(read(str(tmp_path / "*.pub"))) == MAX_HOST_KEYS
    assert "over 8 keys" in caplog.text


def test_settings_default_to_the_systems_sshd_keys_and_take_another_glob() -> None:
    assert parse({"coordinator": "h"}).sshd_host_keys == DEFAULT_HOST_KEYS
    custom = parse({"coordinator": "h", "sshd_host_keys": "keys/*.pub"}, base=Path("/etc/b"))
    assert custom.sshd_host_keys == "/etc/b/keys/*.pub"
    with pytest.raises(ConfigError, match="sshd_host_keys: empty"):
        parse({"coordinator": "h", "sshd_host_keys": " "})


def test_a_real_job_user_reports_the_files_and_a_simulated_one_its_own_key(
    tmp_path: Path,
) -> None:
    _pub(tmp_path / "etc", "ed25519", ED25519_PUB)
    real = parse({"coordinator": "h", "sshd_host_keys": str(tmp_path / "etc" / "*.pub")})
    assert key_source(real, JobUsers("boruta-user", (), manage=False))() == (ED25519,)
    sim = parse(
        {
            "coordinator": "h",
            "state_dir": str(tmp_path / "state"),
            "ssh_address": "127.0.0.1:0",
            "job_user": {"simulate": True, "manage": False},
        }
    )
    users = job_users(sim)
    assert isinstance(users, SimJobUsers)
    try:
        (key,) = key_source(sim, users)()
        assert host_key(key) == key and key.startswith("ssh-ed25519 ")
    finally:
        users.server._sock.close()


async def _ignore(method: str, params: dict[str, Any]) -> None:
    return None


async def test_every_registration_reports_the_keys_read_then(
    coordinator: FakeCoordinator, tmp_path: Path
) -> None:
    identity = Identity.load(tmp_path / "state")
    reported = [(ED25519,), (ED25519, RSA_2048)]
    settings = settings_for(coordinator, tmp_path / "state")
    link = Link(settings, identity, backoff=Backoff(0.01, 0.05), host_keys=lambda: reported[0])
    async with anyio.create_task_group() as tg:
        await tg.start(link.run, _ignore, StateLog())
        first = await coordinator.next(wire.REGISTER)
        assert first.params["host_keys"] == [ED25519]
        reported.pop(0)
        first.session.drop()
        second = await coordinator.next(wire.REGISTER)
        assert second.params["host_keys"] == [ED25519, RSA_2048]
        tg.cancel_scope.cancel()
