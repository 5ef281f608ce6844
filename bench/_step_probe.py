"""``boruta-coordinator`` with probes for the benches: every garbage collection timed
(``gc.callbacks``) and, with ``--steps``, the event loop's longest steps named.

Usage: ``python bench/_step_probe.py OUT.json [--steps] [--no-gc-policy] -- <args>``
(``--no-gc-policy``: without coordinator/httpd/gcpolicy.py, for a comparison).
On SIGUSR1 the probe writes what it saw since the previous SIGUSR1 to OUT.json (replaced
whole, with a sequence number) and starts counting afresh, so a bench reads one phase at a
time. Nothing here changes what the server does, apart from the probes' own cost.
"""

from __future__ import annotations

import asyncio.events
import gc
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

LONG_STEP = 0.002  # seconds: a step at least this long is named in the report
KEEP = 12  # longest steps kept per phase


class Probe:
    """The collections and long steps of one phase."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.seq = 0
        self._gc_started = 0.0
        self._gc_cpu = 0.0
        self.gc_total = 0.0  # seconds in collections since the start: steps diff it
        self.step_started = 0.0  # of the step running now, 0 between steps
        self.samples: list[str] = []  # stacks the sampler took of the step running now
        self.probing = False  # a dump ran in the current step: that step is the probe's
        self._reset()

    def _reset(self) -> None:
        self.by_gen: dict[int, list[float]] = {0: [], 1: [], 2: []}  # durations in seconds
        self.cpu_by_gen: dict[int, list[float]] = {0: [], 1: [], 2: []}  # the thread's CPU
        self.collected = 0
        self.steps: list[dict[str, Any]] = []
        self.step_count = 0

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_cpu = time.thread_time()  # the collection runs on the thread it stops
            self._gc_started = time.perf_counter()
            return
        took = time.perf_counter() - self._gc_started
        self.gc_total += took
        self.by_gen[info["generation"]].append(took)
        self.cpu_by_gen[info["generation"]].append(time.thread_time() - self._gc_cpu)
        self.collected += info["collected"]

    def on_step(self, took: float, cpu: float, gc_took: float, what: str) -> None:
        self.steps.append(
            {
                "ms": took * 1000,
                "cpu_ms": cpu * 1000,
                "gc_ms": gc_took * 1000,
                "what": what,
                "samples": self.samples[:4],
            }
        )
        self.steps.sort(key=lambda s: -s["ms"])
        del self.steps[KEEP:]

    def thaw(self, *_: object) -> None:
        """Unfreeze the heap and collect it all: what that frees is cyclic garbage that
        freezing kept (a SIGUSR2 handler; the server's last phase)."""
        self.probing = True
        frozen = gc.get_freeze_count()
        gc.unfreeze()
        freed = gc.collect()
        part = self.out.with_suffix(".part")
        part.write_text(json.dumps({"seq": -1, "frozen": frozen, "freed": freed}))
        os.replace(part, self.out)

    def dump(self, *_: object) -> None:
        """Write the phase's figures and start a new phase (a SIGUSR1 handler)."""
        self.probing = True
        self.seq += 1
        gens = {
            str(gen): {
                "count": len(times),
                "total_ms": sum(times) * 1000,
                "max_ms": max(times, default=0.0) * 1000,
                "max_cpu_ms": max(self.cpu_by_gen[gen], default=0.0) * 1000,
                "over_10ms": sum(t > 0.01 for t in times),
            }
            for gen, times in self.by_gen.items()
        }
        report = {
            "seq": self.seq,
            "gc": gens,
            "collected": self.collected,
            "tracked": len(gc.get_objects()),
            "frozen": gc.get_freeze_count(),
            "thresholds": gc.get_threshold(),
            "steps": self.steps,
            "step_count": self.step_count,
        }
        part = self.out.with_suffix(".part")
        part.write_text(json.dumps(report))
        os.replace(part, self.out)
        self._reset()


def describe(callback: Any) -> str:
    """What a step ran: the task's coroutine and where it stopped, or the callback."""
    task = getattr(callback, "__self__", None)
    if isinstance(task, asyncio.Task):
        coro: Any = task.get_coro()
        names: list[str] = []
        while coro is not None and len(names) < 8:
            code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
            if code is None:
                names.append(type(coro).__name__)
                break
            names.append(code.co_qualname)
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        return "task " + " > ".join(names)
    return getattr(callback, "__qualname__", repr(callback))[:200]


def sample(probe: Probe, main: int) -> None:
    """Every millisecond: if a step has run for over LONG_STEP, note where the loop's
    thread is (its innermost frames), so a long step says what held it."""
    while True:
        time.sleep(0.001)
        started = probe.step_started
        if not started or time.perf_counter() - started < LONG_STEP:
            continue
        frame = sys._current_frames().get(main)
        names: list[str] = []
        while frame is not None and len(names) < 7:
            code = frame.f_code
            names.append(f"{Path(code.co_filename).stem}:{code.co_name}:{frame.f_lineno}")
            frame = frame.f_back
        if probe.step_started == started and len(probe.samples) < 16:
            probe.samples.append(" < ".join(names))


def time_steps(probe: Probe) -> None:
    """Wrap every event loop step (``Handle._run``) in a timer."""
    run = asyncio.events.Handle._run
    clock, cpu_clock = time.perf_counter, time.thread_time

    def timed(handle: asyncio.events.Handle) -> None:
        callback = handle._callback  # type: ignore[attr-defined]
        gc_before = probe.gc_total
        cpu = cpu_clock()
        start = probe.step_started = clock()
        probe.samples = []
        run(handle)
        took = clock() - start
        probe.step_started = 0.0
        probe.step_count += 1
        if probe.probing:
            probe.probing = False
        elif took >= LONG_STEP:
            probe.on_step(took, cpu_clock() - cpu, probe.gc_total - gc_before, describe(callback))

    asyncio.events.Handle._run = timed  # type: ignore[method-assign,assignment]
    main = threading.get_ident()
    threading.Thread(target=sample, args=(probe, main), daemon=True, name="sampler").start()


def main() -> int:
    args = sys.argv[1:]
    split = args.index("--")
    own, rest = args[:split], args[split + 1 :]
    probe = Probe(Path(own[0]))
    gc.callbacks.append(probe.on_gc)
    if "--steps" in own:
        time_steps(probe)
    signal.signal(signal.SIGUSR1, probe.dump)
    signal.signal(signal.SIGUSR2, probe.thaw)
    if "--no-gc-policy" in own:
        from coordinator.httpd import gcpolicy

        gcpolicy.GcPolicy.install = lambda self: None  # type: ignore[method-assign]
    from coordinator.cli import main as coordinator

    return coordinator(rest)


if __name__ == "__main__":
    raise SystemExit(main())
