"""Original routing (docs/boruta-api.md §routing): 308 to the default version and across a trailing
slash, keeping the query; 404 as ``{"message":"<path> not found"}``."""

from __future__ import annotations

import pytest

from tests.plugins.app_harness import AppFarm

pytestmark = pytest.mark.anyio

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
