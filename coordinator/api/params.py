"""Query and path parameters: ASCII digits only, within stated ranges, or a clear 400.

Python's ``int`` and ``float`` read ``"٣"`` as 3, ``"1_0"`` as 10 and ``float`` reads
``"nan"``; ``str.isdigit`` is true for ``"²"``, which ``int`` then refuses with a
ValueError. The API takes what Go's ``strconv`` takes, ASCII only
(docs/boruta-api.md §limits).
"""

from __future__ import annotations

import re
from typing import Final

from starlette.requests import HTTPConnection

from coordinator.errors import MalformedInput

_WHOLE: Final = re.compile(r"[0-9]{1,20}")
_DECIMAL: Final = re.compile(r"[0-9]{1,20}(?:\.[0-9]{1,9})?")


def only(http: HTTPConnection, name: str) -> str | None:
    """The query parameter ``name``, as ``http.query_params.get(name)`` reads it.

    A query of just ``name=`` and a plain value (ASCII letters, digits, dots) is read here:
    Starlette parses every query into a multi-dict, which cost the hot acquire_worker a
    tenth of its time. Anything else is Starlette's to parse, unchanged."""
    raw: bytes = http.scope["query_string"]
    head = len(name) + 1
    if raw[:head] == f"{name}=".encode() and raw[head:].replace(b".", b"a").isalnum():
        return raw[head:].decode("ascii")
    return http.query_params.get(name)


def is_whole(text: str) -> bool:
    """Whether ``text`` is a whole number in ASCII digits (at most 20 of them)."""
    return _WHOLE.fullmatch(text) is not None


def whole(text: str | None, name: str, default: int, top: int) -> int:
    """A whole number in 0..``top``; ``default`` when absent or empty."""
    if text is None or text == "":
        return default
    if not is_whole(text) or int(text) > top:
        raise MalformedInput(f"{name} must be a whole number from 0 to {top}")
    return int(text)


def seconds(text: str | None, name: str, top: float) -> float | None:
    """A number of seconds in 0..``top`` (a decimal fraction allowed); None when absent."""
    if text is None:
        return None
    if not _DECIMAL.fullmatch(text) or not 0 <= float(text) <= top:
        raise MalformedInput(f"{name} must be a number of seconds from 0 to {top:g}")
    return float(text)
