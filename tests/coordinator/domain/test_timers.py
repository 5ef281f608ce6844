"""Timers from stored instants (docs/boruta-api.md §timers), driven by a fake clock."""

from __future__ import annotations

import gc
from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given, strategies as st

from coordinator.domain import requests
from coordinator.domain.clock import FakeClock
from coordinator.domain.ids import RequestID
from coordinator.domain.model import Request
from coordinator.domain.states import RequestState
from coordinator.domain.timers import SLACK, Due, Timers
from tests.coordinator.domain.builders import HOUR, T0, make_request, running, uuid

R1, R2, R3 = RequestID(1), RequestID(2), RequestID(3)


def test_new_timers_are_empty_and_have_nothing_due() -> None:
    timers = Timers()
    assert (len(timers), timers.next(), timers.pop_due(T0 + 1000 * HOUR)) == (0, None, [])


def test_timers_leave_nothing_for_the_collector_to_walk() -> None:
    """Each entry is atoms only, so a collection stops tracking it: a full pass must not
    walk one object per live request here (docs/events.md §long steps)."""
    timers = Timers()
    for n in range(1, 101):
        timers.arm(make_request(rid=RequestID(n), valid_after=T0 + HOUR), T0)
    gc.collect()
    assert [item for item in timers._heap if gc.is_tracked(item)] == []
    assert timers.pop_due(T0 + HOUR)[:2] == [(Due.VALID_AFTER, R1), (Due.VALID_AFTER, R2)]


def test_waiting_request_arms_valid_after_and_deadline() -> None:
    timers = Timers()
    timers.arm(make_request(valid_after=T0 + HOUR, deadline=T0 + 2 * HOUR), T0)
    assert timers.pop_due(T0 + 2 * HOUR) == [(Due.VALID_AFTER, R1), (Due.DEADLINE, R1)]


def test_ready_request_arms_only_its_deadline() -> None:
    timers = Timers()
    timers.arm(make_request(valid_after=T0, deadline=T0 + HOUR), T0)
    assert timers.pop_due(T0 + HOUR) == [(Due.DEADLINE, R1)]


def test_running_request_arms_its_job_timeout() -> None:
    timers = Timers()
    timers.arm(running(make_request(), uuid(1), T0), T0)
    assert (timers.next(), timers.pop_due(T0 + HOUR)) == (T0 + HOUR, [(Due.JOB_TIMEOUT, R1)])


@pytest.mark.parametrize(
    "req",
    [
        make_request(state=RequestState.IN_PROGRESS),  # no job
        make_request(state=RequestState.DONE),
        make_request(state=RequestState.CANCELLED),
        make_request(state=RequestState.TIMEOUT),
    ],
    ids=["in-progress-without-job", "done", "cancelled", "timeout"],
)
def test_requests_without_anything_pending_arm_nothing(req: Request) -> None:
    timers = Timers()
    timers.arm(req, T0)
    assert len(timers) == 0


def test_pop_due_returns_entries_up_to_now_in_time_order_and_keeps_later_ones() -> None:
    timers = Timers()
    timers.push(T0 + 3 * HOUR, Due.DEADLINE, R3)
    timers.push(T0 + HOUR, Due.JOB_TIMEOUT, R1)
    timers.push(T0 + 2 * HOUR, Due.VALID_AFTER, R2)
    assert timers.pop_due(T0 + 2 * HOUR) == [(Due.JOB_TIMEOUT, R1), (Due.VALID_AFTER, R2)]
    assert (len(timers), timers.next()) == (1, T0 + 3 * HOUR)


def test_entries_at_one_instant_come_valid_after_then_deadline_then_job_timeout() -> None:
    timers = Timers()
    for kind, rid in ((Due.JOB_TIMEOUT, R1), (Due.DEADLINE, R2), (Due.VALID_AFTER, R3)):
        timers.push(T0, kind, rid)
    assert [kind for kind, _ in timers.pop_due(T0)] == [
        Due.VALID_AFTER,
        Due.DEADLINE,
        Due.JOB_TIMEOUT,
    ]


def test_arm_all_rebuilds_every_timer_after_a_restart() -> None:
    stored = [
        make_request(1, valid_after=T0 + HOUR),
        running(make_request(2), uuid(1), T0 - HOUR / 2),
        make_request(3, state=RequestState.DONE),
    ]
    timers = Timers()
    timers.arm_all(stored, T0)
    assert (len(timers), timers.next()) == (3, T0 + HOUR / 2)


def test_overdue_deadline_after_a_restart_fires_at_once(clock: FakeClock) -> None:
    timers = Timers()
    req = make_request(valid_after=T0 - 2 * HOUR, deadline=T0 - HOUR)
    timers.arm(req, clock.now())
    assert timers.pop_due(clock.now()) == [(Due.DEADLINE, R1)]
    assert requests.time_out(req, clock.now()) is not None


def test_prolonged_job_survives_its_first_timer(clock: FakeClock) -> None:
    timers, policy = Timers(), requests.RequestPolicy()
    req = running(make_request(), uuid(1), clock.now())
    timers.arm(req, clock.now())
    clock.advance(timedelta(minutes=30))
    req = requests.prolong(req, clock.now(), policy)
    timers.arm(req, clock.now())
    clock.advance(timedelta(minutes=30))
    assert timers.pop_due(clock.now()) == []  # the first timeout was dropped by the prolong
    clock.advance(timedelta(minutes=30))
    assert [
        requests.expire_job(req, clock.now()) is not None for _ in timers.pop_due(clock.now())
    ] == [True]


def test_an_entry_the_request_no_longer_needs_never_fires() -> None:
    timers = Timers()
    req = make_request(valid_after=T0 + HOUR, deadline=T0 + 2 * HOUR)
    timers.arm(req, T0)
    timers.arm(replace(req, deadline=T0 + 3 * HOUR), T0)
    assert (len(timers), timers.next()) == (2, T0 + HOUR)
    assert timers.pop_due(T0 + 3 * HOUR) == [(Due.VALID_AFTER, R1), (Due.DEADLINE, R1)]
    assert (len(timers), timers.size, timers.next()) == (0, 0, None)


def test_a_finished_request_drops_its_entries() -> None:
    timers = Timers()
    req = running(make_request(), uuid(1), T0)
    timers.arm(req, T0)
    timers.arm(replace(req, state=RequestState.DONE), T0)
    assert (len(timers), timers.next(), timers.pop_due(T0 + 1000 * HOUR)) == (0, None, [])


def test_entries_due_by_now_stay_for_the_next_pass() -> None:
    timers = Timers()
    req = make_request(valid_after=T0 + HOUR, deadline=T0 + 2 * HOUR)
    timers.arm(req, T0)
    # The ValidAfter instant has passed but the timer loop has not run yet.
    timers.arm(replace(req, state=RequestState.CANCELLED), T0 + HOUR)
    assert timers.pop_due(T0 + 2 * HOUR) == [(Due.VALID_AFTER, R1)]


def test_an_entry_needed_again_fires_once() -> None:
    timers = Timers()
    req = make_request(deadline=T0 + HOUR)
    timers.arm(req, T0)
    timers.arm(replace(req, deadline=T0 + 2 * HOUR), T0)
    timers.arm(req, T0)
    assert timers.pop_due(T0 + 3 * HOUR) == [(Due.DEADLINE, R1)]


def test_pushing_an_entry_twice_keeps_one() -> None:
    timers = Timers()
    timers.push(T0, Due.DEADLINE, R1)
    timers.push(T0, Due.DEADLINE, R1)
    assert (len(timers), timers.size, timers.pop_due(T0)) == (1, 1, [(Due.DEADLINE, R1)])


def test_a_popped_entry_pushed_back_fires_again() -> None:
    timers = Timers()
    timers.arm(make_request(deadline=T0 + HOUR), T0)
    (kind, rid), *_ = timers.pop_due(T0 + HOUR)
    timers.push(T0 + HOUR, kind, rid)  # as the service does when the commit failed
    assert timers.pop_due(T0 + HOUR) == [(Due.DEADLINE, R1)]


@given(st.lists(st.integers(min_value=1, max_value=48), min_size=1, max_size=400))
def test_the_heap_stays_bounded_by_the_live_entries(deadlines: list[int]) -> None:
    """Requests whose deadlines move, and that end: dropped entries do not pile up."""
    timers = Timers()
    for n, hours in enumerate(deadlines):
        req = make_request(n % 7 + 1, deadline=T0 + hours * HOUR)
        timers.arm(req, T0)
        if n % 3 == 0:
            timers.arm(replace(req, state=RequestState.DONE), T0)
        assert timers.size <= 2 * len(timers) + SLACK
    assert len(timers) <= 7  # one deadline per request at most
    live = len(timers)
    assert (len(timers.pop_due(T0 + 100 * HOUR)), len(timers)) == (live, 0)


def test_a_deadline_moved_many_times_leaves_one_entry() -> None:
    timers = Timers()
    for hours in range(1, 201):
        timers.arm(make_request(deadline=T0 + hours * HOUR), T0)
    assert (len(timers), timers.size <= 1 + SLACK) == (1, True)
    assert timers.pop_due(T0 + 1000 * HOUR) == [(Due.DEADLINE, R1)]


def test_sooner_says_whether_the_earliest_instant_moved_earlier() -> None:
    timers = Timers()
    assert (timers.sooner(None), timers.sooner(T0)) == (False, False)  # nothing to wake for
    timers.arm(make_request(deadline=T0 + 2 * HOUR), T0)
    assert (timers.sooner(None), timers.sooner(T0 + 3 * HOUR)) == (True, True)
    assert (timers.sooner(T0 + 2 * HOUR), timers.sooner(T0 + HOUR)) == (False, False)
    timers.arm(make_request(deadline=T0 + 5 * HOUR), T0)  # the entry moved later
    assert timers.sooner(T0 + 2 * HOUR) is False
