"""Line framing and JSON-RPC 2.0 envelopes: one JSON object per ``\\n``-terminated line."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

from coordinator.wire.errors import INTERNAL_ERROR, RpcError, WireError
from coordinator.wire.strict_json import BadJson, loads

MAX_LINE: Final = 1 << 20  # a longer line is a protocol error; the channel is closed


def request(rid: int, method: str, params: dict[str, Any]) -> bytes:
    return _line({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})


def notification(method: str, params: dict[str, Any]) -> bytes:
    return _line({"jsonrpc": "2.0", "method": method, "params": params})


def result(rid: int, value: Any) -> bytes:
    return _line({"jsonrpc": "2.0", "id": rid, "result": value})


def error(rid: int | None, code: int, message: str) -> bytes:
    return _line({"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}})


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


@dataclass(frozen=True, slots=True)
class Incoming:
    """One decoded line: a call (``method`` set) or an answer (``method`` is None)."""

    id: int | None
    method: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: RpcError | None = None


def decode(line: bytes) -> Incoming:
    """Parse one line; raises ``WireError`` for anything that is not JSON-RPC 2.0."""
    if len(line) > MAX_LINE:
        raise WireError("line too long")
    try:
        data = loads(line)
    except BadJson as exc:
        raise WireError(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("jsonrpc") != "2.0":
        raise WireError("not a JSON-RPC 2.0 object")
    rid = data.get("id")
    if rid is not None and (not isinstance(rid, int) or isinstance(rid, bool)):
        raise WireError("id must be an integer")
    method = data.get("method")
    if method is not None:
        params = data.get("params", {})
        if not isinstance(method, str) or not isinstance(params, dict):
            raise WireError("method must be a string and params an object")
        return Incoming(rid, method, params)
    if "error" in data:
        err = data["error"]
        if not isinstance(err, dict):
            raise WireError("error must be an object")
        code = err.get("code", INTERNAL_ERROR)
        if not isinstance(code, int) or isinstance(code, bool):
            raise WireError("an error code must be an integer")
        return Incoming(rid, error=RpcError(code, str(err.get("message", ""))))
    if "result" not in data:
        raise WireError("neither method, result nor error")
    return Incoming(rid, result=data["result"])
