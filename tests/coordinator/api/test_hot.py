"""``HotRoutes``: it takes exactly the paths the router would give the same routes, and what
it answers is byte for byte what the router's path answers."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import given, settings, strategies as st
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Message, Receive, Scope, Send

from coordinator.api.app import HANDLED
from coordinator.api.hot import HotRoutes
from coordinator.errors import Conflict
from tests.plugins.app_harness import AppFarm

pytestmark = pytest.mark.anyio

SEGMENTS = ["", "api", "v1", "reqs", "1", "007", "42", "x", "close", "acquire_worker", "list"]
SEGMENTS += ["prolong", "١", "1.0", " 1", "workers"]
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE"]


async def nowhere(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("only route_for is called")


def router_choice(routes: list[BaseRoute], method: str, path: str) -> tuple[Any, Any]:
    """The route and path parameters Starlette's router hands ``method path`` to."""
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            return route, child["path_params"]
    return None, None


async def test_a_taken_path_is_the_one_the_router_gives_the_same_route(farm: AppFarm) -> None:
    routes = farm.app.routes
    hot = HotRoutes(nowhere, routes, HANDLED)

    @settings(max_examples=400)
    @given(
        method=st.sampled_from(METHODS),
        parts=st.lists(st.sampled_from(SEGMENTS), max_size=6),
        prefix=st.booleans(),
    )
    def check(method: str, parts: list[str], prefix: bool) -> None:
        path = ("/api/v1/reqs/" if prefix else "/") + "/".join(parts)
        taken = hot.route_for(method, path)
        if taken is not None:
            assert (taken[0], taken[1]) == router_choice(routes, method, path)

    check()


@pytest.mark.parametrize(
    ("method", "path", "route_path"),
    [
        ("POST", "/api/v1/reqs/", "/api/v1/reqs/"),
        ("GET", "/api/v1/reqs/12", "/api/v1/reqs/{rid}"),
        ("HEAD", "/api/v1/reqs/12", "/api/v1/reqs/{rid}"),
        ("POST", "/api/v1/reqs/12", "/api/v1/reqs/{rid}"),  # update, on the same path
        ("POST", "/api/v1/reqs/12/acquire_worker", "/api/v1/reqs/{rid}/acquire_worker"),
        ("POST", "/api/v1/reqs/12/close", "/api/v1/reqs/{rid}/close"),
    ],
)
async def test_the_job_cycle_requests_are_taken(
    farm: AppFarm, method: str, path: str, route_path: str
) -> None:
    hot = HotRoutes(nowhere, farm.app.routes, HANDLED)
    taken = hot.route_for(method, path)
    assert taken is not None and taken[0].path == route_path


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/reqs/list"),
        ("GET", "/api/v1/reqs/"),  # a 405 is the router's to give
        ("GET", "/api/v1/reqs/12/close"),
        ("POST", "/api/v1/reqs/x/close"),  # the ID's error is the router's path's
        ("POST", "/api/v1/reqs/12/close/"),  # a redirect
        ("POST", "/api/v1/reqs/12/prolong"),
        ("POST", "/api/v1/reqs//close"),
    ],
)
async def test_other_requests_go_to_the_router(farm: AppFarm, method: str, path: str) -> None:
    hot = HotRoutes(nowhere, farm.app.routes, HANDLED)
    assert hot.route_for(method, path) is None


def test_an_app_without_the_hot_routes_is_refused() -> None:
    async def endpoint(http: Request) -> Response:
        return Response()

    only = [Route("/api/v1/reqs/", endpoint, methods=["POST"])]
    with pytest.raises(ValueError, match=r"/api/v1/reqs/\{rid\}"):
        HotRoutes(nowhere, only, HANDLED)


async def _answers(farm: AppFarm, calls: list[tuple[str, str, dict[str, Any]]]) -> list[Any]:
    out = []
    for method, path, kw in calls:
        answer = await farm.call(method, path, **kw)
        out.append((answer.status_code, sorted(answer.headers.items()), answer.content))
    return out


async def test_the_answers_are_the_routers_byte_for_byte(
    farm: AppFarm, monkeypatch: pytest.MonkeyPatch
) -> None:
    await farm.parked_worker()
    rid = await farm.new_request()
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", f"/api/v1/reqs/{rid}", {}),
        ("HEAD", f"/api/v1/reqs/{rid}", {}),
        ("GET", "/api/v1/reqs/999", {}),  # 404
        ("GET", f"/api/v1/reqs/{rid}", {"as_": None}),  # 401
        ("GET", f"/api/v1/reqs/{rid}", {"headers": {"Authorization": "Bearer nope"}}),
        ("GET", "/api/v1/reqs/99999999999999999999999", {}),  # over uint64
        ("POST", "/api/v1/reqs/", {"content": b"{", "as_": "alice"}),  # 400
        ("POST", "/api/v1/reqs/", {"body": {"Priority": 99}}),
        ("POST", "/api/v1/reqs/", {"body": {}, "headers": {"Content-Type": "text/xml"}}),
        ("POST", "/api/v1/reqs/", {"content": b"x" * (2 << 20)}),  # 413
        ("POST", f"/api/v1/reqs/{rid}/close", {"as_": "bob"}),  # not hers
        ("POST", f"/api/v1/reqs/{rid}/acquire_worker?wait=x", {}),
        ("POST", f"/api/v1/reqs/{rid}/acquire_worker", {}),  # not running yet
        ("POST", "/api/v1/reqs/999/close", {}),
    ]
    hot = await _answers(farm, calls)
    monkeypatch.setattr(HotRoutes, "route_for", lambda *_: None)
    routed = await _answers(farm, calls)
    assert hot == routed
    assert {status for status, *_ in hot} >= {200, 204, 400, 401, 403, 404, 413, 415}


async def test_a_job_cycle_answers_as_through_the_router(
    farm: AppFarm, monkeypatch: pytest.MonkeyPatch
) -> None:
    await farm.idle_worker(1)

    async def cycle() -> list[Any]:
        made = await farm.post("/api/v1/reqs/", {"Priority": 8})
        rid = made.json()["ReqID"]
        acquired = await farm.post(f"/api/v1/reqs/{rid}/acquire_worker?wait=30")
        closed = await farm.post(f"/api/v1/reqs/{rid}/close")
        access = acquired.json()  # a fresh key and port each time: compare the shape
        return [
            (made.status_code, sorted(made.headers), made.content.replace(str(rid).encode(), b"N")),
            (acquired.status_code, sorted(acquired.headers), sorted(access)),
            (closed.status_code, sorted(closed.headers.items()), closed.content),
        ]

    hot = await cycle()
    monkeypatch.setattr(HotRoutes, "route_for", lambda *_: None)
    assert hot == await cycle()
    assert [status for status, *_ in hot] == [201, 200, 204]


async def test_the_metrics_name_the_route_template(farm: AppFarm) -> None:
    rid = await farm.new_request()
    await farm.get(f"/api/v1/reqs/{rid}")
    metrics = await farm.get("/metrics")
    assert 'route="/api/v1/reqs/{rid}"' in metrics.text
    assert f"/api/v1/reqs/{rid}" not in metrics.text


async def _call(hot: HotRoutes, method: str, path: str) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": [], "query_string": b""}
    await hot(scope, receive, send)
    return sent


def _routes(endpoint: Any) -> list[BaseRoute]:
    paths = ["/api/v1/reqs/{rid}", "/api/v1/reqs/{rid}/close"]
    paths += ["/api/v1/reqs/{rid}/acquire_worker"]
    return [
        Route("/api/v1/reqs/", endpoint, methods=["POST"]),
        *(Route(p, endpoint, methods=["GET" if p.endswith("}") else "POST"]) for p in paths),
    ]


async def test_a_handled_error_is_answered_by_its_handler_and_others_go_up() -> None:
    seen: list[Any] = []
    raised: list[BaseException] = [Conflict("busy")]

    async def endpoint(http: Request) -> Response:
        seen.append((http.path_params, http.scope["route"].path))
        raise raised[0]

    async def below(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append("router")

    hot = HotRoutes(below, _routes(endpoint), HANDLED)
    sent = await _call(hot, "POST", "/api/v1/reqs/5/close")
    assert seen == [({"rid": "5"}, "/api/v1/reqs/{rid}/close")]
    assert sent[0]["status"] == 409 and b"busy" in sent[1]["body"]

    raised[0] = RuntimeError("a bug")
    with pytest.raises(RuntimeError, match="a bug"):  # to the server-error layer
        await _call(hot, "POST", "/api/v1/reqs/5/close")

    await _call(hot, "POST", "/api/v1/reqs/5/update")
    assert seen[-1] == "router"


async def test_a_bug_on_a_hot_route_is_the_original_plain_500(
    farm: AppFarm, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("a secret reason")

    monkeypatch.setattr(farm.service, "get_request", broken)
    transport = httpx.ASGITransport(farm.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://boruta") as client:
        answer = await client.get("/api/v1/reqs/1", headers=farm.auth("alice"))
    assert answer.status_code == 500
    assert answer.content == b"Internal Server Error:\nsee the coordinator's log"
