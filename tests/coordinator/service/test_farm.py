"""The farm in memory holds every live request and only the newest finished ones."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, strategies as st

from coordinator.domain.states import FINAL_REQUEST_STATES, RequestState
from coordinator.service.farm import Farm
from coordinator.store import Snapshot
from tests.coordinator.domain.builders import T0, make_request, running, uuid

DONE, CANCELLED = RequestState.DONE, RequestState.CANCELLED


def test_without_a_limit_every_request_stays() -> None:
    farm = Farm()
    for n in range(1, 50):
        farm.apply_request(make_request(n, state=DONE), T0)
    assert (len(farm.requests), farm.left_out, farm.floor) == (49, 0, 50)


def test_the_finished_requests_with_the_highest_ids_stay() -> None:
    farm = Farm(finished_in_memory=3)
    for n in range(1, 7):
        farm.apply_request(make_request(n), T0)
    for n in (2, 6, 1, 5, 4):
        farm.apply_request(make_request(n, state=CANCELLED), T0)
    assert sorted(farm.requests) == [3, 4, 5, 6]  # 3 is still WAITING
    assert (farm.left_out, farm.floor, farm.next_id) == (2, 4, 7)


def test_a_request_that_finishes_below_the_ones_held_goes_at_once() -> None:
    farm = Farm(finished_in_memory=2)
    job = running(make_request(1), uuid(1), T0)
    farm.apply_request(job, T0)
    for n in (2, 3):
        farm.apply_request(make_request(n, state=DONE), T0)
    farm.apply_request(replace(job, state=DONE), T0)
    assert (sorted(farm.requests), farm.left_out, farm.jobs, farm.held) == ([2, 3], 1, {}, {})
    assert (len(farm.timers), len(farm.queue)) == (0, 0)


def test_with_none_in_memory_every_finished_request_goes() -> None:
    farm = Farm(finished_in_memory=0)
    farm.apply_request(make_request(1), T0)
    farm.apply_request(make_request(1, state=CANCELLED), T0)
    assert (farm.requests, farm.left_out, farm.floor) == ({}, 1, 2)


def test_a_finished_request_applied_again_is_not_counted_twice() -> None:
    farm = Farm(finished_in_memory=1)
    farm.apply_request(make_request(1, state=DONE), T0)
    farm.apply_request(make_request(1, state=DONE), T0)
    farm.apply_request(make_request(2, state=DONE), T0)
    assert (sorted(farm.requests), farm.left_out) == ([2], 1)


def test_load_takes_the_stored_counters_and_what_was_left_out() -> None:
    snapshot = Snapshot(
        requests=[make_request(4, state=DONE), make_request(9, queued=3)],
        workers=[],
        next_id=12,
        next_queued=40,
        left_out=5,
    )
    farm = Farm.load(snapshot, T0, finished_in_memory=1)
    assert (farm.next_id, farm.next_queued, farm.left_out, farm.floor) == (12, 40, 5, 4)


@given(
    st.lists(st.tuples(st.integers(1, 40), st.sampled_from(sorted(RequestState))), max_size=80),
    st.integers(0, 5),
)
def test_whatever_the_order_the_held_finished_ones_are_the_highest(
    changes: list[tuple[int, RequestState]], most: int
) -> None:
    """Requests move from WAITING to any state, in any order; a final state is final."""
    farm, states = Farm(finished_in_memory=most), dict[int, RequestState]()
    for rid, state in changes:
        if states.get(rid) in FINAL_REQUEST_STATES:
            continue  # a finished request never changes
        states[rid] = state
        req = make_request(rid, state=state)
        farm.apply_request(
            running(req, uuid(rid), T0) if state is RequestState.IN_PROGRESS else req, T0
        )
    finished = sorted(r for r, s in states.items() if s in FINAL_REQUEST_STATES)
    held = finished[max(0, len(finished) - most) :] if most else []
    live = [r for r, s in states.items() if s not in FINAL_REQUEST_STATES]
    assert sorted(farm.requests) == sorted([*live, *held])
    assert farm.left_out == len(finished) - len(held)
    assert all(r < farm.floor for r in finished if r not in held)
