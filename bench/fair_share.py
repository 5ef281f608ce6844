"""Fair share against FIFO: one user's flood and two people, a simulated week on the pure domain.

10 boards. User A queues 500 requests at once; users B and C each queue one request every
10 minutes (C five minutes after B), all at the same priority; every job holds its board
for a length drawn from a fixed-seed log-normal distribution, then gives it back. The
domain's queue, matcher and usage decide everything; only the clock is simulated.
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from _common import median, percentile

from coordinator.domain import fairshare, requests
from coordinator.domain.fairshare import Charge, Policy, Usage
from coordinator.domain.ids import UUID_CAP, RequestID, WorkerUUID
from coordinator.domain.matcher import Queue, match
from coordinator.domain.model import Request, User, Worker
from coordinator.domain.requests import RequestPolicy
from coordinator.domain.states import WorkerState

T0 = datetime(2030, 1, 1, tzinfo=UTC)
WEEK = timedelta(days=7)
BOARDS = 10
FLOOD = 500
EVERY = timedelta(minutes=10)
MEDIAN_JOB = timedelta(minutes=30)
SIGMA = 0.6  # of the log-normal: most jobs 10 min to 1.5 h, a few much longer
USERS = ("A", "B", "C")
# Jobs end by being closed, never by the job timeout: a long policy keeps it out of the way.
POLICY = RequestPolicy(job_timeout=timedelta(days=30), max_job_length=timedelta(days=30))


def job_lengths(seed: int, count: int) -> list[timedelta]:
    rng = random.Random(seed)
    mu = math.log(MEDIAN_JOB.total_seconds())
    return [
        timedelta(seconds=min(max(rng.lognormvariate(mu, SIGMA), 120), 6 * 3600))
        for _ in range(count)
    ]


def arrivals() -> list[tuple[datetime, str]]:
    """(time, user) of every request of the week, in order."""
    out = [(T0, "A")] * FLOOD
    at = T0
    while at < T0 + WEEK:
        out.append((at, "B"))
        out.append((at + EVERY / 2, "C"))
        at += EVERY
    return sorted(out, key=lambda a: (a[0], a[1]))


def water_fill(capacity: float, wants: dict[str, int]) -> dict[str, float]:
    """Max-min fair shares of ``capacity`` boards for these demands."""
    shares: dict[str, float] = {}
    left = capacity
    ordered = sorted((d, u) for u, d in wants.items() if d > 0)
    for i, (demand, user) in enumerate(ordered):
        give = min(demand, left / (len(ordered) - i))
        shares[user] = give
        left -= give
    return shares


def jain(values: list[float]) -> float:
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values)) if values else 1.0


@dataclass
class Outcome:
    """What one policy did with the week."""

    waits: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    done: Counter[str] = field(default_factory=Counter)
    held_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    fair_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    last_end: dict[str, datetime] = field(default_factory=dict)
    idle_while_waiting: int = 0
    passes: int = 0


def simulate(policy: Policy, half_life: timedelta, seed: int) -> Outcome:
    plan = arrivals()
    lengths = job_lengths(seed, len(plan))
    out = Outcome()
    workers = {WorkerUUID(f"00000000-0000-4000-8000-{n:012d}"): None for n in range(1, BOARDS + 1)}
    idle: dict[WorkerUUID, Worker] = {
        uuid: Worker(uuid, WorkerState.IDLE, {UUID_CAP: uuid}, (), T0, T0) for uuid in workers
    }
    reqs: dict[RequestID, Request] = {}
    length_of: dict[RequestID, timedelta] = {}
    queue = Queue()
    running: dict[RequestID, WorkerUUID] = {}
    stored: dict[str, Usage] = {}
    events: list[tuple[datetime, int, str, int]] = []  # (when, order, kind, index or rid)
    for i, (at, _user) in enumerate(plan):
        heapq.heappush(events, (at, 1, "arrive", i))
    now = T0
    while events:
        at, _, kind, what = heapq.heappop(events)
        if at > T0 + WEEK:
            break
        _account(out, queue, running, reqs, now, at)
        now = at
        if kind == "arrive":
            rid = RequestID(what + 1)
            req = requests.create(rid, User(plan[what][1]), 8, {}, None, None, now, rid)
            reqs[rid], length_of[rid] = req, lengths[what]
            queue.add(req)
        else:
            rid = RequestID(what)
            req = reqs[rid]
            assert req.job is not None
            stored[req.owner] = Charge(req.owner, req.job.started, now, half_life).onto(
                stored.get(req.owner)
            )
            worker = running.pop(rid)
            idle[worker] = Worker(worker, WorkerState.IDLE, {UUID_CAP: worker}, (), T0, now)
            reqs[rid] = requests.close(req)
            out.done[req.owner] += 1
            out.last_end[req.owner] = now
        if events and events[0][0] == now:
            continue  # everything at this instant first, then one pass
        held = [(reqs[r].owner, reqs[r].job.started) for r in running]  # type: ignore[union-attr]
        usage = fairshare.usage_now(stored, held, now, half_life)
        out.passes += 1
        for a in match(queue.ordered(policy, usage), reqs, list(idle.values()), now):
            req = reqs[a.request]
            queue.remove(req)
            reqs[req.id] = requests.run(req, a.worker, now, POLICY)
            running[req.id] = a.worker
            del idle[a.worker]
            out.waits[req.owner].append((now - req.created).total_seconds())
            end = now + length_of[req.id]
            heapq.heappush(events, (end, 0, "end", req.id))
        if idle and len(queue):
            out.idle_while_waiting += 1
    _account(out, queue, running, reqs, now, T0 + WEEK)
    return out


def _account(
    out: Outcome,
    queue: Queue,
    running: dict[RequestID, WorkerUUID],
    reqs: dict[RequestID, Request],
    start: datetime,
    end: datetime,
) -> None:
    """Board time received and max-min fair share owed, over [start, end)."""
    span = (min(end, T0 + WEEK) - start).total_seconds()
    if span <= 0:
        return
    holding = Counter(reqs[r].owner for r in running)
    wants = Counter(queue.waiting) + holding
    for user, share in water_fill(BOARDS, dict(wants)).items():
        out.fair_seconds[user] += share * span
        out.held_seconds[user] += holding[user] * span


def fairness(out: Outcome) -> float:
    """Jain's index of board time received over max-min fair share, among users who wanted."""
    ratios = [out.held_seconds[u] / out.fair_seconds[u] for u in USERS if out.fair_seconds.get(u)]
    return jain(ratios)


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--half-life", type=float, default=86400, help="seconds")
    args = parser.parse_args()
    half_life = timedelta(seconds=args.half_life)
    runs = {p: simulate(p, half_life, args.seed) for p in (Policy.FIFO, Policy.FAIR)}
    lengths = job_lengths(args.seed, len(arrivals()))
    med_job = median([d.total_seconds() for d in lengths])
    print(
        f"fair share: {BOARDS} boards; A queues {FLOOD} at once, B and C one every "
        f"{EVERY.seconds // 60} min; one simulated week; job length median "
        f"{med_job / 60:.1f} min (seed {args.seed}); half-life {args.half_life / 3600:g} h"
    )

    def line(label: str, values: list[str]) -> None:
        print(f"{label:52}{values[0]:>10}{values[1]:>10}")

    line("", ["fifo", "fair"])
    for user in USERS:
        for name, q in (("median", 50), ("p95", 95)):
            line(
                f"{user}'s {name} wait (min)",
                [minutes(percentile(r.waits[user], q)) for r in runs.values()],
            )
    line(
        "Jain's index (board time / max-min fair share)",
        [f"{fairness(r):.5f}" for r in runs.values()],
    )
    line("A: jobs done in the week", [str(r.done["A"]) for r in runs.values()])
    line("A: board-hours in the week", [f"{r.held_seconds['A'] / 3600:.1f}" for r in runs.values()])
    line(
        "A: last job ended after (h)",
        [f"{(r.last_end['A'] - T0).total_seconds() / 3600:.1f}" for r in runs.values()],
    )
    line("all: jobs done in the week", [str(sum(r.done.values())) for r in runs.values()])
    line(
        "passes leaving a board idle while a request waits",
        [str(r.idle_while_waiting) for r in runs.values()],
    )

    fair, fifo = runs[Policy.FAIR], runs[Policy.FIFO]
    goals = {
        "B's and C's median wait <= one median job length": all(
            median(fair.waits[u]) <= med_job for u in ("B", "C")
        ),
        "Jain's index >= 0.95": fairness(fair) >= 0.95,
        "A's throughput no lower than with fifo": fair.done["A"] >= fifo.done["A"],
        "no board idles while anyone waits": fair.idle_while_waiting == 0,
    }
    for goal, met in goals.items():
        print(f"goal with fair: {goal}: {'MET' if met else 'NOT MET'}")


if __name__ == "__main__":
    main()
