"""Boruta's JSON: Go field names, RFC 3339 times, state strings and ``Boruta-*`` headers."""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from coordinator.domain.model import AccessInfo, KeyType, Request, Worker
from coordinator.errors import EmptyBody, InvalidText, MalformedInput, OverLimit
from coordinator.wire import limits, strict_json

if TYPE_CHECKING:  # only annotations: the `boruta` CLI imports this without asyncio
    from coordinator.wire import HealthReport

logger = logging.getLogger(__name__)

SERVER_VERSION: Final = "0.2.1"  # the original release whose API v1 we speak
API_VERSION: Final = "v1"
API_STATE: Final = "devel"
# The job key types a new request may ask for, the original's first (docs/boruta-api.md §keys).
KEY_TYPES: Final = tuple(kind.value for kind in KeyType)

# Go's RFC 3339 parser accepts up to nine fractional digits; Python keeps six.
_TIME_RE: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,  # Go reads ASCII digits only; Python's \d would take "٣" too
)
_GO_ZERO_YEAR: Final = 1  # Go's zero time.Time is 0001-01-01T00:00:00Z: "not set"


# Go's json.Marshal escapes these inside strings (HTML safety); they occur nowhere else.
_GO_ESCAPES: Final = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def dumps(data: object) -> bytes:
    """Compact JSON, as Go's ``json.Marshal`` writes it: UTF-8, ``<>&`` escaped."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return text.translate(_GO_ESCAPES).encode()


def contained(text: str, data: object, what: str) -> bytes:
    """``text`` (the JSON of ``data``) as UTF-8, whatever it holds.

    Text that cannot be encoded (a lone surrogate stored by an older version) is written
    as U+FFFD, as Go writes invalid UTF-8, and logged with the items that hold it: one bad
    row never fails an answer, an event or a webhook that carries it, nor anyone else's
    (docs/boruta-api.md §limits).
    """
    try:
        return text.encode()
    except UnicodeEncodeError:
        logger.warning("%s holds text that is not UTF-8 (%s); sent as U+FFFD", what, _where(data))
        return limits.scrub(text).encode()


def answer_bytes(data: object) -> bytes:
    """``dumps`` for the API's answers, contained as ``contained`` says."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False).translate(_GO_ESCAPES)
    return contained(text, data, "an answer")


def _where(data: object) -> str:
    """Which items of an answer hold bad text, by their ID, UUID or position."""
    items = data if isinstance(data, list) else [data]
    found = [
        str(item.get("ID") or item.get("WorkerUUID") or item.get("id") or n)
        if isinstance(item, dict)
        else str(n)
        for n, item in enumerate(items)
        if any(limits.has_surrogate(t) for t in _texts(item))
    ]
    return "items " + ", ".join(found[:10])


def _texts(data: object) -> Iterator[str]:
    """Every string in ``data``, keys included."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)


# A list answer formats the same few thousand instants again and again; strftime is slow.
@functools.lru_cache(maxsize=1 << 16)
def format_time(when: datetime, *, millis: bool = False) -> str:
    """Go's ``RFC3339Nano``: trailing zeros of the fraction dropped, UTC as ``Z``.

    ``millis`` writes JavaScript's ``toISOString`` form instead, three fraction digits
    always (truncated), as a panel's time has been written since the dashboard came: the
    one form every browser's ``Date`` must read.
    """
    text = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if millis:
        return f"{text}.{when.microsecond // 1000:03d}Z"
    if when.microsecond:
        text += f".{when.microsecond:06d}".rstrip("0")
    return text + "Z"


def parse_time(value: object, field: str) -> datetime | None:
    """An RFC 3339 time; ``None`` for null, absent or Go's zero time."""
    if value is None:
        return None
    if not isinstance(value, str) or not (m := _TIME_RE.fullmatch(value)):
        raise MalformedInput(f"parsing time {json.dumps(value)} in {field}: not RFC 3339")
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    fraction = int((m.group(7) or "0").ljust(6, "0")[:6])
    zone = m.group(8)
    offset = (
        timedelta(0)
        if zone in "Zz"
        else (
            (1 if zone[0] == "+" else -1) * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        )
    )
    try:
        naive = datetime(year, month, day, hour, minute, second, fraction)
        if naive == datetime(_GO_ZERO_YEAR, 1, 1) and not offset:
            return None
        if zone not in "Zz" and (int(zone[1:3]) > 23 or int(zone[4:6]) > 59):
            raise ValueError("time zone offset out of range")  # as Go's parser says
        return (naive - offset).replace(tzinfo=UTC)
    except ValueError as exc:
        raise MalformedInput(f"parsing time {json.dumps(value)} in {field}: {exc}") from None
    except OverflowError:  # year 1 east of UTC, year 9999 west of it
        raise MalformedInput(
            f"parsing time {json.dumps(value)} in {field}: out of the range 0001..9999 in UTC"
        ) from None


def parse_body(raw: bytes) -> Any:
    """Decode a body; an empty one is the original's ``io.EOF`` case. Nesting deeper than
    ``limits.MAX_DEPTH`` and duplicate keys are refused (docs/boruta-api.md §limits)."""
    if not raw.strip():
        raise EmptyBody
    try:
        return strict_json.loads(raw)
    except strict_json.TooDeep as exc:
        raise OverLimit(str(exc)) from None
    except strict_json.BadJson as exc:
        raise MalformedInput(f"malformed JSON: {exc}") from None


def refused(exc: limits.TextRefused) -> MalformedInput:
    """The API's error for text ``wire.limits`` refuses."""
    if isinstance(exc, limits.NotUtf8):
        return InvalidText(str(exc))
    if isinstance(exc, limits.OverLimit):
        return OverLimit(str(exc))
    return MalformedInput(str(exc))


def caps_in(value: object, key: str = "Caps") -> dict[str, str]:
    """Capabilities a caller sends: an object of strings within the limits."""
    caps = string_map(value, key)
    try:
        return limits.caps(caps, key)
    except limits.TextRefused as exc:
        raise refused(exc) from None


def names_in(value: object, key: str) -> list[str]:
    """Group names a caller sends: a list of at most ``MAX_GROUPS`` names."""
    names = string_list(value, key)
    try:
        limits.count(len(names), key, limits.MAX_GROUPS)
        for name in names:
            limits.name(name, f"{key} item")
    except limits.TextRefused as exc:
        raise refused(exc) from None
    return names


def texts_in(value: object, key: str, limit: int = limits.MAX_NAME) -> list[str]:
    """A list of short texts a caller sends (a filter's States)."""
    items = string_list(value, key)
    try:
        limits.count(len(items), key, limits.MAX_LIST)
        for item in items:
            limits.text(item, f"{key} item", limit)
    except limits.TextRefused as exc:
        raise refused(exc) from None
    return items


def text_in(value: str, key: str, limit: int = limits.MAX_TEXT) -> str:
    try:
        return limits.text(value, key, limit)
    except limits.TextRefused as exc:
        raise refused(exc) from None


def expect_object(data: object, what: str) -> Mapping[str, Any]:
    if not isinstance(data, dict):
        raise MalformedInput(f"{what} must be a JSON object")
    return data


def optional_int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedInput(f"{key} must be a whole number")
    return value


def string_map(value: object, key: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise MalformedInput(f"{key} must be an object of strings")
    return value


def string_list(value: object, key: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MalformedInput(f"{key} must be a list of strings")
    return value


def key_type_in(data: Mapping[str, Any], key: str = "KeyType") -> KeyType:
    """The job key a new request asks for; absent or null is the original's RSA
    (docs/boruta-api.md §keys)."""
    value = data.get(key)
    if value is None:
        return KeyType.RSA
    if not isinstance(value, str) or value not in KEY_TYPES:
        raise MalformedInput(f"{key} must be one of: {', '.join(KEY_TYPES)}")
    return KeyType(value)


def request_json(req: Request) -> dict[str, object]:
    """ReqInfo; ``Owner.Name``, ``Reason`` and ``KeyType`` are additive fields old
    clients ignore."""
    body: dict[str, object] = {
        "ID": req.id,
        "Priority": req.priority,
        "Owner": {"Groups": list(req.groups) or None, "Name": req.owner},
        "Deadline": format_time(req.deadline),
        "ValidAfter": format_time(req.valid_after),
        "State": req.state.value,
        "Job": None
        if req.job is None
        else {"WorkerUUID": req.job.worker, "Timeout": format_time(req.job.timeout)},
        # The original writes a request created without Caps as null (a nil Go map); Go's
        # clients read null and {} alike (docs/boruta-api.md §caps null).
        "Caps": _sorted(req.caps) or None,
    }
    if req.reason:
        body["Reason"] = req.reason
    if req.key_type is not KeyType.RSA:  # shown only when asked for: golden bodies stay
        body["KeyType"] = req.key_type.value
    return body


def worker_json(
    worker: Worker,
    connected: bool | None = None,
    health: tuple[datetime, HealthReport] | None = None,
) -> dict[str, object]:
    """WorkerInfo; ``Reason`` (why it FAILED), ``Connected`` (its dryad link) and
    ``Health`` (the last healthcheck results) are additive."""
    body: dict[str, object] = {
        "WorkerUUID": worker.uuid,
        "State": worker.state.value,
        "Groups": list(worker.groups) or None,
        "Caps": _sorted(worker.caps),
    }
    if worker.reason:
        body["Reason"] = worker.reason
    if connected is not None:
        body["Connected"] = connected
    if health is not None:
        body["Health"] = health_json(*health)
    return body


def health_json(at: datetime, report: HealthReport) -> dict[str, object]:
    return {
        "At": format_time(at),
        "Checks": [
            {"Name": c.name, "Passed": c.passed, "Critical": c.critical, "Detail": c.detail}
            for c in report.checks
        ],
    }


def _sorted(caps: Mapping[str, str]) -> dict[str, str]:
    """Go's ``json.Marshal`` writes map keys sorted (byte order, which is code point order)."""
    return dict(sorted(caps.items()))


def access_json(access: AccessInfo) -> dict[str, object]:
    """AccessInfo2: a ``net.TCPAddr``, the private key (PKCS#1 PEM for RSA) and the user
    name; ``HostKeys`` (the sshd host keys the coordinator vouches for) is additive, absent
    when none."""
    body: dict[str, object] = {
        "Addr": {"IP": access.host, "Port": access.port, "Zone": ""},
        "Key": access.key_pem.decode(),
        "Username": access.username,
    }
    if access.host_keys:
        body["HostKeys"] = list(access.host_keys)
    return body


def host_keys_json(worker: Worker) -> dict[str, object]:
    """``GET /api/v1/workers/{uuid}/hostkeys``: the worker sshd's host keys, ``type base64``
    each (docs/boruta-api.md §host keys)."""
    return {"WorkerUUID": worker.uuid, "HostKeys": list(worker.host_keys)}


def version_json() -> dict[str, str]:
    return {"Server": SERVER_VERSION, "API_Version": API_VERSION, "API_State": API_STATE}


def version_headers() -> dict[str, str]:
    return {
        "Boruta-Server-Version": SERVER_VERSION,
        "Boruta-Api-Version": API_VERSION,
        "Boruta-Api-State": API_STATE,
    }


def request_headers(req: Request) -> dict[str, str]:
    headers = {"Boruta-Request-State": req.state.value}
    if req.job is not None and req.state.value == "IN PROGRESS":
        headers["Boruta-Job-Timeout"] = format_time(req.job.timeout)
    return headers


def list_headers(count: int, total: int, remaining: int) -> dict[str, str]:
    return {
        "Boruta-List-Batch-Size": str(count),
        "Boruta-List-Total": str(total),
        "Boruta-List-Remaining": str(remaining),
    }
