"""Group commit: operations staged while one commit is in flight share the next one.

Each operation decides under the service lock, against the pending view, and *stages* its
changes here; it then waits, without the lock, for its group to be durable. One task, the
committer, writes one group at a time: while it waits for the disk, the next group
gathers. Groups commit in the order they were opened, so answers follow the order of
commits (docs/architecture.md §the commit path).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskStatus

from coordinator.domain.fairshare import Charge
from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.model import Request, Transition, Worker
from coordinator.errors import StoreUnavailable
from coordinator.service.batch import Batch
from coordinator.store import Changes
from coordinator.store.records import Numbered

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Staged:
    """One operation's batch, its changes as computed when it was staged, and the tunnels
    its matcher pass opened (closed again if the batch is never stored)."""

    batch: Batch
    changes: Changes
    opened: list[RequestID] = field(default_factory=list)
    follow: bool = True  # after the commit, close tunnels and start background steps


class Group:
    """The batches that commit together; each caller waits for the group's fate."""

    def __init__(self) -> None:
        self.staged: list[Staged] = []
        self.error: BaseException | None = None
        # What ``Store.commit`` returned for the group: its transitions, numbered as stored.
        self.stored: Sequence[Numbered] | None = None
        # asyncio's events: anyio's look up the running async library each time one is made.
        self._done = asyncio.Event()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def settle(self, error: BaseException | None = None) -> None:
        """The group is durable (``error`` None) or will never be: wake every caller."""
        self.error = error
        self._done.set()

    async def wait(self) -> None:
        """Return once the group is durable; raise what kept it from being so."""
        await self._done.wait()
        if self.error is not None:
            raise self.error.with_traceback(None)  # shared by the lot: no stacked traceback


SETTLED = Group()  # nothing to wait for: every staged change is durable already
SETTLED.settle()

Durable = Callable[[Group], Awaitable[None]]
Failed = Callable[[Group, Exception], Awaitable[None]]


class Commits:
    """The open group (gathering), the group in flight (syncing), and the committer."""

    def __init__(self, commit: Callable[[Changes], Sequence[Numbered] | None]) -> None:
        self._commit = commit  # Store.commit; run in the committer's own thread
        self._open = Group()
        self._flying: Group | None = None
        self._wake = anyio.Event()
        self.running = False

    def stage(self, staged: Staged) -> Group:
        """Add a batch to the open group; returns the group to wait for."""
        if not self.running:
            raise RuntimeError("the service is not running: nothing would commit this")
        self._open.staged.append(staged)
        self._wake.set()
        return self._open

    def tail(self) -> Group:
        """The newest group not yet durable (what a decision made now may rest on)."""
        if self._open.staged:
            return self._open
        return self._flying or SETTLED

    def staged_request(self, rid: RequestID) -> Request | None:
        """The newest staged version of a request, if a batch not yet durable changed it
        (the pending view may have let it go already, finished)."""
        for group in (self._open, self._flying):
            for staged in reversed(group.staged if group else []):
                if (req := staged.batch.requests.get(rid)) is not None:
                    return req
        return None

    def drop_open(self, error: BaseException) -> Group:
        """Fail the open group (it rests on a group that failed); a new one opens."""
        dropped, self._open = self._open, Group()
        dropped.settle(error)
        return dropped

    async def run(
        self,
        durable: Durable,
        failed: Failed,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Commit group after group until cancelled; ``durable`` runs after each stored
        group, ``failed`` after each refused one, before its callers wake."""
        self.running = True
        # One thread of its own: commits run one at a time anyway, and handing one to a
        # plain executor costs the event loop about half of what anyio's thread pool does.
        thread = ThreadPoolExecutor(1, thread_name_prefix="store-commit")
        task_status.started()
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                if self._open.staged:
                    # Shielded: memory must follow what the store now holds, even at shutdown.
                    with anyio.CancelScope(shield=True):
                        await self._one(thread, durable, failed)
        finally:
            thread.shutdown(wait=False)
            self.running = False
            if self._open.staged:  # nobody will commit these: their callers must not hang
                self.drop_open(StoreUnavailable("the coordinator is stopping"))

    async def _one(self, thread: Executor, durable: Durable, failed: Failed) -> None:
        group, self._open = self._open, Group()
        self._flying = group
        try:
            changes = merged(s.changes for s in group.staged)
            loop = asyncio.get_running_loop()
            group.stored = await loop.run_in_executor(thread, self._commit, changes)
        except Exception as exc:
            if not isinstance(exc, StoreUnavailable):
                logger.error("commit failed unexpectedly", exc_info=exc)
            await failed(group, exc)
            group.settle(exc)
        else:
            await durable(group)
            group.settle()
        finally:
            self._flying = None
            if self._open.staged:
                self._wake.set()  # gathered while this one synced: commit it next


def merged(parts: Iterable[Changes]) -> Changes:
    """Several batches' changes as one transaction: the last version of each request and
    worker, a worker removed and then registered again is upserted (and the reverse
    removed), transitions and charges in order."""
    reqs: dict[RequestID, Request] = {}
    workers: dict[WorkerUUID, Worker] = {}
    removed: dict[WorkerUUID, None] = {}
    transitions: list[Transition] = []
    charges: list[Charge] = []
    for part in parts:
        for req in part.requests:
            reqs[req.id] = req
        for worker in part.workers:
            workers[worker.uuid] = worker
            removed.pop(worker.uuid, None)
        for uuid in part.removed_workers:
            workers.pop(uuid, None)
            removed[uuid] = None
        transitions.extend(part.transitions)
        charges.extend(part.charges)
    return Changes(list(reqs.values()), list(workers.values()), list(removed), transitions, charges)


def opened(groups: Sequence[Group]) -> list[RequestID]:
    """The tunnels the matcher passes of ``groups`` opened."""
    return [rid for group in groups for s in group.staged for rid in s.opened]
