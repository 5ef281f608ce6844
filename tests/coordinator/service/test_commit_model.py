"""A model test of the commit path: rounds of concurrent operations on a store whose
commits are slowed down or refused at random. Every answer comes after its change is
durable, and the operations that did not meet a refused commit explain the stored state
in some serial order, answers included (docs/architecture.md §the commit path)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import permutations
from pathlib import Path
from typing import Any, cast

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from coordinator.domain.clock import FakeClock
from coordinator.domain.ids import RequestID
from coordinator.domain.model import User
from coordinator.errors import (
    Forbidden,
    ModificationForbidden,
    NotFound,
    PriorityOutOfBounds,
    StoreUnavailable,
)
from coordinator.service.keys import KeyPool
from coordinator.service.operations import Service
from coordinator.store import Changes, Store
from coordinator.store.sql import SqlStore
from tests.coordinator.doubles import ALICE, BOB, RecordingDryads, RecordingTunnels, uuid_of

USERS = (ALICE, BOB)


class ShakyStore:
    """The real store; each commit may sleep a little first, and drawn calls are refused.
    ``durable`` lists what went through, for the answers to be checked against."""

    def __init__(self, inner: SqlStore, refuse: set[int], seed: int) -> None:
        self.inner = inner
        self.refuse = refuse
        self.calls = 0
        self.durable: list[Changes] = []
        self._random = random.Random(seed)
        self._mutex = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def commit(self, changes: Changes) -> None:
        time.sleep(self._random.choice((0, 0, 0.001, 0.003)))  # others stage meanwhile
        with self._mutex:
            self.calls += 1
            if self.calls in self.refuse:
                raise StoreUnavailable("disk full")
        self.inner.commit(changes)
        self.durable.append(changes)

    def holds(self, rid: RequestID, since: int = 0, **fields: object) -> bool:
        """Whether a durable commit (from the ``since``-th on) wrote request ``rid`` with
        these fields."""
        return any(
            r.id == rid and all(getattr(r, k) == v for k, v in fields.items())
            for c in self.durable[since:]
            for r in c.requests
        )


@dataclass(frozen=True)
class Op:
    kind: str  # "create", "close" or "update"
    user: int
    ref: int  # which known request (close, update)
    priority: int  # create, update; 0 is out of bounds


ops = st.builds(
    Op,
    st.sampled_from(["create", "create", "close", "update"]),
    st.integers(0, 1),
    st.integers(0, 5),
    st.sampled_from([0, 3, 8]),
)


@dataclass(frozen=True)
class Row:
    owner: str
    state: str
    priority: int


Model = dict[int, Row]


def model_step(model: Model, op: Op, rid: int, next_id: int) -> tuple[object, Model, int]:
    """The answer the serial service gives, the state after it, and the next ID."""
    user = USERS[op.user]
    if op.kind == "create":
        if op.priority == 0:
            return PriorityOutOfBounds, model, next_id
        return next_id, {**model, next_id: Row(user.name, "WAITING", op.priority)}, next_id + 1
    row = model.get(rid)
    if row is None:
        return NotFound, model, next_id
    if not user.admin and row.owner != user.name:
        return Forbidden, model, next_id
    if op.kind == "close":
        if row.state != "WAITING":
            return ModificationForbidden, model, next_id
        return None, {**model, rid: replace(row, state="CANCELLED")}, next_id
    if row.state != "WAITING":
        return ModificationForbidden, model, next_id
    if op.priority == 0:
        return PriorityOutOfBounds, model, next_id
    return None, {**model, rid: replace(row, priority=op.priority)}, next_id


def explained(
    model: Model, next_id: int, done: Sequence[tuple[Op, int, object]], stored: Model
) -> tuple[Model, int] | None:
    """A serial order of ``done`` that gives each its answer and ends in ``stored``."""
    for order in permutations(done):
        m, n = model, next_id
        for op, rid, answer in order:
            expected, m, n = model_step(m, op, rid, n)
            if expected != answer:
                break
        else:
            if m == stored:
                return m, n
    return None


async def call(service: Service, op: Op, rid: RequestID) -> object:
    user: User = USERS[op.user]
    if op.kind == "create":
        return await service.new_request(user, op.priority, {})
    if op.kind == "close":
        await service.close_request(user, rid)
    else:
        await service.update_request(user, rid, op.priority, None, None)
    return None


async def one(
    service: Service, shaky: ShakyStore, op: Op, rid: RequestID, done: list[tuple[Op, int, object]]
) -> None:
    """Run ``op``; note its answer in ``done`` unless a refused commit took it back."""
    before = len(shaky.durable)
    try:
        answer = await call(service, op, rid)
    except StoreUnavailable:
        return  # its change, if any, must not be anywhere: the caller checks
    except (NotFound, Forbidden, ModificationForbidden, PriorityOutOfBounds) as exc:
        done.append((op, rid, type(exc)))
        return
    done.append((op, rid, answer))
    # No answer precedes durability: its change is in a commit already.
    if op.kind == "create":
        assert shaky.holds(RequestID(cast("int", answer)))
    elif op.kind == "close":
        assert shaky.holds(rid, state="CANCELLED")
    else:
        # Its version is durable, or a later update of the same request in the same group
        # replaced it in the commit (the serial order above checks the values): then the
        # request was written by a commit that became durable after this update began.
        assert shaky.holds(rid, priority=op.priority) or shaky.holds(rid, before)


async def scenario(
    path: Path, rounds: list[list[tuple[Op, int]]], refuse: set[int], seed: int
) -> None:
    inner = SqlStore.open(path)
    inner.migrate()
    shaky = ShakyStore(inner, set(), seed)
    service = Service(
        cast("Store", shaky), RecordingDryads(), RecordingTunnels(), FakeClock(), keys=KeyPool(1)
    )
    model: Model = {}
    next_id = 1
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(service.run)
            # A worker in MAINTENANCE: requests stay WAITING, nothing is matched.
            await service.register({"UUID": uuid_of(1)}, "10.0.0.1:22")
            shaky.refuse = {shaky.calls + n for n in refuse}
            for ops_of_round in rounds:
                known = sorted(model) or [1]
                done: list[tuple[Op, int, object]] = []

                async with anyio.create_task_group() as round_tg:
                    for op, pause in ops_of_round:
                        rid = RequestID(known[op.ref % len(known)])
                        round_tg.start_soon(one, service, shaky, op, rid, done)
                        for _ in range(pause):
                            await anyio.lowlevel.checkpoint()
                stored: Model = {
                    r.id: Row(r.owner, r.state.value, r.priority) for r in inner.load().requests
                }
                found = explained(model, next_id, done, stored)
                assert found is not None, f"no serial order explains {done} -> {stored}"
                model, next_id = found
                # Memory is what is stored, for reads and for the next decisions alike.
                farm = {
                    rid: Row(r.owner, r.state.value, r.priority)
                    for rid, r in service.farm.requests.items()
                }
                assert farm == stored
            tg.cancel_scope.cancel()
    finally:
        inner.close()


@example(
    rounds=[
        [
            (Op("create", 1, 0, 8), 0),
            (Op("update", 1, 0, 3), 0),
            (Op("update", 1, 0, 8), 0),  # in the same group: its version is the one stored
        ]
    ],
    refuse=set(),
    seed=0,
)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rounds=st.lists(
        st.lists(st.tuples(ops, st.integers(0, 2)), min_size=1, max_size=5),
        min_size=1,
        max_size=4,
    ),
    refuse=st.sets(st.integers(1, 6), max_size=2),
    seed=st.integers(0, 2**16),
)
def test_concurrent_operations_are_some_serial_order_and_answer_after_the_commit(
    tmp_path_factory: pytest.TempPathFactory,
    rounds: list[list[tuple[Op, int]]],
    refuse: set[int],
    seed: int,
) -> None:
    path = tmp_path_factory.mktemp("model") / "boruta.db"
    anyio.run(scenario, path, rounds, refuse, seed)
