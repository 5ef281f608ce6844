"""A schema-driven fuzz run over every operation of the OpenAPI document, as a user and as an
admin: no answer is a server error, and every answer keeps to the document (its status,
content type, headers and body schema).

schemathesis turns the document into hypothesis strategies; the cases go to the app
in-process through the test's own httpx client (on the app's event loop), and schemathesis
checks each answer. Webhook deliveries go to a mock transport: nothing leaves the process.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import anyio
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings, strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from coordinator.api.openapi import openapi_document
from coordinator.assembly import Parts, assemble
from coordinator.domain.clock import FakeClock
from coordinator.settings import Settings
from coordinator.store.sql import SqlStore
from tests.coordinator.doubles import RecordingDryads, RecordingTunnels, uuid_of
from tests.plugins.app_harness import AppFarm, StockKeys, Template

pytestmark = pytest.mark.anyio

MAX_WAIT: Final = 1  # seconds: acquire_worker?wait= blocks for real, so keep it short
EXAMPLES: Final = 20  # cases per operation and token
SCHEMA: Final = schemathesis.openapi.from_dict(openapi_document(MAX_WAIT))
OPERATIONS: Final = [r.ok() for r in SCHEMA.get_all_operations()]  # type: ignore[union-attr]
CHECKS: Final = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
STREAMS: Final = {"/api/v1/events"}  # endless: only the status and headers are checked


def test_every_route_of_the_app_is_in_the_document(tmp_path: Path) -> None:
    store = SqlStore.open(tmp_path / "routes.db")
    try:
        app = assemble(Settings(), Parts(store, RecordingDryads(), RecordingTunnels())).app
    finally:
        store.close()
    documented = {(op.method.upper(), op.path) for op in OPERATIONS}
    served = {
        (method, route.path.replace("{rid}", "{id}"))  # type: ignore[attr-defined]
        for route in app.routes
        for method in getattr(route, "methods", None) or ()
        if method != "HEAD" or route.path in _HEADS  # type: ignore[attr-defined]
    }
    assert served == documented


_HEADS: Final = {"/api/v1/version", "/api/v1/reqs/{rid}", "/api/v1/workers/{uuid}"}


@pytest.fixture
async def fuzzed(tmp_path: Path, template: Template) -> AsyncIterator[AppFarm]:
    """A farm whose webhooks post to a mock, with a few requests and workers to hit."""
    import shutil

    shutil.copyfile(template.path, tmp_path / "boruta.db")
    store = SqlStore.open(tmp_path / "boruta.db")
    dryads, tunnels, clock = RecordingDryads(), RecordingTunnels(), FakeClock()
    coordinator = assemble(
        Settings(max_acquire_wait=MAX_WAIT), Parts(store, dryads, tunnels, clock, StockKeys())
    )
    coordinator.webhooks._transport = httpx.MockTransport(lambda r: httpx.Response(204))
    app = coordinator.app
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app), base_url="http://boruta"
            ) as client,
        ):
            farm = AppFarm(app, client, store, clock, dryads, tunnels, dict(template.tokens))
            await farm.idle_worker(1, {"board": "rpi4"})
            await farm.parked_worker()
            await farm.new_request({"Caps": {"board": "rpi4"}})  # 1: runs on worker 1
            await farm.new_request({"Caps": {"board": "rpi4"}})  # 2: waits
            yield farm
    finally:
        store.close()


KNOWN: Final = st.tuples(
    st.booleans(), st.sampled_from([1, 2]), st.booleans(), st.sampled_from([uuid_of(1), uuid_of(9)])
)


def _known(case: Any, known: tuple[bool, int, bool, str]) -> None:
    """Point some cases at objects that exist, so more than the 404 path is fuzzed."""
    params = case.path_parameters or {}
    if "id" in params and known[0]:
        params["id"] = known[1]
    if "uuid" in params and known[2]:
        params["uuid"] = known[3]


async def _send(farm: AppFarm, case: Any, token: str) -> httpx.Response:
    sent = case.as_transport_kwargs(base_url="http://boruta")
    headers = {k: v for k, v in sent["headers"].items() if k.lower() != "authorization"}
    headers.update(farm.auth(token))
    content: bytes | None = None
    if "json" in sent:  # escaped, so that lone surrogates reach the server as JSON has them
        content = json.dumps(sent["json"]).encode()
    elif sent.get("data") is not None:
        data = sent["data"]
        content = data if isinstance(data, bytes) else str(data).encode("utf-8", "surrogatepass")
    request = farm.client.build_request(
        sent["method"], sent["url"], params=sent.get("params"), headers=headers, content=content
    )
    if case.operation.path in STREAMS:
        return await _head_of_stream(farm, request)
    return await farm.client.send(request)


async def _head_of_stream(farm: AppFarm, request: httpx.Request) -> httpx.Response:
    """The status and headers of an endless answer: httpx's ASGI transport would wait for
    its end, so the app is called here and left once it has started answering."""
    url = request.url
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": url.scheme,
        "path": url.path,
        "raw_path": url.raw_path.split(b"?")[0],
        "query_string": url.query,
        "headers": request.headers.raw,
        "server": ("boruta", 80),
        "client": ("127.0.0.1", 1),
        "root_path": "",
        "state": {},
    }
    started: dict[str, Any] = {}
    body = bytearray()
    done = anyio.Event()

    async def receive() -> dict[str, Any]:
        if not started:
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            started.update(message)
            if message["status"] == 200:  # the stream: its head is all there is to check
                done.set()
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(farm.app, scope, receive, send)  # type: ignore[arg-type]
        with anyio.fail_after(10):
            await done.wait()
        tg.cancel_scope.cancel()
    return httpx.Response(
        started["status"], headers=started["headers"], content=bytes(body), request=request
    )


def _fuzz_test(operation: Any) -> Any:
    """The test of one operation: its cases are drawn before the test's event loop runs
    (a draw inside it could stop the loop with hypothesis's own control exceptions)."""

    @pytest.mark.parametrize("token", ["alice", "root"])
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(), known=KNOWN)
    async def test(fuzzed: AppFarm, token: str, case: Any, known: Any) -> None:
        _known(case, known)
        try:
            response = await _send(fuzzed, case, token)
        except (UnicodeEncodeError, httpx.InvalidURL):  # a case no HTTP client can send
            return
        if operation.path in STREAMS:
            documented = set(operation.definition.raw["responses"])
            assert str(response.status_code) in documented and response.status_code < 500
            return
        case.validate_response(response, checks=CHECKS)

    test.__doc__ = f"{operation.method.upper()} {operation.path} keeps to the document."
    return test


for _operation in OPERATIONS:
    _name = re.sub(r"[^a-z0-9]+", "_", f"{_operation.method} {_operation.path}".lower()).strip("_")
    globals()[f"test_fuzz_{_name}"] = _fuzz_test(_operation)
