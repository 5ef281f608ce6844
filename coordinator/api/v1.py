"""The ``/api/v1`` endpoints (docs/boruta-api.md §endpoints), each parse → service → serialize."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request as HttpRequest
from starlette.responses import Response
from starlette.routing import Route

from coordinator import boruta_json as bj
from coordinator.api import bodies, chunks, params
from coordinator.api.auth import Authenticator
from coordinator.domain import listing
from coordinator.domain.ids import MAX_REQUEST_ID, RequestID, WorkerUUID, is_worker_uuid
from coordinator.domain.listing import ListSpec, Page, RequestFilter, WorkerFilter
from coordinator.domain.model import User, Worker
from coordinator.domain.states import WorkerState
from coordinator.errors import (
    BadID,
    BadUUID,
    IDMismatch,
    MalformedInput,
    OverLimit,
    WrongStateArgument,
)
from coordinator.service.operations import Service
from coordinator.wire.limits import MAX_LIST

Endpoint = Callable[[HttpRequest], Awaitable[Response]]


def json_response(
    data: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(bj.answer_bytes(data), status, headers, media_type="application/json")


def no_content() -> Response:
    return Response(status_code=204)


def head_or_json(http: HttpRequest, data: object, headers: Mapping[str, str]) -> Response:
    """HEAD: 204 with the headers, as the Go client's helpers require (docs/boruta-api.md §head)."""
    if http.method == "HEAD":
        return Response(status_code=204, headers=headers)
    return json_response(data, headers=headers)


def parse_request_id(text: str) -> RequestID:
    """Base-10 uint64, as Go's ``strconv.ParseUint`` reads it."""
    if not params.is_whole(text) or int(text) > MAX_REQUEST_ID:
        raise BadID
    return RequestID(int(text))


def parse_worker_uuid(text: str) -> WorkerUUID:
    if not is_worker_uuid(text):
        raise BadUUID
    return WorkerUUID(text)


class V1:
    """The endpoints, bound to one service, one authenticator and a body limit."""

    def __init__(
        self, service: Service, auth: Authenticator, max_body: int, max_wait: float
    ) -> None:
        self._service = service
        self._auth = auth
        self._max_body = max_body
        self._max_wait = max_wait

    def routes(self) -> list[Route]:
        p = "/api/v1"
        return [
            Route(f"{p}/version", self.version, methods=["GET"]),
            Route(f"{p}/reqs/", self.new_request, methods=["POST"]),
            Route(f"{p}/reqs/list", self.list_requests, methods=["POST"]),
            Route(f"{p}/reqs/{{rid}}", self.get_request, methods=["GET"]),
            Route(f"{p}/reqs/{{rid}}", self.update_request, methods=["POST"]),
            Route(f"{p}/reqs/{{rid}}/close", self.close_request, methods=["POST"]),
            Route(f"{p}/reqs/{{rid}}/acquire_worker", self.acquire_worker, methods=["POST"]),
            Route(f"{p}/reqs/{{rid}}/prolong", self.prolong, methods=["POST"]),
            Route(f"{p}/workers/", self.list_workers, methods=["GET", "POST"]),
            Route(f"{p}/workers/list", self.list_workers, methods=["POST"]),
            Route(f"{p}/workers/{{uuid}}", self.get_worker, methods=["GET"]),
            Route(f"{p}/workers/{{uuid}}/hostkeys", self.host_keys, methods=["GET"]),
            Route(f"{p}/workers/{{uuid}}/setstate", self.set_state, methods=["POST"]),
            Route(f"{p}/workers/{{uuid}}/setgroups", self.set_groups, methods=["POST"]),
            Route(f"{p}/workers/{{uuid}}/deregister", self.deregister, methods=["POST"]),
            Route(f"{p}/workers/{{uuid}}/identify", self.identify, methods=["POST"]),
            Route(f"{p}/workers/{{uuid}}/healthcheck", self.healthcheck, methods=["POST"]),
        ]

    # ---- plumbing ------------------------------------------------------------------------

    async def _json(self, http: HttpRequest, *, optional: bool = False) -> Any:
        return await bodies.read_json(http, self._max_body, optional=optional)

    async def _user(self, http: HttpRequest) -> User:
        return await self._auth.user(http)

    # ---- version -------------------------------------------------------------------------

    async def version(self, http: HttpRequest) -> Response:
        return head_or_json(http, bj.version_json(), bj.version_headers())

    # ---- requests ------------------------------------------------------------------------

    async def new_request(self, http: HttpRequest) -> Response:
        user = await self._user(http)
        body = bj.expect_object(await self._json(http), "request")
        priority = bj.optional_int(body, "Priority")
        rid = await self._service.new_request(
            user,
            self._service.policy.default_priority if priority is None else priority,
            bj.caps_in(body.get("Caps"), "Caps"),
            bj.parse_time(body.get("ValidAfter"), "ValidAfter"),
            bj.parse_time(body.get("Deadline"), "Deadline"),
            bj.key_type_in(body),  # our extension (docs/boruta-api.md §keys)
        )
        return json_response({"ReqID": rid}, 201)

    async def list_requests(self, http: HttpRequest) -> Response:
        await self._user(http)
        body = await self._json(http, optional=True)
        spec = _request_list_spec(body)
        return await _page_response(await self._service.list_requests(spec), bj.request_json)

    async def get_request(self, http: HttpRequest) -> Response:
        await self._user(http)
        req = await self._service.get_request(parse_request_id(http.path_params["rid"]))
        headers = bj.request_headers(req)
        position = self._service.queue_position(req.id)
        if position is not None:  # additive: how many waiting requests come first
            headers["Boruta-Queue-Position"] = str(position)
        return head_or_json(http, bj.request_json(req), headers)

    async def update_request(self, http: HttpRequest) -> Response:
        user = await self._user(http)
        rid = parse_request_id(http.path_params["rid"])
        body = bj.expect_object(await self._json(http), "request")
        body_id = bj.optional_int(body, "ID")
        if body_id and body_id != rid:
            raise IDMismatch
        priority = bj.optional_int(body, "Priority")
        await self._service.update_request(
            user,
            rid,
            priority or None,  # zero means "unchanged" (docs/boruta-api.md §update request)
            bj.parse_time(body.get("ValidAfter"), "ValidAfter"),
            bj.parse_time(body.get("Deadline"), "Deadline"),
        )
        return no_content()

    async def close_request(self, http: HttpRequest) -> Response:
        user = await self._user(http)
        await self._service.close_request(user, parse_request_id(http.path_params["rid"]))
        return no_content()

    async def acquire_worker(self, http: HttpRequest) -> Response:
        user = await self._user(http)
        rid = parse_request_id(http.path_params["rid"])
        wait = _wait_seconds(params.only(http, "wait"), self._max_wait)
        access = await self._service.acquire_worker(user, rid, wait)
        return json_response(bj.access_json(access))

    async def prolong(self, http: HttpRequest) -> Response:
        user = await self._user(http)
        await self._service.prolong_access(user, parse_request_id(http.path_params["rid"]))
        return no_content()

    # ---- workers -------------------------------------------------------------------------

    async def list_workers(self, http: HttpRequest) -> Response:
        await self._user(http)
        body = await self._json(http, optional=True)
        spec = _worker_list_spec(body)
        return await _page_response(self._service.list_workers(spec), self._worker_json)

    async def get_worker(self, http: HttpRequest) -> Response:
        await self._user(http)
        worker = self._service.get_worker(parse_worker_uuid(http.path_params["uuid"]))
        headers = {"Boruta-Worker-State": worker.state.value}
        return head_or_json(http, self._worker_json(worker), headers)

    async def host_keys(self, http: HttpRequest) -> Response:
        """Additive: the worker sshd's host keys the coordinator vouches for. Any user may
        read them, as any user may read the worker: they are public keys."""
        await self._user(http)
        worker = self._service.get_worker(parse_worker_uuid(http.path_params["uuid"]))
        return json_response(bj.host_keys_json(worker))

    def _worker_json(self, worker: Worker) -> dict[str, object]:
        uuid = worker.uuid
        return bj.worker_json(
            worker, self._service.connected(uuid), self._service.last_health(uuid)
        )

    async def identify(self, http: HttpRequest) -> Response:
        """Additive: blink the board so someone can find it in the rack (admin)."""
        user = await self._user(http)
        uuid = parse_worker_uuid(http.path_params["uuid"])
        seconds = _wait_seconds(http.query_params.get("seconds", "30"), 600, "seconds")
        await self._service.identify(user, uuid, seconds or 0)
        return no_content()

    async def healthcheck(self, http: HttpRequest) -> Response:
        """Additive: run the worker's healthchecks now and answer their results (admin)."""
        user = await self._user(http)
        uuid = parse_worker_uuid(http.path_params["uuid"])
        report = await self._service.run_healthcheck(user, uuid)
        health = self._service.last_health(uuid)
        return json_response(bj.health_json(health[0], report) if health else None)

    async def set_state(self, http: HttpRequest) -> Response:
        user = await self._user(http)
        uuid = parse_worker_uuid(http.path_params["uuid"])
        body = bj.expect_object(await self._json(http), "state")
        value = body.get("WorkerState")
        if value not in (WorkerState.IDLE.value, WorkerState.MAINTENANCE.value):
            raise WrongStateArgument
        await self._service.set_worker_state(user, uuid, WorkerState(value))
        return json_response(None, 202)

    async def set_groups(self, http: HttpRequest) -> Response:
        user = await self._user(http)
        uuid = parse_worker_uuid(http.path_params["uuid"])
        groups = bj.names_in(await self._json(http), "groups")
        await self._service.set_worker_groups(user, uuid, groups)
        return no_content()

    async def deregister(self, http: HttpRequest) -> Response:
        user = await self._user(http)
        await self._service.deregister(user, parse_worker_uuid(http.path_params["uuid"]))
        return no_content()


def _wait_seconds(text: str | None, limit: float, name: str = "wait") -> float | None:
    return params.seconds(text, name, limit)


async def _page_response(page: Page[Any], to_json: Callable[[Any], object]) -> Response:
    headers = bj.list_headers(len(page.items), page.total, page.remaining)
    body = await chunks.json_list(page.items, to_json)
    return Response(body, 200, headers, media_type="application/json")


def _parts(body: object) -> tuple[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]]:
    """Filter, Sorter and Paginator of a list body; any may be null or absent."""
    if body is None:
        return {}, {}, {}
    data = bj.expect_object(body, "list specification")
    return tuple(  # type: ignore[return-value]
        bj.expect_object(data.get(key) or {}, key) for key in ("Filter", "Sorter", "Paginator")
    )


def _sorter(sorter: Mapping[str, Any]) -> tuple[str, bool]:
    item, order = sorter.get("Item") or "", sorter.get("Order") or ""
    if not isinstance(item, str) or not isinstance(order, str):
        raise MalformedInput("Sorter Item and Order must be strings")
    return item, listing.parse_descending(order)


def _paginator(paginator: Mapping[str, Any]) -> tuple[bool, int]:
    direction = paginator.get("Direction") or ""
    if not isinstance(direction, str):
        raise MalformedInput("Paginator Direction must be a string")
    limit = bj.optional_int(paginator, "Limit") or 0
    if limit < 0:
        raise MalformedInput("Paginator Limit must not be negative")
    return listing.parse_backward(direction), limit


def _int_list(value: object, key: str) -> frozenset[int]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise MalformedInput(f"{key} must be a list of whole numbers")
    if len(value) > MAX_LIST:
        raise OverLimit(f"{key} has more than {MAX_LIST} items")
    return frozenset(value)


def _request_list_spec(body: object) -> ListSpec[Any, RequestID]:
    flt, sorter, paginator = _parts(body)
    item, descending = _sorter(sorter)
    backward, limit = _paginator(paginator)
    anchor = bj.optional_int(paginator, "ID") or 0
    if not 0 <= anchor <= MAX_REQUEST_ID:
        raise MalformedInput(f"Paginator ID must be a whole number from 0 to {MAX_REQUEST_ID}")
    states = bj.texts_in(flt.get("States"), "States")
    return ListSpec(
        match=RequestFilter(
            ids=_int_list(flt.get("IDs"), "IDs"),
            priorities=_int_list(flt.get("Priorities"), "Priorities"),
            states=frozenset(s.strip().upper() for s in states),
        ),
        sort_key=listing.request_sort_key(item),
        descending=descending,
        anchor=RequestID(anchor) if anchor else None,
        backward=backward,
        limit=limit,
    )


def _worker_list_spec(body: object) -> ListSpec[Any, WorkerUUID]:
    flt, sorter, paginator = _parts(body)
    item, descending = _sorter(sorter)
    backward, limit = _paginator(paginator)
    anchor = paginator.get("ID") or ""
    if not isinstance(anchor, str):
        raise MalformedInput("Paginator ID must be a worker UUID string")
    return ListSpec(
        match=WorkerFilter(
            groups=frozenset(bj.texts_in(flt.get("Groups"), "Groups")),
            caps=bj.caps_in(flt.get("Capabilities"), "Capabilities"),
        ),
        sort_key=listing.worker_sort_key(item),
        descending=descending,
        anchor=WorkerUUID(anchor) if anchor else None,
        backward=backward,
        limit=limit,
    )
