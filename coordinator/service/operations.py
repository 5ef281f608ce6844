"""The application service: one lock, the domain, the store before every answer, the matcher.

Every operation runs under one lock: it reads the in-memory state, asks the domain for
the new state, commits it to the store in a worker thread and only then applies it to
memory and answers. A failed commit raises ``StoreUnavailable`` and changes nothing.
Matching runs on the events that can change its outcome (new request, worker idle,
ValidAfter reached, groups changed), never by polling.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TypeVar

import anyio
from anyio.abc import TaskGroup, TaskStatus

from coordinator.domain import listing, matcher, requests, workers
from coordinator.domain.clock import Clock
from coordinator.domain.fairshare import Scheduling
from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.listing import ListSpec, Page
from coordinator.domain.model import AccessInfo, Request, User, Worker
from coordinator.domain.requests import RequestPolicy
from coordinator.domain.states import FINAL_REQUEST_STATES, RequestState, WorkerState
from coordinator.domain.timers import Due
from coordinator.errors import (
    DryadUnreachable,
    Forbidden,
    StoreUnavailable,
)
from coordinator.service import cascade, creations, lookup
from coordinator.service.access import Access
from coordinator.service.batch import Batch
from coordinator.service.creations import Creation, Creations
from coordinator.service.farm import Farm
from coordinator.service.interfaces import Dryads, Tunnels
from coordinator.service.keys import KeyPool
from coordinator.service.presence import Presence
from coordinator.service.shares import Shares
from coordinator.service.steps import Steps, panel_for, tell
from coordinator.store import Store
from coordinator.store.records import Numbered
from coordinator.wire import HealthReport

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_AFTER_STORE_ERROR = 1.0  # seconds before the timers retry after a failed commit


class Service:
    """The coordinator's operations; ``client.py`` will mirror these one for one."""

    def __init__(
        self,
        store: Store,
        dryads: Dryads,
        tunnels: Tunnels,
        clock: Clock,
        policy: RequestPolicy | None = None,
        username: str = "boruta-user",
        keys: KeyPool | None = None,
        link_grace: float = 60.0,
        self_heal: bool = False,
        scheduling: Scheduling | None = None,
        finished_in_memory: int | None = None,
    ) -> None:
        self._store = store
        self._dryads = dryads
        self._clock = clock
        self.policy = policy or RequestPolicy()
        self.shares = Shares(scheduling)  # fair share and quotas (docs/scheduling.md)
        self._username = username
        self._keys = keys or KeyPool()
        self._lock = anyio.Lock()
        # Finished requests held in memory besides the live ones; None = all of them.
        self.finished_in_memory = finished_in_memory
        self._farm = Farm(finished_in_memory)
        self._access = Access(tunnels)
        self._creations = Creations()
        self._rearm = anyio.Event()
        self._rematch = False  # a matcher pass failed to commit; the timer loop retries it
        self._changed = anyio.Event()  # set (and replaced) after every applied commit
        self._tg: TaskGroup | None = None
        self._presence = Presence(link_grace, self._away)
        self._steps = Steps(dryads, self._keys, self._background_done)
        self.self_heal = self_heal  # passing checks bring a FAILED worker back to service
        self._health: dict[WorkerUUID, tuple[datetime, HealthReport]] = {}
        # Told of every stored healthcheck report (metrics count the failed ones).
        self.health_listeners: list[Callable[[WorkerUUID, HealthReport], None]] = []
        # Called with each commit's numbered transitions, in commit order; it must not
        # block or raise (the event feed's ``Broadcaster.publish``).
        self.publish: Callable[[Sequence[Numbered]], None] = _unheard

    # ---- lifecycle -------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Load the stored state, resume what was under way, then serve until cancelled."""
        keep = self.finished_in_memory
        snapshot = await anyio.to_thread.run_sync(self._store.load, keep)
        self._farm = Farm.load(snapshot, self._clock.now(), keep)
        async with anyio.create_task_group() as tg:
            self._tg = tg
            self._presence.start(tg)
            await tg.start(self._keys.run)
            await self._resume()
            tg.start_soon(self._timer_loop)
            logger.info(
                "service resumed: %d requests (%d waiting), %d workers",
                len(self._farm.requests),
                len(self._farm.queue),
                len(self._farm.workers),
            )
            task_status.started()

    async def _resume(self) -> None:
        """Re-open running jobs' tunnels and restart background steps cut off by a crash."""
        for req in self._farm.requests.values():
            if req.state is RequestState.IN_PROGRESS and req.job is not None:
                worker = self._farm.workers.get(req.job.worker)
                if worker is not None:
                    await self._access.open(req.id, worker)
        for worker in self._farm.workers.values():
            self._start_background(worker)
            self._presence.watch(worker.uuid)  # dryads must come back after our restart
        async with self._lock:
            await self._fire_due_locked()
            await self._match_locked(None)

    # ---- requests ----------------------------------------------------------------------

    async def new_request(
        self,
        user: User,
        priority: int,
        caps: Mapping[str, str],
        valid_after: datetime | None = None,
        deadline: datetime | None = None,
    ) -> RequestID:
        """Queue a request; it is INVALID at once when no registered worker could take it.
        Requests that arrive during another commit are created together (``creations``)."""
        creation = Creation(user, priority, caps, valid_after, deadline)
        self._creations.add(creation)
        try:
            async with self._lock:
                if not creation.decided:
                    asked = self._creations.take()
                    batch = self._batch(creations.actor_of(asked))
                    made = creations.put_all(asked, batch, self._farm)
                    # Shielded: the other callers in ``asked`` wait on this commit too.
                    with anyio.CancelScope(shield=True), creations.settled(made):
                        await self._commit_and_follow(batch)
        finally:
            self._creations.withdraw(creation)  # cancelled before anyone took it
        return creation.outcome()

    async def update_request(
        self,
        user: User,
        rid: RequestID,
        priority: int | None,
        valid_after: datetime | None,
        deadline: datetime | None,
    ) -> None:
        """Change a WAITING request's priority or times."""
        if priority is None and valid_after is None and deadline is None:
            return  # 204 without looking the request up (docs/boruta-api.md §update request)
        async with self._lock:
            batch = self._batch(user.name)
            req = await self._owned(user, rid)
            new = requests.update(
                req, priority, valid_after, deadline, batch.now, self._farm.next_queued
            )
            if new == req:
                return
            batch.put_request(new)
            await self._commit_and_follow(batch)

    async def close_request(self, user: User, rid: RequestID) -> None:
        """Cancel a WAITING request or end an IN PROGRESS one (its worker is prepared anew)."""
        async with self._lock:
            batch = self._batch(user.name)
            req = await self._owned(user, rid)
            batch.put_request(requests.close(req))
            cascade.finish_job(batch, req)
            await self._commit_and_follow(batch)

    async def prolong_access(self, user: User, rid: RequestID) -> None:
        """Move the job timeout one period on, within the maximum job length."""
        async with self._lock:
            batch = self._batch(user.name)
            req = await self._owned(user, rid)
            longest = self.shares.max_job(self._farm, req)
            batch.put_request(requests.prolong(req, batch.now, self.policy, longest))
            await self._commit(batch)

    async def acquire_worker(
        self, user: User, rid: RequestID, wait: float | None = None
    ) -> AccessInfo:
        """The access to the request's worker; with ``wait``, first wait up to that many
        seconds for a WAITING request to be matched (an extension of the original)."""
        req = await self._owned(user, rid)
        if wait and req.state is RequestState.WAITING:
            await self._access.wait(rid, wait)
            req = await lookup.find(self._farm, self._store, rid)  # it may have ended
        access = self._access.address(rid)
        if req.state is not RequestState.IN_PROGRESS or req.job is None or access is None:
            raise self._access.refusal(rid)
        worker = self._farm.workers[req.job.worker]
        return AccessInfo(access[0], access[1], worker.key, self._username)

    async def get_request(self, rid: RequestID) -> Request:
        """The request; a waiting one over its owner's quota says so in ``reason``."""
        req = await lookup.find(self._farm, self._store, rid)
        return self.shares.explained(self._farm, req)

    def queue_position(self, rid: RequestID) -> int | None:
        """Waiting requests ahead of this one in the order in force; ``None`` if not waiting."""
        return self.shares.position(self._farm, rid, self._clock.now())

    async def list_requests(self, spec: ListSpec[Request, RequestID]) -> Page[Request]:
        page = await lookup.page(self._farm, self._store, spec)
        return self.shares.explained_page(self._farm, page)

    @property
    def farm(self) -> Farm:
        """The committed state, for reports; change it only under the lock (``adjust``)."""
        return self._farm

    async def adjust(self, change: Callable[[Farm], Awaitable[None]]) -> None:
        """An admin's ``change`` to quotas or scheduling (``service.quotas``) under the lock,
        then a pass over the whole queue, which it may have unblocked."""
        async with self._lock:
            await change(self._farm)
            await self._match_locked(None)

    # ---- workers -----------------------------------------------------------------------

    def get_worker(self, uuid: WorkerUUID) -> Worker:
        return self._farm.worker(uuid)

    def list_workers(self, spec: ListSpec[Worker, WorkerUUID]) -> Page[Worker]:
        return listing.page(listing.WORKERS, self._farm.workers, spec)

    async def register(self, caps: Mapping[str, str], ssh_address: str) -> Worker:
        """A dryad (re-)registers; called by the dryad link."""
        async with self._lock:
            batch = self._batch("")
            known = self._farm.workers.get(WorkerUUID(caps.get("UUID", "")))
            new = workers.register(known, caps, ssh_address, batch.now)
            batch.put_worker(new)
            if known is None or dict(known.caps) != dict(new.caps):
                cascade.invalidate_unsatisfiable(self._farm, batch)
            await self._commit_and_follow(batch)
            if known is not None and known.state is new.state:
                # A commit shows only changed states; a board that reconnects (a restarted
                # dryad shows its boot screen) needs its view again: the wire's promise.
                self._show(new)
            return new

    async def set_fail(self, uuid: WorkerUUID, reason: str) -> None:
        """The dryad reports a failure; its running job, if any, FAILS."""
        async with self._lock:
            batch = self._batch("")
            batch.put_worker(workers.set_fail(self.get_worker(uuid), reason, batch.now))
            await self._commit_and_follow(batch)

    def connected(self, uuid: WorkerUUID) -> bool:
        """Whether the worker's dryad link is up now."""
        return self._presence.connected(uuid)

    def last_health(self, uuid: WorkerUUID) -> tuple[datetime, HealthReport] | None:
        return self._health.get(uuid)

    def link_up(self, uuid: WorkerUUID) -> None:
        """The dryad link of ``uuid`` connected (the link server calls this)."""
        self._presence.up(uuid)

    def link_down(self, uuid: WorkerUUID) -> None:
        """The link dropped; the worker FAILS if it stays away for the grace period."""
        self._presence.down(uuid)

    @property
    def link_grace(self) -> float:
        """Seconds a dryad may be away before its worker FAILS."""
        return self._presence.grace

    @link_grace.setter
    def link_grace(self, seconds: float) -> None:
        self._presence.grace = seconds

    async def _away(self, uuid: WorkerUUID) -> None:
        async with self._lock:
            worker = self._farm.workers.get(uuid)
            if worker is None or worker.state in cascade.OUT_OF_SERVICE:
                return  # gone, or in maintenance or FAIL: no reminder needed
            batch = self._batch("")
            failed = workers.move(worker, WorkerState.FAIL, batch.now, _AWAY)
            batch.put_worker(failed)
            try:
                await self._commit_and_follow(batch)
            except StoreUnavailable:
                logger.error("worker %s: store unavailable; FAIL not recorded", uuid)

    async def report_health(self, uuid: WorkerUUID, report: HealthReport) -> None:
        """Healthcheck results: a failed critical check sends a worker in service to FAIL;
        with self-heal, passing checks send a FAILED worker back through PREPARE."""
        async with self._lock:
            batch = self._batch("")
            worker = self.get_worker(uuid)
            self._health[uuid] = (batch.now, report)
            cascade.apply_health(batch, worker, report, self.self_heal)
            await self._commit_and_follow(batch)
        for listener in self.health_listeners:
            listener(uuid, report)  # once per stored report, before the caller goes on

    async def button(self, uuid: WorkerUUID, number: int) -> None:
        """Someone pressed a button on the MuxPi: recorded in the worker's history."""
        await self._note("", uuid, f"button {number} pressed")

    async def _note(self, actor: str, uuid: WorkerUUID, reason: str) -> None:
        async with self._lock:
            batch = self._batch(actor)
            batch.note(self.get_worker(uuid), reason)
            await self._commit(batch)

    async def identify(self, admin: User, uuid: WorkerUUID, seconds: float) -> None:
        """Make the board blink brightly so it can be found in the rack."""
        self._require_admin(admin)
        self.get_worker(uuid)
        await self._ask_dryad(uuid, self._dryads.identify(uuid, seconds))
        await self._note(admin.name, uuid, f"identify for {seconds:g} s")  # in the audit

    async def run_healthcheck(self, admin: User, uuid: WorkerUUID) -> HealthReport:
        """Run the worker's healthchecks now; the results are applied as reported ones."""
        self._require_admin(admin)
        self.get_worker(uuid)
        report: HealthReport = await self._ask_dryad(uuid, self._dryads.healthcheck(uuid))
        await self.report_health(uuid, report)
        return report

    async def _ask_dryad(self, uuid: WorkerUUID, call: Awaitable[T]) -> T:
        try:
            return await call
        except Exception as exc:
            raise DryadUnreachable(f"worker {uuid}: {exc}") from exc

    async def set_worker_state(self, admin: User, uuid: WorkerUUID, state: WorkerState) -> None:
        """An admin's IDLE (through PREPARE) or MAINTENANCE (through BUSY)."""
        self._require_admin(admin)
        async with self._lock:
            batch = self._batch(admin.name)
            new = workers.set_state(self.get_worker(uuid), state, batch.now)
            if new is not None:
                batch.put_worker(new)
                await self._commit_and_follow(batch)

    async def set_worker_groups(self, admin: User, uuid: WorkerUUID, groups: Iterable[str]) -> None:
        """Replace a worker's groups; requests no worker can take any more become INVALID."""
        self._require_admin(admin)
        async with self._lock:
            batch = self._batch(admin.name)
            new = workers.set_groups(self.get_worker(uuid), groups)
            batch.put_worker(new)
            batch.note(new, f"groups set to {', '.join(new.groups) or 'none'}")  # in the audit
            cascade.invalidate_unsatisfiable(self._farm, batch)
            await self._commit_and_follow(batch)

    async def deregister(self, admin: User, uuid: WorkerUUID) -> None:
        """Remove a worker in MAINTENANCE or FAIL."""
        self._require_admin(admin)
        async with self._lock:
            batch = self._batch(admin.name)
            worker = self.get_worker(uuid)
            workers.check_deregister(worker)
            batch.remove_worker(worker)
            cascade.invalidate_unsatisfiable(self._farm, batch, gone=uuid)
            await self._commit(batch)
            self._health.pop(uuid, None)

    # ---- timers ------------------------------------------------------------------------

    async def fire_timers(self) -> None:
        """Act on every timer that is due now (the timer loop calls this; so may tests)."""
        async with self._lock:
            await self._fire_due_locked()

    async def _timer_loop(self) -> None:
        while True:
            nxt = self._farm.timers.next()
            delay = math.inf if nxt is None else (nxt - self._clock.now()).total_seconds()
            if self._rematch:
                delay = min(delay, RETRY_AFTER_STORE_ERROR)
            with anyio.move_on_after(max(delay, 0)):
                await self._rearm.wait()
            self._rearm = anyio.Event()
            try:
                await self.fire_timers()
            except StoreUnavailable:
                logger.warning(
                    "timers: store unavailable, retrying in %.0f s", RETRY_AFTER_STORE_ERROR
                )
                await anyio.sleep(RETRY_AFTER_STORE_ERROR)

    async def _fire_due_locked(self) -> None:
        batch = self._batch("")
        due = self._farm.timers.pop_due(batch.now)
        ready: list[RequestID] = []
        for kind, rid in due:
            req = batch.request(rid)
            if req is None:
                continue
            if kind is Due.VALID_AFTER:
                ready.append(rid)
            elif kind is Due.DEADLINE and (timed_out := requests.time_out(req, batch.now)):
                batch.put_request(timed_out)
            elif kind is Due.JOB_TIMEOUT and (ended := requests.expire_job(req, batch.now)):
                batch.put_request(ended)
                cascade.finish_job(batch, req)
        rematch, self._rematch = self._rematch, False
        try:
            await self._commit_and_follow(batch, ready, everything=rematch)
        except StoreUnavailable:
            for kind, rid in due:  # nothing was applied: try these again
                self._farm.timers.push(batch.now, kind, rid)
            self._rematch = rematch
            raise

    # ---- internals -----------------------------------------------------------------------

    def _batch(self, actor: str) -> Batch:
        farm, half_life = self._farm, self.shares.half_life
        return Batch(self._clock.now(), actor, farm.requests, farm.workers, farm.jobs, half_life)

    async def _owned(self, user: User, rid: RequestID) -> Request:
        req = await lookup.find(self._farm, self._store, rid)  # as stored: no reason explained
        if not user.admin and req.owner != user.name:
            raise Forbidden("only the owner of a request or an admin may do this")
        return req

    @staticmethod
    def _require_admin(user: User) -> None:
        if not user.admin:
            raise Forbidden("only an admin may do this")

    async def _commit(self, batch: Batch) -> None:
        changes = batch.changes()
        if not changes:
            return
        numbered = await anyio.to_thread.run_sync(self._store.commit, changes)
        self._farm.charge(changes.charges)
        for req in changes.requests:
            self._apply_request(req, batch.now)
        for worker in changes.workers:
            old = self._farm.workers.get(worker.uuid)
            self._farm.workers[worker.uuid] = worker
            if old is None or old.state is not worker.state:
                self._show(worker)
        for req in changes.requests:  # a prolonged job shows its new end
            if (
                req.state is RequestState.IN_PROGRESS
                and req.job
                and req.job.worker in self._farm.workers
            ):
                self._show(self._farm.workers[req.job.worker])
        for uuid in changes.removed_workers:
            self._farm.workers.pop(uuid, None)
        if numbered:
            self.publish(numbered)  # durable and applied: the feed hands them on from memory
        self._changed.set()
        self._changed = anyio.Event()

    async def changed(self) -> None:
        """Return after the next committed change (for watchers and tests; no polling)."""
        await self._changed.wait()

    def _apply_request(self, new: Request, now: datetime) -> None:
        earliest = self._farm.timers.next()
        old = self._farm.apply_request(new, now)
        if old is not None and old.state is not new.state:
            self._access.changed(new.id, new.state in FINAL_REQUEST_STATES)
        if self._farm.timers.next() != earliest:  # wake the timer loop only to sleep less
            self._rearm.set()

    def _show(self, worker: Worker) -> None:
        """Tell the board what to show for its state, without waiting for it."""
        if self._tg is None or not self.connected(worker.uuid):
            return
        panel = panel_for(worker, self._farm.running_on(worker.uuid))
        self._tg.start_soon(tell, worker.uuid, "display", self._dryads.display(worker.uuid, panel))

    async def _commit_and_follow(
        self, batch: Batch, ready: Iterable[RequestID] = (), everything: bool = False
    ) -> None:
        """Match what the batch made possible, commit it all in one transaction, then do
        what the new states call for: close tunnels, start background steps.

        The matcher considers the batch's waiting requests and ``ready`` ones (ValidAfter
        reached), or the whole queue when a worker became IDLE or ``everything`` is set.
        """
        opened = await self._match_into(batch, ready, everything)
        try:
            await self._commit(batch)
        except StoreUnavailable:
            for rid in opened:
                await self._access.close(rid)
            raise
        for req in batch.requests.values():
            if req.state in (RequestState.DONE, RequestState.FAILED):
                await self._access.close(req.id)
            if req.state is RequestState.FAILED and req.job and self._tg:
                # No PREPARE follows a failed job, so its user is removed on its own.
                self._tg.start_soon(
                    tell, req.job.worker, "release", self._dryads.release(req.job.worker)
                )
        for worker in batch.workers.values():
            self._start_background(worker)

    async def _match_locked(self, only: list[RequestID] | None) -> None:
        """A matcher pass of its own: all waiting requests, or ``only`` these."""
        batch = self._batch("")
        try:
            await self._commit_and_follow(batch, only or (), everything=only is None)
        except StoreUnavailable:
            # What triggered this pass is committed and answered; the timers retry it.
            logger.warning("matcher: store unavailable; retrying shortly")
            self._rematch = True
            self._rearm.set()

    async def _match_into(
        self, batch: Batch, ready: Iterable[RequestID], everything: bool
    ) -> list[RequestID]:
        """Add the matcher's assignments to ``batch``; returns the requests given tunnels."""
        farm, shares = self._farm, self.shares
        pool, reqs, order = cascade.match_candidates(farm, batch, ready, everything, shares)
        idle = [w for w in pool.values() if w.state is WorkerState.IDLE]
        if not idle:
            return []
        opened: list[RequestID] = []
        limits = shares.limits(farm, batch.requests)
        for assignment in matcher.match(order, reqs, idle, batch.now, limits):
            req, worker = reqs[assignment.request], pool[assignment.worker]
            if not await self._access.open(req.id, worker):
                continue  # the worker stays IDLE with its key, as the original does
            opened.append(req.id)
            longest = shares.max_job(farm, req)
            batch.put_request(requests.run(req, worker.uuid, batch.now, self.policy, longest))
            batch.put_worker(workers.take(worker, batch.now))
        return opened

    def _start_background(self, worker: Worker) -> None:
        if self._tg is None:
            return
        if worker.state is WorkerState.PREPARE:
            self._tg.start_soon(self._steps.prepare, worker.uuid, worker.epoch)
        elif worker.state is WorkerState.BUSY:
            self._tg.start_soon(self._steps.maintenance, worker.uuid, worker.epoch)

    async def _background_done(
        self, uuid: WorkerUUID, epoch: int, failure: str, key: bytes
    ) -> None:
        async with self._lock:
            worker = self._farm.workers.get(uuid)
            if worker is None:
                return
            batch = self._batch("")
            if failure:
                new = workers.operation_failed(worker, epoch, failure, batch.now)
            elif worker.state is WorkerState.PREPARE:
                new = workers.prepared(worker, epoch, key, batch.now)
            else:
                new = workers.in_maintenance(worker, epoch, batch.now)
            if new is None:
                return  # overtaken by a newer state; its own step is under way
            batch.put_worker(new)
            try:
                await self._commit_and_follow(batch)
            except StoreUnavailable:
                logger.error(
                    "worker %s: store unavailable; its %s step stays pending", uuid, worker.state
                )


def _unheard(numbered: Sequence[Numbered]) -> None:
    """Nobody follows the feed (a service without a broadcaster, as in some tests)."""


_AWAY = "disconnected"  # the FAIL reason of a dryad gone past the grace period
