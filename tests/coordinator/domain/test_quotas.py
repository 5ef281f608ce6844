"""Quotas per user and per group (docs/scheduling.md §quotas), and the job-length limit."""

from __future__ import annotations

from datetime import timedelta

import pytest

from coordinator.domain import requests
from coordinator.domain.quotas import (
    MAX_HELD,
    NO_QUOTA,
    Quota,
    Quotas,
    check_waiting,
    checked,
    over_held,
)
from coordinator.domain.requests import RequestPolicy
from coordinator.errors import BadQuota, JobQuotaReached, ProlongLimitReached, QuotaExceeded
from tests.coordinator.domain.builders import HOUR, T0, make_request, running, uuid


@pytest.mark.parametrize(
    ("quota", "message"),
    [
        (Quota(max_held=-1), "MaxHeld must be a whole number from 0 to 10000, not -1"),
        (Quota(max_held=MAX_HELD + 1), "MaxHeld must be a whole number from 0 to 10000"),
        (Quota(max_waiting=-5), "MaxWaiting must be a whole number from 0 to 1000000, not -5"),
        (Quota(max_job=timedelta(0)), "MaxJobSeconds must be from 1 to 31536000, not 0"),
        (Quota(max_job=timedelta(days=400)), "MaxJobSeconds must be from 1 to 31536000"),
    ],
)
def test_negative_or_absurd_values_are_refused_by_name(quota: Quota, message: str) -> None:
    with pytest.raises(BadQuota, match=message):
        checked(quota)


def test_values_in_range_are_kept() -> None:
    quota = Quota(max_held=0, max_waiting=1_000_000, max_job=HOUR)
    assert checked(quota) is quota
    assert quota
    assert not NO_QUOTA


def test_users_own_quota_wins_field_by_field_over_the_strictest_group() -> None:
    quotas = Quotas(
        users={"alice": Quota(max_held=5)},
        groups={"ci": Quota(max_held=1, max_waiting=10), "qa": Quota(max_waiting=3, max_job=HOUR)},
    )
    assert quotas
    assert quotas.limits("alice", ("ci", "qa")) == Quota(5, 3, HOUR)
    assert quotas.limits("bob", ("ci",)) == Quota(1, 10, None)
    assert quotas.limits("carol", ("lab",)) == NO_QUOTA
    assert quotas.limits("alice", ()) == Quota(max_held=5)
    assert not Quotas()


def test_over_held_says_what_is_held_of_what() -> None:
    assert over_held(Quota(max_held=3), 3) == "over quota: holds 3 of 3 boards"
    assert over_held(Quota(max_held=3), 2) == ""
    assert over_held(NO_QUOTA, 100) == ""


def test_waiting_limit_refuses_with_the_limit_and_the_count() -> None:
    check_waiting("alice", Quota(max_waiting=2), 1)
    check_waiting("alice", NO_QUOTA, 10**6)
    with pytest.raises(QuotaExceeded, match="alice has 2 requests waiting, the limit is 2") as exc:
        check_waiting("alice", Quota(max_waiting=2), 2)
    assert exc.value.status == 429


def test_a_job_is_no_longer_than_the_owners_longest_job() -> None:
    policy = RequestPolicy()
    short = requests.run(make_request(), uuid(1), T0, policy, max_job=timedelta(minutes=10))
    assert short.job is not None and short.job.timeout == T0 + timedelta(minutes=10)
    usual = requests.run(make_request(), uuid(1), T0, policy, max_job=3 * HOUR)
    assert usual.job is not None and usual.job.timeout == T0 + HOUR


def test_prolong_stops_at_the_owners_longest_job_with_its_own_error() -> None:
    policy = RequestPolicy()
    job = running(make_request(), uuid(1))
    longer = requests.prolong(job, T0 + HOUR / 2, policy, max_job=HOUR + HOUR / 4)
    assert longer.job is not None and longer.job.timeout == T0 + HOUR + HOUR / 4
    with pytest.raises(JobQuotaReached, match="jobs of alice may last at most 4500 s") as exc:
        requests.prolong(longer, T0 + HOUR, policy, max_job=HOUR + HOUR / 4)
    assert exc.value.status == 403


def test_a_quota_longer_than_the_farms_limit_leaves_the_farms_limit() -> None:
    policy = RequestPolicy(max_job_length=HOUR)
    with pytest.raises(ProlongLimitReached):
        requests.prolong(running(make_request(), uuid(1)), T0, policy, max_job=2 * HOUR)
