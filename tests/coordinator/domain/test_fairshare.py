"""Decayed usage, the policies and the half-life (docs/scheduling.md §fair share)."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta

import pytest
from hypothesis import given, strategies as st

from coordinator.domain.fairshare import (
    DEFAULT_HALF_LIFE,
    Charge,
    Policy,
    Scheduling,
    Usage,
    charge,
    check_half_life,
    decayed,
    held,
    order_key,
    parse_policy,
    usage_now,
)
from coordinator.errors import BadQuota
from tests.coordinator.domain.builders import HOUR, T0, make_request

DAY = timedelta(days=1)


def test_the_original_order_is_the_default() -> None:
    assert Scheduling() == Scheduling(Policy.FIFO, DEFAULT_HALF_LIFE)
    assert DEFAULT_HALF_LIFE == DAY


@pytest.mark.parametrize(("text", "policy"), [("fifo", Policy.FIFO), (" FAIR ", Policy.FAIR)])
def test_policies_are_read_by_name(text: str, policy: Policy) -> None:
    assert parse_policy(text) is policy


def test_an_unknown_policy_is_refused_with_the_choices() -> None:
    with pytest.raises(BadQuota, match="must be fifo or fair, not 'lottery'"):
        parse_policy("lottery")


@pytest.mark.parametrize("seconds", [0, -1, 59, 366 * 86400])
def test_a_half_life_of_zero_or_absurd_length_is_refused(seconds: int) -> None:
    with pytest.raises(BadQuota, match="half-life must be from 60 to 31536000 seconds"):
        check_half_life(timedelta(seconds=seconds))


def test_a_usable_half_life_is_kept() -> None:
    assert check_half_life(HOUR) == HOUR


def test_usage_halves_each_half_life() -> None:
    assert decayed(100.0, T0, T0 + DAY, DAY) == pytest.approx(50.0)
    assert decayed(100.0, T0, T0 + 2 * DAY, DAY) == pytest.approx(25.0)


def test_usage_never_grows_when_the_clock_is_behind() -> None:
    assert decayed(100.0, T0, T0 - HOUR, DAY) == 100.0


def test_a_short_job_counts_about_its_length() -> None:
    assert held(T0, T0 + timedelta(seconds=60), DAY) == pytest.approx(60, rel=1e-3)


def test_a_job_counts_the_integral_of_the_decay() -> None:
    # One half-life of holding: h/ln2 * (1 - 1/2) board-seconds as of its end.
    assert held(T0, T0 + DAY, DAY) == pytest.approx(86400 / math.log(2) / 2)
    assert held(T0, T0, DAY) == 0.0
    assert held(T0 + HOUR, T0, DAY) == 0.0


def test_a_first_charge_starts_the_record_at_the_jobs_end() -> None:
    got = charge(None, "alice", T0, T0 + HOUR, DAY)
    assert got == Usage("alice", held(T0, T0 + HOUR, DAY), T0 + HOUR)


def test_a_charge_value_adds_its_job_onto_a_record() -> None:
    job = Charge("alice", T0, T0 + HOUR, DAY)
    assert job.onto(None) == charge(None, "alice", T0, T0 + HOUR, DAY)
    first = job.onto(None)
    assert job.onto(first).value == pytest.approx(2 * first.value)


def test_charges_decay_the_old_figure_first() -> None:
    first = charge(None, "alice", T0, T0 + HOUR, DAY)
    second = charge(first, "alice", T0 + DAY, T0 + DAY + HOUR, DAY)
    want = decayed(first.value, first.at, T0 + DAY + HOUR, DAY) + held(
        T0 + DAY, T0 + DAY + HOUR, DAY
    )
    assert second.value == pytest.approx(want)
    assert second.at == T0 + DAY + HOUR


_minutes = st.integers(min_value=0, max_value=7 * 24 * 60)


@given(st.lists(st.tuples(_minutes, st.integers(1, 600)), min_size=1, max_size=8), st.randoms())
def test_charges_add_up_the_same_in_any_order(
    jobs: list[tuple[int, int]], rng: random.Random
) -> None:
    """Two coordinators that record the same jobs in other orders agree on the figure."""
    spans = [(T0 + timedelta(minutes=s), T0 + timedelta(minutes=s + d)) for s, d in jobs]
    end = max(e for _, e in spans)

    def total(order: list[tuple[datetime, datetime]]) -> float:
        record = None
        for start, stop in order:
            record = charge(record, "a", start, stop, DAY)
        assert record is not None
        return decayed(record.value, record.at, end, DAY)

    shuffled = list(spans)
    rng.shuffle(shuffled)
    assert total(shuffled) == pytest.approx(total(spans), rel=1e-9)


def test_usage_now_adds_the_running_jobs() -> None:
    stored = {"alice": Usage("alice", 100.0, T0)}
    got = usage_now(stored, [("alice", T0), ("bob", T0 + HOUR)], T0 + 2 * HOUR, DAY)
    assert got["alice"] == pytest.approx(
        decayed(100.0, T0, T0 + 2 * HOUR, DAY) + held(T0, T0 + 2 * HOUR, DAY)
    )
    assert got["bob"] == pytest.approx(held(T0 + HOUR, T0 + 2 * HOUR, DAY))


def test_order_key_ignores_usage_under_fifo_and_follows_it_under_fair() -> None:
    first, second = make_request(1), make_request(2)
    used = {"alice": 5.0}
    assert order_key(Policy.FIFO, used)(second) == (8, 0.0, 2, 2)
    assert order_key(Policy.FAIR, used)(first) == (8, 5.0, 1, 1)
    assert order_key(Policy.FAIR, {})(first) == (8, 0.0, 1, 1)
