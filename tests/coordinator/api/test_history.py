"""The audit history: transitions with actor and reason, admin actions, and who held which
board, when and for how long."""

from __future__ import annotations

from datetime import timedelta

import pytest

from coordinator.domain.states import WorkerState
from tests.plugins.app_harness import AppFarm

pytestmark = pytest.mark.anyio


async def test_history_of_a_worker_with_admin_actions(farm: AppFarm) -> None:
    uuid = await farm.idle_worker(1)
    answer = await farm.post(f"/api/v1/workers/{uuid}/setgroups", ["lab", "ci"], as_="root")
    assert answer.status_code == 204
    assert (await farm.post(f"/api/v1/workers/{uuid}/identify", as_="root")).status_code == 204
    got = (await farm.get(f"/api/v1/history?subject={uuid}&kind=worker")).json()
    assert [(e["old"], e["new"], e["reason"], e["actor"]) for e in got] == [
        ("", "MAINTENANCE", "", ""),
        ("MAINTENANCE", "PREPARE", "", "root"),
        ("PREPARE", "IDLE", "", ""),
        ("IDLE", "IDLE", "groups set to ci, lab", "root"),
        ("IDLE", "IDLE", "identify for 30 s", "root"),
    ]
    assert [e["id"] for e in got] == sorted(e["id"] for e in got)  # newest last
    after = (await farm.get(f"/api/v1/history?subject={uuid}&after={got[2]['id']}")).json()
    assert after == got[3:]
    latest = (await farm.get(f"/api/v1/history?subject={uuid}&limit=2")).json()
    assert latest == got[-2:]


async def test_history_needs_a_token_and_sane_numbers(farm: AppFarm) -> None:
    assert (await farm.get("/api/v1/history", as_=None)).status_code == 401
    assert (await farm.get("/api/v1/history?limit=x")).status_code == 400
    assert (await farm.get("/api/v1/history?after=-1")).status_code == 400
    assert (await farm.get("/api/v1/history/jobs", as_=None)).status_code == 401


async def test_who_held_which_board_and_for_how_long(farm: AppFarm) -> None:
    one = await farm.idle_worker(1)
    first = await farm.new_request()
    farm.clock.advance(timedelta(seconds=120))
    assert (await farm.post(f"/api/v1/reqs/{first}/close")).status_code == 204
    await farm.until_worker(one, WorkerState.IDLE)
    second = await farm.new_request(as_="bob")
    farm.clock.advance(timedelta(seconds=5))
    jobs = (await farm.get(f"/api/v1/history/jobs?worker={one}")).json()
    assert jobs == [
        {
            "request": first,
            "owner": "alice",
            "worker": one,
            "start": "2026-01-01T00:00:00Z",
            "end": "2026-01-01T00:02:00Z",
            "duration": 120.0,
            "ended": "DONE",
            "reason": "",
        },
        {
            "request": second,
            "owner": "bob",
            "worker": one,
            "start": "2026-01-01T00:02:00Z",
            "end": None,
            "duration": 5.0,  # so far
            "ended": None,
            "reason": "",
        },
    ]
    assert (await farm.get("/api/v1/history/jobs?worker=nobody")).json() == []
    assert len((await farm.get("/api/v1/history/jobs?limit=1")).json()) == 1
