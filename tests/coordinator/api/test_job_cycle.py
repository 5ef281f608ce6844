"""A whole job over HTTP: create, matched, acquire, prolong, close, worker prepared anew."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import timedelta

import anyio
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from coordinator.domain.states import WorkerState
from tests.coordinator.doubles import until
from tests.plugins.app_harness import AppFarm

pytestmark = pytest.mark.anyio

HOUR_LATER = "2026-01-01T01:00:00Z"


async def acquire(farm: AppFarm, rid: int, query: str = "") -> httpx.Response:
    return await farm.post(f"/api/v1/reqs/{rid}/acquire_worker{query}")


async def _append(answers: list[httpx.Response], call: Awaitable[httpx.Response]) -> None:
    answers.append(await call)


async def test_a_request_runs_on_the_idle_worker_and_gets_its_access(farm: AppFarm) -> None:
    uuid = await farm.idle_worker(1, {"board": "rpi4"})
    rid = await farm.new_request({"Priority": 8, "Caps": {"board": "rpi4"}})
    req = await farm.request_json(rid)
    assert req["State"] == "IN PROGRESS"
    assert req["Job"] == {"WorkerUUID": uuid, "Timeout": HOUR_LATER}
    access = (await acquire(farm, rid)).json()
    assert list(access) == ["Addr", "Key", "Username"]
    assert access["Addr"] == {"IP": "10.0.0.1", "Port": 20000 + rid, "Zone": ""}
    assert access["Username"] == "boruta-user"


async def test_the_access_key_is_a_pkcs1_rsa_2048_pem(farm: AppFarm) -> None:
    await farm.idle_worker(1)
    rid = await farm.new_request()
    pem = (await acquire(farm, rid)).json()["Key"]
    assert pem.startswith("-----BEGIN RSA PRIVATE KEY-----\n")
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    prepared_with = farm.dryads.calls[-1][2]
    assert (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
        == prepared_with
    )


async def test_prolong_moves_the_job_timeout_one_period_on(farm: AppFarm) -> None:
    await farm.idle_worker(1)
    rid = await farm.new_request()
    farm.clock.advance(timedelta(minutes=30))
    assert (await farm.post(f"/api/v1/reqs/{rid}/prolong")).status_code == 204
    assert (await farm.request_json(rid))["Job"]["Timeout"] == "2026-01-01T01:30:00Z"
    head = await farm.head(f"/api/v1/reqs/{rid}")
    assert head.headers["Boruta-Job-Timeout"] == "2026-01-01T01:30:00Z"


async def test_closing_the_job_returns_the_worker_idle_with_a_new_key(farm: AppFarm) -> None:
    uuid = await farm.idle_worker(1)
    rid = await farm.new_request()
    first = (await acquire(farm, rid)).json()["Key"]
    assert (await farm.post(f"/api/v1/reqs/{rid}/close")).status_code == 204
    req = await farm.request_json(rid)
    assert req["State"] == "DONE" and req["Job"]["WorkerUUID"] == uuid
    await farm.until_worker(uuid, WorkerState.IDLE)
    second = await farm.new_request()
    assert (await acquire(farm, second)).json()["Key"] != first
    assert rid not in farm.tunnels.open_now


async def test_head_of_a_running_request_gives_204_with_state_and_job_timeout(
    farm: AppFarm,
) -> None:
    await farm.idle_worker(1)
    rid = await farm.new_request()
    answer = await farm.head(f"/api/v1/reqs/{rid}")
    assert (answer.status_code, answer.content) == (204, b"")
    assert answer.headers["Boruta-Request-State"] == "IN PROGRESS"
    assert answer.headers["Boruta-Job-Timeout"] == HOUR_LATER


async def test_head_of_a_waiting_request_has_no_job_timeout(farm: AppFarm) -> None:
    await farm.parked_worker()
    rid = await farm.new_request()
    answer = await farm.head(f"/api/v1/reqs/{rid}")
    assert answer.status_code == 204 and answer.headers["Boruta-Request-State"] == "WAITING"
    assert "Boruta-Job-Timeout" not in answer.headers


async def test_head_of_a_worker_gives_204_with_its_state(farm: AppFarm) -> None:
    uuid = await farm.idle_worker(1)
    answer = await farm.head(f"/api/v1/workers/{uuid}")
    assert (answer.status_code, answer.content) == (204, b"")
    assert answer.headers["Boruta-Worker-State"] == "IDLE"


async def test_acquire_with_wait_blocks_until_the_request_is_matched(farm: AppFarm) -> None:
    uuid = await farm.worker(1)
    rid = await farm.new_request()
    answers: list[httpx.Response] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: _append(answers, acquire(farm, rid, "?wait=5")))
        await anyio.wait_all_tasks_blocked()  # the acquire waits for a match
        assert answers == []
        await farm.post(f"/api/v1/workers/{uuid}/setstate", {"WorkerState": "IDLE"}, as_="root")
    assert answers[0].status_code == 200
    assert answers[0].json()["Addr"] == {"IP": "10.0.0.1", "Port": 20000 + rid, "Zone": ""}


async def test_acquire_with_wait_gives_up_when_the_request_is_closed(farm: AppFarm) -> None:
    await farm.worker(1)
    rid = await farm.new_request()
    answers: list[httpx.Response] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: _append(answers, acquire(farm, rid, "?wait=5")))
        await anyio.wait_all_tasks_blocked()
        assert (await farm.post(f"/api/v1/reqs/{rid}/close")).status_code == 204
    assert (answers[0].status_code, answers[0].json()) == (
        400,
        {"message": "invalid request: worker not assigned"},
    )


async def test_acquire_with_wait_answers_400_when_nothing_matched_in_time(farm: AppFarm) -> None:
    await farm.worker(1)
    rid = await farm.new_request()
    answer = await acquire(farm, rid, "?wait=0.05")
    assert (answer.status_code, answer.json()) == (
        400,
        {"message": "invalid request: worker not assigned"},
    )
    assert (await farm.request_json(rid))["State"] == "WAITING"


async def test_acquire_with_wait_on_a_running_request_answers_at_once(farm: AppFarm) -> None:
    await farm.idle_worker(1)
    rid = await farm.new_request()
    with anyio.fail_after(2):
        assert (await acquire(farm, rid, "?wait=600")).status_code == 200


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?wait=abc", "wait must be a number of seconds from 0 to 600"),
        ("?wait=", "wait must be a number of seconds from 0 to 600"),
        ("?wait=-1", "wait must be a number of seconds from 0 to 600"),
        ("?wait=601", "wait must be a number of seconds from 0 to 600"),
        ("?wait=nan", "wait must be a number of seconds from 0 to 600"),
    ],
)
async def test_acquire_with_a_bad_wait_is_400_and_does_not_wait(
    farm: AppFarm, query: str, message: str
) -> None:
    await farm.parked_worker()
    rid = await farm.new_request()
    with anyio.fail_after(2):
        answer = await acquire(farm, rid, query)
    assert (answer.status_code, answer.json()) == (400, {"message": "invalid request: " + message})


async def test_a_job_ends_done_at_its_timeout(farm: AppFarm) -> None:
    uuid = await farm.idle_worker(1)
    rid = await farm.new_request()
    farm.clock.advance(timedelta(hours=1))
    await farm.service.fire_timers()
    assert (await farm.request_json(rid))["State"] == "DONE"
    await until(farm.service, lambda: farm.service.get_worker(uuid).state is WorkerState.IDLE)
    assert rid not in farm.tunnels.open_now
