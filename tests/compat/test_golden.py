"""Golden replays: the original's answers (testdata of boruta:http/server/api/v1) byte for
byte, adjusted only as ``golden.py`` says."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from coordinator.domain.ids import WorkerUUID
from coordinator.domain.states import WorkerState
from tests.compat.golden import assert_headers, assert_object_bytes, with_owner
from tests.plugins.app_harness import AppFarm

pytestmark = pytest.mark.anyio

UUID = WorkerUUID("ec4898ac-0853-407c-8501-cbb24ef6bd77")  # the original's test worker
CAPS = {"architecture": "armv7l", "monitor": "yes"}
VALID_REQ = {
    "Priority": 8,
    "Deadline": "2200-12-31T01:02:03Z",
    "ValidAfter": "2100-01-01T04:05:06Z",
    "Caps": CAPS,
}
JSON = {"Content-Type": "application/json"}


async def register(farm: AppFarm, caps: dict[str, str], idle: bool = False) -> WorkerUUID:
    await farm.service.register({"UUID": UUID, **caps}, "10.0.0.1:22")
    if idle:
        await farm.post(f"/api/v1/workers/{UUID}/setstate", {"WorkerState": "IDLE"}, as_="root")
        await farm.until_worker(UUID, WorkerState.IDLE)
    return UUID


async def test_version_golden(farm: AppFarm) -> None:
    answer = await farm.get("/api/v1/version", as_=None)
    assert answer.status_code == 200
    assert answer.content == b'{"Server":"0.2.1","API_Version":"v1","API_State":"devel"}'
    assert_headers(
        answer,
        {
            "Boruta-Api-State": "devel",
            "Boruta-Api-Version": "v1",
            "Boruta-Server-Version": "0.2.1",
            "Content-Length": "57",
            **JSON,
        },
    )


async def test_version_head_gives_the_three_headers_with_204(farm: AppFarm) -> None:
    answer = await farm.head("/api/v1/version", as_=None)
    assert (answer.status_code, answer.content) == (204, b"")
    assert_headers(
        answer,
        {"Boruta-Api-State": "devel", "Boruta-Api-Version": "v1", "Boruta-Server-Version": "0.2.1"},
    )


async def test_new_req_valid_golden(farm: AppFarm) -> None:
    await register(farm, CAPS)
    answer = await farm.post("/api/v1/reqs/", VALID_REQ)
    assert (answer.status_code, answer.content) == (201, b'{"ReqID":1}')
    assert_headers(answer, {"Content-Length": "11", **JSON})


async def test_new_req_bad_prio_golden(farm: AppFarm) -> None:
    answer = await farm.post("/api/v1/reqs/", {**VALID_REQ, "Priority": 32})
    assert answer.status_code == 400
    assert answer.content == b'{"message":"invalid request: requested priority out of bounds"}'
    assert_headers(answer, {"Content-Length": "63", **JSON})


async def test_req_info_golden(farm: AppFarm) -> None:
    await register(farm, CAPS)
    rid = await farm.new_request(VALID_REQ)
    answer = await farm.get(f"/api/v1/reqs/{rid}")
    golden = (
        '{"ID":1,"Priority":8,"Owner":{"Groups":null},"Deadline":"2200-12-31T01:02:03Z",'
        '"ValidAfter":"2100-01-01T04:05:06Z","State":"WAITING","Job":null,'
        '"Caps":{"architecture":"armv7l","monitor":"yes"}}'
    )
    assert answer.status_code == 200
    assert_object_bytes(answer.content, with_owner(golden, "alice"))
    assert_headers(answer, {"Boruta-Request-State": "WAITING", **JSON})


async def test_req_info_running_golden(farm: AppFarm) -> None:
    await register(farm, CAPS, idle=True)
    rid = await farm.new_request(VALID_REQ)
    farm.clock.set(datetime(2100, 1, 1, 4, 5, 6, tzinfo=UTC))
    await farm.service.fire_timers()  # ValidAfter reached: matched, job timeout in 1 h
    answer = await farm.get(f"/api/v1/reqs/{rid}")
    golden = (
        '{"ID":1,"Priority":8,"Owner":{"Groups":null},"Deadline":"2200-12-31T01:02:03Z",'
        '"ValidAfter":"2100-01-01T04:05:06Z","State":"IN PROGRESS",'
        '"Job":{"WorkerUUID":"ec4898ac-0853-407c-8501-cbb24ef6bd77","Timeout":"2100-01-01T05:05:06Z"},'
        '"Caps":{"architecture":"armv7l","monitor":"yes"}}'
    )
    assert_object_bytes(answer.content, with_owner(golden, "alice"))
    assert_headers(
        answer,
        {
            "Boruta-Job-Timeout": "2100-01-01T05:05:06Z",
            "Boruta-Request-State": "IN PROGRESS",
            **JSON,
        },
    )


async def test_acquire_worker_valid_golden_shape(farm: AppFarm) -> None:
    await register(farm, {}, idle=True)
    rid = await farm.new_request()
    answer = await farm.post(f"/api/v1/reqs/{rid}/acquire_worker")
    assert answer.status_code == 200
    shape = (
        r'\{"Addr":\{"IP":"10\.0\.0\.1","Port":\d+,"Zone":""\},'
        r'"Key":"-----BEGIN RSA PRIVATE KEY-----\\n[A-Za-z0-9+/=\\n]+'
        r'-----END RSA PRIVATE KEY-----\\n","Username":"boruta-user"\}'
    )
    assert re.fullmatch(shape, answer.text)
    assert_headers(answer, JSON)


async def test_worker_info_valid_golden(farm: AppFarm) -> None:
    await register(farm, {}, idle=True)
    answer = await farm.get(f"/api/v1/workers/{UUID}")
    golden = (
        '{"WorkerUUID":"ec4898ac-0853-407c-8501-cbb24ef6bd77","State":"IDLE","Groups":null,'
        '"Caps":{"UUID":"ec4898ac-0853-407c-8501-cbb24ef6bd77"}}'
    )
    assert_object_bytes(answer.content, golden)
    assert_headers(answer, {"Boruta-Worker-State": "IDLE", **JSON})


async def test_worker_set_state_valid_golden(farm: AppFarm) -> None:
    await register(farm, {})
    answer = await farm.post(
        f"/api/v1/workers/{UUID}/setstate", {"WorkerState": "IDLE"}, as_="root"
    )
    assert (answer.status_code, answer.content) == (202, b"null")
    assert_headers(answer, {"Content-Length": "4", **JSON})


@pytest.mark.parametrize(
    ("path", "body", "as_"),
    [
        ("/api/v1/reqs/1/close", None, "alice"),
        ("/api/v1/reqs/1", {"Priority": 4}, "alice"),
        ("/api/v1/reqs/1/prolong", None, "alice"),
        (f"/api/v1/workers/{UUID}/setgroups", ["Lędzianie"], "root"),
        (f"/api/v1/workers/{UUID}/deregister", None, "root"),
    ],
)
async def test_valid_204_goldens_have_no_body_and_no_content_headers(
    farm: AppFarm, path: str, body: object, as_: str
) -> None:
    await register(farm, {}, idle="prolong" in path)
    await farm.new_request()
    if "deregister" in path:
        await farm.post(
            f"/api/v1/workers/{UUID}/setstate", {"WorkerState": "MAINTENANCE"}, as_="root"
        )
        await farm.until_worker(UUID, WorkerState.MAINTENANCE)
    answer = await farm.post(path, body, as_=as_)
    assert (answer.status_code, answer.content) == (204, b"")
    assert "Content-Type" not in answer.headers
    assert answer.headers.get("Content-Length", "0") == "0"


ERRORS = [
    ("POST", "/api/v1/reqs/1/acquire_worker", b'{"message":"Request not found"}'),
    ("POST", "/api/v1/reqs/1/close", b'{"message":"Request not found"}'),
    ("POST", "/api/v1/reqs/1/prolong", b'{"message":"Request not found"}'),
    ("GET", "/api/v1/reqs/1", b'{"message":"Request not found"}'),
    ("POST", "/api/v1/reqs/1", b'{"message":"Request not found"}'),
    (
        "POST",
        "/api/v1/reqs/bad/acquire_worker",
        b'{"message":"invalid request: ID provided in URL isn\'t valid"}',
    ),
    (
        "POST",
        "/api/v1/reqs/bad/close",
        b'{"message":"invalid request: ID provided in URL isn\'t valid"}',
    ),
    (
        "POST",
        "/api/v1/reqs/bad/prolong",
        b'{"message":"invalid request: ID provided in URL isn\'t valid"}',
    ),
    ("GET", "/api/v1/reqs/bad", b'{"message":"invalid request: ID provided in URL isn\'t valid"}'),
    ("POST", "/api/v1/reqs/bad", b'{"message":"invalid request: ID provided in URL isn\'t valid"}'),
    ("GET", f"/api/v1/workers/{UUID}", b'{"message":"Worker not found"}'),
    ("POST", f"/api/v1/workers/{UUID}/deregister", b'{"message":"Worker not found"}'),
    ("POST", f"/api/v1/workers/{UUID}/setgroups", b'{"message":"Worker not found"}'),
    ("POST", f"/api/v1/workers/{UUID}/setstate", b'{"message":"Worker not found"}'),
    (
        "GET",
        "/api/v1/workers/test",
        b'{"message":"invalid request: ID provided in URL isn\'t valid UUID"}',
    ),
    (
        "POST",
        "/api/v1/workers/test/deregister",
        b'{"message":"invalid request: ID provided in URL isn\'t valid UUID"}',
    ),
    (
        "POST",
        "/api/v1/workers/test/setgroups",
        b'{"message":"invalid request: ID provided in URL isn\'t valid UUID"}',
    ),
    (
        "POST",
        "/api/v1/workers/test/setstate",
        b'{"message":"invalid request: ID provided in URL isn\'t valid UUID"}',
    ),
]


@pytest.mark.parametrize(("method", "path", "golden"), ERRORS)
async def test_error_goldens(farm: AppFarm, method: str, path: str, golden: bytes) -> None:
    body = (
        {"WorkerState": "IDLE"}
        if path.endswith("setstate")
        else (["g"] if path.endswith("setgroups") else {"Priority": 4})
    )
    answer = await farm.call(method, path, body if method == "POST" else None, as_="root")
    assert (answer.status_code, answer.content) == (404 if b"not found" in golden else 400, golden)
    assert_headers(answer, {"Content-Length": str(len(golden)), **JSON})


@pytest.mark.parametrize(
    ("path", "content", "golden"),
    [
        ("/api/v1/reqs/1", b"", b'{"message":"no body provided in HTTP request"}'),
        (
            "/api/v1/reqs/2",
            b'{"ID":1,"Priority":4}',
            b'{"message":"invalid request: request ID set in JSON doesn\'t match ID from URL"}',
        ),
        (
            "/api/v1/reqs/list",
            b'{"Sorter":{"Item":"foobarbaz"}}',
            b'{"message":"invalid request: unknown name of item by which list should be sorted"}',
        ),
        (
            "/api/v1/workers/list",
            b'{"Sorter":{"Item":"foobarbaz"}}',
            b'{"message":"invalid request: unknown name of item by which list should be sorted"}',
        ),
    ],
)
async def test_request_error_goldens(
    farm: AppFarm, path: str, content: bytes, golden: bytes
) -> None:
    await register(farm, {})
    await farm.new_request()
    answer = await farm.call("POST", path, content=content)
    assert (answer.status_code, answer.content) == (400, golden)
    assert_headers(answer, {"Content-Length": str(len(golden)), **JSON})


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/reqs/",
        "/api/v1/reqs/1",
        "/api/v1/reqs/list",
        "/api/v1/workers/list",
        f"/api/v1/workers/{UUID}/setstate",
        f"/api/v1/workers/{UUID}/setgroups",
    ],
)
async def test_malformed_json_goldens_keep_the_prefix(farm: AppFarm, path: str) -> None:
    answer = await farm.call("POST", path, content=b'{"Priority', as_="root")
    assert answer.status_code == 400
    assert answer.json()["message"].startswith("invalid request: ")  # Go: "unexpected EOF"


async def list_four_requests(farm: AppFarm) -> None:
    """The original's list fixture: 1 and 2 WAITING (priorities 8, 9), 3 and 4 CANCELLED."""
    await register(farm, {})
    for prio in (8, 9, 8, 9):
        body = {
            "Priority": prio,
            "Deadline": "2222-12-31T00:00:00Z",
            "ValidAfter": "1683-09-12T00:00:00Z",
        }
        await farm.new_request(body)
    for rid in (3, 4):
        await farm.post(f"/api/v1/reqs/{rid}/close")


def listed(rid: int, prio: int, state: str) -> str:
    return with_owner(
        f'{{"ID":{rid},"Priority":{prio},"Owner":{{"Groups":null}},"Deadline":"2222-12-31T00:00:00Z",'
        f'"ValidAfter":"1683-09-12T00:00:00Z","State":"{state}","Job":null,"Caps":null}}',
        "alice",
    )


@pytest.mark.parametrize(
    "content",
    [b"", b"null", b'{"Filter":{"IDs":null,"Priorities":null,"States":null},"Sorter":null}'],
)
async def test_filter_reqs_all_golden(farm: AppFarm, content: bytes) -> None:
    await list_four_requests(farm)
    answer = await farm.call("POST", "/api/v1/reqs/list", content=content)
    rows = [
        listed(1, 8, "WAITING"),
        listed(2, 9, "WAITING"),
        listed(3, 8, "CANCELLED"),
        listed(4, 9, "CANCELLED"),
    ]
    assert answer.content == ("[" + ",".join(rows) + "]").encode()
    assert_headers(
        answer,
        {
            "Boruta-List-Batch-Size": "4",
            "Boruta-List-Remaining": "0",
            "Boruta-List-Total": "4",
            **JSON,
        },
    )


async def test_filter_reqs_valid_filter_sort_desc_golden(farm: AppFarm) -> None:
    await list_four_requests(farm)
    body = {"Filter": {"States": ["WAITING"]}, "Sorter": {"Item": "state", "Order": "descending"}}
    answer = await farm.post("/api/v1/reqs/list", body)
    assert (
        answer.content
        == ("[" + listed(2, 9, "WAITING") + "," + listed(1, 8, "WAITING") + "]").encode()
    )
    assert_headers(
        answer,
        {"Boruta-List-Batch-Size": "2", "Boruta-List-Remaining": "0", "Boruta-List-Total": "2"},
    )


async def test_filter_reqs_nomatch_golden(farm: AppFarm) -> None:
    await list_four_requests(farm)
    answer = await farm.post("/api/v1/reqs/list", {"Filter": {"States": ["INVALID"]}})
    assert (answer.status_code, answer.content) == (200, b"[]")
    assert_headers(answer, {"Boruta-List-Batch-Size": "0", "Content-Length": "2", **JSON})


async def test_filter_workers_golden_bytes_keep_non_ascii_groups(farm: AppFarm) -> None:
    await register(farm, {"architecture": "RISC-V"})
    await farm.post(
        f"/api/v1/workers/{UUID}/setgroups", ["Malinowy Chruśniak", "Lędzianie"], as_="root"
    )
    body = {
        "Filter": {"Groups": ["Malinowy Chruśniak"], "Capabilities": {"architecture": "RISC-V"}}
    }
    answer = await farm.post("/api/v1/workers/list", body)
    # Groups are stored sorted (docs/boruta-api.md §set groups), so the real order is by code point.
    golden = (
        '{"WorkerUUID":"ec4898ac-0853-407c-8501-cbb24ef6bd77","State":"MAINTENANCE",'
        '"Groups":["Lędzianie","Malinowy Chruśniak"],'
        '"Caps":{"UUID":"ec4898ac-0853-407c-8501-cbb24ef6bd77","architecture":"RISC-V"}}'
    )
    assert answer.content.startswith(b"[") and answer.content.endswith(b"]")
    assert_object_bytes(answer.content[1:-1], golden)
    assert_headers(
        answer,
        {
            "Boruta-List-Batch-Size": "1",
            "Boruta-List-Remaining": "0",
            "Boruta-List-Total": "1",
            **JSON,
        },
    )


async def test_caps_keys_are_sorted_and_html_escaped_as_go_writes_them(farm: AppFarm) -> None:
    await register(farm, {"zeta": "a<b>&c", "alpha": "1"})
    answer = await farm.get(f"/api/v1/workers/{UUID}")
    assert (
        b'"Caps":{"UUID":"ec4898ac-0853-407c-8501-cbb24ef6bd77","alpha":"1","zeta":"a\\u003cb\\u003e\\u0026c"}'
        in answer.content
    )
