"""Every endpoint of API v1 on its happy path, once with Bearer and once with Basic auth."""

from __future__ import annotations

import pytest

from coordinator.domain.states import WorkerState
from tests.coordinator.doubles import uuid_of
from tests.plugins.app_harness import NOW, AppFarm

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True, params=["bearer", "basic"])
def scheme(request: pytest.FixtureRequest, farm: AppFarm) -> str:
    farm.scheme = request.param
    return farm.scheme


async def test_create_answers_201_with_the_new_id(farm: AppFarm) -> None:
    answer = await farm.post("/api/v1/reqs/", {"Priority": 4, "Caps": {"board": "rpi4"}})
    assert (answer.status_code, answer.json()) == (201, {"ReqID": 1})
    assert answer.headers["content-type"] == "application/json"
    assert (await farm.post("/api/v1/reqs/", {})).json() == {"ReqID": 2}


async def test_get_shows_the_request_with_its_owner_and_state_header(farm: AppFarm) -> None:
    await farm.parked_worker()
    rid = await farm.new_request({"Priority": 3, "Caps": {"board": "rpi4"}})
    answer = await farm.get(f"/api/v1/reqs/{rid}")
    assert answer.status_code == 200 and answer.headers["Boruta-Request-State"] == "WAITING"
    assert answer.json() == {
        "ID": rid,
        "Priority": 3,
        "Owner": {"Groups": None, "Name": "alice"},
        "Deadline": "2026-02-01T00:00:00Z",
        "ValidAfter": NOW,
        "State": "WAITING",
        "Job": None,
        "Caps": {"board": "rpi4"},
    }


async def test_update_answers_204_and_changes_the_priority(farm: AppFarm) -> None:
    await farm.parked_worker()
    rid = await farm.new_request()
    answer = await farm.post(f"/api/v1/reqs/{rid}", {"ID": rid, "Priority": 2})
    assert (answer.status_code, answer.content) == (204, b"")
    assert "content-type" not in answer.headers
    assert (await farm.request_json(rid))["Priority"] == 2


async def test_close_answers_204_and_cancels_a_waiting_request(farm: AppFarm) -> None:
    await farm.parked_worker()
    rid = await farm.new_request()
    answer = await farm.post(f"/api/v1/reqs/{rid}/close")
    assert (answer.status_code, answer.content) == (204, b"")
    assert (await farm.request_json(rid))["State"] == "CANCELLED"


async def test_acquire_and_prolong_work_on_a_running_request(farm: AppFarm) -> None:
    await farm.idle_worker(1)
    rid = await farm.new_request()
    acquired = await farm.post(f"/api/v1/reqs/{rid}/acquire_worker")
    assert acquired.status_code == 200 and acquired.json()["Username"] == "boruta-user"
    prolonged = await farm.post(f"/api/v1/reqs/{rid}/prolong")
    assert (prolonged.status_code, prolonged.content) == (204, b"")


async def test_list_requests_answers_the_page_and_its_headers(farm: AppFarm) -> None:
    first, second = await farm.new_request(), await farm.new_request()
    answer = await farm.post("/api/v1/reqs/list")
    assert answer.status_code == 200
    assert [r["ID"] for r in answer.json()] == [first, second]
    assert (answer.headers["Boruta-List-Total"], answer.headers["Boruta-List-Remaining"]) == (
        "2",
        "0",
    )
    assert answer.headers["Boruta-List-Batch-Size"] == "2"


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/api/v1/workers/"), ("POST", "/api/v1/workers/list")]
)
async def test_list_workers_answers_every_worker(farm: AppFarm, method: str, path: str) -> None:
    await farm.worker(2)
    await farm.worker(1)
    answer = await farm.call(method, path)
    assert answer.status_code == 200 and answer.headers["Boruta-List-Total"] == "2"
    assert [w["WorkerUUID"] for w in answer.json()] == [uuid_of(1), uuid_of(2)]


async def test_get_worker_shows_it_with_the_state_header(farm: AppFarm) -> None:
    uuid = await farm.worker(1, {"board": "rpi4"})
    answer = await farm.get(f"/api/v1/workers/{uuid}")
    assert answer.status_code == 200 and answer.headers["Boruta-Worker-State"] == "MAINTENANCE"
    assert answer.json() == {
        "WorkerUUID": uuid,
        "State": "MAINTENANCE",
        "Groups": None,
        "Caps": {"UUID": uuid, "board": "rpi4"},
        "Connected": False,  # additive: its dryad link is down
    }


async def test_setstate_answers_202_null_and_the_worker_gets_prepared(farm: AppFarm) -> None:
    uuid = await farm.worker(1)
    answer = await farm.post(
        f"/api/v1/workers/{uuid}/setstate", {"WorkerState": "IDLE"}, as_="root"
    )
    assert (answer.status_code, answer.content) == (202, b"null")
    assert answer.headers["content-type"] == "application/json"
    await farm.until_worker(uuid, WorkerState.IDLE)
    assert [c[0] for c in farm.dryads.calls] == ["prepare"]


async def test_setgroups_answers_204_and_stores_the_groups_sorted(farm: AppFarm) -> None:
    uuid = await farm.worker(1)
    answer = await farm.post(f"/api/v1/workers/{uuid}/setgroups", ["lab-b", "lab-a"], as_="root")
    assert (answer.status_code, answer.content) == (204, b"")
    assert (await farm.get(f"/api/v1/workers/{uuid}")).json()["Groups"] == ["lab-a", "lab-b"]


async def test_deregister_answers_204_and_the_worker_is_gone(farm: AppFarm) -> None:
    uuid = await farm.worker(1)
    answer = await farm.post(f"/api/v1/workers/{uuid}/deregister", as_="root")
    assert (answer.status_code, answer.content) == (204, b"")
    assert (await farm.get(f"/api/v1/workers/{uuid}")).status_code == 404


async def test_an_admin_may_close_anyones_request(farm: AppFarm) -> None:
    await farm.parked_worker()
    rid = await farm.new_request()
    answer = await farm.post(f"/api/v1/reqs/{rid}/close", as_="root")
    assert answer.status_code == 204
    assert (await farm.request_json(rid))["State"] == "CANCELLED"
