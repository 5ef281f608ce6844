"""Each operation as one HTTP call (method, path, body) and the parse of its answer; the sync
and async clients only send them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from coordinator import boruta_json as bj
from coordinator.client.models import (
    RequestInfo,
    TransitionInfo,
    WorkerInfo,
    health_from_json,
)
from coordinator.domain import listing
from coordinator.domain.fairshare import Policy, Scheduling, UsageReport, UserUsage
from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.listing import ListSpec, Page, RequestFilter, WorkerFilter
from coordinator.domain.model import AccessInfo, KeyType
from coordinator.domain.quotas import Quota, Quotas
from coordinator.domain.states import WorkerState
from coordinator.errors import MalformedInput
from coordinator.wire import HealthReport, hostkeys

T = TypeVar("T")

Headers = Mapping[str, str]  # case-insensitive in practice: httpx.Headers
Parse = Callable[[Headers, bytes], T]

ACQUIRE_MARGIN = 10.0  # seconds the HTTP timeout allows beyond an acquire's ``wait``
NO_BODY: Any = object()


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One API call; ``path`` is under ``/api/v1``."""

    method: str
    path: str
    parse: Parse[T]
    body: Any = NO_BODY
    params: Mapping[str, str] | None = None
    timeout: float | None = None  # None: the client's default

    def content(self) -> bytes | None:
        return None if self.body is NO_BODY else bj.dumps(self.body)


def _none(headers: Headers, body: bytes) -> None:
    return None


def _json(body: bytes) -> Any:
    try:
        return bj.parse_body(body)
    except MalformedInput:
        raise MalformedInput(f"the server answered {body[:80]!r}, not JSON") from None


def _time(when: datetime | None) -> str | None:
    return None if when is None else bj.format_time(when)


def version() -> Call[dict[str, str]]:
    return Call("GET", "/version", lambda h, b: {k: str(v) for k, v in _json(b).items()})


def new_request(
    priority: int | None,
    caps: Mapping[str, str],
    valid_after: datetime | None,
    deadline: datetime | None,
    key_type: KeyType = KeyType.ED25519,
) -> Call[RequestID]:
    body: dict[str, object] = {"Caps": dict(caps)}
    if priority is not None:  # absent: the coordinator's default priority
        body["Priority"] = priority
    if key_type is not KeyType.RSA:  # absent: RSA, as the original (docs/boruta-api.md §keys)
        body["KeyType"] = key_type.value
    if valid_after is not None:
        body["ValidAfter"] = _time(valid_after)
    if deadline is not None:
        body["Deadline"] = _time(deadline)
    return Call("POST", "/reqs/", lambda h, b: RequestID(int(_json(b)["ReqID"])), body)


def update_request(
    rid: RequestID,
    priority: int | None,
    valid_after: datetime | None,
    deadline: datetime | None,
) -> Call[None]:
    body: dict[str, object] = {}
    if priority is not None:
        body["Priority"] = priority
    if valid_after is not None:
        body["ValidAfter"] = _time(valid_after)
    if deadline is not None:
        body["Deadline"] = _time(deadline)
    return Call("POST", f"/reqs/{rid}", _none, body)


def close_request(rid: RequestID) -> Call[None]:
    return Call("POST", f"/reqs/{rid}/close", _none)


def prolong_access(rid: RequestID) -> Call[None]:
    return Call("POST", f"/reqs/{rid}/prolong", _none)


def acquire_worker(rid: RequestID, wait: float | None, timeout: float) -> Call[AccessInfo]:
    params = None if wait is None else {"wait": f"{wait:g}"}
    allowed = timeout if wait is None else wait + ACQUIRE_MARGIN
    return Call("POST", f"/reqs/{rid}/acquire_worker", _access, params=params, timeout=allowed)


def _access(headers: Headers, body: bytes) -> AccessInfo:
    data = bj.expect_object(_json(body), "access")
    addr = bj.expect_object(data.get("Addr"), "Addr")
    return AccessInfo(
        str(addr["IP"]),
        int(addr["Port"]),
        str(data["Key"]).encode(),
        str(data["Username"]),
        _host_keys(data.get("HostKeys")),
    )


def _host_keys(value: object) -> tuple[str, ...]:
    """The ``HostKeys`` the coordinator vouches for, each checked again: they go into a
    ``known_hosts`` file (absent: an older coordinator, which vouches for none)."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
        raise MalformedInput("the server's HostKeys is not a list of strings")
    try:
        return tuple(hostkeys.host_key(k) for k in value)
    except hostkeys.HostKeyRefused as exc:
        raise MalformedInput(f"the server vouches for a host key that is not one: {exc}") from None


def worker_host_keys(uuid: WorkerUUID) -> Call[tuple[str, ...]]:
    def parse(headers: Headers, body: bytes) -> tuple[str, ...]:
        return _host_keys(bj.expect_object(_json(body), "host keys").get("HostKeys"))

    return Call("GET", f"/workers/{uuid}/hostkeys", parse)


def get_request(rid: RequestID) -> Call[RequestInfo]:
    return Call("GET", f"/reqs/{rid}", lambda h, b: RequestInfo.from_json(_json(b)))


def queue_position(rid: RequestID) -> Call[int | None]:
    def parse(headers: Headers, body: bytes) -> int | None:
        position = headers.get("Boruta-Queue-Position")
        return None if position is None else int(position)

    return Call("HEAD", f"/reqs/{rid}", parse)


def list_requests(spec: ListSpec[Any, RequestID] | None) -> Call[Page[RequestInfo]]:
    body: dict[str, object] = {}
    if spec is not None:
        flt = spec.match
        if not isinstance(flt, RequestFilter):
            raise TypeError("over HTTP, a request list filter must be a RequestFilter")
        body = _list_body(spec, _sort_item(spec.sort_key, listing.request_sort_key, _REQ_ITEMS))
        body["Filter"] = {
            "IDs": sorted(flt.ids) or None,
            "Priorities": sorted(flt.priorities) or None,
            "States": sorted(flt.states) or None,
        }
    return Call("POST", "/reqs/list", _page(RequestInfo.from_json), body)


def get_worker(uuid: WorkerUUID) -> Call[WorkerInfo]:
    return Call("GET", f"/workers/{uuid}", lambda h, b: WorkerInfo.from_json(_json(b)))


def list_workers(spec: ListSpec[Any, WorkerUUID] | None) -> Call[Page[WorkerInfo]]:
    body: dict[str, object] = {}
    if spec is not None:
        flt = spec.match
        if not isinstance(flt, WorkerFilter):
            raise TypeError("over HTTP, a worker list filter must be a WorkerFilter")
        body = _list_body(spec, _sort_item(spec.sort_key, listing.worker_sort_key, _WORKER_ITEMS))
        body["Filter"] = {"Groups": sorted(flt.groups) or None, "Capabilities": dict(flt.caps)}
    return Call("POST", "/workers/list", _page(WorkerInfo.from_json), body)


def set_worker_state(uuid: WorkerUUID, state: WorkerState) -> Call[None]:
    return Call("POST", f"/workers/{uuid}/setstate", _none, {"WorkerState": state.value})


def set_worker_groups(uuid: WorkerUUID, groups: Iterable[str]) -> Call[None]:
    return Call("POST", f"/workers/{uuid}/setgroups", _none, list(groups))


def deregister(uuid: WorkerUUID) -> Call[None]:
    return Call("POST", f"/workers/{uuid}/deregister", _none)


def identify(uuid: WorkerUUID, seconds: float) -> Call[None]:
    return Call("POST", f"/workers/{uuid}/identify", _none, params={"seconds": f"{seconds:g}"})


def run_healthcheck(uuid: WorkerUUID, timeout: float) -> Call[HealthReport]:
    def parse(headers: Headers, body: bytes) -> HealthReport:
        data = _json(body)
        return HealthReport(()) if data is None else health_from_json(data)[1]

    return Call("POST", f"/workers/{uuid}/healthcheck", parse, timeout=timeout)


def history(kind: str, subject: str, limit: int) -> Call[list[TransitionInfo]]:
    """The latest ``limit`` changes of one request or worker, oldest first (a feed call the
    original does not have: its ``/history`` answers 404)."""
    params = {"kind": kind, "subject": subject, "limit": str(limit)}

    def parse(headers: Headers, body: bytes) -> list[TransitionInfo]:
        data = _json(body)
        if not isinstance(data, list):
            raise MalformedInput("a history answer must be a JSON array")
        return [TransitionInfo.from_json(d) for d in data]

    return Call("GET", "/history", parse, params=params)


_REQ_ITEMS = ("", "id", "priority", "deadline", "validafter", "state")
_WORKER_ITEMS = ("", "uuid", "state", "groups")


def _sort_item(key: Callable[[Any], Any], lookup: Callable[[str], Any], items: Any) -> str:
    """The Sorter Item of a sort key: the domain hands out the same function for a name."""
    for item in items:
        if lookup(item) is key:
            return str(item)
    raise TypeError("over HTTP, sort by a key from listing.request/worker_sort_key")


def _list_body(spec: ListSpec[Any, Any], item: str) -> dict[str, object]:
    paginator: dict[str, object] = {
        "Direction": "backward" if spec.backward else "forward",
        "Limit": spec.limit,
    }
    if spec.anchor is not None:
        paginator["ID"] = spec.anchor
    return {
        "Sorter": {"Item": item, "Order": "descending" if spec.descending else "ascending"},
        "Paginator": paginator,
    }


def _page(item: Callable[[Any], T]) -> Parse[Page[T]]:
    def parse(headers: Headers, body: bytes) -> Page[T]:
        data = _json(body)
        if not isinstance(data, list):
            raise MalformedInput("a list answer must be a JSON array")
        total = int(headers.get("Boruta-List-Total", len(data)))
        remaining = int(headers.get("Boruta-List-Remaining", 0))
        return Page([item(d) for d in data], total, remaining)

    return parse


# ---- quotas, usage and scheduling (docs/scheduling.md §endpoints) -------------------------


def _quota(data: Mapping[str, Any]) -> Quota:
    job = data.get("MaxJobSeconds")
    return Quota(
        data.get("MaxHeld"),
        data.get("MaxWaiting"),
        None if job is None else timedelta(seconds=int(job)),
    )


def _scheduling(data: Mapping[str, Any]) -> Scheduling:
    return Scheduling(Policy(data["Policy"]), timedelta(seconds=int(data["HalfLife"])))


def _quotas(headers: Headers, body: bytes) -> Quotas:
    users: dict[str, Quota] = {}
    groups: dict[str, Quota] = {}
    for row in _json(body):
        (users if row["Kind"] == "user" else groups)[str(row["Name"])] = _quota(row)
    return Quotas(users, groups)


def _usage(headers: Headers, body: bytes) -> UsageReport:
    data = _json(body)
    users = [
        UserUsage(
            str(u["Name"]),
            float(u["Usage"]),
            int(u["Holds"]),
            int(u["Waiting"]),
            _quota(u["Limits"]),
        )
        for u in data["Users"]
    ]
    return UsageReport(_scheduling(data), users)


def _quota_path(kind: str, name: str) -> str:
    if kind not in ("user", "group"):
        raise ValueError(f"a quota is of a user or a group, not {kind!r}")
    return f"/quotas/{kind}s/{quote(name, safe='')}"


def quotas() -> Call[Quotas]:
    return Call("GET", "/quotas", _quotas)


def set_quota(kind: str, name: str, quota: Quota) -> Call[None]:
    job = None if quota.max_job is None else int(quota.max_job.total_seconds())
    body = {"MaxHeld": quota.max_held, "MaxWaiting": quota.max_waiting, "MaxJobSeconds": job}
    return Call("PUT", _quota_path(kind, name), _none, body)


def delete_quota(kind: str, name: str) -> Call[None]:
    return Call("DELETE", _quota_path(kind, name), _none)


def usage() -> Call[UsageReport]:
    return Call("GET", "/usage", _usage)


def scheduling() -> Call[Scheduling]:
    return Call("GET", "/scheduling", lambda h, b: _scheduling(_json(b)))


def set_scheduling(policy: Policy | None, half_life: timedelta | None) -> Call[Scheduling]:
    body: dict[str, object] = {}
    if policy is not None:
        body["Policy"] = policy.value
    if half_life is not None:
        body["HalfLife"] = int(half_life.total_seconds())
    return Call("POST", "/scheduling", lambda h, b: _scheduling(_json(b)), body)
