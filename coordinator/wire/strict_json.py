"""JSON as the coordinator reads it from others: bounded nesting, no duplicate keys.

Python's decoder recurses once per nesting level and ends in ``RecursionError`` on a
megabyte of ``[``; it also lets a later duplicate key silently win. Both are refused here
with ``BadJson`` (a ``ValueError``) saying what is wrong (docs/boruta-api.md §limits).
"""

from __future__ import annotations

import json
from typing import Any

from coordinator.wire.limits import MAX_DEPTH


class BadJson(ValueError):
    """Text that is not JSON, or JSON this module refuses."""


class TooDeep(BadJson):
    """JSON nested deeper than the limit."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise BadJson(f"duplicate key {json.dumps(key)} in a JSON object")
            seen.add(key)
    return data


_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates)


def loads(raw: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """Decode ``raw`` (UTF-8 bytes or text); raises ``BadJson`` saying why not."""
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw
        data = _DECODER.decode(text)
    except RecursionError:
        raise TooDeep(f"JSON nested deeper than {max_depth} levels") from None
    except UnicodeDecodeError as exc:
        raise BadJson(f"not UTF-8: {exc}") from None
    except BadJson:
        raise
    except ValueError as exc:  # JSONDecodeError, and ints over Python's 4300 digits
        raise BadJson(str(exc)) from None
    if depth(data) > max_depth:
        raise TooDeep(f"JSON nested deeper than {max_depth} levels")
    return data


def depth(data: Any) -> int:
    """How deeply arrays and objects nest in ``data`` (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            level += 1
            deepest = max(deepest, level)
            stack.extend((child, level) for child in item if isinstance(child, dict | list))
    return deepest
