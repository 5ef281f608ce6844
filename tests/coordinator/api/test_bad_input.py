"""Bad input gets the original's status and message (or a clear 4xx) and changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from coordinator.domain.states import WorkerState
from coordinator.settings import Settings
from tests.coordinator.doubles import uuid_of
from tests.plugins.app_harness import AppFarm

pytestmark = pytest.mark.anyio

NO_BODY = {"message": "no body provided in HTTP request"}
REQ_PATHS = [
    "/api/v1/reqs/{}",
    "/api/v1/reqs/{}/close",
    "/api/v1/reqs/{}/acquire_worker",
    "/api/v1/reqs/{}/prolong",
]
WORKER_PATHS = [
    "/api/v1/workers/{}/setstate",
    "/api/v1/workers/{}/setgroups",
    "/api/v1/workers/{}/deregister",
]


def invalid(message: str) -> dict[str, str]:
    return {"message": "invalid request: " + message}


@pytest.fixture
async def waiting(farm: AppFarm) -> int:
    """Request 1, WAITING behind a worker in maintenance."""
    await farm.parked_worker()
    return await farm.new_request({"Priority": 8, "Caps": {"board": "rpi4"}})


async def refused(farm: AppFarm, method: str, path: str, **kw: Any) -> httpx.Response:
    """Make the call, check it changed nothing, and return its answer."""
    before = await farm.snapshot()
    answer = await farm.call(method, path, **kw)
    assert await farm.snapshot() == before
    return answer


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/reqs/",
        "/api/v1/reqs/1",
        "/api/v1/reqs/list",
        "/api/v1/workers/list",
        f"/api/v1/workers/{uuid_of(9)}/setstate",
        f"/api/v1/workers/{uuid_of(9)}/setgroups",
    ],
)
async def test_malformed_json_is_400_with_the_invalid_request_prefix(
    farm: AppFarm, waiting: int, path: str
) -> None:
    answer = await refused(farm, "POST", path, content=b'{"Priority": 8', as_="root")
    assert answer.status_code == 400
    assert answer.json()["message"].startswith("invalid request: malformed JSON: ")


@pytest.mark.parametrize("content", [b"", b"  \n"])
@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/reqs/",
        "/api/v1/reqs/1",
        f"/api/v1/workers/{uuid_of(9)}/setstate",
        f"/api/v1/workers/{uuid_of(9)}/setgroups",
    ],
)
async def test_an_empty_body_is_400_no_body_provided_without_prefix(
    farm: AppFarm, waiting: int, path: str, content: bytes
) -> None:
    answer = await refused(farm, "POST", path, content=content, as_="root")
    assert (answer.status_code, answer.json()) == (400, NO_BODY)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"Priority": "high"}, "Priority must be a whole number"),
        ({"Priority": 8.5}, "Priority must be a whole number"),
        ({"Priority": True}, "Priority must be a whole number"),
        ({"Caps": {"a": 1}}, "Caps must be an object of strings"),
        ({"Caps": ["a"]}, "Caps must be an object of strings"),
        ({"ValidAfter": "tomorrow"}, 'parsing time "tomorrow" in ValidAfter: not RFC 3339'),
        ({"Deadline": 5}, "parsing time 5 in Deadline: not RFC 3339"),
        (
            {"Deadline": "2026-02-30T00:00:00Z"},
            'parsing time "2026-02-30T00:00:00Z" in Deadline: day is out of range for month',
        ),
        ([8], "request must be a JSON object"),
        ({"Priority": 0}, "requested priority out of bounds"),
        ({"Priority": 17}, "requested priority out of bounds"),
        ({"Priority": -1}, "requested priority out of bounds"),
        ({"Deadline": "2025-12-31T23:59:59Z"}, "deadline in the past"),
        (
            {"ValidAfter": "2026-03-01T00:00:00Z", "Deadline": "2026-02-01T00:00:00+01:00"},
            "requested time range illegal - ValidAfter must be before Deadline",
        ),
    ],
)
async def test_a_bad_new_request_is_400_and_creates_nothing(
    farm: AppFarm, waiting: int, body: Any, message: str
) -> None:
    answer = await refused(farm, "POST", "/api/v1/reqs/", body=body)
    assert (answer.status_code, answer.json()) == (400, invalid(message))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"Priority": 17}, "requested priority out of bounds"),
        ({"Priority": "1"}, "Priority must be a whole number"),
        ({"Deadline": "2025-01-01T00:00:00Z"}, "deadline in the past"),
        (
            {"ValidAfter": "2026-03-01T00:00:00Z"},
            "requested time range illegal - ValidAfter must be before Deadline",
        ),
        ({"ID": 2, "Priority": 1}, "request ID set in JSON doesn't match ID from URL"),
        ({"ID": "1", "Priority": 1}, "ID must be a whole number"),
    ],
)
async def test_a_bad_update_is_400_and_leaves_the_request_as_it_was(
    farm: AppFarm, waiting: int, body: Any, message: str
) -> None:
    answer = await refused(farm, "POST", f"/api/v1/reqs/{waiting}", body=body)
    assert (answer.status_code, answer.json()) == (400, invalid(message))


@pytest.mark.parametrize("rid", ["abc", "-1", "+1", "1.0", "0x1", "18446744073709551616", "%20"])
@pytest.mark.parametrize("path", REQ_PATHS)
async def test_a_bad_request_id_is_400_not_valid(farm: AppFarm, path: str, rid: str) -> None:
    answer = await refused(farm, "POST", path.format(rid), body={"Priority": 1})
    assert (answer.status_code, answer.json()) == (400, invalid("ID provided in URL isn't valid"))


@pytest.mark.parametrize("rid", ["0", "2", "18446744073709551615"])
@pytest.mark.parametrize("path", REQ_PATHS)
async def test_an_unknown_request_id_is_404_request_not_found(
    farm: AppFarm, waiting: int, path: str, rid: str
) -> None:
    answer = await refused(farm, "POST", path.format(rid), body={"Priority": 1})
    assert (answer.status_code, answer.json()) == (404, {"message": "Request not found"})


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_reading_an_unknown_or_bad_request_id(farm: AppFarm, method: str) -> None:
    missing = await farm.call(method, "/api/v1/reqs/7")
    bad = await farm.call(method, "/api/v1/reqs/x7")
    assert (missing.status_code, bad.status_code) == (404, 400)
    if method == "GET":
        assert missing.json() == {"message": "Request not found"}
        assert bad.json() == invalid("ID provided in URL isn't valid")


@pytest.mark.parametrize(
    "uuid",
    [
        "ABCDEF00-0000-4000-8000-000000000001",
        "00000000-0000-4000-8000-00000000001",
        "not-a-uuid",
        "000000000000-4000-8000-0000-00000000001",
        "{00000000-0000-4000-8000-000000000001}",
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/workers/{}", *WORKER_PATHS])
async def test_a_bad_worker_uuid_is_400_not_valid_uuid(farm: AppFarm, path: str, uuid: str) -> None:
    method = "GET" if path.endswith("}") else "POST"
    answer = await refused(farm, method, path.format(uuid), body=["a"], as_="root")
    assert (answer.status_code, answer.json()) == (
        400,
        invalid("ID provided in URL isn't valid UUID"),
    )


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/workers/{}", None),
        (WORKER_PATHS[0], {"WorkerState": "IDLE"}),
        (WORKER_PATHS[1], ["a"]),
        (WORKER_PATHS[2], None),
    ],
)
async def test_an_unknown_worker_is_404_worker_not_found(
    farm: AppFarm, path: str, body: Any
) -> None:
    await farm.worker(1)
    method = "GET" if path.endswith("}") else "POST"
    answer = await refused(farm, method, path.format(uuid_of(2)), body=body, as_="root")
    assert (answer.status_code, answer.json()) == (404, {"message": "Worker not found"})


async def test_an_empty_update_of_an_unknown_request_is_204_as_in_the_original(
    farm: AppFarm,
) -> None:
    answer = await refused(farm, "POST", "/api/v1/reqs/42", body={})
    assert (answer.status_code, answer.content) == (204, b"")
    zeros = {"Priority": 0, "ValidAfter": "0001-01-01T00:00:00Z", "Deadline": None}
    assert (await refused(farm, "POST", "/api/v1/reqs/42", body=zeros)).status_code == 204


async def test_closing_twice_is_400_action_cannot_be_executed(farm: AppFarm, waiting: int) -> None:
    assert (await farm.post(f"/api/v1/reqs/{waiting}/close")).status_code == 204
    answer = await refused(farm, "POST", f"/api/v1/reqs/{waiting}/close")
    assert (answer.status_code, answer.json()) == (
        400,
        invalid("action cannot be executed in current state"),
    )


async def test_updating_a_running_request_is_400_action_cannot_be_executed(farm: AppFarm) -> None:
    await farm.idle_worker(1)
    rid = await farm.new_request()
    answer = await refused(farm, "POST", f"/api/v1/reqs/{rid}", body={"Priority": 1})
    assert (answer.status_code, answer.json()) == (
        400,
        invalid("action cannot be executed in current state"),
    )


@pytest.mark.parametrize("action", ["acquire_worker", "prolong"])
@pytest.mark.parametrize("closed", [False, True])
async def test_acquire_or_prolong_without_a_job_is_400_worker_not_assigned(
    farm: AppFarm, waiting: int, action: str, closed: bool
) -> None:
    if closed:
        await farm.post(f"/api/v1/reqs/{waiting}/close")
    answer = await refused(farm, "POST", f"/api/v1/reqs/{waiting}/{action}")
    assert (answer.status_code, answer.json()) == (400, invalid("worker not assigned"))


@pytest.mark.parametrize(
    "body",
    [
        {"WorkerState": "RUNNING"},
        {"WorkerState": "FAILED"},
        {"WorkerState": "idle"},
        {"WorkerState": None},
        {},
        {"State": "IDLE"},
    ],
)
async def test_setstate_to_anything_but_idle_or_maintenance_is_400(
    farm: AppFarm, body: Any
) -> None:
    uuid = await farm.worker(1)
    answer = await refused(farm, "POST", f"/api/v1/workers/{uuid}/setstate", body=body, as_="root")
    assert (answer.status_code, answer.json()) == (
        400,
        invalid("Only state changes to IDLE and MAINTENANCE are allowed"),
    )


async def test_setstate_idle_of_a_running_worker_is_an_invalid_transition(farm: AppFarm) -> None:
    uuid = await farm.idle_worker(1)
    await farm.new_request()
    assert (await farm.get(f"/api/v1/workers/{uuid}")).json()["State"] == "RUNNING"
    answer = await refused(
        farm, "POST", f"/api/v1/workers/{uuid}/setstate", body={"WorkerState": "IDLE"}, as_="root"
    )
    assert (answer.status_code, answer.json()) == (
        400,
        invalid("Invalid state transition was requested"),
    )


async def test_setstate_idle_of_a_failed_worker_is_an_invalid_transition(farm: AppFarm) -> None:
    uuid = await farm.idle_worker(1)
    await farm.service.set_fail(uuid, "STM does not answer")
    answer = await refused(
        farm, "POST", f"/api/v1/workers/{uuid}/setstate", body={"WorkerState": "IDLE"}, as_="root"
    )
    assert (answer.status_code, answer.json()) == (
        400,
        invalid("Invalid state transition was requested"),
    )


@pytest.mark.parametrize("body", [{"a": "b"}, "lab", [1], ["a", None]])
async def test_setgroups_with_anything_but_a_list_of_strings_is_400(
    farm: AppFarm, body: Any
) -> None:
    uuid = await farm.worker(1)
    answer = await refused(farm, "POST", f"/api/v1/workers/{uuid}/setgroups", body=body, as_="root")
    assert (answer.status_code, answer.json()) == (400, invalid("groups must be a list of strings"))


async def test_deregistering_an_idle_worker_is_400(farm: AppFarm) -> None:
    uuid = await farm.idle_worker(1)
    answer = await refused(farm, "POST", f"/api/v1/workers/{uuid}/deregister", as_="root")
    assert (answer.status_code, answer.json()) == (
        400,
        invalid("Worker is not in FAIL or MAINTENANCE state"),
    )
    assert farm.service.get_worker(uuid).state is WorkerState.IDLE


@pytest.mark.parametrize("settings", [Settings(max_body_bytes=1024)])
async def test_a_body_over_the_limit_is_413_and_creates_nothing(farm: AppFarm) -> None:
    body = {"Priority": 8, "Caps": {"blob": "x" * 2000}}
    answer = await refused(farm, "POST", "/api/v1/reqs/", body=body)
    assert (answer.status_code, answer.json()) == (413, {"message": "request body over 1024 bytes"})


@pytest.mark.parametrize("settings", [Settings(max_body_bytes=1024)])
async def test_a_streamed_body_over_the_limit_is_413_too(farm: AppFarm) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"Priority": 8, "Caps": {"blob": "'
        for _ in range(10):
            yield b"x" * 200
        yield b'"}}'

    before = await farm.snapshot()
    answer = await farm.client.post("/api/v1/reqs/", content=chunks(), headers=farm.auth("alice"))
    assert (answer.status_code, answer.json()) == (413, {"message": "request body over 1024 bytes"})
    assert await farm.snapshot() == before


async def test_concurrent_closes_of_one_request_give_one_204_and_one_400(
    farm: AppFarm, waiting: int
) -> None:
    answers: list[httpx.Response] = []

    async def close() -> None:
        answers.append(await farm.post(f"/api/v1/reqs/{waiting}/close"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(close)
        tg.start_soon(close)
    assert sorted(a.status_code for a in answers) == [204, 400]
    assert (await farm.request_json(waiting))["State"] == "CANCELLED"
