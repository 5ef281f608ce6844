"""Text an older version stored before the API refused it never fails an answer for others:
listings, worker and request views, the event stream and webhook bodies write it as U+FFFD
and log which item held it (docs/boruta-api.md §limits)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from coordinator import boruta_json as bj
from coordinator.api.events import frame
from coordinator.domain.model import User
from coordinator.feed.events import TransitionEvent
from coordinator.wire.limits import scrub
from tests.coordinator.doubles import uuid_of
from tests.plugins.app_harness import AppFarm

pytestmark = pytest.mark.anyio

BAD = st.tuples(st.text(max_size=4), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)).map(
    "".join
)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(key=BAD, value=BAD)
async def test_a_stored_bad_cap_fails_no_listing_and_no_view(
    farm: AppFarm, key: str, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    # As an older version stored them: past the edge, straight into the service.
    bad_worker = await farm.worker(1, {key: value})
    good_worker = await farm.worker(2, {"board": "rpi4"})
    bad_rid = await farm.service.new_request(User("alice"), 8, {key: value})
    good_rid = await farm.new_request({"Caps": {"board": "rpi4"}})
    with caplog.at_level(logging.WARNING, "coordinator.boruta_json"):
        workers = await farm.post("/api/v1/workers/list")
        reqs = await farm.post("/api/v1/reqs/list")
        one_worker = await farm.get(f"/api/v1/workers/{bad_worker}")
        one_req = await farm.get(f"/api/v1/reqs/{bad_rid}")
    for answer in (workers, reqs, one_worker, one_req):
        assert answer.status_code == 200
    by_uuid = {w["WorkerUUID"]: w for w in workers.json()}
    assert by_uuid[good_worker]["Caps"] == {"UUID": good_worker, "board": "rpi4"}
    assert by_uuid[bad_worker]["Caps"][scrub(key)] == scrub(value)
    assert one_worker.json()["Caps"][scrub(key)] == scrub(value)
    by_id = {r["ID"]: r for r in reqs.json()}
    assert by_id[good_rid]["Caps"] == {"board": "rpi4"}
    assert one_req.json()["Caps"] == {scrub(key): scrub(value)}
    assert f"holds text that is not UTF-8 (items {bad_rid})" in caplog.text
    assert f"(items {bad_worker})" in caplog.text


@settings(max_examples=30)
@given(reason=BAD, actor=BAD)
def test_an_event_with_bad_text_is_framed_as_utf8(reason: str, actor: str) -> None:
    event = TransitionEvent(
        7, datetime(2026, 1, 1, tzinfo=UTC), "worker", uuid_of(1), None, None, reason, actor
    )
    data = frame(event)
    data.decode()  # valid UTF-8
    payload = json.loads(data.split(b"data: ", 1)[1])
    assert (payload["reason"], payload["actor"]) == (scrub(reason), scrub(actor))


@given(value=BAD)
def test_the_clients_encoder_refuses_such_text_instead_of_changing_it(value: str) -> None:
    with pytest.raises(UnicodeEncodeError):
        bj.dumps({"Caps": {"k": value}})
