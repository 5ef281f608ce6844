"""``/api/v1/quotas``, ``/api/v1/usage`` and ``/api/v1/scheduling`` over HTTP, with the
quota errors, ``Reason`` and ``Boruta-Queue-Position`` they change (docs/scheduling.md)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.plugins.app_harness import AppFarm

pytestmark = pytest.mark.anyio


async def put(farm: AppFarm, path: str, body: Any, as_: str = "root") -> Any:
    return await farm.call("PUT", f"/api/v1/quotas/{path}", body, as_=as_)


async def test_quotas_are_set_listed_and_removed_by_admins(farm: AppFarm) -> None:
    answer = await put(farm, "users/alice", {"MaxHeld": 2, "MaxJobSeconds": 7200})
    assert (answer.status_code, answer.content) == (204, b"")
    uuid = await farm.worker(1)
    assert (await farm.post(f"/api/v1/workers/{uuid}/setgroups", ["lab"], as_="root")).is_success
    assert (await put(farm, "groups/lab", {"MaxWaiting": 5, "MaxHeld": None})).status_code == 204
    listed = (await farm.get("/api/v1/quotas", as_="bob")).json()
    assert listed == [
        {"Kind": "user", "Name": "alice", "MaxHeld": 2, "MaxWaiting": None, "MaxJobSeconds": 7200},
        {"Kind": "group", "Name": "lab", "MaxHeld": None, "MaxWaiting": 5, "MaxJobSeconds": None},
    ]
    gone = await farm.call("DELETE", "/api/v1/quotas/users/alice", as_="root")
    assert gone.status_code == 204
    again = await farm.call("DELETE", "/api/v1/quotas/users/alice", as_="root")
    assert (again.status_code, again.headers["Boruta-Error-Code"]) == (404, "not-found")
    assert again.json() == {"message": "quota of user alice not found"}


@pytest.mark.parametrize(
    ("path", "body", "status", "code", "message"),
    [
        (
            "users/alice",
            {"MaxHeld": -1},
            400,
            "bad-quota",
            "MaxHeld must be a whole number from 0 to 10000, not -1",
        ),
        (
            "users/alice",
            {"MaxWaiting": 10**12},
            400,
            "bad-quota",
            "MaxWaiting must be a whole number from 0 to 1000000",
        ),
        (
            "users/alice",
            {"MaxJobSeconds": 0},
            400,
            "bad-quota",
            "MaxJobSeconds must be from 1 to 31536000, not 0",
        ),
        (
            "users/alice",
            {"MaxJobSeconds": -(10**30)},
            400,
            "bad-quota",
            "MaxJobSeconds must be from 1",
        ),
        (
            "users/alice",
            {"MaxHeld": 1.5},
            400,
            "bad-quota",
            "MaxHeld must be a whole number or null, not 1.5",
        ),
        (
            "users/alice",
            {"MaxHeld": True},
            400,
            "bad-quota",
            "MaxHeld must be a whole number or null",
        ),
        (
            "users/alice",
            {"MaxHeld": "3"},
            400,
            "bad-quota",
            "MaxHeld must be a whole number or null",
        ),
        ("users/alice", {"MaxBoards": 3}, 400, "malformed-input", "unknown field 'MaxBoards'"),
        ("users/alice", [3], 400, "malformed-input", "quota must be a JSON object"),
        ("teams/alice", {"MaxHeld": 1}, 400, "malformed-input", "quotas are of users or groups"),
        ("users/mallory", {"MaxHeld": 1}, 404, "not-found", "user mallory not found"),
        ("groups/nobody", {"MaxHeld": 1}, 404, "not-found", "group nobody not found"),
    ],
)
async def test_bad_quotas_are_refused_with_a_clear_message_and_change_nothing(
    farm: AppFarm, path: str, body: Any, status: int, code: str, message: str
) -> None:
    answer = await put(farm, path, body)
    assert (answer.status_code, answer.headers["Boruta-Error-Code"]) == (status, code)
    assert message in answer.json()["message"]
    assert (await farm.get("/api/v1/quotas")).json() == []


async def test_only_admins_change_quotas_and_scheduling(farm: AppFarm) -> None:
    assert (await put(farm, "users/alice", {"MaxHeld": 9}, as_="alice")).status_code == 403
    answer = await farm.call("DELETE", "/api/v1/quotas/users/alice", as_="alice")
    assert answer.status_code == 403
    answer = await farm.post("/api/v1/scheduling", {"Policy": "fair"}, as_="alice")
    assert answer.status_code == 403
    assert (await farm.get("/api/v1/quotas", as_=None)).status_code == 401


async def test_over_the_waiting_limit_creation_gets_429_with_limit_and_count(
    farm: AppFarm,
) -> None:
    await farm.parked_worker()
    await put(farm, "users/alice", {"MaxWaiting": 1})
    await farm.new_request({"Caps": {"board": "rpi4"}})
    answer = await farm.post("/api/v1/reqs/", {"Caps": {"board": "rpi4"}})
    assert (answer.status_code, answer.headers["Boruta-Error-Code"]) == (429, "quota-exceeded")
    assert answer.json() == {"message": "over quota: alice has 1 requests waiting, the limit is 1"}


async def test_over_the_held_limit_the_request_shows_its_reason(farm: AppFarm) -> None:
    await farm.idle_worker(1)
    await farm.idle_worker(2)
    await put(farm, "users/alice", {"MaxHeld": 1})
    first = await farm.new_request()
    second = await farm.new_request()
    assert (await farm.request_json(first))["State"] == "IN PROGRESS"
    shown = await farm.request_json(second)
    assert (shown["State"], shown["Reason"]) == ("WAITING", "over quota: holds 1 of 1 boards")
    listed = (await farm.post("/api/v1/reqs/list")).json()
    assert [r.get("Reason") for r in listed] == [None, "over quota: holds 1 of 1 boards"]


async def test_switching_to_fair_reorders_the_queue_positions_at_once(farm: AppFarm) -> None:
    await farm.idle_worker(1)
    running = await farm.new_request()  # alice holds the one board: usage grows
    flood = [await farm.new_request() for _ in range(2)]
    person = await farm.new_request(as_="bob")
    farm.clock.advance(timedelta(minutes=5))

    async def positions() -> list[int]:
        heads = [await farm.head(f"/api/v1/reqs/{r}") for r in (*flood, person)]
        return [int(h.headers["Boruta-Queue-Position"]) for h in heads]

    assert await positions() == [0, 1, 2]
    answer = await farm.post("/api/v1/scheduling", {"Policy": "fair"}, as_="root")
    assert answer.json() == {"Policy": "fair", "HalfLife": 86400}
    assert await positions() == [1, 2, 0]
    assert (await farm.get("/api/v1/scheduling")).json() == {"Policy": "fair", "HalfLife": 86400}
    assert running


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({"HalfLife": 0}, "bad-quota", "half-life must be from 60 to 31536000 seconds, not 0"),
        ({"HalfLife": -5}, "bad-quota", "half-life must be from 60"),
        ({"Policy": "lottery"}, "bad-quota", "must be fifo or fair, not 'lottery'"),
        ({"Policy": 1}, "bad-quota", "Policy must be fifo or fair, not 1"),
        ({"HalfLife": "1d"}, "bad-quota", "HalfLife must be a whole number or null"),
        ({"Order": "fair"}, "malformed-input", "unknown field 'Order'"),
    ],
)
async def test_bad_scheduling_is_refused_and_leaves_it_as_it_was(
    farm: AppFarm, body: Any, code: str, message: str
) -> None:
    answer = await farm.post("/api/v1/scheduling", body, as_="root")
    assert (answer.status_code, answer.headers["Boruta-Error-Code"]) == (400, code)
    assert message in answer.json()["message"]
    assert (await farm.get("/api/v1/scheduling")).json() == {"Policy": "fifo", "HalfLife": 86400}


async def test_usage_lists_every_user_least_first_with_holds_waiting_and_limits(
    farm: AppFarm,
) -> None:
    await farm.idle_worker(1)
    await put(farm, "users/bob", {"MaxHeld": 3})
    await farm.new_request()
    farm.clock.advance(timedelta(seconds=100))
    body = (await farm.get("/api/v1/usage", as_="bob")).json()
    assert (body["Policy"], body["HalfLife"]) == ("fifo", 86400)
    users = {u["Name"]: u for u in body["Users"]}
    assert [u["Name"] for u in body["Users"]] == ["bob", "root", "alice"]
    assert users["alice"]["Holds"] == 1 and users["alice"]["Usage"] == pytest.approx(100, abs=0.2)
    assert users["bob"]["Limits"] == {"MaxHeld": 3, "MaxWaiting": None, "MaxJobSeconds": None}


async def test_the_openapi_document_describes_the_new_paths(farm: AppFarm) -> None:
    paths = (await farm.get("/api/v1/openapi.json", as_=None)).json()["paths"]
    assert {"/api/v1/quotas", "/api/v1/quotas/{kind}/{name}", "/api/v1/usage"} <= set(paths)
    assert set(paths["/api/v1/scheduling"]) == {"get", "post"}
    assert "429" in paths["/api/v1/reqs/"]["post"]["responses"]
