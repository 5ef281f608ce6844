"""The pure matcher alone: cost per assignment at 10,000 waiting x 1,000 workers, and scaling,
in the original's FIFO order and in the ``fair`` order with held-board quotas."""

from __future__ import annotations

import argparse
import math
import random
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from _common import median, seed_request, seed_worker, uuid_of

from coordinator.domain import matcher
from coordinator.domain.fairshare import Policy
from coordinator.domain.ids import RequestID
from coordinator.domain.matcher import Limits, Queue
from coordinator.domain.model import Request, Worker
from coordinator.domain.quotas import Quota, Quotas
from coordinator.domain.states import WorkerState

NOW = datetime(2030, 1, 1, tzinfo=UTC)
T = TypeVar("T")
BOARDS = 20
ARCHES = ("armv7", "aarch64")
SIZES = (2_500, 5_000, 10_000, 20_000)
OWNERS = 50  # requests belong to this many users, each with its own usage for ``fair``


def make_workers(count: int) -> list[Worker]:
    """IDLE workers of ``BOARDS`` kinds, two architectures and four memory sizes."""
    return [
        seed_worker(
            n,
            WorkerState.IDLE,
            {"board": f"b{n % BOARDS}", "arch": ARCHES[n % 2], "ram": str(n % 4)},
        )
        for n in range(1, count + 1)
    ]


def make_requests(count: int, workers: int, rng: random.Random) -> dict[RequestID, Request]:
    """Waiting requests, priorities 1..16: 10% pin a worker by UUID, the rest want a board
    (half of them also an architecture)."""
    out: dict[RequestID, Request] = {}
    for rid in range(1, count + 1):
        roll = rng.random()
        n = rng.randrange(1, workers + 1)
        if roll < 0.1:
            caps = {"UUID": str(uuid_of(n))}
        elif roll < 0.55:
            caps = {"board": f"b{n % BOARDS}"}
        else:
            caps = {"board": f"b{n % BOARDS}", "arch": ARCHES[n % 2]}
        req = seed_request(rid, f"user{rid % OWNERS}", caps)
        out[req.id] = req
    return out


def timed(action: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


@dataclass
class Case:
    """One queue length: its data and the times measured on it."""

    size: int
    workers: list[Worker]
    requests: dict[RequestID, Request] = field(init=False)
    queue: Queue = field(init=False)
    times: dict[str, list[float]] = field(default_factory=dict)
    assigned: int = 0
    assigned_fair: int = 0

    usage: dict[str, float] = field(init=False)
    limits: Limits = field(init=False)

    def __post_init__(self) -> None:
        rng = random.Random(self.size)
        self.requests = make_requests(self.size, len(self.workers), rng)
        self.queue = Queue(self.requests.values())
        # Every user has used the farm a different amount; a fifth of them hold boards,
        # and everyone may hold at most 30 (so the quotas are checked at each request).
        self.usage = {f"user{n}": rng.uniform(0, 86400) for n in range(OWNERS)}
        held = {f"user{n}": 5 for n in range(0, OWNERS, 5)}
        quota = Quota(max_held=30)
        self.limits = Limits(held, Quotas(users={f"user{n}": quota for n in range(OWNERS)}))

    def fair(self) -> Iterator[RequestID]:
        return self.queue.ordered(Policy.FAIR, self.usage)

    def record(self, name: str, seconds: float) -> None:
        self.times.setdefault(name, []).append(seconds)

    def med(self, name: str) -> float:
        return median(self.times[name])

    def round(self) -> None:
        """Time each operation once."""
        # All 1,000 workers idle at once: one pass assigns every one of them.
        took, done = timed(lambda: matcher.match(self.queue, self.requests, self.workers, NOW))
        assert isinstance(done, list)
        self.assigned = len(done)
        self.record("full", took)
        # The same pass in the fair order, with everyone's held-board quota checked.
        took, done = timed(
            lambda: matcher.match(
                self.fair(),
                self.requests,
                self.workers,
                NOW,
                self.limits,
            )
        )
        assert isinstance(done, list)
        self.assigned_fair = len(done)
        self.record("fair_full", took)
        # One worker turns idle: the service runs the matcher over the whole queue with it.
        one = [self.workers[len(self.workers) // 2]]
        took, found = timed(lambda: matcher.match(self.queue, self.requests, one, NOW))
        assert isinstance(found, list) and len(found) == 1
        self.record("one_idle", took)
        # Its worst case: the idle worker fits no waiting request, so the whole queue is read.
        odd = [seed_worker(10**6, WorkerState.IDLE, {"board": "nobody-wants-this"})]
        took, none = timed(lambda: matcher.match(self.queue, self.requests, odd, NOW))
        assert none == []
        self.record("no_fit", took)
        took, none = timed(lambda: matcher.match(self.fair(), self.requests, odd, NOW, self.limits))
        assert none == []
        self.record("fair_no_fit", took)
        took, _ = timed(lambda: matcher.match(self.fair(), self.requests, one, NOW, self.limits))
        self.record("fair_one_idle", took)
        # A request's place in the fair order: what a GET answers in Boruta-Queue-Position.
        last = self.requests[RequestID(self.size)]
        took, _ = timed(lambda: self.queue.position(last, Policy.FAIR, self.usage))
        self.record("fair_position", took)
        # Baseline: only walking the queue and fetching each request, which any scan must do.
        took, _ = timed(lambda: sum(1 for rid in self.queue if self.requests[rid].id))
        self.record("walk", took)
        # A new request joins the queue (a sorted insert), on a copy so the queue stays put.
        probe = Queue(self.requests.values())
        new = seed_request(self.size + 1, "user1", {"board": "b3"})
        took, _ = timed(lambda: probe.add(new))
        self.record("insert", took)


def slope(cases: list[Case], name: str) -> float:
    """Least-squares exponent k of cost ~ size**k (1.0 is linear)."""
    xs = [math.log(c.size) for c in cases]
    ys = [math.log(c.med(name)) for c in cases]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    num = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    return num / sum((x - mx) ** 2 for x in xs)


def worker_leaves(count: int, workers: int, rounds: int) -> None:
    """The no-fit scan when a worker leaves that fitted every waiting request, each of its
    own need (the worst case): the old way, request by request, against the stepwise scan
    of distinct needs the service runs now (its longest step is between two pauses)."""
    rng = random.Random(7)
    keys = [f"c{n}" for n in range(14)]  # 16,383 non-empty subsets: enough distinct needs
    leaving = seed_worker(1, WorkerState.MAINTENANCE, dict.fromkeys(keys, "y"))
    rest = [
        seed_worker(n, WorkerState.IDLE, {k: "y" for k in keys if rng.random() < 0.4})
        for n in range(2, workers + 1)
    ]
    masks = rng.sample(range(1, 2 ** len(keys)), count)
    reqs = {
        RequestID(rid): seed_request(
            rid, "u", {k: "y" for bit, k in enumerate(keys) if mask >> bit & 1}
        )
        for rid, mask in enumerate(masks, 1)
    }
    queue = Queue(reqs.values())

    def old_way() -> list[Request]:
        fitted: dict[matcher.Need, bool] = {}
        suspects = []
        for rid in queue:
            req = reqs[rid]
            need = matcher.need_of(req.caps, req.groups)
            hit = fitted.get(need)
            if hit is None:
                hit = fitted[need] = matcher.fits(leaving, need)
            if hit:
                suspects.append(req)
        return matcher.unsatisfiable(suspects, rest)

    def stepwise(scan: Generator[None, None, T]) -> tuple[T, float]:
        """Run a stepwise scan; its result and its longest step between two pauses."""
        longest, start = 0.0, time.perf_counter()
        while True:
            try:
                next(scan)
            except StopIteration as done:
                return done.value, max(longest, time.perf_counter() - start)
            now = time.perf_counter()
            longest, start = max(longest, now - start), now

    nobody = [seed_worker(10**6, WorkerState.IDLE, {"board": "x"})]
    olds, news, steps, idles, idle_steps = [], [], [], [], []
    for _ in range(rounds):
        old = old_way()
        olds.append(timed(old_way)[0])
        start = time.perf_counter()
        needs, longest = stepwise(matcher.stranded(list(queue.needs), [leaving], rest))
        lost = queue.wanting(needs)
        news.append(time.perf_counter() - start)
        assert lost == [r.id for r in old]  # the same requests, in the same order
        steps.append(longest)
        start = time.perf_counter()
        fit, longest = stepwise(matcher.fitting_any(set(queue.needs), nobody))
        assert fit is False
        idles.append(time.perf_counter() - start)
        idle_steps.append(longest)
    print(
        f"\na worker that fitted all {count} waiting requests, each of its own need, leaves"
        f" ({workers - 1} workers stay; {len(old)} requests lost their last worker):"
    )
    print(
        f"  request by request (before) {median(olds) * 1000:.1f} ms in one step;"
        f" by distinct need, stepwise {median(news) * 1000:.1f} ms in all,"
        f" longest step {median(steps) * 1000:.2f} ms"
    )
    print(
        f"  a worker turns IDLE that fits none of the {count} distinct needs: the skip check"
        f" {median(idles) * 1000:.2f} ms in all, longest step {median(idle_steps) * 1000:.2f} ms"
    )
    worst = max(median(steps), median(idle_steps))
    print(f"  goal no step over 10 ms: {'MET' if worst <= 0.01 else 'NOT MET'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=25, help="repetitions; medians are shown")
    args = parser.parse_args()
    workers = make_workers(args.workers)
    cases = [Case(size, workers) for size in SIZES]
    for _ in range(args.rounds):  # interleaved, so load from elsewhere hits every size alike
        for case in cases:
            case.round()

    print(f"matcher alone: {args.workers} idle workers, medians of {args.rounds} rounds")
    main_case = next(c for c in cases if c.size == 10_000)
    per = main_case.med("full") / max(main_case.assigned, 1) * 1000
    print(
        f"10,000 waiting x {args.workers} workers: full pass {main_case.med('full') * 1000:.2f} ms"
        f" for {main_case.assigned} assignments = {per:.4f} ms per assignment"
        f" (goal <= 1 ms: {'MET' if per <= 1 else 'NOT MET'})"
    )
    print(
        f"one worker turns idle, 10,000 waiting: {main_case.med('one_idle') * 1000:.3f} ms"
        f" (it fits an early request); {main_case.med('no_fit') * 1000:.2f} ms when it fits"
        " none (the whole queue is read; no assignment)"
    )
    print(f"a new request's queue insertion: {main_case.med('insert') * 1e6:.1f} us")
    fair_per = main_case.med("fair_full") / max(main_case.assigned_fair, 1) * 1000
    print(
        f"fair order, {OWNERS} users, held quotas: full pass"
        f" {main_case.med('fair_full') * 1000:.2f} ms for {main_case.assigned_fair} assignments"
        f" = {fair_per:.4f} ms per assignment"
        f" (goal <= 1 ms: {'MET' if fair_per <= 1 else 'NOT MET'});"
        f" one idle {main_case.med('fair_one_idle') * 1000:.3f} ms;"
        f" no fit {main_case.med('fair_no_fit') * 1000:.2f} ms;"
        f" a queue position {main_case.med('fair_position') * 1e6:.1f} us"
    )

    print("\nscaling with the queue (same workers):")
    print(
        f"{'waiting':>8} {'full pass ms':>13} {'assigned':>9} {'one-idle ms':>12}"
        f" {'no-fit ms':>10} {'no-fit us/req':>14} {'bare walk us/req':>17}"
    )
    for c in cases:
        print(
            f"{c.size:>8} {c.med('full') * 1000:>13.2f} {c.assigned:>9} "
            f"{c.med('one_idle') * 1000:>12.3f} {c.med('no_fit') * 1000:>10.2f} "
            f"{c.med('no_fit') / c.size * 1e6:>14.3f} {c.med('walk') / c.size * 1e6:>17.3f}"
        )
    base = cases[0]
    print("\nratios against 2,500 waiting (cost ratio / queue ratio: <= 1 is no worse than linear)")
    for c in cases[1:]:
        grow = c.size / base.size
        full = c.med("full") / base.med("full")
        scan = c.med("no_fit") / base.med("no_fit")
        walk = c.med("walk") / base.med("walk")
        print(
            f"  queue x{grow:.0f}: full pass x{full:.2f} ({full / grow:.2f}),"
            f" no-fit scan x{scan:.2f} ({scan / grow:.2f}),"
            f" bare walk x{walk:.2f} ({walk / grow:.2f})"
        )
    print(
        "fair order:"
        + "".join(
            f" {c.size}: full {c.med('fair_full') * 1000:.2f} ms, no-fit"
            f" {c.med('fair_no_fit') / c.size * 1e6:.3f} us/req;"
            for c in cases
        )
    )
    k_scan, k_full, k_walk = slope(cases, "no_fit"), slope(cases, "full"), slope(cases, "walk")
    k_fair_scan, k_fair_full = slope(cases, "fair_no_fit"), slope(cases, "fair_full")
    # A walk that only reads each request is the floor of any scan; where it grows faster
    # than linear, that is the memory hierarchy (a bigger working set), not the matcher.
    linear = max(k_scan, k_full, k_fair_scan, k_fair_full) <= max(1.1, k_walk + 0.05)
    print(
        f"growth exponent (cost ~ queue^k): full pass k={k_full:.2f}, no-fit scan k={k_scan:.2f},"
        f" fair full pass k={k_fair_full:.2f}, fair no-fit scan k={k_fair_scan:.2f},"
        f" bare walk k={k_walk:.2f}"
    )
    print(
        "goal no worse than linear (k <= 1.1, or no steeper than the bare walk):"
        f" {'MET' if linear else 'NOT MET'}"
    )
    worker_leaves(10_000, args.workers, max(3, args.rounds // 5))


if __name__ == "__main__":
    main()
