"""Malformed forms of input: deep JSON, duplicate keys, numbers and times at and past the
ends of their ranges, non-ASCII digits, odd ``Authorization`` headers, wrong
``Content-Type`` and bodies over the limit. Each is a 4xx that says what is wrong, never a
500 (docs/boruta-api.md §limits)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from coordinator.errors import ERROR_CODE_HEADER
from coordinator.settings import Settings
from coordinator.wire.limits import MAX_DEPTH
from tests.plugins.app_harness import AppFarm

pytestmark = pytest.mark.anyio

FARM = hsettings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
JSON_PATHS = ["/api/v1/reqs/", "/api/v1/reqs/list", "/api/v1/workers/list"]


def code(answer: object) -> str:
    return answer.headers.get(ERROR_CODE_HEADER, "")  # type: ignore[attr-defined,no-any-return]


@FARM
@given(
    depth=st.integers(1, 5000), kind=st.sampled_from(["[]", "{}"]), path=st.sampled_from(JSON_PATHS)
)
async def test_json_nested_past_the_limit_is_400_over_limit(
    farm: AppFarm, depth: int, kind: str, path: str
) -> None:
    if kind == "[]":
        body = "[" * depth + "]" * depth
    else:
        body = '{"Filter":' * depth + "{}" + "}" * depth
    answer = await farm.post(path, content=body.encode())
    assert answer.status_code in (200, 201, 400), answer.text  # 201: a shallow create
    nesting = depth + (1 if kind == "{}" else 0)
    if nesting > MAX_DEPTH:
        assert (answer.status_code, code(answer)) == (400, "over-limit")
        assert (
            answer.json()["message"]
            == f"invalid request: JSON nested deeper than {MAX_DEPTH} levels"
        )


@FARM
@given(
    key=st.sampled_from(["Priority", "Caps", "Filter", "x", ""]),
    values=st.lists(st.sampled_from(["8", "null", "{}", '"a"']), min_size=2, max_size=4),
    path=st.sampled_from(JSON_PATHS),
)
async def test_a_duplicate_key_is_400_and_named(
    farm: AppFarm, key: str, values: list[str], path: str
) -> None:
    body = "{" + ",".join(f"{json.dumps(key)}:{v}" for v in values) + "}"
    before = await farm.snapshot()
    answer = await farm.post(path, content=body.encode())
    assert (answer.status_code, code(answer)) == (400, "malformed-input")
    assert f"duplicate key {json.dumps(key)}" in answer.json()["message"]
    assert await farm.snapshot() == before


def _rfc3339(when: datetime, offset_minutes: int) -> str:
    sign = "+" if offset_minutes >= 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    # strftime writes year 1 as "1", not "0001"
    stamp = f"{when.year:04d}-{when:%m-%dT%H:%M:%S}"
    return stamp + f"{sign}{hours:02d}:{minutes:02d}"


@FARM
@given(
    when=st.one_of(
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(1, 1, 2)),
        st.datetimes(min_value=datetime(9999, 12, 30), max_value=datetime(9999, 12, 31, 23, 59)),
        st.datetimes(min_value=datetime(1, 1, 1)),
    ),
    offset=st.integers(-(24 * 60 - 1), 24 * 60 - 1),
    field=st.sampled_from(["Deadline", "ValidAfter"]),
)
async def test_times_at_the_ends_of_the_range_are_taken_or_400_never_500(
    farm: AppFarm, when: datetime, offset: int, field: str
) -> None:
    await farm.parked_worker()
    text = _rfc3339(when, offset)
    answer = await farm.post("/api/v1/reqs/", {"Priority": 8, field: text})
    assert answer.status_code in (201, 400), answer.text
    try:
        utc = when.replace(tzinfo=timezone(timedelta(minutes=offset))).astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None:
        assert answer.json()["message"] == (
            f'invalid request: parsing time "{text}" in {field}: out of the range 0001..9999 in UTC'
        )
    elif answer.status_code == 201 and utc != datetime(1, 1, 1, tzinfo=UTC):  # Go's zero: unset
        shown = (await farm.request_json(answer.json()["ReqID"]))[field]
        assert shown == f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S}Z" or field == "ValidAfter"


@pytest.mark.parametrize("zone", ["+24:00", "-24:00", "+00:60", "+99:99"])
async def test_an_offset_out_of_range_is_400(farm: AppFarm, zone: str) -> None:
    answer = await farm.post("/api/v1/reqs/", {"Deadline": f"2030-01-01T00:00:00{zone}"})
    assert answer.status_code == 400
    assert "time zone offset out of range" in answer.json()["message"]


@FARM
@given(
    n=st.one_of(st.integers(-(2**70), 2**70), st.sampled_from([2**63, 2**63 - 1, 2**64, 2**64 - 1]))
)
async def test_ids_at_and_past_the_ends_of_their_ranges_are_4xx(farm: AppFarm, n: int) -> None:
    answers = [
        await farm.get(f"/api/v1/reqs/{n}"),
        await farm.post(f"/api/v1/reqs/{n}/close"),
        await farm.post("/api/v1/reqs/list", {"Paginator": {"ID": n}}),
        await farm.post("/api/v1/reqs/list", {"Filter": {"IDs": [n], "Priorities": [n]}}),
        await farm.post("/api/v1/reqs/", {"Priority": n}),
        await farm.post(f"/api/v1/reqs/{max(n, 0)}", {"ID": n, "Priority": n}),
        await farm.get(f"/api/v1/history?after={n}"),
        await farm.call("DELETE", f"/api/v1/webhooks/{n}", as_="root"),
        await farm.get(f"/api/v1/webhooks/{n}/deliveries", as_="root"),
    ]
    for answer in answers:
        assert answer.status_code in (200, 201, 204, 400, 404), (answer.request.url, answer.text)
        if answer.status_code >= 400:
            assert code(answer), answer.text


DIGITS = st.text(
    st.characters(categories=("Nd", "No", "Nl"), exclude_characters="0123456789"),
    min_size=1,
    max_size=4,
)


@FARM
@given(digits=DIGITS, where=st.integers(0, 5))
async def test_non_ascii_digits_in_parameters_are_400(
    farm: AppFarm, digits: str, where: int
) -> None:
    rid = await farm.new_request()
    path = [
        f"/api/v1/history?limit={digits}",
        f"/api/v1/history?after={digits}",
        f"/api/v1/history/jobs?limit={digits}",
        f"/api/v1/reqs/{rid}/acquire_worker?wait={digits}",
        f"/api/v1/events?after={digits}",
        f"/api/v1/reqs/{digits}",
    ][where]
    method = "POST" if "acquire" in path else "GET"
    answer = await farm.call(method, path)
    assert (answer.status_code, code(answer)) in ((400, "malformed-input"), (400, "bad-id")), (
        path,
        answer.text,
    )


@pytest.mark.parametrize("text", ["1_0", " 1", "1 ", "+1", "1e2", "inf", "nan", "0x10", "1.", ".5"])
async def test_numbers_python_reads_but_go_does_not_are_400(farm: AppFarm, text: str) -> None:
    rid = await farm.new_request()
    for path in (f"/api/v1/history?limit={text}", f"/api/v1/reqs/{rid}/acquire_worker?wait={text}"):
        answer = await farm.call("POST" if "acquire" in path else "GET", path)
        assert (answer.status_code, code(answer)) == (400, "malformed-input"), path


HEADER_BYTES = st.binary(min_size=1, max_size=40).filter(
    lambda b: b"\r" not in b and b"\n" not in b and b"\0" not in b and b.strip() == b
)


@FARM
@given(
    scheme=st.sampled_from([b"Basic ", b"Bearer ", b"", b"basic ", b"Digest "]),
    rest=st.one_of(
        HEADER_BYTES,
        HEADER_BYTES.map(base64.b64encode),
        st.binary(max_size=20).map(lambda b: base64.b64encode(b"alice:" + b)),
    ),
)
async def test_an_authorization_header_that_is_not_ascii_or_base64_is_401(
    farm: AppFarm, scheme: bytes, rest: bytes
) -> None:
    answer = await farm.client.get("/api/v1/reqs/1", headers=[(b"authorization", scheme + rest)])
    assert (answer.status_code, code(answer)) == (401, "unauthorized"), answer.text
    assert answer.headers["WWW-Authenticate"]


@FARM
@given(
    kind=st.one_of(
        st.sampled_from(
            [
                "text/plain",
                "application/xml",
                "multipart/form-data; boundary=x",
                "image/png",
                "application/json; charset=latin-1",
                "application/json; charset=utf-16",
                "text/json",
                "json",
            ]  # fmt: skip
        ),
        st.from_regex(r"[a-z]{1,8}/[a-z]{1,8}", fullmatch=True).filter(
            lambda t: t not in ("application/json", "application/x-www-form-urlencoded")
        ),
    ),
    path=st.sampled_from(JSON_PATHS),
)
async def test_a_body_not_sent_as_json_is_415(farm: AppFarm, kind: str, path: str) -> None:
    before = await farm.snapshot()
    answer = await farm.post(path, {"Priority": 8}, headers={"Content-Type": kind})
    assert (answer.status_code, code(answer)) == (415, "unsupported-media-type"), answer.text
    assert "Content-Type" in answer.json()["message"]
    assert await farm.snapshot() == before


@pytest.mark.parametrize(
    "kind",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        "application/merge-patch+json",
        "application/x-www-form-urlencoded",  # what curl -d sends
    ],
)
async def test_json_and_what_curl_sends_are_taken(farm: AppFarm, kind: str) -> None:
    await farm.parked_worker()
    answer = await farm.post("/api/v1/reqs/", {"Priority": 8}, headers={"Content-Type": kind})
    assert answer.status_code == 201


LIMIT = 1024


@pytest.mark.parametrize("settings", [Settings(max_body_bytes=LIMIT)])
@FARM
@given(size=st.integers(LIMIT + 1, 4 * LIMIT), chunk=st.integers(1, 700), declared=st.booleans())
async def test_a_body_over_the_limit_is_413_with_or_without_a_length(
    farm: AppFarm, size: int, chunk: int, declared: bool
) -> None:
    body = b'{"Caps":{"k":"' + b"x" * size + b'"}}'

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), chunk):
            yield body[start : start + chunk]

    before = await farm.snapshot()
    headers = farm.auth("alice")
    path = "/api/v1/reqs/"
    if declared:
        answer = await farm.client.post(path, content=body, headers=headers)
    else:
        answer = await farm.client.post(path, content=chunks(), headers=headers)
        assert "content-length" not in answer.request.headers
    assert (answer.status_code, code(answer)) == (413, "body-too-large")
    assert answer.json() == {"message": f"request body over {LIMIT} bytes"}
    assert await farm.snapshot() == before


async def test_a_content_length_that_is_not_a_number_is_400(farm: AppFarm) -> None:
    headers = [(b"authorization", farm.auth("alice")["Authorization"].encode())]
    for value in (b"\xc2\xb2", b"-1", b"1e3"):
        scope_headers = [*headers, (b"content-length", value)]
        answer = await farm.client.post("/api/v1/reqs/", content=b"{}", headers=scope_headers)
        assert answer.status_code == 400, value
