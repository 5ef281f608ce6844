"""The matcher against docs/boruta-api.md §matcher, plus INVALID detection (issue 3)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Generator, Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TypeVar

import pytest

from coordinator.domain.ids import UUID_CAP, RequestID, WorkerUUID
from coordinator.domain.matcher import (
    STEP_NEEDS,
    Assignment,
    CapsIndex,
    Queue,
    fitting_any,
    match,
    need_of,
    stranded,
    unsatisfiable,
)
from coordinator.domain.model import Request, Worker
from coordinator.domain.states import RequestState, WorkerState
from tests.coordinator.domain.builders import HOUR, T0, make_request, make_worker, uuid

T = TypeVar("T")


def _match(
    reqs: Sequence[Request], idle: Iterable[Worker], now: datetime = T0
) -> list[tuple[int, int]]:
    """Run a pass over ``reqs`` in queue order; (request id, worker number) pairs."""
    found = match(Queue(reqs), {r.id: r for r in reqs}, idle, now)
    return [(a.request, int(a.worker[-12:], 16)) for a in found]


# --- order of requests --------------------------------------------------------------------


def test_matcher_serves_the_most_important_priority_first() -> None:
    reqs = [make_request(1, priority=9), make_request(2, priority=1), make_request(3, priority=16)]
    assert _match(reqs, [make_worker(1)]) == [(2, 1)]


def test_matcher_serves_requests_of_one_priority_in_fifo_order() -> None:
    reqs = [make_request(1, queued=30), make_request(2, queued=10), make_request(3, queued=20)]
    assert _match(reqs, [make_worker(1), make_worker(2)]) == [(2, 1), (3, 2)]


def test_matcher_follows_the_given_queue_order() -> None:
    reqs = {RequestID(n): make_request(n) for n in (1, 2)}
    found = match([RequestID(2), RequestID(1)], reqs, [make_worker(1)], T0)
    assert found == [Assignment(RequestID(2), uuid(1))]


# --- choice of worker ---------------------------------------------------------------------


def test_matcher_prefers_least_capable_worker() -> None:
    idle = [make_worker(1, caps={"a": "1", "b": "1"}), make_worker(2, caps={"a": "1"})]
    assert _match([make_request(caps={"a": "1"})], idle) == [(1, 2)]


def test_matcher_counts_groups_as_capability() -> None:
    idle = [make_worker(1, groups=("lab", "qa")), make_worker(2, caps={"a": "1"})]
    assert _match([make_request()], idle) == [(1, 2)]


def test_matcher_breaks_ties_to_the_lowest_uuid() -> None:
    idle = [make_worker(n, caps={"a": str(n)}) for n in (12, 3, 10)]
    assert _match([make_request()], idle) == [(1, 3)]


@pytest.mark.parametrize(
    ("caps", "fits"),
    [
        ({}, True),
        ({"arch": "arm"}, True),
        ({"arch": "arm", "ram": "1G"}, True),
        ({"arch": "ARM"}, False),  # values compare exactly
        ({"arch": "arm64"}, False),
        ({"arch": "arm", "gpu": "yes"}, False),  # every key must exist
        ({"Arch": "arm"}, False),
    ],
)
def test_request_caps_must_be_a_subset_of_worker_caps_with_exact_values(
    caps: dict[str, str], fits: bool
) -> None:
    worker = make_worker(1, caps={"arch": "arm", "ram": "1G"})
    assert bool(_match([make_request(caps=caps)], [worker])) is fits


def test_uuid_cap_pins_a_worker_even_when_a_less_capable_one_fits() -> None:
    idle = [make_worker(1), make_worker(2, caps={"a": "1", "b": "2"})]
    assert _match([make_request(caps={UUID_CAP: uuid(2)})], idle) == [(1, 2)]


@pytest.mark.parametrize(
    ("pin", "state"),
    [(uuid(2), WorkerState.RUN), (uuid(9), WorkerState.IDLE)],
    ids=["pinned-worker-busy", "pinned-worker-unknown"],
)
def test_pinned_request_waits_for_its_worker(pin: WorkerUUID, state: WorkerState) -> None:
    idle = [make_worker(1), make_worker(2, state=state)]
    assert _match([make_request(caps={UUID_CAP: pin})], idle) == []


def test_pin_and_other_caps_must_both_fit() -> None:
    req = make_request(caps={UUID_CAP: uuid(1), "arch": "x86"})
    assert _match([req], [make_worker(1, caps={"arch": "arm"})]) == []


@pytest.mark.parametrize(
    ("owner_groups", "expected"),
    [
        ((), [(1, 1)]),  # no groups: no restriction, the least capable wins
        (("lab",), [(1, 2)]),
        (("qa", "lab"), [(1, 2)]),  # any one shared group is enough
        (("home",), []),
    ],
)
def test_owner_groups_restrict_to_workers_sharing_one(
    owner_groups: tuple[str, ...], expected: list[tuple[int, int]]
) -> None:
    idle = [make_worker(1), make_worker(2, groups=("lab", "x")), make_worker(3, groups=("dev",))]
    assert _match([make_request(groups=owner_groups)], idle) == expected


# --- readiness ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "blocked",
    [
        make_request(1, valid_after=T0 + HOUR),  # ValidAfter in the future
        make_request(1, deadline=T0),  # deadline passed
        make_request(1, state=RequestState.CANCELLED),  # no longer waiting
    ],
    ids=["valid-after-ahead", "deadline-passed", "cancelled"],
)
def test_matcher_skips_requests_that_are_not_ready(blocked: Request) -> None:
    assert _match([blocked, make_request(2)], [make_worker(1)]) == [(2, 1)]


def test_request_becomes_matchable_when_its_valid_after_arrives() -> None:
    req = make_request(valid_after=T0 + HOUR)
    assert _match([req], [make_worker(1)], T0 + HOUR) == [(1, 1)]


@pytest.mark.parametrize("state", [s for s in WorkerState if s is not WorkerState.IDLE])
def test_matcher_only_gives_out_idle_workers(state: WorkerState) -> None:
    assert _match([make_request()], [make_worker(1, state=state)]) == []


def test_matcher_without_idle_workers_assigns_nothing() -> None:
    assert _match([make_request()], []) == []


# --- one pass -----------------------------------------------------------------------------


def test_worker_is_never_assigned_twice_in_one_pass() -> None:
    reqs = [make_request(n) for n in range(1, 6)]
    assert _match(reqs, [make_worker(1), make_worker(2)]) == [(1, 1), (2, 2)]


def test_worker_taken_by_one_need_is_skipped_for_another() -> None:
    idle = [make_worker(1, caps={"b": "1"}), make_worker(2, caps={"b": "1", "c": "1"})]
    reqs = [make_request(1), make_request(2, caps={"b": "1"}), make_request(3, caps={"b": "1"})]
    assert _match(reqs, idle) == [(1, 1), (2, 2)]


def test_equal_needs_share_the_candidates_and_leave_the_rest_free() -> None:
    idle = [make_worker(1, caps={"a": "1"}), make_worker(2, caps={"a": "1"}), make_worker(3)]
    reqs = [make_request(n, caps={"a": "1"}) for n in (1, 2, 3)]
    assert _match(reqs, idle) == [(1, 1), (2, 2)]


def test_an_unmatched_important_request_does_not_block_later_ones() -> None:
    reqs = [make_request(1, priority=1, caps={"gpu": "yes"}), make_request(2, priority=9)]
    assert _match(reqs, [make_worker(1)]) == [(2, 1)]


def test_matcher_is_independent_of_worker_input_order() -> None:
    idle = [
        make_worker(1, caps={"a": "1", "b": "1"}),
        make_worker(2, caps={"a": "1"}),
        make_worker(3, caps={"a": "1"}, groups=("lab",)),
        make_worker(4),
        make_worker(5, caps={"b": "1"}),
    ]
    reqs = [
        make_request(1, caps={"a": "1"}),
        make_request(2),
        make_request(3, caps={"b": "1"}),
        make_request(4, caps={"a": "1"}),
        make_request(5, groups=("lab",)),
    ]
    results = {tuple(_match(reqs, order)) for order in itertools.permutations(idle)}
    assert results == {((1, 2), (2, 4), (3, 5), (4, 1), (5, 3))}


# --- the original, one request at a time, restarting from the top after each match -------


def _fits_reference(worker: Worker, req: Request) -> bool:
    caps_ok = all(k in worker.caps and worker.caps[k] == v for k, v in req.caps.items())
    return caps_ok and (not req.groups or bool(set(req.groups) & set(worker.groups)))


def _reference(reqs: list[Request], workers: list[Worker], now: datetime) -> list[tuple[int, int]]:
    idle = sorted((w for w in workers if w.state is WorkerState.IDLE), key=lambda w: w.uuid)
    order = sorted(reqs, key=lambda r: (r.priority, r.queued))
    done: list[tuple[int, int]] = []
    progress = True
    while progress:
        progress = False
        for req in order:
            if req.id in {d[0] for d in done} or not req.valid_after <= now < req.deadline:
                continue
            best: Worker | None = None
            for w in idle:  # strict <, in UUID order: ties go to the lowest UUID
                if _fits_reference(w, req) and (
                    best is None or len(w.caps) + len(w.groups) < len(best.caps) + len(best.groups)
                ):
                    best = w
            if best is not None:
                idle.remove(best)
                done.append((req.id, int(best.uuid[-12:], 16)))
                progress = True
                break
    return done


def _random_farm(rng: random.Random) -> tuple[list[Request], list[Worker]]:
    """Up to 8 workers and 12 requests over few caps and groups, so that needs collide."""

    def caps(chance: float) -> dict[str, str]:
        return {k: rng.choice("12") for k in ("a", "b", "c") if rng.random() < chance}

    def groups() -> tuple[str, ...]:
        return tuple(sorted(g for g in ("g1", "g2") if rng.random() < 0.25))

    numbers = rng.sample(range(1, 40), rng.randint(0, 8))
    states = [WorkerState.IDLE] * 4 + [WorkerState.RUN]
    workers = [
        make_worker(n, caps=caps(0.6), groups=groups(), state=rng.choice(states)) for n in numbers
    ]
    reqs = []
    for n in range(1, rng.randint(2, 13)):
        need = caps(0.3)
        if rng.random() < 0.15:  # pinned, sometimes to a worker that is not there
            need[UUID_CAP] = uuid(rng.choice([*numbers, 99]))
        start = T0 + rng.choice([-HOUR, -HOUR, -HOUR, HOUR])  # some not yet valid
        end = start + rng.choice([HOUR, 3 * HOUR, 3 * HOUR])  # some past their deadline
        reqs.append(
            make_request(
                n,
                priority=rng.randint(1, 3),
                caps=need,
                groups=groups(),
                valid_after=start,
                deadline=end,
                queued=rng.randint(1, 1000),
            )
        )
    return reqs, workers


@pytest.mark.parametrize("seed", range(300))
def test_matcher_agrees_with_the_originals_algorithm_on_random_farms(seed: int) -> None:
    rng = random.Random(seed)
    reqs, workers = _random_farm(rng)
    expected = _reference(reqs, workers, T0)
    rng.shuffle(workers)
    assert _match(reqs, workers) == expected


# --- INVALID: no registered worker could ever take it --------------------------------------


def test_request_no_worker_in_any_state_can_satisfy_is_unsatisfiable() -> None:
    farm = [make_worker(1, caps={"arch": "arm"}, state=WorkerState.FAIL)]
    ok, bad = make_request(1, caps={"arch": "arm"}), make_request(2, caps={"arch": "x86"})
    assert unsatisfiable([ok, bad], farm) == [bad]


@pytest.mark.parametrize("state", list(WorkerState))
def test_a_worker_in_any_state_keeps_a_request_satisfiable(state: WorkerState) -> None:
    assert (
        unsatisfiable(
            [make_request(caps={"a": "1"})], [make_worker(1, caps={"a": "1"}, state=state)]
        )
        == []
    )


@pytest.mark.parametrize(
    ("caps", "groups", "lost"),
    [
        ({UUID_CAP: uuid(2)}, (), False),
        ({UUID_CAP: uuid(9)}, (), True),  # pinned to a worker that is not registered
        ({}, ("lab",), False),
        ({}, ("home",), True),  # the owner's groups exclude every worker
        ({"a": "1"}, ("lab",), True),  # caps and groups must fit the same worker
    ],
)
def test_unsatisfiable_honours_pins_and_owner_groups(
    caps: dict[str, str], groups: tuple[str, ...], lost: bool
) -> None:
    farm = [make_worker(1, caps={"a": "1"}), make_worker(2, groups=("lab",))]
    req = make_request(caps=caps, groups=groups)
    assert unsatisfiable([req], farm) == ([req] if lost else [])


def test_every_request_with_an_unsatisfiable_need_is_reported() -> None:
    reqs = [make_request(n, caps={"gpu": "yes"}) for n in (1, 2)] + [make_request(3)]
    assert [r.id for r in unsatisfiable(reqs, [make_worker(1)])] == [1, 2]


def test_without_workers_every_request_is_unsatisfiable() -> None:
    assert unsatisfiable([make_request()], []) == [make_request()]


# --- needs and the queue ------------------------------------------------------------------


def test_need_ignores_the_order_of_caps_and_groups() -> None:
    assert need_of({"a": "1", "b": "2"}, ["y", "x"]) == need_of({"b": "2", "a": "1"}, ["x", "y"])


def test_queue_orders_by_priority_then_fifo_place() -> None:
    reqs = [
        make_request(1, priority=5, queued=1),
        make_request(2, priority=2, queued=9),
        make_request(3, priority=5, queued=0),
    ]
    queue = Queue(reqs)
    assert (list(queue), len(queue)) == ([2, 3, 1], 3)


def test_queue_add_inserts_in_order() -> None:
    queue = Queue([make_request(1, priority=5), make_request(2, priority=9)])
    queue.add(make_request(3, priority=7))
    assert list(queue) == [1, 3, 2]


def test_queue_position_counts_the_requests_before() -> None:
    reqs = [make_request(n, priority=p) for n, p in ((1, 9), (2, 1), (3, 9))]
    queue = Queue(reqs)
    assert [queue.position(r) for r in reqs] == [1, 0, 2]


def test_queue_remove_takes_out_exactly_that_request() -> None:
    a, b = make_request(1), make_request(2)
    queue = Queue([a, b])
    queue.remove(a)
    assert list(queue) == [2]


@pytest.mark.parametrize(
    "absent",
    [make_request(9, queued=99), make_request(9, queued=0), make_request(1, priority=3)],
    ids=["after-the-end", "before-the-first", "stale-priority"],
)
def test_queue_remove_ignores_absent_requests(absent: Request) -> None:
    queue = Queue([make_request(1), make_request(2)])
    queue.remove(absent)
    assert list(queue) == [1, 2]


def test_priority_change_sends_a_request_to_the_back_of_its_new_level() -> None:
    first, second = make_request(1, priority=3), make_request(2, priority=5)
    queue = Queue([first, second])
    queue.remove(first)
    queue.add(replace(first, priority=5, queued=3))
    assert list(queue) == [2, 1]


@pytest.mark.parametrize("seed", range(200))
def test_the_caps_index_agrees_with_trying_every_worker(seed: int) -> None:
    rng = random.Random(seed)
    reqs, workers = _random_farm(rng)
    index = CapsIndex(workers)
    for req in reqs:
        expected = any(_fits_reference(w, req) for w in workers)
        assert index.any_fits(need_of(req.caps, req.groups)) is expected, (req, workers)


@pytest.mark.parametrize("seed", range(50))
def test_unsatisfiable_agrees_with_trying_every_worker_past_the_scan(seed: int) -> None:
    """Many distinct needs, so that most verdicts come from the index."""
    rng = random.Random(seed)
    reqs: list[Request] = []
    workers: list[Worker] = []
    for _ in range(4):  # several farms' requests over one set of workers: many needs
        more, some = _random_farm(rng)
        reqs += [replace(r, id=RequestID(len(reqs) + n + 1)) for n, r in enumerate(more)]
        workers += [w for w in some if w.uuid not in {x.uuid for x in workers}]
    expected = [r for r in reqs if not any(_fits_reference(w, r) for w in workers)]
    assert unsatisfiable(reqs, workers) == expected


def test_the_queue_counts_its_waiting_requests_by_need() -> None:
    odroid = [make_request(n, caps={"board": "odroid"}) for n in (1, 2)]
    rpi = make_request(3, caps={"board": "rpi"}, groups=("g1",))
    queue = Queue([*odroid, rpi])
    assert queue.needs == {
        need_of({"board": "odroid"}, ()): 2,
        need_of({"board": "rpi"}, ("g1",)): 1,
    }
    queue.remove(rpi)
    queue.remove(odroid[0])
    queue.remove(odroid[0])  # absent: ignored
    assert queue.needs == {need_of({"board": "odroid"}, ()): 1}


def _finish(scan: Generator[None, None, T]) -> tuple[T, int]:
    """Run a stepwise scan to its end: its result and how many times it paused."""
    pauses = 0
    while True:
        try:
            next(scan)
        except StopIteration as done:
            return done.value, pauses
        pauses += 1


@pytest.mark.parametrize("seed", range(100))
def test_stranded_needs_are_those_a_lost_worker_alone_could_take(seed: int) -> None:
    """The old way, request by request: the suspects (a lost worker fitted them), then those
    of them no remaining worker fits."""
    rng = random.Random(seed)
    reqs, workers = _random_farm(rng)
    before = rng.sample(workers, k=min(len(workers), rng.randint(1, 2)))
    rest = [w for w in workers if w not in before or rng.random() < 0.3]
    suspects = [r for r in reqs if any(_fits_reference(old, r) for old in before)]
    expected = {need_of(r.caps, r.groups) for r in unsatisfiable(suspects, rest)}
    needs = list(dict.fromkeys(need_of(r.caps, r.groups) for r in reqs))
    lost, _ = _finish(stranded(needs, before, rest))
    assert set(lost) == expected and len(lost) == len(expected)


def test_a_scan_of_many_needs_pauses_every_few_hundred() -> None:
    needs = [need_of({"serial": str(n)}, ()) for n in range(STEP_NEEDS * 3 + 1)]
    fits_none = make_worker(1, caps={"board": "x"})
    lost, pauses = _finish(stranded(needs, [fits_none], [make_worker(2)]))
    assert (lost, pauses) == ([], 3)  # the lost worker fitted none of them: none stranded
    gone = [make_worker(n + 10, caps=dict(need[0])) for n, need in enumerate(needs[:2])]
    lost, pauses = _finish(stranded(needs, gone, [make_worker(2), gone[1]]))
    assert (lost, pauses) == ([needs[0]], 3)


def test_the_queue_lists_the_requests_of_some_needs_in_its_order() -> None:
    odroid = [make_request(n, caps={"board": "odroid"}, priority=9 - n) for n in (1, 2, 3)]
    rpi = make_request(4, caps={"board": "rpi"}, priority=1)
    queue = Queue([*odroid, rpi, make_request(5, caps={"board": "x"})])
    needs = [need_of({"board": "odroid"}, ()), need_of({"board": "rpi"}, ())]
    assert queue.wanting(needs) == [4, 3, 2, 1]
    queue.remove(odroid[1])
    queue.remove(rpi)
    assert queue.wanting([*needs, need_of({"board": "gone"}, ())]) == [3, 1]


def test_whether_any_worker_fits_any_need_is_judged_in_steps_up_to_the_first_fit() -> None:
    needs = [need_of({"serial": str(n)}, ()) for n in range(STEP_NEEDS * 2 + 5)]
    odd = make_worker(1, caps={"board": "x"})
    assert _finish(fitting_any(needs, [odd])) == (False, 2)
    last = make_worker(2, caps={"serial": str(STEP_NEEDS * 2 + 4)})
    assert _finish(fitting_any(needs, [odd, last])) == (True, 2)
    first = make_worker(3, caps={"serial": "0"})
    assert _finish(fitting_any(needs, [first])) == (True, 0)  # stops at the first fit
    assert _finish(fitting_any([], [first])) == (False, 0)


@pytest.mark.parametrize("seed", range(50))
def test_fitting_any_agrees_with_trying_every_pair(seed: int) -> None:
    rng = random.Random(seed)
    reqs, workers = _random_farm(rng)
    expected = any(_fits_reference(w, r) for w in workers for r in reqs)
    needs = {need_of(r.caps, r.groups) for r in reqs}
    assert _finish(fitting_any(needs, workers))[0] is expected


def test_the_queue_counts_its_requests_per_priority() -> None:
    reqs = [make_request(n, priority=p) for n, p in enumerate((5, 2, 5, 9, 5), 1)]
    reqs.append(replace(make_request(6, priority=2), owner="bob"))
    queue = Queue(reqs)
    assert queue.per_priority() == {2: 2, 5: 3, 9: 1}
    assert list(queue.per_priority()) == [2, 5, 9]
    for req in reqs[:2]:
        queue.remove(req)
    assert queue.per_priority() == {2: 1, 5: 2, 9: 1}
    assert Queue().per_priority() == {}
