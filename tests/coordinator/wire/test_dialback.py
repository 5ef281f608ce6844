"""``dial_back``'s messages: a secret of the right size in base64, a real port, a reason."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import given, strategies as st

from coordinator import wire

SECRET = bytes(range(wire.SECRET_SIZE))


def test_the_secret_goes_as_base64_and_comes_back_as_bytes() -> None:
    params = wire.DialBack.of(7176, SECRET)
    assert params.to_wire() == {"port": 7176, "secret": base64.b64encode(SECRET).decode()}
    assert wire.DialBack.from_wire(params.to_wire()).secret_bytes == SECRET


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"port": 0, "secret": "x"}, "port must be an integer in 1..65535"),
        ({"port": 65536, "secret": "x"}, "port must be an integer in 1..65535"),
        ({"port": True, "secret": "x"}, "port must be an integer"),
        ({"port": 7176, "secret": "not base64!"}, "secret must be base64"),
        ({"port": 7176, "secret": base64.b64encode(b"short").decode()}, "must be 32 bytes"),
        ({"port": 7176, "secret": "A" * 500}, "secret must be a string"),
        ({"port": 7176}, "secret must be a string"),
        ([], "expected a JSON object"),
    ],
)
def test_bad_dial_back_params_are_refused(data: Any, message: str) -> None:
    with pytest.raises(wire.WireError, match=message):
        wire.DialBack.from_wire(data)


def test_a_dryads_reason_is_made_showable() -> None:
    long = wire.DialedBack.from_wire({"dialled": False, "reason": "x" * 5000})
    assert len(long.reason) <= wire.limits.MAX_TEXT
    odd = wire.DialedBack.from_wire({"dialled": False, "reason": "bad \ud800"})
    assert odd.reason == "bad \ufffd"
    with pytest.raises(wire.WireError, match="dialled must be a boolean"):
        wire.DialedBack.from_wire({"dialled": "yes"})
    assert wire.DialedBack.from_wire({"dialled": True}) == wire.DialedBack(True)


@given(st.dictionaries(st.text(max_size=10), st.none() | st.integers() | st.text(max_size=60)))
def test_any_json_object_is_read_or_refused_as_a_wire_error(data: dict[str, Any]) -> None:
    for kind in (wire.DialBack, wire.DialedBack):
        try:
            kind.from_wire(data)
        except wire.WireError:
            pass
