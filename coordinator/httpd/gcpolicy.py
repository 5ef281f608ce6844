"""The garbage collector's full passes kept short: what survives a big one is frozen, so
no later pass walks it again (docs/events.md §garbage collection)."""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Final

# Objects a full pass may leave behind unfrozen. CPython starts a full pass once those
# grew by a quarter since the last one, so no pass walks much more than 1.25 times this:
# about 5,000 requests made since the last freeze (one tracked object each), 2 to 5 ms of
# a core (bench/api_latency.py prints the longest collection's CPU time).
YOUNG_LIMIT: Final = 5_000


@dataclass(slots=True)
class FullPasses:
    """Counts what the policy did since it was installed (for benches and tests)."""

    passes: int = 0  # full passes seen
    freezes: int = 0  # of which left so many objects that they were frozen


class GcPolicy:
    """After a full (generation 2) pass that left at least ``young_limit`` objects, freeze
    them: everything left is alive at that moment, and mostly the farm's long-lived
    requests, which refcounting frees when they go (they hold no cycles). Only an object
    frozen while alive that later dies inside a reference cycle stays for good; the soak
    (bench/soak.py) measures that this stays within its goal."""

    def __init__(self, young_limit: int = YOUNG_LIMIT) -> None:
        if young_limit < 1:
            raise ValueError(f"young_limit must be at least 1, not {young_limit}")
        self.young_limit = young_limit
        self.seen = FullPasses()

    def install(self) -> None:
        """Start acting after every full pass (once: a second call changes nothing)."""
        if self._after not in gc.callbacks:
            gc.callbacks.append(self._after)

    def remove(self) -> None:
        """Stop acting; what was frozen stays frozen."""
        if self._after in gc.callbacks:
            gc.callbacks.remove(self._after)

    def _after(self, phase: str, info: dict[str, int]) -> None:
        # Runs inside the collector, on whichever thread triggered it: no logging here
        # (a handler's lock may be held by the very thread that allocated).
        if phase != "stop" or info["generation"] != 2:
            return
        self.seen.passes += 1
        if len(gc.get_objects(generation=2)) >= self.young_limit:
            gc.freeze()
            self.seen.freezes += 1


def bound_full_passes(young_limit: int = YOUNG_LIMIT) -> GcPolicy:
    """Install the policy for this process (the coordinator's ``serve``) and return it."""
    policy = GcPolicy(young_limit)
    policy.install()
    return policy
