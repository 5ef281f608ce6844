"""The link's table as Markdown: docs/link-protocol.md is this module's output.

Regenerate the page after changing the table or a message::

    PYTHONPATH=. python -m coordinator.wire.doc > docs/link-protocol.md
"""

from __future__ import annotations

import dataclasses
import json
import sys
import typing
from enum import Enum
from typing import Any, Final

from coordinator.wire import dialback, errors, framing, transport
from coordinator.wire.methods import TABLE, Direction, Method

REGENERATE: Final = "PYTHONPATH=. python -m coordinator.wire.doc > docs/link-protocol.md"

INTRO: Final = f"""\
# The dryad link

<!-- Generated from the table in coordinator/wire/methods.py; do not edit by hand.
     Regenerate with: {REGENERATE} -->

Each board's dryad dials the coordinator over SSH (port {transport.LINK_PORT} by default),
logs in as the user named after its worker UUID with its identity key, and opens one
session channel running the subsystem `{transport.LINK_SUBSYSTEM}`. The whole protocol runs
on that channel.

**Framing.** Both directions carry JSON-RPC 2.0 messages, one JSON object per line: UTF-8,
ended by `\\n`, at most {framing.MAX_LINE} bytes (a longer line closes the channel). Either
end calls and either end serves, on the same channel at the same time: each numbers its own
requests with integer ids, and the answers may come back in any order. A notification has
no id and gets no answer. A line that is not JSON-RPC 2.0 is answered with an error whose id
is `null` and skipped; the link stays up.

**Methods.** Every method is a row of one table, shown below: who calls it, how long the
caller waits for the answer, and the fields of its params and result. Both ends dispatch
incoming calls from the table, so a method that is not in it, or that comes from the wrong
end, is answered with METHOD_NOT_FOUND. Params with a field of the wrong type, a missing
required field, or text that is not valid Unicode (a lone surrogate such as `"\\ud800"`)
are answered with INVALID_PARAMS. Fields a message does not define are ignored, so either
end may add one before the other knows it.

**Job tunnels** are not JSON-RPC: by default each connection is dialled back by the dryad
([dial-back](#dial-back)). For the rest (`tunnel_mode = "link"`, or where a dial-back
cannot come), once registered, the dryad asks for a remote port forward of
`{transport.TUNNEL_HOST}:{transport.TUNNEL_PORT}`. Each user connection to a job's tunnel
carried by the link then reaches the dryad as a forwarded-tcpip channel, which it connects
to its local sshd.
"""

DIAL_BACK_SECTION: Final = f"""\
## dial-back

With `tunnel_mode = "dialback"` (the coordinator's default) a job tunnel's connections do
not ride inside the link. For each user connection to a job's tunnel port the coordinator
calls [`dial_back`](#dial_back) with the port of its dial-back listener and a fresh secret
of {dialback.SECRET_SIZE} random bytes (base64 in the call). The dryad connects to its
local sshd (if that fails it answers REFUSED, and the coordinator tells the user), then
opens a plain TCP connection to that port **at the host it dials the link at** (the board
still needs no inbound port) and sends the {dialback.SECRET_SIZE} raw bytes of the secret
before anything else, then answers `dialled: true`. From then on that connection carries
the user's SSH session unchanged, both ends relaying it by kernel splice; a half-close
passes on as a half-close and a reset as a reset.

The secret is good for one connection and only while the coordinator waits for it (at
most the call's timeout); the coordinator finds it by its SHA-256 and compares it in
constant time. A connection with a wrong, used or expired secret, or no secret in time,
is closed and logged once per source address and minute; the user's connection is not
affected. When the dryad answers `dialled: false` (it could not connect: a firewall), an
older dryad does not know the method, or the dial-back does not arrive in time, the
coordinator carries that connection through the link as below, logs why once for the
worker, and sends that worker's next connections through the link for a few minutes
before it tries again.

The relayed bytes are the user's own end-to-end SSH and are not encrypted again: someone
on the path between board and coordinator sees what they would see of any SSH session,
and could only sit in the middle of it if the user's client accepted a wrong host key.
The relay therefore relies on clients verifying the board's sshd host key (the keys the
dryad reports over this authenticated link, which the coordinator vouches for); a client
that ignores host keys is exposed to such a man in the middle on that path. Where that is
not acceptable, `tunnel_mode = "link"` keeps carrying the bytes inside the link.
"""

ERROR_CODES: Final = (
    ("PARSE_ERROR", "the line is not JSON-RPC 2.0"),
    ("INVALID_REQUEST", "the line was too long (the channel closes)"),
    ("METHOD_NOT_FOUND", "no such method, or not one this end serves"),
    ("INVALID_PARAMS", "the params are not the method's (the message says which field)"),
    ("INTERNAL_ERROR", "the handler failed unexpectedly"),
    ("REFUSED", "understood and refused; the message says why"),
    ("NOT_ENROLLED", "an unknown key called something else than `enrol`"),
    (
        "UNAVAILABLE",
        "understood, but it cannot be decided now (the database, or the farm's leader, "
        "cannot be reached): try again later; a dryad redials with its usual back-off",
    ),
)


def render() -> str:
    """The page docs/link-protocol.md."""
    types: dict[str, type] = {}  # the nested types the fields name, described at the end
    out = [INTRO, DIAL_BACK_SECTION, "## Methods", ""]
    out += ["| method | direction | timeout | params | result |", "| --- | --- | --- | --- | --- |"]
    for row in TABLE.values():
        out.append(
            f"| [`{row}`](#{row}) | {row.direction} | {_timeout(row)} "
            f"| {_name(row.params)} | {_result_name(row)} |"
        )
    for direction in Direction:
        out += ["", f"## {direction}"]
        for row in TABLE.values():
            if row.direction is direction:
                out += _method(row, types)
    out += ["", "## Types", ""]
    done: set[str] = set()
    while pending := sorted(set(types) - done):
        for name in pending:
            out += _type_section(types[name], types)
            done.add(name)
    out += ["## Error codes", "", "| code | name | meaning |", "| --- | --- | --- |"]
    for name, meaning in ERROR_CODES:
        out.append(f"| {getattr(errors, name)} | {name} | {meaning} |")
    return "\n".join(out) + "\n"


def _method(row: Method[Any, Any], types: dict[str, type]) -> list[str]:
    kind = "notification" if row.notification else f"call, answered within {_timeout(row)}"
    out = ["", f"### {row}", "", f"{row.direction}, {kind}. {row.summary}", ""]
    out += [f"**Params** ({_name(row.params)}):", ""]
    out += _fields(row.params, types) or ["none: `{}`", ""]
    if row.notification:
        out += ["**Result:** none (a notification)."]
    elif dataclasses.is_dataclass(row.result):
        out += [f"**Result** ({_name(row.result)}):", ""]
        out += _fields(row.result, types) or ["none: `{}`", ""]
    else:
        out += ["**Result:** `null`."]
    while out[-1] == "":
        out.pop()
    return out


def _fields(cls: Any, types: dict[str, type]) -> list[str]:
    if not dataclasses.is_dataclass(cls) or not dataclasses.fields(cls):
        return []
    hints = typing.get_type_hints(cls)
    out = ["| field | type | presence | meaning |", "| --- | --- | --- | --- |"]
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            presence = f"optional, default `{json.dumps(f.default)}`"
        else:
            presence = "required"
        kind = _json_type(hints[f.name], types)
        out.append(f"| `{f.name}` | {kind} | {presence} | {f.metadata.get('doc', '')} |")
    return [*out, ""]


def _type_section(tp: type, types: dict[str, type]) -> list[str]:
    out = [f"### {tp.__name__}", "", _doc(tp), ""]
    if isinstance(tp, type) and issubclass(tp, Enum):
        out += ["One of " + ", ".join(f'`"{member.value}"`' for member in tp) + ".", ""]
    else:
        out += _fields(tp, types)
    return out


def _json_type(tp: Any, types: dict[str, type]) -> str:
    """How a field's Python type looks in JSON; nested types are noted in ``types``."""
    simple = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if tp in simple:
        return simple[tp]
    if isinstance(tp, type) and (issubclass(tp, Enum) or dataclasses.is_dataclass(tp)):
        types[tp.__name__] = tp
        what = "string" if issubclass(tp, Enum) else "object"
        return f"{what} ([{tp.__name__}](#{tp.__name__.lower()}))"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is dict and args[0] is str:
        return f"object of {_json_type(args[1], types)}s"
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return f"array of {_json_type(args[0], types)}"
    if origin is tuple:
        return "[" + ", ".join(_json_type(arg, types) for arg in args) + "]"
    raise TypeError(f"no JSON rendering for {tp!r}: teach coordinator.wire.doc")


def _timeout(row: Method[Any, Any]) -> str:
    return "—" if row.timeout is None else f"{row.timeout:g} s"


def _name(tp: Any) -> str:
    return f"`{tp.__name__}`" if isinstance(tp, type) else "—"


def _result_name(row: Method[Any, Any]) -> str:
    if row.notification:
        return "— (notification)"
    return _name(row.result) if isinstance(row.result, type) else "`null`"


def _doc(tp: type) -> str:
    return " ".join((tp.__doc__ or "").split())


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
