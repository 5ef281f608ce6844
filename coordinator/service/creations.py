"""Requests asked for at the same moment, decided together in one batch.

While one operation holds the service lock, new requests queue up here. The next holder
of the lock takes them all and stages them as one batch (one matcher check for the lot),
which commits with the rest of its group (``service.commits``): each is still durable
before its answer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from coordinator.domain import matcher, quotas as quota_rules, requests
from coordinator.domain.ids import RequestID
from coordinator.domain.model import KeyType, Request, User
from coordinator.errors import BorutaError
from coordinator.service import cascade
from coordinator.service.batch import Batch
from coordinator.service.commits import Group
from coordinator.service.farm import Farm


@dataclass(eq=False)  # compared by identity: two equal asks are still two requests
class Creation:
    """One caller's new request, and what became of it."""

    user: User
    priority: int
    caps: Mapping[str, str]
    valid_after: datetime | None
    deadline: datetime | None
    key_type: KeyType = KeyType.RSA
    rid: RequestID | None = None
    error: BaseException | None = None
    group: Group | None = None  # the commit it waits for, once some caller staged it

    @property
    def taken(self) -> bool:
        return self.group is not None

    async def outcome(self) -> RequestID:
        """The new request's ID once it is durable; raises what refused it (bad input, a
        failed commit, of its group or of one it rested on)."""
        if self.group is None:
            raise RuntimeError("the request was never created")  # a bug, not bad input
        await self.group.wait()
        if self.error is not None:
            raise self.error.with_traceback(None)  # maybe shared by the lot: no stacked traceback
        if self.rid is None:
            raise RuntimeError("the request was never created")
        return self.rid


class Creations:
    """The creations waiting for the service lock, oldest first."""

    def __init__(self) -> None:
        self._waiting: list[Creation] = []

    def add(self, creation: Creation) -> None:
        self._waiting.append(creation)

    def withdraw(self, creation: Creation) -> None:
        """Forget a creation no one has taken (its caller was cancelled while waiting)."""
        if creation in self._waiting:
            self._waiting.remove(creation)

    def take(self) -> list[Creation]:
        taken, self._waiting = self._waiting, []
        return taken


def actor_of(creations: Iterable[Creation]) -> str:
    """Who the batch acts for: the one user, or nobody (the system) for several."""
    names = {c.user.name for c in creations}
    return names.pop() if len(names) == 1 else ""


def put_all(
    creations: Iterable[Creation], batch: Batch, farm: Farm
) -> list[tuple[Creation, Request]]:
    """Put the new requests into ``batch`` in arrival order, INVALID when no registered
    worker of ``farm`` could take them; a creation with bad input, or over its owner's
    limit of waiting requests (docs/scheduling.md §quotas), gets its error and no ID."""
    made: list[tuple[Creation, Request]] = []
    next_id, next_queued, quotas = farm.next_id, farm.next_queued, farm.quotas
    count = Counter(farm.queue.waiting)
    for c in creations:
        try:
            req = requests.create(
                RequestID(next_id + len(made)),
                c.user,
                c.priority,
                c.caps,
                c.valid_after,
                c.deadline,
                batch.now,
                next_queued + len(made),
                c.key_type,
            )
            if quotas:
                limit = quotas.limits(c.user.name, c.user.groups)
                quota_rules.check_waiting(c.user.name, limit, count[c.user.name])
        except BorutaError as exc:  # this caller's own bad input; the others go on
            c.error = exc
            continue
        batch.put_request(req, c.user.name)
        made.append((c, req))
        count[c.user.name] += 1
    lost = {r.id for r in matcher.unsatisfiable([r for _, r in made], farm.workers.values())}
    for c, req in made:
        c.rid = req.id  # its answer, once its group is durable
        if req.id in lost:
            batch.put_request(requests.invalidate(req, cascade.NO_WORKER), c.user.name)
    return made


def settle(creations: Iterable[Creation], group: Group) -> None:
    """Every creation taken waits for ``group``."""
    for c in creations:
        c.group = group
