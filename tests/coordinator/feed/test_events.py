"""The event stream: SSE format over real HTTP, filters, resumption, slow subscribers, auth,
ephemeral events, and a real coordinator killed with SIGKILL and restarted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import httpx
import pytest

from coordinator.api.events import frame
from coordinator.domain.ids import WorkerUUID
from coordinator.domain.model import SubjectKind, Transition
from coordinator.domain.states import RequestState, WorkerState
from coordinator.feed.events import Broadcaster, TransitionEvent, matches
from coordinator.feed.panels import Panels, PanelView
from coordinator.store.records import Numbered, TransitionQuery
from coordinator.wire import Panel
from tests.coordinator.feed.test_panels import png
from tests.coordinator.sse_reader import subscribe
from tests.coordinator.uvicorn_server import serving
from tests.plugins.app_harness import NOW, AppFarm

pytestmark = pytest.mark.anyio


def _events(f: AppFarm) -> Broadcaster:
    events: Broadcaster = f.app.state.coordinator.events
    return events


async def test_each_transition_is_one_event_in_the_fixed_format(farm: AppFarm) -> None:
    async with (
        serving(farm.app) as url,
        httpx.AsyncClient(base_url=url, headers=farm.auth("alice")) as client,
        subscribe(client) as sse,
    ):
        uuid = await farm.parked_worker()
        rid = await farm.new_request({"Priority": 3, "Caps": {"board": "rpi4"}})
        worker, request = await sse.take(2)
    assert worker.event == "worker" and worker.id is not None
    assert worker.data == {
        "id": worker.id,
        "kind": "worker",
        "subject": uuid,
        "old": "",
        "new": "MAINTENANCE",
        "reason": "",
        "actor": "",
        "at": NOW,
    }
    assert request.event == "request" and request.id == worker.id + 1
    assert request.data == {
        "id": request.id,
        "kind": "request",
        "subject": str(rid),
        "old": "",
        "new": "WAITING",
        "reason": "",
        "actor": "alice",
        "at": NOW,
    }


# Non-ASCII, HTML-special characters, quotes and U+2028: the SSE data is compact JSON that
# keeps them as UTF-8 (unlike the API's Go-style bodies, which escape ``<>&`` and U+2028).
ODD_REASON = 'stm <ttyUSB0> & "power" lost: zażółć\u2028\\'
ODD_REASON_JSON = '"stm <ttyUSB0> & \\"power\\" lost: zażółć\u2028\\\\"'


async def test_the_bytes_of_one_frame_are_pinned(farm: AppFarm) -> None:
    uuid = await farm.idle_worker(1)
    after = farm.store.last_transition_id()
    farm.clock.advance(timedelta(seconds=1.25))
    async with (
        serving(farm.app) as url,
        httpx.AsyncClient(base_url=url, headers=farm.auth("alice")) as client,
        client.stream(
            "GET",
            "/api/v1/events",
            params={"kinds": "worker"},
            headers={"Last-Event-ID": str(after)},
        ) as answer,
    ):
        await farm.service.set_fail(uuid, ODD_REASON)
        raw = b""
        with anyio.fail_after(10):
            async for chunk in answer.aiter_bytes():
                raw += chunk
                if raw.endswith(b"\n\n"):
                    break
    n = after + 1
    expected = (
        f"id: {n}\nevent: worker\ndata: "
        f'{{"id":{n},"kind":"worker","subject":"{uuid}","old":"IDLE","new":"FAILED",'
        f'"reason":{ODD_REASON_JSON},"actor":"","at":"2026-01-01T00:00:01.25Z"}}\n\n'
    )
    assert raw == expected.encode()


async def test_the_bytes_of_one_panel_frame_are_pinned(farm: AppFarm) -> None:
    uuid = await farm.worker(1)
    farm.clock.advance(timedelta(seconds=1.25))
    panels: Panels = farm.app.state.coordinator.panels
    async with (
        serving(farm.app) as url,
        httpx.AsyncClient(base_url=url, headers=farm.auth("alice")) as client,
        client.stream("GET", "/api/v1/events", params={"kinds": "panel"}) as answer,
    ):
        await panels.update(uuid, Panel(png(), ((0, 128, 0), (1, 2, 3))))
        raw = b""
        with anyio.fail_after(10):
            async for chunk in answer.aiter_bytes():
                raw += chunk
                if raw.endswith(b"\n\n"):
                    break
    expected = (
        f'event: panel\ndata: {{"worker":"{uuid}","screen":"{png()}",'
        f'"leds":[[0,128,0],[1,2,3]],"at":"2026-01-01T00:00:01.250Z"}}\n\n'
    )
    assert raw == expected.encode()


async def test_filters_by_kind_subject_and_state(farm: AppFarm) -> None:
    async with (
        serving(farm.app) as url,
        httpx.AsyncClient(base_url=url, headers=farm.auth("root")) as client,
    ):
        async with (
            subscribe(client, params={"kinds": "worker"}) as workers,
            subscribe(client, params={"kinds": "request", "states": "IN PROGRESS"}) as running,
        ):
            first = await farm.idle_worker(1)
            await farm.worker(2)
            rid = await farm.new_request()
            await farm.post(f"/api/v1/reqs/{rid}/close")
            seen = await workers.take(5)
            started, ended = await running.take(2)
        assert [(e.data["subject"], e.data["new"]) for e in seen] == [
            (first, "MAINTENANCE"),
            (first, "PREPARE"),
            (first, "IDLE"),
            (uuid_of(2), "MAINTENANCE"),
            (first, "RUNNING"),
        ]
        assert (started.data["new"], ended.data["old"], ended.data["new"]) == (
            "IN PROGRESS",
            "IN PROGRESS",
            "DONE",
        )
        params = [("subject", str(rid)), ("subject", uuid_of(2)), ("after", "0")]
        async with subscribe(client, params=params) as some:
            got = await some.take(4)
        assert [(e.data["subject"], e.data["new"]) for e in got] == [
            (uuid_of(2), "MAINTENANCE"),
            (str(rid), "WAITING"),
            (str(rid), "IN PROGRESS"),
            (str(rid), "DONE"),
        ]


def uuid_of(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


async def test_last_event_id_replays_the_stored_events_then_live_ones(farm: AppFarm) -> None:
    await farm.parked_worker()
    ids = [await farm.new_request({"Caps": {"board": "rpi4"}}) for _ in range(3)]
    async with (
        serving(farm.app) as url,
        httpx.AsyncClient(base_url=url, headers=farm.auth("bob")) as client,
    ):
        async with subscribe(client, params={"after": "0"}) as sse:
            replayed = await sse.take(4)
        last = replayed[1].id
        assert last is not None
        async with subscribe(client, headers={"Last-Event-ID": str(last)}) as sse:
            rest = await sse.take(2)
            live = await farm.new_request({"Caps": {"board": "rpi4"}})
            (new,) = await sse.take(1)
    assert [e.data["subject"] for e in replayed[1:]] == [str(i) for i in ids]
    assert [e.id for e in rest] == [last + 1, last + 2]
    assert (new.id, new.data["subject"]) == (last + 3, str(live))


async def test_a_slow_subscriber_is_resynchronised_from_the_store(farm: AppFarm) -> None:
    events = _events(farm)
    events._queue = 2  # a tiny queue, so that four events overflow it
    sub = events.subscribe(TransitionQuery(kinds=frozenset({"request"})))
    stream = events.stream(sub)
    await farm.parked_worker()
    for _ in range(4):  # nobody reads meanwhile
        await farm.new_request({"Caps": {"board": "rpi4"}})
    with anyio.fail_after(10):
        await events.caught_up(5)
    assert sub.behind and not sub.queue  # dropped its queue rather than holding anyone up
    got = [await anext(stream) for _ in range(4)]
    await stream.aclose()
    assert [e.subject for e in got if isinstance(e, TransitionEvent)] == ["1", "2", "3", "4"]
    assert events.subscribers == 0


async def test_listeners_get_typed_events_before_any_subscriber(farm: AppFarm) -> None:
    events = _events(farm)
    with anyio.fail_after(10):
        await events.settled()  # so the subscriber starts at the listener's first event
    seen: list[TransitionEvent] = []
    events.add_listener(seen.extend)
    stream = events.stream(events.subscribe(TransitionQuery()))
    uuid = await farm.worker(1)
    first = await anext(stream)
    assert seen == [first]  # the listener had it before the subscriber
    assert isinstance(first, TransitionEvent)
    assert first == TransitionEvent(
        first.id, first.at, "worker", uuid, None, WorkerState.MAINTENANCE, "", ""
    )
    rid = await farm.new_request()  # WAITING: the worker could take it once in service
    with anyio.fail_after(10):
        await events.settled()
    await stream.aclose()
    assert events.cursor == farm.store.last_transition_id()
    assert [(e.kind, e.subject, e.old, e.new) for e in seen[1:]] == [
        ("request", str(rid), None, RequestState.WAITING)
    ]


async def test_keepalive_comment_and_ephemeral_events(farm: AppFarm) -> None:
    events = _events(farm)
    sub = events.subscribe(TransitionQuery())
    stream = events.stream(sub, keepalive=0.01)
    assert await anext(stream) is None  # the endpoint writes ": keepalive" for this
    view = PanelView(
        WorkerUUID(uuid_of(1)), b"PNG", ((1, 2, 3), (4, 5, 6)), datetime(2026, 1, 1, tzinfo=UTC)
    )
    events.publish_ephemeral(view)
    panel = await anext(stream)
    await stream.aclose()
    assert panel is view
    assert frame(view) == (
        b'event: panel\ndata: {"worker":"00000000-0000-4000-8000-000000000001",'
        b'"screen":"UE5H","leds":[[1,2,3],[4,5,6]],"at":"2026-01-01T00:00:00.000Z"}\n\n'
    )


def test_a_panel_passes_the_kinds_and_subjects_filters_by_its_name_and_worker() -> None:
    view = PanelView(
        WorkerUUID(uuid_of(1)), b"", ((0, 0, 0), (0, 0, 0)), datetime(2026, 1, 1, tzinfo=UTC)
    )
    for query, passes in [
        (TransitionQuery(), True),
        (TransitionQuery(kinds=frozenset({"panel"})), True),
        (TransitionQuery(kinds=frozenset({"worker"})), False),
        (TransitionQuery(subjects=frozenset({uuid_of(1)})), True),
        (TransitionQuery(subjects=frozenset({uuid_of(2)})), False),
        (TransitionQuery(states=frozenset({"IDLE"})), True),  # no states to filter by
    ]:
        assert matches(query, view) is passes, query


@pytest.mark.slow
async def test_authentication_and_the_query_token(farm: AppFarm) -> None:
    token = farm.tokens["alice"]
    async with serving(farm.app) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/api/v1/events")).status_code == 401
        bad = await client.get("/api/v1/events", params={"token": "nope"})
        assert bad.status_code == 401
        # ?token= is for EventSource only; elsewhere it is not a credential.
        other = await client.get("/api/v1/history", params={"token": token})
        assert other.status_code == 401
        async with subscribe(client, params={"token": token}) as sse:
            await farm.worker(3)
            (event,) = await sse.take(1)
        assert event.data["new"] == "MAINTENANCE"
        malformed = await client.get(
            "/api/v1/events", params={"token": token}, headers={"Last-Event-ID": "x"}
        )
        assert malformed.status_code == 400


async def test_streams_end_when_the_app_stops(farm: AppFarm) -> None:
    events = _events(farm)
    sub = events.subscribe(TransitionQuery())
    events.close()
    assert [e async for e in events.stream(sub)] == []


@pytest.mark.e2e
def test_resuming_after_a_kill_and_restart_misses_nothing(tmp_path: Path) -> None:
    from tests.e2e.coordinators import client, run_cli, start

    db, log = tmp_path / "boruta.db", tmp_path / "coordinator.log"
    run_cli(db, "migrate")
    token = run_cli(db, "user", "add", "alice").strip().splitlines()[-1]
    first = start(db, log, "")
    try:
        with client(first.url, token) as http:
            for _ in range(3):
                assert http.post("/api/v1/reqs/", json={"Priority": 4}).status_code == 201
            seen = _sse_sync(first.url, token, after=0, count=6)
    finally:
        first.kill()
    second = start(db, log, "")
    try:
        with client(second.url, token) as http:
            assert http.post("/api/v1/reqs/", json={"Priority": 4}).status_code == 201
            rest = _sse_sync(second.url, token, after=seen[2][0], count=5)
    finally:
        second.process.terminate()
        second.process.wait(20)
    assert [i for i, _ in seen] == list(range(1, 7))
    assert [i for i, _ in rest] == list(range(4, 9))
    assert [d["new"] for _, d in rest] == ["INVALID", "WAITING", "INVALID", "WAITING", "INVALID"]


def _sse_sync(url: str, token: str, after: int, count: int) -> list[tuple[int, dict[str, str]]]:
    import json

    got: list[tuple[int, dict[str, str]]] = []
    headers = {"Authorization": f"Bearer {token}", "Last-Event-ID": str(after)}
    with httpx.stream("GET", f"{url}/api/v1/events", headers=headers, timeout=10) as answer:
        ident = 0
        for line in answer.iter_lines():
            if line.startswith("id: "):
                ident = int(line[4:])
            elif line.startswith("data: "):
                got.append((ident, json.loads(line[6:])))
                if len(got) == count:
                    break
    return got


T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kind", "states"), [("request", list(RequestState)), ("worker", list(WorkerState))]
)
def test_a_stored_transition_becomes_the_enum_members_of_its_kind(
    kind: SubjectKind, states: list[RequestState] | list[WorkerState]
) -> None:
    for old, new in zip(states, states[1:] + states[:1], strict=True):
        for stored_old, stored_new in ((old.value, new.value), (old, new)):  # text or enum
            t = Transition(T0, kind, "1", stored_old, stored_new, "why", "alice")
            event = TransitionEvent.of(Numbered(7, t))
            assert (event.old, event.new) == (old, new)
            assert type(event.old) is type(old) and type(event.new) is type(new)
    created = TransitionEvent.of(Numbered(8, Transition(T0, kind, "1", "", states[0].value)))
    assert (created.old, created.new) == (None, states[0])


def test_a_stored_state_no_enum_has_is_refused_as_the_enum_refuses_it() -> None:
    for kind in ("request", "worker"):
        with pytest.raises(ValueError, match="'NAPPING' is not a valid"):
            TransitionEvent.of(Numbered(1, Transition(T0, kind, "1", "", "NAPPING")))
