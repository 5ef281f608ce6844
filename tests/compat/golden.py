"""The original's golden answers (boruta:http/server/api/v1/testdata), as wire facts.

Ours may differ from them only as the design says: times and IDs come from our own clock
and counter; ``Owner`` gains ``Name``; objects may end with additive fields (``Reason``,
``Connected``, ``Health``) after the original's fields, which keep their order.
"""

from __future__ import annotations

import json
from typing import Final

import httpx

ADDITIVE: Final = frozenset({"Reason", "Connected", "Health"})


def with_owner(golden: str, name: str) -> str:
    return golden.replace('"Owner":{"Groups":null}', f'"Owner":{{"Groups":null,"Name":"{name}"}}')


def assert_object_bytes(ours: bytes, golden: str) -> None:
    """``ours`` is ``golden`` byte for byte, possibly followed by additive fields."""
    expected = golden.encode()
    if ours != expected:
        assert ours.startswith(expected[:-1] + b',"'), (ours, expected)
        extra = set(json.loads(ours)) - set(json.loads(expected))
        assert extra <= ADDITIVE, extra


def assert_headers(answer: httpx.Response, golden: dict[str, str]) -> None:
    """Every golden header with its value; ``Content-Length`` matches the body we sent."""
    for name, value in golden.items():
        assert answer.headers.get(name) == value, name
    if answer.status_code != 204 and answer.request.method != "HEAD":
        assert answer.headers["Content-Length"] == str(len(answer.content))
