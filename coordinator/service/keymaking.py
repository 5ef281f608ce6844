"""How one job key is made and written: RSA-2048 as PKCS#1 PEM, Ed25519 in OpenSSH format.

This module imports nothing but ``cryptography``, the domain's ``KeyType`` and the
stdlib-only ``openssh``: the RSA makers run it in processes of their own
(``keys.KeyPool``), which should start fast.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from coordinator.domain.model import KeyType
from coordinator.service import openssh

RSA_BITS = 2048  # docs/boruta-api.md §keys; the Go client parses exactly this PEM form
MAKER_NICENESS = 10  # RSA makers yield the cores to the API (docs/boruta-api.md §keys)
PARENT_CHECK = 1.0  # seconds between a maker's checks that the coordinator still runs

_RSA_HEADER = b"-----BEGIN RSA PRIVATE KEY-----"
_OPENSSH_HEADER = b"-----BEGIN OPENSSH PRIVATE KEY-----"


@dataclass(frozen=True, slots=True)
class JobKey:
    """A private key for the user and the matching ``authorized_keys`` line for the dryad."""

    private_pem: bytes = field(repr=False)
    public_openssh: str
    kind: KeyType = KeyType.RSA


def generate() -> JobKey:
    """A fresh RSA-2048 key; blocking (about 40-60 ms of CPU), so never on the event loop."""
    private, public = rsa_parts()
    return JobKey(private, public, KeyType.RSA)


def rsa_parts() -> tuple[bytes, str]:
    """An RSA key as (PKCS#1 PEM, ``authorized_keys`` line): plain values, so that a maker
    process sends them back cheaply."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # "BEGIN RSA PRIVATE KEY": PKCS#1
        serialization.NoEncryption(),
    )
    return pem, _openssh_public(key.public_key())


def generate_ed25519() -> JobKey:
    """A fresh Ed25519 key (well under a millisecond): made when asked, never stocked."""
    key = ed25519.Ed25519PrivateKey.generate()
    seed, public = key.private_bytes_raw(), key.public_key().public_bytes_raw()
    # Written here rather than by cryptography's serialiser, which costs more than the
    # key's making, on the event loop (docs/boruta-api.md §the openssh key format).
    pem = openssh.private_key_file(seed, public)  # "BEGIN OPENSSH PRIVATE KEY", as ssh reads
    return JobKey(pem, openssh.authorized_key(public), KeyType.ED25519)


def kind_of(private_pem: bytes) -> KeyType | None:
    """The type of a stored private key, read from its PEM header; ``None`` for no key."""
    if private_pem.startswith(_OPENSSH_HEADER):
        return KeyType.ED25519
    if private_pem.startswith(_RSA_HEADER):
        return KeyType.RSA
    return None


def public_of(private_pem: bytes) -> str:
    """The ``authorized_keys`` line of a stored private key, of either type."""
    key = (
        serialization.load_ssh_private_key(private_pem, password=None)
        if kind_of(private_pem) is KeyType.ED25519
        else serialization.load_pem_private_key(private_pem, password=None)
    )
    if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise ValueError("not a job key")
    return _openssh_public(key.public_key())


def maker_started(parent: int) -> None:
    """A maker process's initialiser: run below the API's priority, in its idle time, and
    end with the coordinator.

    A maker waiting for work holds both ends of its task pipe (a multiprocessing queue
    carries them), so it never sees the coordinator go when that is killed outright; a
    thread of its own notices that its parent, the coordinator process ``parent``, is gone
    (its parent changed, even before this ran) and ends the process.
    """
    os.nice(MAKER_NICENESS)
    threading.Thread(target=_end_with, args=(parent,), name="end-with-parent", daemon=True).start()


def _end_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK)
    os._exit(0)  # nothing of a maker's is worth a clean exit: its keys die with the parent


def _openssh_public(key: rsa.RSAPublicKey | ed25519.Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
