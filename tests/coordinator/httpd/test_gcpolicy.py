"""The collector's policy: what a big full pass leaves is frozen, nothing else changes."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from coordinator.httpd.gcpolicy import GcPolicy


class Node:
    """A tracked object that can take part in a cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def policy() -> Iterator[GcPolicy]:
    made = GcPolicy(young_limit=5_000)
    gc.collect()
    gc.freeze()  # what the test process holds already is none of these tests' business
    made.install()
    yield made
    made.remove()
    gc.unfreeze()  # the tests do not freeze (docs/events.md §long steps): leave it so


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="young_limit must be at least 1, not 0"):
        GcPolicy(young_limit=0)


def test_installing_twice_acts_once_and_removing_twice_is_harmless(policy: GcPolicy) -> None:
    policy.install()
    assert gc.callbacks.count(policy._after) == 1
    policy.remove()
    policy.remove()
    assert policy._after not in gc.callbacks
    gc.collect()
    assert policy.seen.passes == 0


def test_a_full_pass_that_leaves_many_objects_freezes_them(policy: GcPolicy) -> None:
    kept = [Node() for _ in range(6_000)]
    before = gc.get_freeze_count()
    gc.collect()
    assert (policy.seen.passes, policy.seen.freezes) == (1, 1)
    assert gc.get_freeze_count() >= before + len(kept)
    assert not gc.get_objects(generation=2)  # nothing left for the next full pass to walk


def test_a_full_pass_that_leaves_few_objects_freezes_nothing(policy: GcPolicy) -> None:
    kept = [Node() for _ in range(100)]
    before = gc.get_freeze_count()
    gc.collect()
    gc.collect(generation=0)  # a young pass is none of the policy's business
    assert (policy.seen.passes, policy.seen.freezes) == (1, 0)
    assert gc.get_freeze_count() == before and len(kept) == 100


def test_cycles_made_after_a_freeze_are_still_collected(policy: GcPolicy) -> None:
    kept = [Node() for _ in range(6_000)]
    gc.collect()
    assert policy.seen.freezes == 1
    for _ in range(50):
        a, b = Node(), Node()
        a.other, b.other = b, a
    del a, b
    assert gc.collect() >= 100
    assert policy.seen.freezes == 1 and len(kept) == 6_000
