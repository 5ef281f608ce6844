"""Identifier types and the priority range of docs/boruta-api.md §ids."""

from __future__ import annotations

import re
from typing import Final, NewType

RequestID = NewType("RequestID", int)
WorkerUUID = NewType("WorkerUUID", str)

HI_PRIO: Final = 1  # most important
LO_PRIO: Final = 16  # least important
MAX_REQUEST_ID: Final = 2**64 - 1  # the original's ReqID is a uint64

# The original accepts only lower-case UUIDs in URLs (v1/api.go uuidRE).
UUID_RE: Final = re.compile(r"^[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}$")

UUID_CAP: Final = "UUID"  # every worker carries its UUID as a capability


def is_worker_uuid(text: str) -> bool:
    """Tell whether ``text`` is a UUID in the form the original's API accepts."""
    return UUID_RE.fullmatch(text) is not None
