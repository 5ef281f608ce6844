"""List bodies (docs/boruta-api.md §listing): filter, sort, paginate; ``Boruta-List-*`` headers."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from coordinator.domain.ids import WorkerUUID
from tests.coordinator.doubles import uuid_of
from tests.plugins.app_harness import AppFarm

pytestmark = pytest.mark.anyio

REQS = "/api/v1/reqs/list"
WORKERS = "/api/v1/workers/list"


@pytest.fixture
async def five(farm: AppFarm) -> AppFarm:
    """Requests 1..5 with priorities 5, 3, 5, 1, 2 (deadlines one day apart, decreasing);
    2 is CANCELLED, the others WAITING."""
    await farm.parked_worker()
    for n, prio in enumerate([5, 3, 5, 1, 2], start=1):
        await farm.new_request({"Priority": prio, "Deadline": f"2026-01-{20 - n:02d}T00:00:00Z"})
    assert (await farm.post("/api/v1/reqs/2/close")).status_code == 204
    return farm


def ids(answer: httpx.Response, key: str = "ID") -> list[Any]:
    assert answer.status_code == 200, answer.text
    return [item[key] for item in answer.json()]


def headers(answer: httpx.Response) -> tuple[int, int, int]:
    h = answer.headers
    return (
        int(h["Boruta-List-Total"]),
        int(h["Boruta-List-Remaining"]),
        int(h["Boruta-List-Batch-Size"]),
    )


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "empty body"),
        (b"null", "null"),
        (b"{}", "empty object"),
        (b'{"Filter":null,"Sorter":null,"Paginator":null}', "all parts null"),
        (b'{"Filter":{"IDs":[],"Priorities":null,"States":[]}}', "empty fields"),
    ],
)
async def test_a_body_without_conditions_lists_everything(
    five: AppFarm, content: bytes, why: str
) -> None:
    answer = await five.call("POST", REQS, content=content)
    assert ids(answer) == [1, 2, 3, 4, 5], why
    assert headers(answer) == (5, 0, 5)


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"IDs": [4, 2, 99]}, [2, 4]),
        ({"Priorities": [5]}, [1, 3]),
        ({"States": ["CANCELLED"]}, [2]),
        ({"States": [" waiting "]}, [1, 3, 4, 5]),
        ({"States": ["in progress"]}, []),
        ({"Priorities": [5, 3], "States": ["WAITING"]}, [1, 3]),
        ({"IDs": [1, 2], "Priorities": [3]}, [2]),
    ],
)
async def test_filters_match_any_value_within_a_field_and_all_fields(
    five: AppFarm, flt: dict[str, Any], expected: list[int]
) -> None:
    answer = await five.post(REQS, {"Filter": flt})
    assert ids(answer) == expected
    assert headers(answer) == (len(expected), 0, len(expected))


@pytest.mark.parametrize(
    ("item", "order", "expected"),
    [
        ("", "", [1, 2, 3, 4, 5]),
        ("ID", "descending", [5, 4, 3, 2, 1]),
        ("priority", "ascending", [4, 5, 2, 1, 3]),
        ("Priority", "DESCENDING", [3, 1, 2, 5, 4]),
        ("deadline", "", [5, 4, 3, 2, 1]),
        ("validafter", "", [1, 2, 3, 4, 5]),
        ("ValidAfter", "descending", [5, 4, 3, 2, 1]),
        ("state", "", [2, 1, 3, 4, 5]),
        ("STATE", "descending", [5, 4, 3, 1, 2]),
    ],
)
async def test_requests_sort_by_any_item_in_either_order(
    five: AppFarm, item: str, order: str, expected: list[int]
) -> None:
    assert ids(await five.post(REQS, {"Sorter": {"Item": item, "Order": order}})) == expected


@pytest.mark.parametrize(
    ("sorter", "message"),
    [
        ({"Item": "owner"}, "unknown name of item by which list should be sorted"),
        ({"Item": "id", "Order": "up"}, "unknown sort order (valid: ascending or descending)"),
    ],
)
async def test_bad_sorter_is_400(five: AppFarm, sorter: dict[str, str], message: str) -> None:
    answer = await five.post(REQS, {"Sorter": sorter})
    assert (answer.status_code, answer.json()) == (400, {"message": "invalid request: " + message})
    assert "Boruta-List-Total" not in answer.headers


@pytest.mark.parametrize(
    ("paginator", "expected", "total_remaining"),
    [
        ({"Limit": 2}, [1, 2], (5, 3)),
        ({"ID": 2, "Limit": 2}, [3, 4], (5, 1)),
        ({"ID": 4, "Direction": "forward", "Limit": 2}, [5], (5, 0)),
        ({"Direction": "backward", "Limit": 2}, [4, 5], (5, 3)),
        ({"ID": 4, "Direction": "Backward", "Limit": 2}, [2, 3], (5, 1)),
        ({"ID": 2, "Direction": "backward", "Limit": 2}, [1], (5, 0)),
        ({"ID": 5}, [], (5, 0)),
        ({"Limit": 0}, [1, 2, 3, 4, 5], (5, 0)),
    ],
)
async def test_pagination_pages_forward_and_backward_from_an_anchor(
    five: AppFarm, paginator: dict[str, Any], expected: list[int], total_remaining: tuple[int, int]
) -> None:
    answer = await five.post(REQS, {"Paginator": paginator})
    assert ids(answer) == expected
    assert headers(answer) == (*total_remaining, len(expected))


async def test_an_anchor_outside_the_filter_positions_the_page_but_is_not_counted(
    five: AppFarm,
) -> None:
    body = {"Filter": {"States": ["WAITING"]}, "Paginator": {"ID": 2, "Limit": 2}}
    answer = await five.post(REQS, body)
    assert ids(answer) == [3, 4]
    assert headers(answer) == (4, 1, 2)


async def test_an_unknown_paginator_id_is_404_request_not_found(five: AppFarm) -> None:
    answer = await five.post(REQS, {"Paginator": {"ID": 99}})
    assert (answer.status_code, answer.json()) == (404, {"message": "request not found"})


async def test_a_bad_direction_is_400(five: AppFarm) -> None:
    answer = await five.post(REQS, {"Paginator": {"Direction": "sideways"}})
    assert (answer.status_code, answer.json()) == (
        400,
        {"message": "invalid request: unknown direction (valid: forward or backward)"},
    )


@pytest.fixture
async def four(farm: AppFarm) -> list[WorkerUUID]:
    """Workers 1..4: groups a / b / a,b / none; caps arch arm, arm, riscv, riscv."""
    uuids = []
    for n, (groups, arch) in enumerate(
        [(["a"], "arm"), (["b"], "arm"), (["b", "a"], "riscv"), ([], "riscv")], start=1
    ):
        uuids.append(await farm.worker(n, {"arch": arch, "n": str(n)}))
        if groups:
            await farm.post(f"/api/v1/workers/{uuid_of(n)}/setgroups", groups, as_="root")
    return uuids


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({}, [1, 2, 3, 4]),
        ({"Groups": [], "Capabilities": {}}, [1, 2, 3, 4]),
        ({"Groups": ["a"]}, [1, 3]),
        ({"Groups": ["b", "zzz"]}, [2, 3]),
        ({"Capabilities": {"arch": "riscv"}}, [3, 4]),
        ({"Capabilities": {"arch": "arm", "n": "2"}}, [2]),
        ({"Capabilities": {"arch": "ar"}}, []),
        ({"Groups": ["a"], "Capabilities": {"arch": "riscv"}}, [3]),
    ],
)
async def test_worker_filters_any_group_and_all_caps_exactly(
    farm: AppFarm, four: list[WorkerUUID], flt: dict[str, Any], expected: list[int]
) -> None:
    answer = await farm.post(WORKERS, {"Filter": flt})
    assert ids(answer, "WorkerUUID") == [uuid_of(n) for n in expected]
    assert headers(answer) == (len(expected), 0, len(expected))


@pytest.mark.parametrize(
    ("sorter", "expected"),
    [
        ({"Item": "uuid", "Order": "descending"}, [4, 3, 2, 1]),
        ({"Item": "groups"}, [4, 1, 3, 2]),
        ({"Item": "Groups", "Order": "descending"}, [2, 3, 1, 4]),
        ({"Item": "state", "Order": "descending"}, [4, 3, 2, 1]),
    ],
)
async def test_workers_sort_by_uuid_groups_or_state(
    farm: AppFarm, four: list[WorkerUUID], sorter: dict[str, str], expected: list[int]
) -> None:
    answer = await farm.post(WORKERS, {"Sorter": sorter})
    assert ids(answer, "WorkerUUID") == [uuid_of(n) for n in expected]


async def test_get_workers_lists_with_or_without_a_body(
    farm: AppFarm, four: list[WorkerUUID]
) -> None:
    everyone = await farm.get("/api/v1/workers/")
    assert ids(everyone, "WorkerUUID") == four and headers(everyone) == (4, 0, 4)
    body = {"Filter": {"Groups": ["b"]}, "Paginator": {"Limit": 1}}
    page = await farm.call("GET", "/api/v1/workers/", body)
    assert ids(page, "WorkerUUID") == [four[1]] and headers(page) == (2, 1, 1)


async def test_workers_page_forward_and_backward_from_a_uuid(
    farm: AppFarm, four: list[WorkerUUID]
) -> None:
    fwd = await farm.post(WORKERS, {"Paginator": {"ID": four[1], "Limit": 1}})
    assert ids(fwd, "WorkerUUID") == [four[2]] and headers(fwd) == (4, 1, 1)
    back = await farm.post(WORKERS, {"Paginator": {"ID": four[1], "Direction": "backward"}})
    assert ids(back, "WorkerUUID") == [four[0]] and headers(back) == (4, 0, 1)


async def test_an_unknown_worker_paginator_id_is_404_worker_not_found(
    farm: AppFarm, four: list[WorkerUUID]
) -> None:
    answer = await farm.post(WORKERS, {"Paginator": {"ID": uuid_of(99)}})
    assert (answer.status_code, answer.json()) == (404, {"message": "worker not found"})


async def test_an_empty_list_has_zero_headers(farm: AppFarm) -> None:
    answer = await farm.post(WORKERS, {"Filter": {"Groups": ["nobody"]}})
    assert (answer.status_code, answer.content) == (200, b"[]")
    assert headers(answer) == (0, 0, 0)
