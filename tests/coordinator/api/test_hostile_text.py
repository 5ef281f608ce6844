"""Text that cannot be encoded as UTF-8, and text over the limits, in any field the API
takes: 400 with a message naming the field and a stable code, and nothing stored
(docs/boruta-api.md §limits)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from coordinator.errors import ERROR_CODE_HEADER
from coordinator.wire import limits
from tests.coordinator.doubles import uuid_of
from tests.plugins.app_harness import AppFarm

pytestmark = pytest.mark.anyio

FARM_SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# A lone surrogate somewhere in otherwise ordinary text: what "\ud800" escapes decode to.
BAD_TEXT = st.tuples(
    st.text(max_size=6),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    st.text(max_size=6),
).map("".join)
GOOD_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cc"]), min_size=1, max_size=8)

WORKER = uuid_of(9)


def _bodies(bad: str, good: str) -> list[tuple[str, str, Any, str]]:
    """(path, who, body, the field the answer must name) with ``bad`` in one field."""
    return [
        ("/api/v1/reqs/", "alice", {"Caps": {good: bad}}, "Caps"),
        ("/api/v1/reqs/", "alice", {"Caps": {bad: good}}, "Caps key"),
        ("/api/v1/reqs/list", "alice", {"Filter": {"States": [bad]}}, "States"),
        ("/api/v1/workers/list", "alice", {"Filter": {"Capabilities": {bad: good}}}, "key"),
        ("/api/v1/workers/list", "alice", {"Filter": {"Groups": [good, bad]}}, "Groups"),
        (f"/api/v1/workers/{WORKER}/setgroups", "root", [good, bad], "groups"),
        ("/api/v1/webhooks", "root", {"URL": f"http://hooks.example/{bad}"}, "URL"),
        (
            "/api/v1/webhooks",
            "root",
            {"URL": "http://hooks.example/", "Secret": "s" * 16 + bad},
            "Secret",
        ),
        ("/api/v1/webhooks", "root", {"URL": "http://hooks.example/", "Kinds": [bad]}, "Kinds"),
    ]


@pytest.fixture
async def parked(farm: AppFarm) -> AppFarm:
    await farm.worker(9, {"board": "rpi4"})
    return farm


async def _refused_unchanged(farm: AppFarm, path: str, who: str, body: Any) -> Any:
    before = await farm.snapshot()
    hooks = (await farm.get("/api/v1/webhooks", as_="root")).json()
    answer = await farm.post(path, content=json.dumps(body).encode(), as_=who)
    assert answer.status_code == 400, answer.text
    assert await farm.snapshot() == before
    assert (await farm.get("/api/v1/webhooks", as_="root")).json() == hooks
    return answer


@FARM_SETTINGS
@given(bad=BAD_TEXT, good=GOOD_TEXT, case=st.integers(0, 8))
async def test_text_that_is_not_utf8_is_400_invalid_text_in_every_field(
    parked: AppFarm, bad: str, good: str, case: int
) -> None:
    path, who, body, field = _bodies(bad, good)[case]
    answer = await _refused_unchanged(parked, path, who, body)
    assert answer.headers[ERROR_CODE_HEADER] == "invalid-text", (case, answer.text)
    message = answer.json()["message"]
    assert message.startswith("invalid request: ") and field in message
    assert "lone surrogate" in message


def _over(n: int) -> list[tuple[str, str, Any]]:
    """Bodies each over one limit by ``n``."""
    many = {f"k{i}": "v" for i in range(limits.MAX_CAPS + n)}
    return [
        ("/api/v1/reqs/", "alice", {"Caps": many}),
        ("/api/v1/reqs/", "alice", {"Caps": {"k" * (limits.MAX_CAP_KEY + n): "v"}}),
        ("/api/v1/reqs/", "alice", {"Caps": {"k": "v" * (limits.MAX_CAP_VALUE + n)}}),
        ("/api/v1/workers/list", "alice", {"Filter": {"Capabilities": many}}),
        (
            f"/api/v1/workers/{WORKER}/setgroups",
            "root",
            [f"g{i}" for i in range(limits.MAX_GROUPS + n)],
        ),
        (f"/api/v1/workers/{WORKER}/setgroups", "root", ["g" * (limits.MAX_NAME + n)]),
        ("/api/v1/reqs/list", "alice", {"Filter": {"IDs": list(range(limits.MAX_LIST + n))}}),
        ("/api/v1/webhooks", "root", {"URL": "http://h.example/" + "p" * limits.MAX_URL}),
    ]


@FARM_SETTINGS
@given(n=st.integers(1, 50), case=st.integers(0, 7))
async def test_input_over_a_limit_is_400_over_limit(parked: AppFarm, n: int, case: int) -> None:
    path, who, body = _over(n)[case]
    answer = await _refused_unchanged(parked, path, who, body)
    assert answer.headers[ERROR_CODE_HEADER] == "over-limit"
    assert "more than" in answer.json()["message"] or "longer than" in answer.json()["message"]


@FARM_SETTINGS
@given(
    caps=st.dictionaries(
        st.text(st.characters(codec="utf-8"), max_size=limits.MAX_CAP_KEY),
        st.text(st.characters(codec="utf-8"), max_size=limits.MAX_CAP_VALUE),
        max_size=limits.MAX_CAPS,
    )
)
async def test_caps_within_the_limits_are_taken_and_shown_as_sent(
    farm: AppFarm, caps: dict[str, str]
) -> None:
    await farm.worker(9, caps)  # a worker that could take it, so it stays WAITING
    rid = await farm.new_request({"Caps": caps})
    assert (await farm.request_json(rid))["Caps"] == (caps or None)


async def test_a_group_name_with_a_control_character_is_refused(parked: AppFarm) -> None:
    path = f"/api/v1/workers/{WORKER}/setgroups"
    answer = await _refused_unchanged(parked, path, "root", ["lab\n1"])
    assert answer.json()["message"] == (
        "invalid request: groups item must be 1 to 64 characters, no control characters"
    )


async def test_a_group_name_with_spaces_is_taken_as_the_original_took_it(farm: AppFarm) -> None:
    uuid = await farm.worker(1)
    answer = await farm.post(f"/api/v1/workers/{uuid}/setgroups", ["Lab 1"], as_="root")
    assert answer.status_code == 204
    assert (await farm.get(f"/api/v1/workers/{uuid}")).json()["Groups"] == ["Lab 1"]
