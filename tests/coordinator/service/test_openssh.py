"""The Ed25519 key file and ``authorized_keys`` line we write: what cryptography writes,
byte for byte, and what ``ssh-keygen`` and cryptography read back."""

from __future__ import annotations

import base64
import struct
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings, strategies as st

from coordinator.service import openssh
from coordinator.service.keymaking import generate_ed25519

seeds = st.binary(min_size=32, max_size=32)


def _parts(seed: bytes) -> tuple[ed25519.Ed25519PrivateKey, bytes]:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    return key, key.public_key().public_bytes_raw()


def _check_value(pem: bytes) -> bytes:
    """The 4-byte check value of an unencrypted one-key ``openssh-key-v1`` file."""
    raw = base64.b64decode(b"".join(pem.splitlines()[1:-1]))
    at = len(b"openssh-key-v1\0")
    for _ in range(3):  # cipher, KDF, KDF options
        at += 4 + struct.unpack(">I", raw[at : at + 4])[0]
    at += 4  # the number of keys
    at += 4 + struct.unpack(">I", raw[at : at + 4])[0]  # the public key blob
    return raw[at + 4 : at + 8]  # past the private section's length


@settings(max_examples=300)
@given(seeds)
def test_the_file_is_what_cryptography_writes_for_the_same_check_value(seed: bytes) -> None:
    key, public = _parts(seed)
    theirs = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    assert openssh.private_key_file(seed, public, _check_value(theirs)) == theirs


@settings(max_examples=300)
@given(seeds)
def test_cryptography_loads_the_file_as_the_same_key(seed: bytes) -> None:
    _, public = _parts(seed)
    loaded = serialization.load_ssh_private_key(
        openssh.private_key_file(seed, public), password=None
    )
    assert isinstance(loaded, ed25519.Ed25519PrivateKey)
    assert loaded.private_bytes_raw() == seed
    assert loaded.public_key().public_bytes_raw() == public


@settings(max_examples=300)
@given(seeds)
def test_the_authorized_keys_line_is_what_cryptography_writes(seed: bytes) -> None:
    key, public = _parts(seed)
    theirs = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    assert openssh.authorized_key(public) == theirs.decode()


def test_ssh_keygen_reads_the_file_and_derives_the_same_public_key(tmp_path: Path) -> None:
    for n in range(8):
        key = generate_ed25519()
        path = tmp_path / f"key{n}"
        path.write_bytes(key.private_pem)
        path.chmod(0o600)  # ssh-keygen refuses a private key others may read
        derived = subprocess.run(
            ["ssh-keygen", "-y", "-f", str(path)], capture_output=True, check=True, text=True
        )
        assert derived.stdout.split()[:2] == key.public_openssh.split()


def test_two_files_of_one_key_differ_only_by_their_random_check_value() -> None:
    _, public = _parts(bytes(range(32)))
    first = openssh.private_key_file(bytes(range(32)), public)
    second = openssh.private_key_file(bytes(range(32)), public)
    for made in (first, second):
        assert openssh.private_key_file(bytes(range(32)), public, _check_value(made)) == made


@pytest.mark.parametrize(
    ("seed", "public", "check", "what"),
    [
        (b"\0" * 31, b"\0" * 32, None, "private key is 32 bytes, not 31"),
        (b"\0" * 32, b"\0" * 33, None, "public key is 32 bytes, not 33"),
        (b"\0" * 32, b"\0" * 32, b"abc", "check value is 4 bytes, not 3"),
    ],
)
def test_parts_of_the_wrong_size_are_refused_by_name(
    seed: bytes, public: bytes, check: bytes | None, what: str
) -> None:
    with pytest.raises(ValueError, match=what):
        openssh.private_key_file(seed, public, check)


def test_a_public_key_of_the_wrong_size_gets_no_line() -> None:
    with pytest.raises(ValueError, match="public key is 32 bytes, not 0"):
        openssh.authorized_key(b"")
