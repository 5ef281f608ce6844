"""A board sshd's host public keys as the dryad reports them: one ``type base64`` line each.

The coordinator vouches for these keys to users (docs/boruta-api.md §host keys), whose
``ssh`` then trusts exactly them; a key reaches a ``known_hosts`` file. So every key is
checked wherever it enters (the dryad reading its files, the coordinator reading the
link, the client reading the API): a known type, canonical base64, and a blob that parses
as that type's SSH public key (RFC 4253 section 6.6, RFC 5656 section 3.1, RFC 8709
section 4) with nothing after it. What passes is written back as ``type base64``: a
comment, extra spaces or a newline, which could smuggle a second line into
``known_hosts``, never survive.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from typing import Final

MAX_HOST_KEYS: Final = 8  # keys of one board; OpenSSH makes three by default
# Characters of one ``type base64`` line. OpenSSH's largest RSA key (16384 bits) takes
# about 2,800; the bound keeps a hostile dryad from storing megabytes per worker.
MAX_HOST_KEY_LINE: Final = 4096
MIN_RSA_BITS: Final = 1024  # OpenSSH refuses smaller RSA keys
MAX_RSA_BITS: Final = 16384  # and larger ones

# ECDSA curves: the blob's curve name and the uncompressed point's length (RFC 5656 section 3.1).
_ECDSA: Final = {
    "ecdsa-sha2-nistp256": ("nistp256", 1 + 2 * 32),
    "ecdsa-sha2-nistp384": ("nistp384", 1 + 2 * 48),
    "ecdsa-sha2-nistp521": ("nistp521", 1 + 2 * 66),
}
KEY_TYPES: Final = frozenset({"ssh-ed25519", "ssh-rsa", *_ECDSA})
_BASE64: Final = re.compile(r"[A-Za-z0-9+/]+={0,2}")


class HostKeyRefused(ValueError):
    """A host key line that is not one; ``str()`` says why, without the key itself."""


def host_key(line: str) -> str:
    """``line`` (``type base64 [comment]``, as in a ``.pub`` file) as ``type base64``.

    :raises HostKeyRefused: an unknown type, bad base64, or a blob that is not a key of
        its type.
    """
    if len(line) > MAX_HOST_KEY_LINE:
        raise HostKeyRefused(f"longer than {MAX_HOST_KEY_LINE} characters")
    if not line.isascii() or "\n" in line.strip() or "\r" in line:
        raise HostKeyRefused("not one line of ASCII")
    parts = line.split(maxsplit=2)
    if len(parts) < 2:
        raise HostKeyRefused("not `type base64`")
    kind, text = parts[0], parts[1]
    if kind not in KEY_TYPES:
        raise HostKeyRefused(f"unknown key type {kind[:40]!r}")
    blob = _decode(text)
    _parse(kind, blob)
    return f"{kind} {text}"


def host_keys(lines: Iterable[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """The keys among ``lines`` (duplicates once, at most ``MAX_HOST_KEYS``) and the
    refused ones, each as (what it started with, why): the caller logs them."""
    kept: list[str] = []
    refused: list[tuple[str, str]] = []
    for line in lines:
        try:
            key = host_key(line)
        except HostKeyRefused as exc:
            refused.append((_preview(line), str(exc)))
            continue
        if key in kept:
            continue
        if len(kept) == MAX_HOST_KEYS:
            refused.append((_preview(line), f"more than {MAX_HOST_KEYS} keys"))
            continue
        kept.append(key)
    return kept, refused


def _preview(line: str) -> str:
    """The start of a refused line, safe to log: printable ASCII, short."""
    shown = "".join(c if " " <= c <= "~" else "?" for c in line[:32])
    return shown + ("…" if len(line) > 32 else "")


def _decode(text: str) -> bytes:
    if not _BASE64.fullmatch(text):
        raise HostKeyRefused("the key is not base64")
    try:
        blob = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise HostKeyRefused("the key is not base64") from None
    # One spelling per key: unused bits set, or padding dropped, would make two lines
    # for the same key (and ``known_hosts`` compares blobs, people compare lines).
    if base64.b64encode(blob).decode() != text:
        raise HostKeyRefused("the key is not canonical base64")
    return blob


def _parse(kind: str, blob: bytes) -> None:
    """Check that ``blob`` is an SSH public key of type ``kind``, and nothing more."""
    reader = _Reader(blob)
    if reader.string() != kind.encode():
        raise HostKeyRefused(f"the key's blob is not of type {kind}")
    if kind == "ssh-ed25519":
        if len(reader.string()) != 32:
            raise HostKeyRefused("an Ed25519 key is 32 bytes")
    elif kind == "ssh-rsa":
        exponent, modulus = reader.mpint(), reader.mpint()
        if exponent < 3 or exponent % 2 == 0:
            raise HostKeyRefused("the RSA exponent is not an odd number over 2")
        if not MIN_RSA_BITS <= modulus.bit_length() <= MAX_RSA_BITS:
            raise HostKeyRefused(f"an RSA key has {MIN_RSA_BITS} to {MAX_RSA_BITS} bits")
    else:
        curve, size = _ECDSA[kind]
        if reader.string() != curve.encode():
            raise HostKeyRefused(f"the key's curve is not {curve}")
        point = reader.string()
        if len(point) != size or point[0] != 4:
            raise HostKeyRefused(f"the key's point is not an uncompressed {curve} point")
    if not reader.done:
        raise HostKeyRefused("bytes after the key")


class _Reader:
    """Reads SSH wire types (RFC 4251 section 5) off a blob; running short is a refusal."""

    def __init__(self, blob: bytes) -> None:
        self._blob = blob
        self._at = 0

    @property
    def done(self) -> bool:
        return self._at == len(self._blob)

    def string(self) -> bytes:
        if self._at + 4 > len(self._blob):
            raise HostKeyRefused("the key's blob is cut short")
        size = int.from_bytes(self._blob[self._at : self._at + 4], "big")
        start, self._at = self._at + 4, self._at + 4 + size
        if self._at > len(self._blob):
            raise HostKeyRefused("the key's blob is cut short")
        return self._blob[start : self._at]

    def mpint(self) -> int:
        data = self.string()
        if data and data[0] & 0x80:
            raise HostKeyRefused("a negative number in the key")
        if len(data) > 1 and data[0] == 0 and not data[1] & 0x80:
            raise HostKeyRefused("a number in the key with a needless leading zero")
        return int.from_bytes(data, "big")
