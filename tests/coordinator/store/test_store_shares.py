"""Usage and quotas in the store, on SQLite and PostgreSQL (docs/scheduling.md): charges
commit with the job's end, survive a reopen, and add up alike from several coordinators."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from coordinator.domain.fairshare import Charge, Usage, charge, decayed
from coordinator.domain.quotas import Quota, Quotas
from coordinator.errors import NotFound
from coordinator.store import Changes
from coordinator.store.sql import SqlStore

from .builders import T0, make_request

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def _charge(owner: str, start_h: float, hours: float) -> Charge:
    start = T0 + timedelta(hours=start_h)
    return Charge(owner, start, start + timedelta(hours=hours), DAY)


def test_a_fresh_store_has_no_usage_and_no_quotas(store: SqlStore) -> None:
    assert store.usage() == {}
    assert store.quotas() == Quotas()
    snapshot = store.load()
    assert snapshot.usage == {} and snapshot.quotas == Quotas()


def test_charges_commit_with_the_other_changes_and_come_back_on_load(store: SqlStore) -> None:
    store.commit(Changes(requests=[make_request(1)], charges=[_charge("alice", 0, 1)]))
    want = charge(None, "alice", T0, T0 + HOUR, DAY)
    assert store.usage() == {"alice": want}
    assert store.load().usage == {"alice": want}
    assert Changes(charges=[_charge("a", 0, 1)])


def test_later_charges_decay_the_stored_figure(store: SqlStore) -> None:
    store.commit(Changes(charges=[_charge("alice", 0, 1)]))
    store.commit(Changes(charges=[_charge("alice", 24, 2), _charge("bob", 1, 1)]))
    first = charge(None, "alice", T0, T0 + HOUR, DAY)
    want = charge(first, "alice", T0 + 24 * HOUR, T0 + 26 * HOUR, DAY)
    got = store.usage()
    assert got["alice"].at == want.at
    assert got["alice"].value == pytest.approx(want.value, rel=1e-12)
    assert set(got) == {"alice", "bob"}


def test_one_owners_charges_in_one_commit_add_up_in_order(store: SqlStore) -> None:
    # The commit reads and writes each owner's row once for all of that owner's charges.
    charges = [_charge("alice", 0, 1), _charge("bob", 1, 1), _charge("alice", 3, 2)]
    charges.append(_charge("alice", 2, 4))  # ends last though it starts earlier
    store.commit(Changes(charges=charges))
    store.commit(Changes(charges=[_charge("bob", 30, 1)]))
    want: dict[str, Usage] = {}
    for item in [*charges, _charge("bob", 30, 1)]:
        want[item.owner] = item.onto(want.get(item.owner))
    got = store.usage()
    assert set(got) == set(want)
    for owner, usage in want.items():
        assert got[owner].at == usage.at
        assert got[owner].value == pytest.approx(usage.value, rel=1e-12)


def test_usage_survives_a_reopen(store: SqlStore, database: str) -> None:
    store.commit(Changes(charges=[_charge("alice", 0, 3)]))
    again = SqlStore.open(database)
    try:
        assert again.usage() == store.usage()
    finally:
        again.close()


def test_two_coordinators_charging_at_once_agree_on_the_sum(store: SqlStore, database: str) -> None:
    """Each 'coordinator' (a store of its own) charges its jobs in its own order."""
    jobs = [_charge("ci", n * 0.5, 0.25 + n % 3) for n in range(24)]
    other = SqlStore.open(database)
    errors: list[BaseException] = []

    def run(mine: SqlStore, part: list[Charge]) -> None:
        try:
            for job in part:
                mine.commit(Changes(charges=[job]))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(store, jobs[::2])),
        threading.Thread(target=run, args=(other, list(reversed(jobs[1::2])))),
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        other.close()
    assert errors == []
    expected: Usage | None = None
    for job in jobs:
        expected = job.onto(expected)
    assert expected is not None
    got = store.usage()["ci"]
    end = max(got.at, expected.at)
    assert decayed(got.value, got.at, end, DAY) == pytest.approx(
        decayed(expected.value, expected.at, end, DAY), rel=1e-9
    )


def test_quotas_are_set_replaced_and_removed(store: SqlStore) -> None:
    store.put_quota("user", "alice", Quota(max_held=3, max_job=2 * HOUR))
    store.put_quota("group", "ci", Quota(max_waiting=100))
    store.put_quota("user", "alice", Quota(max_held=1))
    assert store.quotas() == Quotas(
        users={"alice": Quota(max_held=1)}, groups={"ci": Quota(max_waiting=100)}
    )
    assert store.load().quotas == store.quotas()
    store.delete_quota("group", "ci")
    assert store.quotas() == Quotas(users={"alice": Quota(max_held=1)})
    with pytest.raises(NotFound, match="quota of group ci not found"):
        store.delete_quota("group", "ci")


def test_a_user_and_a_group_may_share_a_name(store: SqlStore) -> None:
    store.put_quota("user", "lab", Quota(max_held=1))
    store.put_quota("group", "lab", Quota(max_held=2))
    got = store.quotas()
    assert got.users["lab"] != got.groups["lab"]
