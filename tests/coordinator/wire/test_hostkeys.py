"""A board sshd's host keys: real ones of every type pass, junk and near-misses are refused."""

from __future__ import annotations

import base64
import struct

import pytest
from hypothesis import given, strategies as st

from coordinator import wire
from coordinator.wire.hostkeys import (
    MAX_HOST_KEY_LINE,
    MAX_HOST_KEYS,
    HostKeyRefused,
    host_key,
    host_keys,
)
from tests.host_key_samples import ALL, ECDSA_256, ED25519, ED25519_PUB, RSA_2048


def _line(kind: str, *fields: bytes) -> str:
    blob = b"".join(struct.pack(">I", len(f)) + f for f in (kind.encode(), *fields))
    return f"{kind} {base64.b64encode(blob).decode()}"


@pytest.mark.parametrize("key", ALL, ids=lambda k: k.split()[0])
def test_every_key_type_a_board_makes_passes_unchanged(key: str) -> None:
    assert host_key(key) == key


def test_a_pub_files_comment_and_newline_are_dropped() -> None:
    assert host_key(ED25519_PUB) == ED25519
    assert host_key(f"  {ED25519}\t a comment with spaces \n") == ED25519


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("", "not `type base64`"),
        ("ssh-ed25519", "not `type base64`"),
        ("ssh-dss AAAAB3NzaC1kc3M=", "unknown key type 'ssh-dss'"),
        ("ssh-ed25519 not*base64", "not base64"),
        (ECDSA_256.replace("Q4=", "Q5="), "not canonical base64"),  # unused bits set
        (ECDSA_256.removesuffix("="), "not base64"),  # padding dropped
        (ED25519.replace("ssh-ed25519", "ssh-rsa"), "not of type ssh-rsa"),
        (f"{ED25519}\nssh-ed25519 AAAA", "not one line"),
        (f"{ED25519} comment\r", "not one line"),
        (f"{ED25519} café", "not one line of ASCII"),
        (ED25519 + " " + "x" * MAX_HOST_KEY_LINE, f"longer than {MAX_HOST_KEY_LINE}"),
        (_line("ssh-ed25519", b"\x01" * 31), "32 bytes"),
        (_line("ssh-ed25519", b"\x01" * 32, b"more"), "bytes after the key"),
        (_line("ssh-ed25519"), "cut short"),
        (_line("ssh-rsa", b"\x01\x00\x01", b"\x7f" * 64), "1024 to 16384 bits"),
        (_line("ssh-rsa", b"\x02", b"\x7f" * 256), "odd number"),
        (_line("ssh-rsa", b"\x81", b"\x7f" * 256), "negative"),
        (_line("ssh-rsa", b"\x00\x03", b"\x7f" * 256), "needless leading zero"),
        (_line("ecdsa-sha2-nistp256", b"nistp384", b"\x04" * 65), "curve is not nistp256"),
        (_line("ecdsa-sha2-nistp256", b"nistp256", b"\x02" * 33), "not an uncompressed"),
    ],
)
def test_a_line_that_is_not_a_key_is_refused_saying_why(line: str, why: str) -> None:
    with pytest.raises(HostKeyRefused, match=why):
        host_key(line)


@given(st.text(max_size=300))
def test_any_text_is_a_key_or_refused_never_a_crash(line: str) -> None:
    try:
        key = host_key(line)
    except HostKeyRefused:
        return
    assert "\n" not in key and host_key(key) == key


@given(st.sampled_from(ALL), st.data())
def test_a_damaged_key_is_refused_or_still_a_well_formed_key(key: str, data: st.DataObject) -> None:
    kind, text = key.split()
    blob = bytearray(base64.b64decode(text))
    cut = data.draw(st.integers(0, len(blob)))
    at = data.draw(st.integers(0, len(blob) - 1))
    blob[at] ^= data.draw(st.integers(1, 255))
    for damaged in (bytes(blob), bytes(blob[:cut])):
        try:
            again = host_key(f"{kind} {base64.b64encode(damaged).decode()}")
        except HostKeyRefused:
            continue
        assert again.split()[0] == kind  # a flipped bit inside the key's numbers


def test_host_keys_keeps_the_good_drops_duplicates_and_reports_the_bad() -> None:
    kept, refused = host_keys([ED25519_PUB, "junk", ED25519, RSA_2048])
    assert kept == [ED25519, RSA_2048]
    assert refused == [("junk", "not `type base64`")]


def test_host_keys_keeps_at_most_the_limit() -> None:
    many = [_line("ssh-ed25519", bytes([n]) * 32) for n in range(MAX_HOST_KEYS + 1)]
    kept, refused = host_keys(many)
    assert kept == many[:MAX_HOST_KEYS]
    assert refused[0][1] == f"more than {MAX_HOST_KEYS} keys"


def test_a_refused_lines_preview_is_short_printable_ascii() -> None:
    _, refused = host_keys(["\x1b[31m" + "y" * 100])
    assert refused[0][0] == "?[31m" + "y" * 27 + "…"


def test_registration_carries_host_keys_and_bounds_their_list() -> None:
    reg = wire.Registration({"UUID": "u"}, ":22", "1", (ED25519,))
    assert wire.Registration.from_wire(reg.to_wire()) == reg
    assert wire.Registration.from_wire({"caps": {}, "ssh_address": ":22"}).host_keys == ()
    for bad, why in [
        ("ssh-ed25519 AAAA", "list of strings"),
        ([1], "list of strings"),
        ([ED25519] * (MAX_HOST_KEYS + 1), f"over {MAX_HOST_KEYS} keys"),
        (["x" * (MAX_HOST_KEY_LINE + 1)], "host_keys"),
        (["\ud800"], "host_keys"),
    ]:
        with pytest.raises(wire.WireError, match=why):
            wire.Registration.from_wire({"caps": {}, "ssh_address": ":22", "host_keys": bad})
