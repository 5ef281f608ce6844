"""The error tree's machine codes, and the ``Boruta-Error-Code`` header on every error answer
(the bodies stay the original's, byte for byte)."""

from __future__ import annotations

import re

import httpx
import pytest
from starlette.exceptions import HTTPException
from starlette.requests import Request as HttpRequest
from starlette.responses import Response
from starlette.routing import Route

import coordinator.errors
from coordinator.errors import (
    BY_CODE,
    BY_STATUS,
    ERROR_CODE_HEADER,
    BorutaError,
    error_classes,
)
from tests.plugins.app_harness import AppFarm

pytestmark = pytest.mark.anyio

TREE = list(error_classes())
KEBAB = re.compile(r"^[a-z]+(?:-[a-z]+)*$")


def test_every_class_defines_its_own_kebab_case_code() -> None:
    assert BorutaError.code == ""  # the root is abstract
    assert [k.__name__ for k in TREE if "code" not in vars(k)] == []
    assert [k.code for k in TREE if not KEBAB.match(k.code)] == []


def test_codes_are_unique_across_the_tree() -> None:
    codes = [k.code for k in TREE]
    assert sorted(c for c in set(codes) if codes.count(c) > 1) == []
    assert {k for k in TREE if not k.client_side} == set(BY_CODE.values())


def test_the_general_class_of_a_status_has_that_status() -> None:
    assert [s for s, k in BY_STATUS.items() if k.status != s] == []


def test_the_module_docstring_draws_every_class_with_its_code() -> None:
    doc = coordinator.errors.__doc__ or ""
    drawn = {m[0]: m[1] for m in re.findall(r"── (\w+) +(?:\d{3} )?([a-z-]+)", doc)}
    assert drawn == {k.__name__: k.code for k in TREE}


def raising(error: BaseException) -> Route:
    async def endpoint(http: HttpRequest) -> Response:
        raise error

    return Route("/test/raise", endpoint, methods=["GET", "POST"])


async def test_a_service_error_keeps_the_original_body_and_adds_its_code(farm: AppFarm) -> None:
    answer = await farm.get("/api/v1/reqs/99")
    assert (answer.status_code, answer.content) == (404, b'{"message":"Request not found"}')
    assert answer.headers[ERROR_CODE_HEADER] == "not-found"
    answer = await farm.post("/api/v1/reqs/", {"Priority": 99})
    assert answer.content == b'{"message":"invalid request: requested priority out of bounds"}'
    assert answer.headers[ERROR_CODE_HEADER] == "priority-out-of-bounds"
    answer = await farm.post("/api/v1/reqs/", content=b"")
    assert answer.content == b'{"message":"no body provided in HTTP request"}'
    assert answer.headers[ERROR_CODE_HEADER] == "empty-body"


async def test_unauthorized_keeps_its_challenge_and_adds_its_code(farm: AppFarm) -> None:
    answer = await farm.post("/api/v1/reqs/list", as_=None)
    assert answer.status_code == 401
    assert answer.headers[ERROR_CODE_HEADER] == "unauthorized"
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
async def test_an_unknown_path_is_route_not_found(farm: AppFarm, method: str) -> None:
    answer = await farm.call(method, "/api/v1/frobnicate")
    assert answer.status_code == 404
    assert answer.headers[ERROR_CODE_HEADER] == "route-not-found"
    if method != "HEAD":
        assert answer.content == b'{"message":"/api/v1/frobnicate not found"}'


async def test_another_method_is_method_not_allowed_with_allow(farm: AppFarm) -> None:
    answer = await farm.call("PUT", "/api/v1/reqs/")
    assert (answer.status_code, answer.content) == (405, b'{"message":"Method Not Allowed"}')
    assert answer.headers[ERROR_CODE_HEADER] == "method-not-allowed"
    assert answer.headers["Allow"] == "POST"


@pytest.mark.parametrize("path", ["/api/reqs/", "/api/v1/reqs"])
async def test_a_redirect_is_no_error_and_has_no_code(farm: AppFarm, path: str) -> None:
    answer = await farm.post(path)
    assert answer.status_code == 308
    assert ERROR_CODE_HEADER not in answer.headers


async def test_a_bug_answers_the_original_plain_text_with_code_internal(farm: AppFarm) -> None:
    farm.app.router.routes.insert(0, raising(RuntimeError("a secret reason")))
    # As a real server: the bug is answered, not raised into the test.
    transport = httpx.ASGITransport(farm.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://boruta") as client:
        answer = await client.get("/test/raise")
    assert answer.status_code == 500
    assert answer.content == b"Internal Server Error:\nsee the coordinator's log"
    assert answer.headers["Content-Type"].startswith("text/plain")
    assert answer.headers[ERROR_CODE_HEADER] == "internal"


async def test_an_error_without_a_code_of_its_own_is_answered_as_internal(
    farm: AppFarm, caplog: pytest.LogCaptureFixture
) -> None:
    farm.app.router.routes.insert(0, raising(BorutaError("a secret reason")))
    answer = await farm.get("/test/raise")
    assert answer.status_code == 500
    assert answer.content == b"Internal Server Error:\nsee the coordinator's log"
    assert answer.headers[ERROR_CODE_HEADER] == "internal"
    assert "a secret reason" in caplog.text


@pytest.mark.parametrize(
    ("status", "code", "body"),
    [
        (400, "invalid-request", b'{"message":"invalid request: bad form"}'),
        (401, "unauthorized", b'{"message":"bad form"}'),
        (418, "internal", b"Internal Server Error:\nsee the coordinator's log"),
    ],
)
async def test_a_routing_error_of_another_status_is_the_general_class_of_it(
    farm: AppFarm, status: int, code: str, body: bytes
) -> None:
    farm.app.router.routes.insert(0, raising(HTTPException(status, "bad form")))
    answer = await farm.get("/test/raise")
    expected = 500 if code == "internal" else status
    assert (answer.status_code, answer.headers[ERROR_CODE_HEADER]) == (expected, code)
    assert answer.content == body


async def test_the_openapi_error_response_declares_the_code_header(farm: AppFarm) -> None:
    document = (await farm.get("/api/v1/openapi.json", as_=None)).json()
    header = document["components"]["responses"]["Error"]["headers"][ERROR_CODE_HEADER]
    assert header["schema"]["enum"] == sorted(BY_CODE)
