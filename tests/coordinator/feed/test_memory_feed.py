"""The feed from memory: the same events, ids and order as the store, a resuming subscriber
switching to the live feed without a gap or a duplicate, gaps read from the store, and no
store read per commit when nobody listens."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from coordinator.assembly import Parts, assemble
from coordinator.domain.clock import FakeClock
from coordinator.domain.model import Transition
from coordinator.domain.states import RequestState, WorkerState
from coordinator.feed.events import Broadcaster, Subscription, TransitionEvent
from coordinator.feed.webhooks import Webhooks
from coordinator.settings import Settings
from coordinator.store import Changes
from coordinator.store.records import Numbered, TransitionQuery
from coordinator.store.sql import SqlStore
from tests.coordinator.doubles import ALICE, RecordingDryads, RecordingTunnels
from tests.plugins.app_harness import AppFarm, StockKeys

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SUBJECTS = ("1", "2", "w1", "w2")


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqlStore]:
    """One migrated store for every example (each starts after the last one's events)."""
    store = SqlStore.open(tmp_path_factory.mktemp("feed") / "boruta.db")
    store.migrate()
    yield store
    store.close()


@st.composite
def transitions(draw: st.DrawFn) -> Transition:
    kind = draw(st.sampled_from(["request", "worker"]))
    states = [s.value for s in (RequestState if kind == "request" else WorkerState)]
    return Transition(
        T0 + timedelta(seconds=draw(st.integers(0, 100))),
        kind,  # type: ignore[arg-type]  # one of the two kinds
        draw(st.sampled_from(SUBJECTS)),
        draw(st.sampled_from(["", *states])),
        draw(st.sampled_from(states)),
        draw(st.text(max_size=8)),
        draw(st.sampled_from(["", "alice"])),
    )


def _subset(values: list[str]) -> st.SearchStrategy[frozenset[str]]:
    return st.frozensets(st.sampled_from(values), max_size=2)


queries = st.builds(
    TransitionQuery,
    kinds=_subset(["request", "worker"]),
    subjects=_subset(list(SUBJECTS)),
    states=_subset(["WAITING", "IDLE", "IN PROGRESS", "RUNNING"]),
)
# A commit's transitions, and whether the service published it (False: a commit whose
# outcome the service never learnt, which the broadcaster must read from the store).
commits = st.lists(
    st.tuples(st.lists(transitions(), min_size=1, max_size=4), st.booleans() | st.just(True)),
    max_size=10,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    commits=commits,
    query=queries,
    resume_at=st.integers(0, 10),
    page=st.integers(1, 4),
    queue=st.sampled_from([1, 3, 1000]),
)
def test_the_memory_feed_is_the_stored_feed(
    shared_store: SqlStore,
    commits: list[tuple[list[Transition], bool]],
    query: TransitionQuery,
    resume_at: int,
    page: int,
    queue: int,
) -> None:
    """A listener, a live subscriber and one resuming from the store while commits go on
    each get exactly the stored events they select, with the stored ids, in id order."""
    store = shared_store
    heard: list[TransitionEvent] = []
    got: dict[str, list[TransitionEvent]] = {"live": [], "resumed": []}

    final: list[int] = []  # the last wanted id, once every commit is made (0: none)

    async def read(name: str, events: Broadcaster, sub: Subscription) -> None:
        """Take events while the commits go on, until the last wanted one."""
        stream = events.stream(sub, keepalive=0.01)  # None now and then: look at ``final``
        with anyio.fail_after(20):
            while not final or (final[0] and (not got[name] or got[name][-1].id < final[0])):
                event = await anext(stream)
                if event is not None:
                    assert isinstance(event, TransitionEvent)
                    got[name].append(event)
        await stream.aclose()

    async def main() -> tuple[list[Numbered], list[Numbered]]:
        events = Broadcaster(store, queue=queue, page=page)
        events.add_listener(heard.extend)
        async with anyio.create_task_group() as tg:
            await tg.start(events.run)
            start = events.cursor
            async with anyio.create_task_group() as readers:
                readers.start_soon(read, "live", events, events.subscribe(query))
                for n, (batch, published) in enumerate([*commits, ([], True)]):
                    if n == min(resume_at, len(commits)):
                        # Replays from the store while the next commits are published.
                        resumed = events.subscribe(query, after=start)
                        readers.start_soon(read, "resumed", events, resumed)
                    if batch:
                        numbered = store.commit(Changes(transitions=batch))
                        if published:
                            events.publish(numbered)
                    for _ in range(n % 3):  # the readers run between some commits
                        await anyio.lowlevel.checkpoint()
                with anyio.fail_after(10):
                    await events.settled()  # the unpublished last commits, if any
                wanted = store.transitions_after(start, 10_000, query)
                final.append(wanted[-1].id if wanted else 0)
            stored = store.transitions_after(start, 10_000)
            tg.cancel_scope.cancel()
        return stored, wanted

    stored, wanted = anyio.run(main)
    assert heard == [TransitionEvent.of(n) for n in stored]
    expected = [TransitionEvent.of(n) for n in wanted]
    assert got["live"] == expected
    assert got["resumed"] == expected


class CountingStore:
    """A store that counts the calls of every method (all of them read or write it)."""

    def __init__(self, inner: SqlStore) -> None:
        self.inner = inner
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.inner, name)
        if not callable(found):
            return found

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return found(*args, **kwargs)

        return counted

    def feed_calls(self) -> dict[str, int]:
        """The calls of methods other than the service's commit and its request reads."""
        return {k: v for k, v in self.calls.items() if k not in ("commit", "request", "load")}


@pytest.mark.anyio
async def test_no_store_read_per_commit_without_subscribers_or_webhooks(
    tmp_path: Path,
) -> None:
    inner = SqlStore.open(tmp_path / "boruta.db")
    inner.migrate()
    store = CountingStore(inner)
    parts = Parts(store, RecordingDryads(), RecordingTunnels(), FakeClock(), StockKeys())
    coordinator = assemble(Settings(), parts)
    heard: list[TransitionEvent] = []
    coordinator.events.add_listener(heard.extend)
    try:
        async with coordinator.running():
            service = coordinator.service
            await service.new_request(ALICE, 4, {"board": "rpi4"})
            with anyio.fail_after(10):  # the webhooks' start-up reads are done
                await coordinator.webhooks.caught_up(coordinator.events.cursor)
            before, heard[:] = dict(store.feed_calls()), []
            for _ in range(20):
                await service.new_request(ALICE, 4, {"board": "rpi4"})
            assert store.feed_calls() == before, sorted(store.feed_calls().items())
            assert store.calls["commit"] >= 21
            assert len(heard) == 40  # WAITING, then INVALID: every event, from memory
            assert [e.id for e in heard] == list(range(heard[0].id, heard[0].id + 40))
            assert coordinator.events.store_reads == 0
    finally:
        inner.close()


@pytest.mark.anyio
async def test_a_gap_in_the_published_ids_is_read_from_the_store(farm: AppFarm) -> None:
    events: Broadcaster = farm.app.state.coordinator.events
    with anyio.fail_after(10):
        await events.settled()
    stream = events.stream(events.subscribe(TransitionQuery()), keepalive=3600)
    hidden = farm.store.commit(Changes(transitions=[_worker_t("w1"), _worker_t("w2")]))
    shown = farm.store.commit(Changes(transitions=[_worker_t("w3")]))
    events.publish(shown)  # as if the service never learnt that the first commit took
    with anyio.fail_after(10):
        got = [await anext(stream) for _ in range(3)]
    await stream.aclose()
    assert [e.id for e in got if isinstance(e, TransitionEvent)] == [
        hidden[0].id,
        hidden[1].id,
        shown[0].id,
    ]
    events.publish(shown)  # published twice: handed out once
    assert events.cursor == shown[0].id


def _worker_t(subject: str) -> Transition:
    return Transition(T0, "worker", subject, "", "MAINTENANCE")


@pytest.mark.anyio
async def test_webhooks_cost_no_store_read_per_commit(farm: AppFarm) -> None:
    hooks: Webhooks = farm.app.state.coordinator.webhooks
    events: Broadcaster = farm.app.state.coordinator.events
    with anyio.fail_after(10):
        await events.settled()
        await hooks.caught_up(events.cursor)
    reads = hooks.store_reads
    for n in range(5):
        await farm.worker(n + 1)
    with anyio.fail_after(10):
        await hooks.caught_up(events.cursor)
    assert hooks.store_reads == reads


class SlowReads:
    """A store whose ``transitions_after`` reads, then waits until released: an event can
    be committed and published between a replay's read and its answer."""

    def __init__(self, inner: SqlStore) -> None:
        self.inner = inner
        self.hold = threading.Event()
        self.hold.set()
        self.reading = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def transitions_after(self, *args: Any, **kwargs: Any) -> list[Numbered]:
        found: list[Numbered] = self.inner.transitions_after(*args, **kwargs)
        self.reading.set()
        if not self.hold.wait(10):
            raise AssertionError("the test never released the read")
        return found


@pytest.mark.anyio
async def test_an_event_published_during_a_replay_read_comes_right_after_it(
    tmp_path: Path,
) -> None:
    store = SqlStore.open(tmp_path / "boruta.db")
    store.migrate()
    slow = SlowReads(store)
    events = Broadcaster(slow, page=2)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(events.run)
            start = events.cursor
            events.publish(
                store.commit(Changes(transitions=[_worker_t(f"w{n}") for n in range(3)]))
            )
            stream = events.stream(events.subscribe(TransitionQuery(), after=start), keepalive=3600)
            got = [await anext(stream) for _ in range(2)]  # the first page, a full one
            slow.hold.clear()
            slow.reading.clear()
            async with anyio.create_task_group() as readers:

                async def rest() -> None:
                    with anyio.fail_after(10):
                        got.extend([await anext(stream) for _ in range(2)])

                readers.start_soon(rest)
                with anyio.fail_after(10):
                    # The second page is read, not yet answered: now an event is published.
                    await anyio.to_thread.run_sync(slow.reading.wait, 10)
                live = store.commit(Changes(transitions=[_worker_t("w9")]))
                events.publish(live)
                slow.hold.set()
            await stream.aclose()
            tg.cancel_scope.cancel()
    finally:
        store.close()
    ids = [e.id for e in got if isinstance(e, TransitionEvent)]
    assert ids == [start + 1, start + 2, start + 3, live[0].id] and live[0].id == start + 4
