"""Who may call what: 401 without valid credentials, 403 for another's request or admin calls."""

from __future__ import annotations

import base64
import json

import pytest

from tests.coordinator.doubles import uuid_of
from tests.plugins.app_harness import AppFarm

pytestmark = pytest.mark.anyio

CHALLENGE = 'Bearer realm="boruta", Basic realm="boruta"'
ENDPOINTS = [
    ("POST", "/api/v1/reqs/"),
    ("POST", "/api/v1/reqs/list"),
    ("GET", "/api/v1/reqs/1"),
    ("HEAD", "/api/v1/reqs/1"),
    ("POST", "/api/v1/reqs/1"),
    ("POST", "/api/v1/reqs/1/close"),
    ("POST", "/api/v1/reqs/1/acquire_worker"),
    ("POST", "/api/v1/reqs/1/prolong"),
    ("GET", "/api/v1/workers/"),
    ("POST", "/api/v1/workers/list"),
    ("GET", f"/api/v1/workers/{uuid_of(1)}"),
    ("POST", f"/api/v1/workers/{uuid_of(1)}/setstate"),
    ("POST", f"/api/v1/workers/{uuid_of(1)}/setgroups"),
    ("POST", f"/api/v1/workers/{uuid_of(1)}/deregister"),
]


def basic(name: str, token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{token}".encode()).decode()}


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_every_endpoint_answers_401_without_credentials(
    farm: AppFarm, method: str, path: str
) -> None:
    answer = await farm.call(method, path, as_=None, content=b"{}")
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == CHALLENGE
    if method != "HEAD":
        assert answer.json() == {
            "message": "authentication required: send 'Authorization: Bearer TOKEN'"
        }


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer brt_not-a-token",
        "Bearer ",
        "Token abc",
        "Basic !!!not-base64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b"alice:brt_wrong").decode(),
    ],
)
async def test_bad_credentials_answer_401_and_create_nothing(
    farm: AppFarm, authorization: str
) -> None:
    answer = await farm.post(
        "/api/v1/reqs/", {"Priority": 8}, as_=None, headers={"Authorization": authorization}
    )
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == CHALLENGE
    assert set(answer.json()) == {"message"}
    assert (await farm.post("/api/v1/reqs/list")).json() == []


async def test_basic_with_another_users_name_for_a_valid_token_is_401(farm: AppFarm) -> None:
    answer = await farm.post(
        "/api/v1/reqs/list", as_=None, headers=basic("bob", farm.tokens["alice"])
    )
    assert (answer.status_code, answer.json()) == (401, {"message": "invalid credentials"})


async def test_basic_with_the_right_name_works_as_the_go_client_sends_it(farm: AppFarm) -> None:
    answer = await farm.post(
        "/api/v1/reqs/", {"Priority": 8}, as_=None, headers=basic("alice", farm.tokens["alice"])
    )
    assert answer.status_code == 201
    assert (await farm.request_json(answer.json()["ReqID"]))["Owner"]["Name"] == "alice"


@pytest.mark.parametrize("action", ["close", "prolong", "acquire_worker"])
async def test_another_user_may_not_act_on_alices_request(farm: AppFarm, action: str) -> None:
    await farm.idle_worker(1)
    rid = await farm.new_request()
    before = await farm.request_json(rid)
    answer = await farm.post(f"/api/v1/reqs/{rid}/{action}", as_="bob")
    assert answer.status_code == 403
    assert answer.json() == {"message": "only the owner of a request or an admin may do this"}
    assert await farm.request_json(rid) == before


async def test_another_user_may_not_update_alices_request(farm: AppFarm) -> None:
    await farm.parked_worker()
    rid = await farm.new_request()
    before = await farm.request_json(rid)
    answer = await farm.post(f"/api/v1/reqs/{rid}", {"Priority": 1}, as_="bob")
    assert answer.status_code == 403 and "owner" in answer.json()["message"]
    assert await farm.request_json(rid) == before


async def test_anyone_authenticated_may_read_alices_request(farm: AppFarm) -> None:
    await farm.parked_worker()
    rid = await farm.new_request()
    answer = await farm.get(f"/api/v1/reqs/{rid}", as_="bob")
    assert answer.status_code == 200 and answer.json()["Owner"]["Name"] == "alice"


@pytest.mark.parametrize(
    ("action", "body"),
    [("setstate", {"WorkerState": "IDLE"}), ("setgroups", ["lab"]), ("deregister", None)],
)
async def test_worker_administration_is_for_admins_only(
    farm: AppFarm, action: str, body: object
) -> None:
    uuid = await farm.worker(1)
    before = (await farm.get(f"/api/v1/workers/{uuid}")).json()
    answer = await farm.post(f"/api/v1/workers/{uuid}/{action}", body, as_="alice")
    assert (answer.status_code, answer.json()) == (403, {"message": "only an admin may do this"})
    assert (await farm.get(f"/api/v1/workers/{uuid}")).json() == before
    assert farm.dryads.calls == []


@pytest.mark.parametrize("path", ["/healthz", "/api/v1/version"])
async def test_health_and_version_need_no_token(farm: AppFarm, path: str) -> None:
    answer = await farm.get(path, as_=None)
    assert answer.status_code == 200


async def test_openapi_document_is_json_describing_the_v1_paths(farm: AppFarm) -> None:
    answer = await farm.get("/api/v1/openapi.json", as_=None)
    assert answer.status_code == 200
    document = json.loads(answer.content)
    assert document["openapi"].startswith("3.")
    assert {path for _, path in ENDPOINTS if "/1" not in path and uuid_of(1) not in path} <= set(
        document["paths"]
    )
    assert {"/api/v1/reqs/{id}/acquire_worker", "/api/v1/workers/{uuid}/setstate"} <= set(
        document["paths"]
    )
