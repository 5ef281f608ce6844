"""Original routing (docs/boruta-api.md §routing): 308 to the default version and across a trailing
slash, keeping the query; 404 as ``{"message":"<path> not found"}``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.plugins.app_harness import AppFarm

pytestmark = pytest.mark.anyio

ORIGIN = "http://boruta"
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]


@pytest.mark.parametrize("method", ALL_METHODS)
async def test_an_unversioned_api_path_redirects_308_to_v1_keeping_the_query(
    farm: AppFarm, method: str
) -> None:
    answer = await farm.call(method, "/api/reqs/list?a=1&b=two")
    assert answer.status_code == 308
    assert answer.headers["Location"] == "/api/v1/reqs/list?a=1&b=two"


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/api/version", "/api/v1/version"),
        ("/api/workers/", "/api/v1/workers/"),
        ("/api/", "/api/v1/"),
        ("/api/v2/reqs/", "/api/v1/v2/reqs/"),  # any first segment but v1 is "no version"
    ],
)
async def test_unversioned_paths_redirect_without_credentials(
    farm: AppFarm, path: str, location: str
) -> None:
    answer = await farm.get(path, as_=None)
    assert (answer.status_code, answer.headers["Location"]) == (308, location)


async def test_following_the_redirect_reaches_the_v1_list(farm: AppFarm) -> None:
    await farm.worker(1)
    answer = await farm.client.post(
        "/api/workers/list", headers=farm.auth("alice"), follow_redirects=True
    )
    assert answer.status_code == 200 and answer.headers["Boruta-List-Total"] == "1"
    assert str(answer.url) == "http://boruta/api/v1/workers/list"


@pytest.mark.parametrize(
    ("method", "path", "location"),
    [
        ("POST", "/api/v1/reqs", "/api/v1/reqs/"),
        ("GET", "/api/v1/workers", "/api/v1/workers/"),
        ("GET", "/api/v1/workers?x=1", "/api/v1/workers/?x=1"),
        ("POST", "/api/v1/reqs/list/", "/api/v1/reqs/list"),
        ("POST", "/api/v1/reqs/1/close/", "/api/v1/reqs/1/close"),
        ("GET", "/api/v1/version/", "/api/v1/version"),
    ],
)
async def test_a_trailing_slash_mismatch_redirects_308(
    farm: AppFarm, method: str, path: str, location: str
) -> None:
    answer = await farm.call(method, path)
    assert (answer.status_code, answer.headers["Location"]) == (308, location)
    assert answer.content == b""


@pytest.mark.parametrize(
    "path", ["/api/v1/nothing", "/api/v1/reqs/1/frobnicate", "/api/v1/v2/reqs/", "/elsewhere"]
)
async def test_an_unknown_path_is_404_path_not_found(farm: AppFarm, path: str) -> None:
    answer = await farm.post(path)
    assert answer.status_code == 404
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.content == b'{"message":"%s not found"}' % path.encode()


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("PUT", "/api/v1/reqs/", {"POST"}), ("POST", "/api/v1/version", {"GET", "HEAD"})],
)
async def test_a_known_path_with_another_method_is_405_with_allow(
    farm: AppFarm, method: str, path: str, allowed: set[str]
) -> None:
    answer = await farm.call(method, path)
    assert (answer.status_code, answer.json()) == (405, {"message": "Method Not Allowed"})
    assert set(answer.headers["Allow"].split(", ")) == allowed


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("//api/v1//version", "/api/v1/version"),
        ("//api/v1/reqs/", "/api/v1/reqs"),  # then the trailing-slash rule, as the original
        ("//api//reqs/list?x=1", "/api/reqs/list?x=1"),  # then the unversioned rule
    ],
)
async def test_an_unclean_path_redirects_308_to_the_clean_path(
    farm: AppFarm, path: str, location: str
) -> None:
    # A full URL: httpx would read a path that starts with "//" as a host name.
    method = "POST" if "reqs" in path else "HEAD"
    answer = await farm.call(method, ORIGIN + path, as_=None)
    assert (answer.status_code, answer.headers["Location"]) == (308, location)


@pytest.mark.parametrize("path", ["//api/v1//nothing", "/elsewhere//x", "//nowhere//"])
async def test_an_unclean_path_that_leads_nowhere_is_404(farm: AppFarm, path: str) -> None:
    answer = await farm.post(ORIGIN + path)
    assert answer.status_code == 404
    assert answer.json() == {"message": f"{path} not found"}


# Every call of the unchanged Go client (docs/boruta-api.md §routing): its URL is the base
# URL + "/api/v1/" + the call's suffix; Version() adds "/version" to that prefix.
GO_CALLS = [
    ("POST", "reqs/", {"Priority": 8, "Caps": {"board": "rpi4"}}, 201),
    ("GET", "reqs/{rid}", None, 200),
    ("HEAD", "reqs/{rid}", None, 204),
    ("POST", "reqs/{rid}", {"ReqID": "{rid}", "Priority": 7}, 204),
    ("POST", "reqs/list", {}, 200),
    ("POST", "reqs/{rid}/acquire_worker", None, 400),  # still WAITING: worker not assigned
    ("POST", "reqs/{rid}/prolong", None, 400),
    ("POST", "workers/list", {}, 200),
    ("GET", "workers/{uuid}", None, 200),
    ("HEAD", "workers/{uuid}", None, 204),
    ("POST", "workers/{uuid}/setgroups", ["lab"], 204),
    ("POST", "workers/{uuid}/setstate", {"WorkerState": "MAINTENANCE"}, 202),
    ("HEAD", "/version", None, 204),
    ("POST", "reqs/{rid}/close", None, 204),
    ("POST", "workers/{uuid}/deregister", None, 204),  # in MAINTENANCE since setstate
]


@pytest.mark.parametrize("base", ["", "/"], ids=["base-without-slash", "base-with-slash"])
async def test_every_go_client_call_reaches_its_endpoint_from_either_base_url(
    farm: AppFarm, base: str
) -> None:
    uuid = await farm.parked_worker()
    rid = 0
    for method, suffix, body, status in GO_CALLS:
        path = ORIGIN + base + "/api/v1/" + suffix.format(rid=rid, uuid=uuid)
        sent = _filled(body, rid)
        answer = await farm.client.request(
            method,
            path,
            content=None if sent is None else json.dumps(sent),
            headers=farm.auth("root"),
            follow_redirects=True,  # the Go client follows 308, body and method kept
        )
        assert answer.status_code == status, (method, path, answer.text)
        assert "//" not in answer.url.path
        if rid == 0:
            rid = answer.json()["ReqID"]


def _filled(body: Any, rid: int) -> Any:
    if isinstance(body, dict):
        return {k: rid if v == "{rid}" else v for k, v in body.items()}
    return body
