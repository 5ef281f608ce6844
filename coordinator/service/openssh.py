"""An Ed25519 key written in OpenSSH's own formats from its raw bytes: the private key file
(``openssh-key-v1``, unencrypted) and the ``authorized_keys`` line.

``cryptography`` writes the same formats, but through a general serialiser that costs
several times the key's making on the event loop; an unencrypted Ed25519 key is a fixed
layout of a few length-prefixed strings (docs/boruta-api.md §the openssh key format).
"""

from __future__ import annotations

import base64
import os
import struct
from typing import Final

KEY_TYPE: Final = b"ssh-ed25519"
SEED_BYTES: Final = 32  # the private half as RFC 8032 keeps it
PUBLIC_BYTES: Final = 32
LINE_WIDTH: Final = 64  # base64 characters per line of the PEM body, as cryptography writes

_MAGIC: Final = b"openssh-key-v1\0"
_NONE: Final = b"none"
_BLOCK: Final = 8  # the cipher "none"'s block size: the private section pads to it
_BEGIN: Final = b"-----BEGIN OPENSSH PRIVATE KEY-----\n"
_END: Final = b"-----END OPENSSH PRIVATE KEY-----\n"
_U32: Final = struct.Struct(">I")


def _string(data: bytes) -> bytes:
    """SSH's ``string``: a 32-bit big-endian length, then the bytes."""
    return _U32.pack(len(data)) + data


# What every key's file shares up to its public key blob: magic, cipher, KDF, options, count.
_HEAD: Final = _MAGIC + _string(_NONE) + _string(_NONE) + _string(b"") + _U32.pack(1)
_TYPE: Final = _string(KEY_TYPE)
_PADDING: Final = bytes(range(1, _BLOCK + 1))


def public_blob(public: bytes) -> bytes:
    """The public key as SSH encodes it: its type name, then the 32 bytes."""
    _check(public, PUBLIC_BYTES, "public key")
    return _TYPE + _string(public)


def authorized_key(public: bytes) -> str:
    """The ``authorized_keys`` line of an Ed25519 public key (no comment)."""
    return "ssh-ed25519 " + base64.b64encode(public_blob(public)).decode("ascii")


def private_key_file(seed: bytes, public: bytes, check: bytes | None = None) -> bytes:
    """The unencrypted OpenSSH private key file of the key ``seed`` whose public half is
    ``public``; ``check`` is the 4-byte check value (random when not given)."""
    _check(seed, SEED_BYTES, "private key")
    blob = public_blob(public)
    check = os.urandom(4) if check is None else check
    _check(check, 4, "check value")
    # The private half as OpenSSH keeps it: the seed followed by the public key.
    section = check + check + blob + _string(seed + public) + _string(b"")
    section += _PADDING[: -len(section) % _BLOCK]
    body = base64.b64encode(_HEAD + _string(blob) + _string(section))
    lines = [body[i : i + LINE_WIDTH] + b"\n" for i in range(0, len(body), LINE_WIDTH)]
    return _BEGIN + b"".join(lines) + _END


def _check(data: bytes, size: int, what: str) -> None:
    if len(data) != size:
        raise ValueError(f"an Ed25519 {what} is {size} bytes, not {len(data)}")
