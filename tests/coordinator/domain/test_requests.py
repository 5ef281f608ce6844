"""The request state machine against docs/boruta-api.md §request states, plus issue 3's fixes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from coordinator.domain import requests
from coordinator.domain.ids import RequestID
from coordinator.domain.model import Job, Request, User
from coordinator.domain.requests import RequestPolicy
from coordinator.domain.states import RequestState
from coordinator.errors import (
    DeadlineInThePast,
    InvalidRequest,
    InvalidTimeRange,
    ModificationForbidden,
    PriorityOutOfBounds,
    ProlongLimitReached,
    WorkerNotAssigned,
)
from tests.coordinator.domain.builders import HOUR, T0, make_request, running, uuid

ALICE = User("alice", groups=("lab",))
W = uuid(1)


def _new(
    priority: int = 8,
    valid_after: datetime | None = None,
    deadline: datetime | None = None,
    now: datetime = T0,
) -> Request:
    return requests.create(
        RequestID(7), ALICE, priority, {"arch": "arm"}, valid_after, deadline, now, 3
    )


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# --- NewRequest ---------------------------------------------------------------------------


def test_new_request_is_waiting_with_owner_groups_caps_and_queue_place() -> None:
    req = _new(priority=3, valid_after=T0 + HOUR, deadline=T0 + 2 * HOUR)
    assert (req.id, req.state, req.priority, req.queued) == (7, RequestState.WAITING, 3, 3)
    assert (req.owner, req.groups, dict(req.caps)) == ("alice", ("lab",), {"arch": "arm"})
    assert (req.valid_after, req.deadline, req.created, req.job) == (
        T0 + HOUR,
        T0 + 2 * HOUR,
        T0,
        None,
    )


def test_new_request_copies_caps_so_later_changes_to_the_input_do_not_leak() -> None:
    caps = {"arch": "arm"}
    req = requests.create(RequestID(1), ALICE, 8, caps, None, None, T0, 1)
    caps["arch"] = "x86"
    assert req.caps == {"arch": "arm"}


def test_new_request_defaults_valid_after_to_now_and_deadline_to_one_month() -> None:
    req = _new(now=_utc(2026, 1, 15, 10))
    assert req.valid_after == _utc(2026, 1, 15, 10)
    assert req.deadline == _utc(2026, 2, 15, 10)


@pytest.mark.parametrize(
    ("start", "month_later"),
    [
        (_utc(2026, 1, 15, 12, 30), _utc(2026, 2, 15, 12, 30)),
        (_utc(2026, 1, 31), _utc(2026, 3, 3)),  # Go normalises Feb 31 to Mar 3
        (_utc(2028, 1, 31), _utc(2028, 3, 2)),  # leap year: Feb 31 is Mar 2
        (_utc(2026, 3, 31), _utc(2026, 5, 1)),  # Apr 31 is May 1
        (_utc(2026, 12, 31, 23, 59), _utc(2027, 1, 31, 23, 59)),  # over the year end
        (_utc(2026, 2, 28), _utc(2026, 3, 28)),
    ],
)
def test_add_month_follows_go_add_date(start: datetime, month_later: datetime) -> None:
    assert requests.add_month(start) == month_later


@pytest.mark.parametrize(
    ("priority", "valid_after", "deadline", "error"),
    [
        # 1. a deadline in the past wins over everything else
        (0, T0 + 2 * HOUR, T0 - HOUR, DeadlineInThePast),
        # 2. then ValidAfter after Deadline, still before the priority
        (0, T0 + 2 * HOUR, T0 + HOUR, InvalidTimeRange),
        # 4. only then the priority
        (0, None, None, PriorityOutOfBounds),
        (17, T0, T0, PriorityOutOfBounds),
        (-1, None, T0 + HOUR, PriorityOutOfBounds),
    ],
)
def test_new_request_validates_in_the_originals_order(
    priority: int, valid_after: datetime | None, deadline: datetime | None, error: type[Exception]
) -> None:
    with pytest.raises(error):
        _new(priority, valid_after, deadline)


@pytest.mark.parametrize(
    ("valid_after", "deadline"),
    [
        (T0 + HOUR, T0 + HOUR),  # equal times are allowed
        (None, T0),  # a deadline of exactly now is not in the past
        (T0 + 1000 * HOUR, None),  # no range check against the default deadline
        (T0 - HOUR, T0 + HOUR),  # a past ValidAfter is fine
    ],
)
def test_new_request_accepts_edge_times(
    valid_after: datetime | None, deadline: datetime | None
) -> None:
    assert _new(8, valid_after, deadline).state is RequestState.WAITING


@pytest.mark.parametrize("priority", [1, 8, 16])
def test_new_request_accepts_every_priority_from_1_to_16(priority: int) -> None:
    assert _new(priority).priority == priority


def test_domain_validation_errors_are_400_invalid_request() -> None:
    with pytest.raises(InvalidRequest) as caught:
        _new(99)
    assert caught.value.status == 400
    assert caught.value.wire_message == "invalid request: requested priority out of bounds"


# --- UpdateRequest ------------------------------------------------------------------------


def test_update_changes_priority_and_times_of_a_waiting_request() -> None:
    req = make_request(priority=8, queued=1)
    new = requests.update(req, 2, T0 + HOUR, T0 + 5 * HOUR, T0, 40)
    assert (new.priority, new.valid_after, new.deadline) == (2, T0 + HOUR, T0 + 5 * HOUR)
    assert new.state is RequestState.WAITING


@pytest.mark.parametrize(
    ("priority", "queued_after"),
    [(3, 40), (8, 1), (None, 1)],
    ids=["new-priority-goes-to-the-back", "same-priority-keeps-place", "no-priority-keeps-place"],
)
def test_update_moves_the_request_to_the_back_only_on_a_priority_change(
    priority: int | None, queued_after: int
) -> None:
    req = make_request(priority=8, queued=1)
    assert requests.update(req, priority, None, None, T0, 40).queued == queued_after


def test_update_with_nothing_set_keeps_the_request_as_it_was() -> None:
    req = make_request()
    assert requests.update(req, None, None, None, T0, 40) == req


@pytest.mark.parametrize("state", [s for s in RequestState if s is not RequestState.WAITING])
def test_update_is_forbidden_outside_waiting(state: RequestState) -> None:
    with pytest.raises(ModificationForbidden) as caught:
        requests.update(make_request(state=state), 99, None, T0 - HOUR, T0, 40)
    assert caught.value.from_state == state


@pytest.mark.parametrize(
    ("priority", "valid_after", "deadline", "error"),
    [
        (0, T0 + 9 * HOUR, T0 - HOUR, PriorityOutOfBounds),  # priority is checked first
        (17, None, None, PriorityOutOfBounds),
        (None, T0 + 9 * HOUR, T0 - HOUR, DeadlineInThePast),  # then the deadline
        (None, T0 + 9 * HOUR, T0 + 8 * HOUR, InvalidTimeRange),  # then the new range
        (None, T0 + 25 * HOUR, None, InvalidTimeRange),  # against the stored deadline
    ],
)
def test_update_validates_priority_then_deadline_then_range(
    priority: int | None,
    valid_after: datetime | None,
    deadline: datetime | None,
    error: type[Exception],
) -> None:
    req = make_request(deadline=T0 + 24 * HOUR)
    with pytest.raises(error):
        requests.update(req, priority, valid_after, deadline, T0, 40)


def test_update_allows_valid_after_equal_to_the_deadline() -> None:
    req = make_request(deadline=T0 + 24 * HOUR)
    assert requests.update(req, None, T0 + 24 * HOUR, None, T0, 2).valid_after == T0 + 24 * HOUR


# --- readiness ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "valid_after", "deadline", "ready"),
    [
        (RequestState.WAITING, T0, T0 + HOUR, True),  # ValidAfter reached exactly
        (RequestState.WAITING, T0 - HOUR, T0 + HOUR, True),
        (RequestState.WAITING, T0 + timedelta(seconds=1), T0 + HOUR, False),  # in the future
        (RequestState.WAITING, T0 - HOUR, T0, False),  # Deadline reached exactly
        (RequestState.WAITING, T0 - 2 * HOUR, T0 - HOUR, False),
        (RequestState.IN_PROGRESS, T0 - HOUR, T0 + HOUR, False),
        (RequestState.CANCELLED, T0 - HOUR, T0 + HOUR, False),
    ],
)
def test_request_is_ready_when_waiting_and_now_in_valid_after_to_deadline(
    state: RequestState, valid_after: datetime, deadline: datetime, ready: bool
) -> None:
    req = make_request(state=state, valid_after=valid_after, deadline=deadline)
    assert requests.is_ready(req, T0) is ready


# --- transitions --------------------------------------------------------------------------


def test_run_puts_the_request_in_progress_with_a_job_timeout_from_policy() -> None:
    policy = RequestPolicy(job_timeout=timedelta(minutes=90))
    req = requests.run(make_request(), W, T0, policy)
    assert req.state is RequestState.IN_PROGRESS
    assert req.job is not None
    assert (req.job.worker, req.job.started, req.job.timeout) == (W, T0, T0 + timedelta(minutes=90))


def test_default_policy_is_one_hour_jobs_up_to_a_day_at_priority_8() -> None:
    assert RequestPolicy() == RequestPolicy(timedelta(hours=1), timedelta(hours=24), 8)


@pytest.mark.parametrize(
    ("state", "closed"),
    [
        (RequestState.WAITING, RequestState.CANCELLED),
        (RequestState.IN_PROGRESS, RequestState.DONE),
    ],
)
def test_close_cancels_a_waiting_request_and_finishes_a_running_one(
    state: RequestState, closed: RequestState
) -> None:
    assert requests.close(make_request(state=state)).state is closed


@pytest.mark.parametrize(
    "state",
    [
        RequestState.CANCELLED,
        RequestState.TIMEOUT,
        RequestState.INVALID,
        RequestState.DONE,
        RequestState.FAILED,
    ],
)
def test_close_of_a_finished_request_is_forbidden_and_names_both_states(
    state: RequestState,
) -> None:
    with pytest.raises(ModificationForbidden) as caught:
        requests.close(make_request(state=state))
    assert (caught.value.from_state, caught.value.to_state) == (state, RequestState.DONE)
    assert caught.value.message == "action cannot be executed in current state"


def test_waiting_request_times_out_at_deadline() -> None:
    req = requests.time_out(make_request(deadline=T0), T0)
    assert req is not None
    assert req.state is RequestState.TIMEOUT
    assert req.reason == "deadline passed before a worker was free"


@pytest.mark.parametrize(
    "req",
    [
        make_request(deadline=T0 + timedelta(seconds=1)),  # deadline moved later
        make_request(state=RequestState.IN_PROGRESS, deadline=T0 - HOUR),  # already running
        make_request(state=RequestState.CANCELLED, deadline=T0 - HOUR),
    ],
    ids=["deadline-ahead", "in-progress", "cancelled"],
)
def test_stale_deadline_timer_changes_nothing(req: Request) -> None:
    assert requests.time_out(req, T0) is None


def test_running_job_is_done_when_its_timeout_is_reached() -> None:
    req = requests.expire_job(running(make_request(), W, T0 - HOUR), T0)
    assert req is not None
    assert (req.state, req.reason) == (RequestState.DONE, "job timeout")
    assert req.job is not None  # the job stays on the request after DONE


@pytest.mark.parametrize(
    "req",
    [
        running(make_request(), W, T0),  # prolonged or not due yet
        make_request(state=RequestState.IN_PROGRESS),  # no job: nothing to expire
        replace(running(make_request(), W, T0 - 2 * HOUR), state=RequestState.DONE),
    ],
    ids=["not-due", "no-job", "already-done"],
)
def test_stale_job_timeout_timer_changes_nothing(req: Request) -> None:
    assert requests.expire_job(req, T0) is None


def test_running_request_fails_with_the_workers_reason() -> None:
    req = requests.fail(running(make_request(), W), "worker failed: power")
    assert (req.state, req.reason) == (RequestState.FAILED, "worker failed: power")


def test_waiting_request_becomes_invalid_with_a_reason() -> None:
    req = requests.invalidate(make_request(), "no worker can satisfy caps")
    assert (req.state, req.reason) == (RequestState.INVALID, "no worker can satisfy caps")


def test_a_transition_without_a_reason_keeps_the_earlier_one() -> None:
    req = replace(running(make_request(), W), reason="kept")
    assert requests.close(req).reason == "kept"


_MOVES = {
    RequestState.IN_PROGRESS: lambda r: requests.run(r, W, T0, RequestPolicy()),
    RequestState.FAILED: lambda r: requests.fail(r, "x"),
    RequestState.INVALID: lambda r: requests.invalidate(r, "x"),
}


@pytest.mark.parametrize(
    ("state", "target"),
    [
        (s, t)
        for s in RequestState
        for t in _MOVES
        if (s, t)
        not in {
            (RequestState.WAITING, RequestState.IN_PROGRESS),
            (RequestState.WAITING, RequestState.INVALID),
            (RequestState.IN_PROGRESS, RequestState.FAILED),
        }
    ],
)
def test_illegal_request_transition_raises_with_both_states(
    state: RequestState, target: RequestState
) -> None:
    with pytest.raises(ModificationForbidden) as caught:
        _MOVES[target](make_request(state=state))
    assert (caught.value.from_state, caught.value.to_state) == (state, target)


# --- ProlongAccess ------------------------------------------------------------------------


def test_prolong_pushes_the_timeout_one_period_from_now(policy: RequestPolicy) -> None:
    req = requests.prolong(running(make_request(), W, T0), T0 + 30 * timedelta(minutes=1), policy)
    assert req.job is not None
    assert req.job.timeout == T0 + timedelta(minutes=90)
    assert req.state is RequestState.IN_PROGRESS


def test_prolong_stops_at_the_maximum_job_length(policy: RequestPolicy) -> None:
    req = requests.prolong(
        running(make_request(), W, T0), T0 + 23 * HOUR + 30 * timedelta(minutes=1), policy
    )
    assert req.job is not None
    assert req.job.timeout == T0 + 24 * HOUR


def test_prolong_at_the_maximum_job_length_is_refused(policy: RequestPolicy) -> None:
    req = running(make_request(), W, T0)
    for hour in range(1, 24):
        req = requests.prolong(req, T0 + hour * HOUR, policy)
    with pytest.raises(ProlongLimitReached):
        requests.prolong(req, T0 + 24 * HOUR, policy)


def test_prolong_never_shortens_the_current_timeout() -> None:
    policy = RequestPolicy(job_timeout=HOUR, max_job_length=10 * HOUR)
    req = replace(make_request(state=RequestState.IN_PROGRESS), job=Job(W, T0, T0 + 3 * HOUR))
    req = requests.prolong(req, T0, policy)
    assert req.job == Job(W, T0, T0 + 3 * HOUR)


@pytest.mark.parametrize(
    "req",
    [
        make_request(),
        make_request(state=RequestState.IN_PROGRESS),
        replace(running(make_request(), W), state=RequestState.DONE),
    ],
    ids=["waiting", "in-progress-without-job", "done"],
)
def test_prolong_without_a_running_job_is_worker_not_assigned(
    req: Request, policy: RequestPolicy
) -> None:
    with pytest.raises(WorkerNotAssigned):
        requests.prolong(req, T0, policy)
