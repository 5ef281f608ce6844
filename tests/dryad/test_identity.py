"""Dryad identity: created once and kept, private modes, enrolment marker, TOFU host key."""

from __future__ import annotations

import stat
import uuid
from pathlib import Path

import asyncssh
import pytest

from dryad.errors import ConfigError, HostKeyMismatch
from dryad.identity import HOST_KEY_FILE, KEY_FILE, UUID_FILE, Identity


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_created_once_and_kept(tmp_path: Path) -> None:
    state = tmp_path / "a" / "state"
    first = Identity.load(state)
    assert uuid.UUID(first.uuid).version == 4
    assert first.key.algorithm == b"ssh-ed25519"
    assert first.public_key.startswith("ssh-ed25519 ")
    again = Identity.load(state)
    assert (again.uuid, again.public_key) == (first.uuid, first.public_key)
    assert sorted(p.name for p in state.iterdir()) == sorted([UUID_FILE, KEY_FILE])
    assert repr(first).count("key") == 0  # the private key stays out of reprs


def test_private_modes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)  # as a package might ship it
    identity = Identity.load(state)
    identity.mark_enrolled("c:1")
    identity.verify_host_key(asyncssh.generate_private_key("ssh-ed25519"), "c:1")
    assert mode(state) == 0o700
    for path in state.iterdir():
        assert mode(path) == 0o600, path


def test_enrolment_marker(tmp_path: Path) -> None:
    identity = Identity.load(tmp_path)
    assert not identity.enrolled
    identity.mark_enrolled("c:1")
    assert identity.enrolled and Identity.load(tmp_path).enrolled
    identity.forget_enrolment()
    identity.forget_enrolment()  # idempotent
    assert not identity.enrolled


def test_a_new_key_forgets_the_enrolment(tmp_path: Path) -> None:
    identity = Identity.load(tmp_path)
    identity.mark_enrolled("c:1")
    (tmp_path / KEY_FILE).unlink()
    again = Identity.load(tmp_path)
    assert again.uuid == identity.uuid and again.public_key != identity.public_key
    assert not again.enrolled


def test_host_key_trusted_on_first_use(tmp_path: Path) -> None:
    identity = Identity.load(tmp_path)
    host = asyncssh.generate_private_key("ssh-ed25519")
    assert identity.trusted_host_key() is None
    identity.verify_host_key(host, "c:1")
    identity.verify_host_key(host, "c:1")  # the same key again: fine
    trusted = Identity.load(tmp_path).trusted_host_key()
    assert trusted is not None and trusted.public_data == host.public_data
    other = asyncssh.generate_private_key("ssh-ed25519")
    with pytest.raises(HostKeyMismatch) as changed:
        identity.verify_host_key(other, "c:1")
    message = str(changed.value)
    assert host.get_fingerprint() in message and other.get_fingerprint() in message
    assert str(tmp_path / HOST_KEY_FILE) in message  # says how to accept a reinstall


def test_a_damaged_host_key_file_is_not_trusted_anew(tmp_path: Path) -> None:
    identity = Identity.load(tmp_path)
    (tmp_path / HOST_KEY_FILE).write_text("garbage\n")
    with pytest.raises(HostKeyMismatch, match="cannot read the trusted coordinator key"):
        identity.verify_host_key(asyncssh.generate_private_key("ssh-ed25519"), "c:1")


def test_damaged_state_is_a_config_error(tmp_path: Path) -> None:
    Identity.load(tmp_path)
    (tmp_path / UUID_FILE).write_text("not-a-uuid\n")
    with pytest.raises(ConfigError, match="holds no UUID"):
        Identity.load(tmp_path)
    (tmp_path / KEY_FILE).write_text("garbage\n")
    with pytest.raises(ConfigError, match="holds no usable key"):
        Identity.load(tmp_path)


def test_an_unusable_state_dir_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="state_dir: cannot use"):
        Identity.load(tmp_path / "file" / "state")


def test_no_temporary_files_are_left(tmp_path: Path) -> None:
    (tmp_path / f".tmp-{UUID_FILE}").write_text("left by a power cut")
    Identity.load(tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
