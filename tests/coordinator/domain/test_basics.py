"""Ids, states and clocks: the small values the rest of the core builds on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from coordinator.domain.clock import FakeClock, SystemClock
from coordinator.domain.ids import HI_PRIO, LO_PRIO, MAX_REQUEST_ID, is_worker_uuid
from coordinator.domain.states import (
    FINAL_REQUEST_STATES,
    REQUEST_TRANSITIONS,
    RequestState,
    WorkerState,
)


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("3b5c7c1e-8f3a-4d2b-9a6e-0123456789ab", True),
        ("3B5C7C1E-8F3A-4D2B-9A6E-0123456789AB", False),  # the original takes lower case only
        ("3b5c7c1e8f3a4d2b9a6e0123456789ab", False),
        ("3b5c7c1e-8f3a-4d2b-9a6e-0123456789ab\n", False),
        ("{3b5c7c1e-8f3a-4d2b-9a6e-0123456789ab}", False),
        ("", False),
    ],
)
def test_worker_uuid_must_be_lower_case_dashed_hex(text: str, valid: bool) -> None:
    assert is_worker_uuid(text) is valid


def test_priorities_run_from_1_most_important_to_16_and_ids_are_uint64() -> None:
    assert (HI_PRIO, LO_PRIO, MAX_REQUEST_ID) == (1, 16, 18446744073709551615)


@pytest.mark.parametrize(
    ("state", "wire"),
    [
        (RequestState.IN_PROGRESS, "IN PROGRESS"),
        (RequestState.WAITING, "WAITING"),
        (WorkerState.RUN, "RUNNING"),
        (WorkerState.FAIL, "FAILED"),
        (WorkerState.BUSY, "BUSY"),
    ],
)
def test_state_values_are_the_originals_wire_strings(state: str, wire: str) -> None:
    assert state == wire


def test_request_transitions_are_exactly_those_of_the_spec() -> None:
    w, p = RequestState.WAITING, RequestState.IN_PROGRESS
    assert REQUEST_TRANSITIONS == {
        (w, p),
        (w, RequestState.CANCELLED),
        (w, RequestState.TIMEOUT),
        (w, RequestState.INVALID),
        (p, RequestState.DONE),
        (p, RequestState.FAILED),
    }


def test_final_request_states_have_no_way_out() -> None:
    assert FINAL_REQUEST_STATES == set(RequestState) - {
        RequestState.WAITING,
        RequestState.IN_PROGRESS,
    }
    assert not {old for old, _ in REQUEST_TRANSITIONS} & FINAL_REQUEST_STATES


def test_fake_clock_stands_still_until_advanced_or_set() -> None:
    clock = FakeClock()
    start = clock.now()
    assert (start, clock.now()) == (datetime(2026, 1, 1, tzinfo=UTC), start)
    clock.advance(timedelta(seconds=90))
    assert clock.now() == start + timedelta(seconds=90)
    clock.set(datetime(2030, 5, 5, tzinfo=UTC))
    assert clock.now() == datetime(2030, 5, 5, tzinfo=UTC)


def test_fake_clock_starts_where_told() -> None:
    assert FakeClock(datetime(2027, 2, 2, tzinfo=UTC)).now() == datetime(2027, 2, 2, tzinfo=UTC)


def test_system_clock_tells_aware_utc_time() -> None:
    before = datetime.now(UTC)
    now = SystemClock().now()
    assert now.tzinfo is UTC
    assert before <= now <= datetime.now(UTC)
