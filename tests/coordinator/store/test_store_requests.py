"""Requests beyond the start-up snapshot: the live ones and the newest finished ones at
start-up, any one request, the finished ones a listing needs; and the listings made from
them, equal to listings over every request in memory.

See docs/architecture.md §requests in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any, cast

import anyio
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import delete

from coordinator.domain import listing
from coordinator.domain.ids import RequestID
from coordinator.domain.listing import ListSpec, Page, RequestFilter
from coordinator.domain.model import Request
from coordinator.domain.states import FINAL_REQUEST_STATES, RequestState
from coordinator.errors import NotFound
from coordinator.service import lookup
from coordinator.service.farm import Farm
from coordinator.store import Changes, RequestQuery, Store
from coordinator.store.sql import SqlStore
from coordinator.store.tables import requests as requests_table
from tests.coordinator.store.builders import T0, make_request, with_job

DONE, WAITING = RequestState.DONE, RequestState.WAITING
FINAL = sorted(FINAL_REQUEST_STATES)


def history(store: SqlStore, reqs: list[Request]) -> None:
    store.commit(Changes(requests=reqs))


def test_load_reads_the_live_requests_and_the_newest_finished_ones(store: SqlStore) -> None:
    reqs = [
        make_request(1, state=DONE),
        with_job(make_request(2), 1),
        make_request(3, state=RequestState.CANCELLED, queued=999),
        make_request(4),
        make_request(5, state=RequestState.INVALID),
        make_request(6, state=RequestState.TIMEOUT),
    ]
    history(store, reqs)
    snap = store.load(2)
    assert [r.id for r in snap.requests] == [2, 4, 5, 6]
    assert (snap.next_id, snap.next_queued, snap.left_out) == (7, 1000, 2)
    every = store.load()
    assert (every.requests, every.left_out) == (reqs, 0)
    assert [r.id for r in store.load(0).requests] == [2, 4]


def test_an_empty_store_starts_at_one(store: SqlStore) -> None:
    snap = store.load(5)
    assert (snap.requests, snap.next_id, snap.next_queued, snap.left_out) == ([], 1, 1, 0)


def test_one_request_is_read_by_id(store: SqlStore) -> None:
    req = with_job(make_request(7), 2)
    history(store, [req])
    assert (store.request(RequestID(7)), store.request(RequestID(8))) == (req, None)


def test_finished_requests_match_the_query(store: SqlStore) -> None:
    reqs = [make_request(n, state=FINAL[n % len(FINAL)]) for n in range(1, 21)]
    history(store, [*reqs, make_request(21), with_job(make_request(22), 1)])

    def ids(**query: Any) -> list[int]:
        return [r.id for r in store.finished_requests(RequestQuery(**query))]

    assert ids(below=100) == list(range(1, 21))
    assert ids(below=11) == list(range(1, 11))
    assert ids(below=100, ids=frozenset({3, 4, 21, 22, 99})) == [3, 4]
    assert ids(below=100, priorities=frozenset({2})) == [1, 17]
    done = [n for n in range(1, 21) if reqs[n - 1].state is DONE]
    assert ids(below=100, states=frozenset({DONE, WAITING})) == done
    assert ids(below=5, states=frozenset(), anchor=21) == [21]
    assert ids(below=5, anchor=12) == [1, 2, 3, 4, 12]


def test_values_no_row_can_hold_select_nothing_instead_of_failing(store: SqlStore) -> None:
    history(store, [make_request(n, state=DONE) for n in range(1, 4)])
    huge = 2**70

    def ids(**query: Any) -> list[int]:
        return [r.id for r in store.finished_requests(RequestQuery(below=100, **query))]

    assert ids(ids=frozenset({huge, -1})) == []
    assert ids(priorities=frozenset({huge})) == []
    assert ids(ids=frozenset({huge, 2}), priorities=frozenset({-huge, 3})) == [2]
    assert ids(anchor=huge) == [1, 2, 3]


def test_long_id_and_priority_lists_are_matched_outside_sql(store: SqlStore) -> None:
    history(store, [make_request(n, state=DONE) for n in range(1, 30)])
    query = RequestQuery(
        below=100, ids=frozenset(range(5, 2000)), priorities=frozenset(range(3, 1000))
    )
    assert [r.id for r in store.finished_requests(query)] == [
        n for n in range(5, 30) if 1 + n % 16 >= 3
    ]


# ---- listings: memory with a tiny retention and the store, against everything in memory --


SORTS = ["", "id", "priority", "deadline", "validafter", "state"]
STATE_WORDS = [s.value for s in RequestState]


@st.composite
def requests_made(draw: st.DrawFn) -> list[Request]:
    """A farm's history: IDs from 1 with a few never used, any states, some shared times."""
    count = draw(st.integers(0, 24))
    out = []
    for n in range(1, count + 1):
        if draw(st.integers(0, 9)) == 0:
            continue  # an ID never used
        state = draw(st.sampled_from(sorted(RequestState)))
        req = make_request(
            n,
            priority=draw(st.integers(1, 4)),
            state=state,
            deadline=T0.replace(minute=draw(st.integers(0, 3))),
            valid_after=T0.replace(second=draw(st.integers(0, 3))),
        )
        out.append(with_job(req, n) if state is RequestState.IN_PROGRESS else req)
    return out


@st.composite
def specs(draw: st.DrawFn, top: int) -> ListSpec[Request, RequestID]:
    some_ids = st.frozensets(st.integers(0, top + 2), max_size=4)
    flt = RequestFilter(
        ids=draw(st.one_of(st.just(frozenset()), some_ids)),
        priorities=draw(st.frozensets(st.integers(0, 4), max_size=2)),
        states=draw(st.frozensets(st.sampled_from(STATE_WORDS), max_size=3)),
    )
    match: Callable[[Request], bool] = flt
    if draw(st.integers(0, 7)) == 0:
        match = lambda r: r.id % 2 == 0  # noqa: E731 - a filter that is not a RequestFilter
    anchor = draw(st.one_of(st.none(), st.integers(1, top + 2)))
    return ListSpec(
        match,
        listing.request_sort_key(draw(st.sampled_from(SORTS))),
        descending=draw(st.booleans()),
        anchor=None if anchor is None else RequestID(anchor),
        backward=draw(st.booleans()),
        limit=draw(st.integers(0, 6)),
    )


def _answer(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except NotFound as exc:
        return ("NotFound", exc.message)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), keep=st.integers(0, 3))
def test_listings_and_lookups_are_the_same_with_a_tiny_retention(
    store: SqlStore, data: st.DataObject, keep: int
) -> None:
    reqs = data.draw(requests_made())
    with store.engine.begin() as conn:
        conn.execute(delete(requests_table))
    history(store, reqs)
    everything = {r.id: r for r in reqs}
    farm = Farm.load(store.load(keep), T0, keep)
    finished = [r.id for r in reqs if r.state in FINAL_REQUEST_STATES]
    assert farm.left_out == max(0, len(finished) - keep)
    top = max(everything, default=0)
    for _ in range(8):
        spec = data.draw(specs(top))
        expected = _answer(partial(listing.page, listing.REQUESTS, everything, spec))
        got = _answer(partial(anyio.run, lookup.page, farm, store, spec))
        assert got == expected
    for rid in map(RequestID, range(top + 3)):
        expected = _answer(partial(_found, everything, rid))
        assert _answer(partial(anyio.run, lookup.find, farm, store, rid)) == expected


def _found(everything: dict[RequestID, Request], rid: RequestID) -> Request:
    if rid not in everything:
        raise NotFound("Request")
    return everything[rid]


def test_a_listing_during_which_requests_finish_shows_the_farm_at_one_instant(
    store: SqlStore,
) -> None:
    """Requests that finish and are let go while the store is read appear once, in one
    state: as they were before, or as they are after."""
    running = [with_job(make_request(n), n) for n in range(1, 6)]
    history(store, [make_request(6, state=DONE), *running])
    for flt in (RequestFilter(), RequestFilter(ids=frozenset(range(1, 3000)))):  # window, all
        with store.engine.begin() as conn:
            conn.execute(delete(requests_table))
        history(store, [make_request(6, state=DONE), *running])
        farm = Farm.load(store.load(0), T0, 0)
        spec: ListSpec[Request, RequestID] = ListSpec(flt, listing.request_sort_key(""))
        slow = cast("Store", _Slow(store, partial(_finish_all, farm, store, running)))
        page: Page[Request] = anyio.run(lookup.page, farm, slow, spec)
        assert ([r.id for r in page.items], page.total, page.remaining) == (
            [1, 2, 3, 4, 5, 6],
            6,
            0,
        )
        assert len({r.state for r in page.items[:5]}) == 1
        assert sorted(farm.requests) == []  # meanwhile all of them finished and were let go


def test_a_listing_that_keeps_being_overtaken_reads_everything_at_once(store: SqlStore) -> None:
    history(store, [make_request(n, state=DONE) for n in range(1, 9)])
    farm = Farm.load(store.load(2), T0, 2)
    restless = cast("Store", _Restless(store, farm))
    spec: ListSpec[Request, RequestID] = ListSpec(
        RequestFilter(), listing.request_sort_key("priority"), descending=True, limit=3
    )
    page = anyio.run(lookup.page, farm, restless, spec)
    everything = {r.id: r for r in store.load().requests}
    assert page == listing.page(listing.REQUESTS, everything, spec)


class _Slow:
    """A store whose first listing read lets ``meanwhile`` commit and apply first."""

    def __init__(self, store: SqlStore, meanwhile: Callable[[], None]) -> None:
        self._store, self._meanwhile = store, [meanwhile]

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)
        if name.startswith("finished_") and self._meanwhile:
            self._meanwhile.pop()()
        return method


class _Restless:
    """A store during each of whose window reads some live request finishes."""

    def __init__(self, store: SqlStore, farm: Farm) -> None:
        self._store, self._farm = store, farm

    def __getattr__(self, name: str) -> Any:
        if name == "finished_window":
            self._farm.finishes += 1
        return getattr(self._store, name)


def _finish_all(farm: Farm, store: SqlStore, running: list[Request]) -> None:
    done = [replace(r, state=DONE) for r in running]
    store.commit(Changes(requests=done))
    for req in done:
        farm.apply_request(req, T0)


@pytest.mark.parametrize("keep", [0, 2])
def test_nothing_is_read_when_memory_has_the_whole_answer(store: SqlStore, keep: int) -> None:
    history(store, [make_request(1, state=DONE), make_request(2), make_request(3, state=DONE)])
    farm = Farm.load(store.load(keep), T0, keep)
    for flt in (
        RequestFilter(states=frozenset({"WAITING", "IN PROGRESS"})),
        RequestFilter(ids=frozenset({2, 99})),
    ):
        spec: ListSpec[Request, RequestID] = ListSpec(flt, listing.request_sort_key(""))
        page = anyio.run(lookup.page, farm, cast("Store", _NoReads()), spec)
        assert [r.id for r in page.items] == [2]


class _NoReads:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the store was read: {name}")
