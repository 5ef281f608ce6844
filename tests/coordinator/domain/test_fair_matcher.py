"""The fair order and held-board quotas in the matcher and the queue (docs/scheduling.md),
checked against a plain reference implementation of the same rules on generated farms."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import timedelta

from hypothesis import given, settings, strategies as st

from coordinator.domain.fairshare import Policy
from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.matcher import Limits, Queue, match
from coordinator.domain.model import Request, Worker
from coordinator.domain.quotas import Quota, Quotas
from coordinator.domain.requests import is_ready
from coordinator.domain.states import WorkerState
from tests.coordinator.domain.builders import HOUR, T0, make_request, make_worker

OWNERS = ("a", "b", "c", "d")
GROUPS = ("lab", "ci")


def _req(rid: int, owner: str, **kwargs: object) -> Request:
    return replace(make_request(rid, **kwargs), owner=owner)  # type: ignore[arg-type]


def _pairs(found: Sequence[object]) -> list[tuple[int, int]]:
    return [(a.request, int(a.worker[-12:], 16)) for a in found]  # type: ignore[attr-defined]


# --- the reference: the rules written as plainly as possible --------------------------------


def reference(
    reqs: Sequence[Request],
    idle: Sequence[Worker],
    policy: Policy,
    usage: Mapping[str, float],
    quotas: Quotas,
    held: Mapping[str, int],
) -> list[tuple[RequestID, WorkerUUID]]:
    """Take the requests one by one in (priority, usage under fair, FIFO place) order; skip
    those not ready or whose owner is at their held limit; give each the idle worker with
    the fewest caps and groups that fits, ties to the lowest UUID."""

    def key(r: Request) -> tuple[int, float, int, int]:
        return (
            r.priority,
            usage.get(r.owner, 0.0) if policy is Policy.FAIR else 0.0,
            r.queued,
            r.id,
        )

    def suits(w: Worker, r: Request) -> bool:
        caps_ok = all(w.caps.get(k) == v for k, v in r.caps.items())
        return caps_ok and (not r.groups or bool(set(r.groups) & set(w.groups)))

    free = [w for w in idle if w.state is WorkerState.IDLE]
    count = Counter(held)
    out = []
    for r in sorted(reqs, key=key):
        most = quotas.limits(r.owner, r.groups).max_held
        if not is_ready(r, T0) or (most is not None and count[r.owner] >= most):
            continue
        fitting = [w for w in free if suits(w, r)]
        if fitting:
            best = min(fitting, key=lambda w: (len(w.caps) + len(w.groups), w.uuid))
            free.remove(best)
            count[r.owner] += 1
            out.append((r.id, best.uuid))
    return out


@st.composite
def farms(
    draw: st.DrawFn,
) -> tuple[list[Request], list[Worker], dict[str, float], Quotas, dict[str, int]]:
    n = draw(st.integers(0, 14))
    places = draw(st.permutations(range(1, n + 1)))
    reqs = [
        _req(
            i + 1,
            draw(st.sampled_from(OWNERS)),
            priority=draw(st.integers(1, 3)),
            caps=draw(st.sampled_from([{}, {"board": "x"}, {"board": "y"}])),
            groups=draw(st.sampled_from([(), ("lab",), ("ci", "lab")])),
            queued=places[i],
            valid_after=T0 + draw(st.sampled_from([-HOUR, HOUR])) if draw(st.booleans()) else T0,
        )
        for i in range(n)
    ]
    idle = [
        make_worker(
            i,
            caps=draw(st.sampled_from([{}, {"board": "x"}, {"board": "y", "ram": "2"}])),
            groups=draw(st.sampled_from([(), ("lab",), ("ci",)])),
            state=draw(st.sampled_from([WorkerState.IDLE] * 4 + [WorkerState.RUN])),
        )
        for i in range(1, draw(st.integers(0, 8)) + 1)
    ]
    usage = {o: draw(st.sampled_from([0.0, 1.0, 5.0, 5.0])) for o in OWNERS if draw(st.booleans())}
    limit = st.one_of(st.none(), st.integers(0, 3))
    quotas = Quotas(
        users={o: Quota(max_held=draw(limit)) for o in OWNERS if draw(st.booleans())},
        groups={g: Quota(max_held=draw(limit)) for g in GROUPS if draw(st.booleans())},
    )
    held = {o: draw(st.integers(0, 3)) for o in OWNERS if draw(st.booleans())}
    return reqs, idle, usage, quotas, held


@settings(max_examples=400, deadline=None)
@given(farms(), st.sampled_from(list(Policy)))
def test_matcher_agrees_with_the_reference_on_generated_farms(
    farm: tuple[list[Request], list[Worker], dict[str, float], Quotas, dict[str, int]],
    policy: Policy,
) -> None:
    reqs, idle, usage, quotas, held = farm
    queue = Queue(reqs)
    found = match(
        queue.ordered(policy, usage), {r.id: r for r in reqs}, idle, T0, Limits(held, quotas)
    )
    assert [(a.request, a.worker) for a in found] == reference(
        reqs, idle, policy, usage, quotas, held
    )


@settings(max_examples=300, deadline=None)
@given(farms(), st.sampled_from(list(Policy)), st.data())
def test_queue_order_and_positions_agree_with_the_sort_key(
    farm: tuple[list[Request], list[Worker], dict[str, float], Quotas, dict[str, int]],
    policy: Policy,
    data: st.DataObject,
) -> None:
    reqs, _idle, usage, _quotas, _held = farm
    queue = Queue(reqs)
    gone = data.draw(st.lists(st.sampled_from(reqs), unique_by=lambda r: r.id)) if reqs else []
    for r in gone:
        queue.remove(r)
    left = [r for r in reqs if r not in gone]

    def key(r: Request) -> tuple[int, float, int, int]:
        return (
            r.priority,
            usage.get(r.owner, 0.0) if policy is Policy.FAIR else 0.0,
            r.queued,
            r.id,
        )

    want = [r.id for r in sorted(left, key=key)]
    assert list(queue.ordered(policy, usage)) == want
    assert [queue.position(r, policy, usage) for r in sorted(left, key=key)] == list(
        range(len(left))
    )
    assert queue.waiting == Counter(r.owner for r in left)
    assert len(queue) == len(left)


# --- the rules, one example each --------------------------------------------------------------


def test_fair_serves_the_owner_with_the_least_usage_first_within_a_priority() -> None:
    reqs = [_req(1, "flood"), _req(2, "flood"), _req(3, "person")]
    queue = Queue(reqs)
    usage = {"flood": 3600.0}
    assert list(queue.ordered(Policy.FIFO, usage)) == [1, 2, 3]
    assert list(queue.ordered(Policy.FAIR, usage)) == [3, 1, 2]
    found = match(queue.ordered(Policy.FAIR, usage), {r.id: r for r in reqs}, [make_worker(1)], T0)
    assert _pairs(found) == [(3, 1)]


def test_fair_keeps_priority_first() -> None:
    reqs = [_req(1, "flood", priority=2), _req(2, "person", priority=9)]
    assert list(Queue(reqs).ordered(Policy.FAIR, {"flood": 1e9})) == [1, 2]


def test_fair_breaks_equal_usage_by_fifo_across_owners() -> None:
    reqs = [_req(1, "a", queued=3), _req(2, "b", queued=1), _req(3, "a", queued=2)]
    assert list(Queue(reqs).ordered(Policy.FAIR, {})) == [2, 3, 1]


def test_fair_position_counts_what_the_order_puts_first() -> None:
    reqs = [_req(1, "flood"), _req(2, "flood"), _req(3, "person"), _req(4, "x", priority=1)]
    queue = Queue(reqs)
    usage = {"flood": 10.0, "person": 1.0}
    assert queue.position(reqs[2], Policy.FAIR, usage) == 1
    assert queue.position(reqs[1], Policy.FAIR, usage) == 3
    assert queue.position(reqs[2]) == 3  # FIFO by default
    assert queue.position(reqs[0], Policy.FAIR) == 1  # no usage known: FIFO across owners


def test_an_owner_at_their_held_limit_is_passed_over_and_the_next_served() -> None:
    reqs = [_req(1, "a"), _req(2, "a"), _req(3, "b")]
    limits = Limits({"a": 1}, Quotas(users={"a": Quota(max_held=2)}))
    idle = [make_worker(1), make_worker(2), make_worker(3)]
    found = match(Queue(reqs), {r.id: r for r in reqs}, idle, T0, limits)
    assert _pairs(found) == [(1, 1), (3, 2)]  # a reached 2 after request 1


def test_group_quota_applies_to_each_member_through_the_requests_groups() -> None:
    reqs = [
        _req(1, "a", groups=("ci",)),
        _req(2, "b", groups=("ci",)),
        _req(3, "a", groups=("ci",)),
    ]
    limits = Limits({}, Quotas(groups={"ci": Quota(max_held=1)}))
    idle = [
        make_worker(1, groups=("ci",)),
        make_worker(2, groups=("ci",)),
        make_worker(3, groups=("ci",)),
    ]
    found = match(Queue(reqs), {r.id: r for r in reqs}, idle, T0, limits)
    assert _pairs(found) == [(1, 1), (2, 2)]


def test_a_zero_held_limit_stops_an_owner_entirely() -> None:
    reqs = [_req(1, "a")]
    limits = Limits({}, Quotas(users={"a": Quota(max_held=0)}))
    assert match(Queue(reqs), {r.id: r for r in reqs}, [make_worker(1)], T0, limits) == []


def test_limits_without_quotas_change_nothing() -> None:
    reqs = [_req(1, "a"), _req(2, "a")]
    limits = Limits({"a": 50}, Quotas())
    found = match(
        Queue(reqs), {r.id: r for r in reqs}, [make_worker(1), make_worker(2)], T0, limits
    )
    assert _pairs(found) == [(1, 1), (2, 2)]


def test_limits_resolve_each_owner_and_groups_once_per_pass() -> None:
    limits = Limits({}, Quotas(users={"a": Quota(max_held=1)}))
    first = limits.of(_req(1, "a"))
    assert limits.of(_req(2, "a")) is first
    assert limits.of(_req(3, "a", groups=("ci",))) == Quota(max_held=1)


def test_removing_the_last_request_of_an_owner_and_priority_forgets_them() -> None:
    one, two = _req(1, "a"), _req(2, "b", priority=3)
    queue = Queue([one, two])
    queue.remove(one)
    queue.remove(one)  # absent: ignored
    assert list(queue.ordered(Policy.FAIR, {})) == [2]
    assert queue.waiting == Counter({"b": 1})
    queue.remove(two)
    assert list(queue.ordered(Policy.FAIR, {})) == []
    assert queue.position(two, Policy.FAIR, {}) == 0


def test_a_long_job_quota_is_not_a_held_limit() -> None:
    reqs = [_req(1, "a")]
    limits = Limits({"a": 9}, Quotas(users={"a": Quota(max_job=timedelta(minutes=5))}))
    assert _pairs(match(Queue(reqs), {r.id: r for r in reqs}, [make_worker(1)], T0, limits)) == [
        (1, 1)
    ]
