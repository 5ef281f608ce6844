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
from collections import ChainMap
from collections.abc import Awaitable, Iterable, Mapping
from datetime import datetime
from typing import TypeVar

import anyio
from anyio.abc import TaskGroup, TaskStatus

from coordinator.batch import Batch
from coordinator.domain import listing, matcher, requests, workers
from coordinator.domain.clock import Clock
from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.listing import ListSpec, Page
from coordinator.domain.matcher import Queue
from coordinator.domain.model import Request, User, Worker
from coordinator.domain.requests import RequestPolicy
from coordinator.domain.states import RequestState, WorkerState
from coordinator.domain.timers import Due, Timers
from coordinator.errors import (
    DryadUnreachable,
    Forbidden,
    NotFound,
    StoreUnavailable,
    WorkerNotAssigned,
)
from coordinator.keys import KeyPool
from coordinator.ports import AccessInfo, Dryads, Tunnels
from coordinator.store import Store
from coordinator.wire import Display, HealthReport

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAINTENANCE_MESSAGE = "maintenance"  # what the original sends (spec §1.8)
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
    ) -> None:
        self._store = store
        self._dryads = dryads
        self._tunnels = tunnels
        self._clock = clock
        self.policy = policy or RequestPolicy()
        self._username = username
        self._keys = keys or KeyPool()
        self._lock = anyio.Lock()
        self._requests: dict[RequestID, Request] = {}
        self._workers: dict[WorkerUUID, Worker] = {}
        self._queue = Queue()
        self._timers = Timers()
        self._access: dict[RequestID, tuple[str, int]] = {}
        self._waiters: dict[RequestID, anyio.Event] = {}
        self._next_id = 1
        self._next_queued = 1
        self._rearm = anyio.Event()
        self._rematch = False  # a matcher pass failed to commit; the timer loop retries it
        self._changed = anyio.Event()  # set (and replaced) after every applied commit
        self._tg: TaskGroup | None = None
        self.link_grace = link_grace  # seconds a dryad may be away before its worker FAILS
        self.self_heal = self_heal  # passing checks bring a FAILED worker back to service
        self._links: dict[WorkerUUID, int] = {}  # link epoch; odd while connected
        self._health: dict[WorkerUUID, tuple[datetime, HealthReport]] = {}
        self._jobs: dict[WorkerUUID, RequestID] = {}  # the running request of each worker

    # ---- lifecycle -------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Load the stored state, resume what was under way, then serve until cancelled."""
        snapshot = await anyio.to_thread.run_sync(self._store.load)
        now = self._clock.now()
        self._requests = {r.id: r for r in snapshot.requests}
        self._workers = {w.uuid: w for w in snapshot.workers}
        self._queue = Queue(r for r in snapshot.requests if r.state is RequestState.WAITING)
        self._jobs = {
            r.job.worker: r.id
            for r in snapshot.requests
            if r.state is RequestState.IN_PROGRESS and r.job is not None
        }
        self._timers.arm_all(snapshot.requests, now)
        self._next_id = max(self._requests, default=0) + 1
        self._next_queued = max((r.queued for r in snapshot.requests), default=0) + 1
        async with anyio.create_task_group() as tg:
            self._tg = tg
            await tg.start(self._keys.run)
            await self._resume()
            tg.start_soon(self._timer_loop)
            logger.info(
                "service resumed: %d requests (%d waiting), %d workers",
                len(self._requests),
                len(self._queue),
                len(self._workers),
            )
            task_status.started()

    async def _resume(self) -> None:
        """Re-open running jobs' tunnels and restart background steps cut off by a crash."""
        for req in self._requests.values():
            if req.state is RequestState.IN_PROGRESS and req.job is not None:
                worker = self._workers.get(req.job.worker)
                if worker is not None:
                    await self._open_tunnel(req.id, worker)
        for worker in self._workers.values():
            self._start_background(worker)
            self._start_grace(worker.uuid)  # dryads must come back after our restart
        async with self._lock:
            await self._fire_due_locked()
            await self._match_locked(None)

    async def store_reachable(self) -> bool:
        """Whether the store answers a read (for ``/healthz``)."""
        try:
            await anyio.to_thread.run_sync(self._store.user_by_token, "")
        except StoreUnavailable:
            return False
        return True

    # ---- requests ----------------------------------------------------------------------

    async def new_request(
        self,
        user: User,
        priority: int,
        caps: Mapping[str, str],
        valid_after: datetime | None = None,
        deadline: datetime | None = None,
    ) -> RequestID:
        """Queue a request; it is INVALID at once when no registered worker could take it."""
        async with self._lock:
            batch = self._batch(user.name)
            req = requests.create(
                RequestID(self._next_id),
                user,
                priority,
                caps,
                valid_after,
                deadline,
                batch.now,
                self._next_queued,
            )
            batch.put_request(req)
            if matcher.unsatisfiable([req], self._workers.values()):
                batch.put_request(requests.invalidate(req, _NO_WORKER))
            await self._commit_and_follow(batch)
            return req.id

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
            return  # the original answers 204 without even looking the request up (spec §1.4)
        async with self._lock:
            batch = self._batch(user.name)
            req = self._owned(user, rid)
            new = requests.update(
                req, priority, valid_after, deadline, batch.now, self._next_queued
            )
            if new == req:
                return
            batch.put_request(new)
            await self._commit_and_follow(batch)

    async def close_request(self, user: User, rid: RequestID) -> None:
        """Cancel a WAITING request or end an IN PROGRESS one (its worker is prepared anew)."""
        async with self._lock:
            batch = self._batch(user.name)
            req = self._owned(user, rid)
            batch.put_request(requests.close(req))
            self._finish_job(batch, req)
            await self._commit_and_follow(batch)

    async def prolong_access(self, user: User, rid: RequestID) -> None:
        """Move the job timeout one period on, within the maximum job length."""
        async with self._lock:
            batch = self._batch(user.name)
            req = self._owned(user, rid)
            batch.put_request(requests.prolong(req, batch.now, self.policy))
            await self._commit(batch)

    async def acquire_worker(
        self, user: User, rid: RequestID, wait: float | None = None
    ) -> AccessInfo:
        """The access to the request's worker; with ``wait``, first wait up to that many
        seconds for a WAITING request to be matched (an extension of the original)."""
        req = self._owned(user, rid)
        if wait and req.state is RequestState.WAITING:
            event = self._waiters.setdefault(rid, anyio.Event())
            with anyio.move_on_after(wait):
                await event.wait()
            req = self._requests[rid]
        access = self._access.get(rid)
        if req.state is not RequestState.IN_PROGRESS or req.job is None or access is None:
            raise WorkerNotAssigned
        worker = self._workers[req.job.worker]
        return AccessInfo(access[0], access[1], worker.key, self._username)

    def get_request(self, rid: RequestID) -> Request:
        try:
            return self._requests[rid]
        except KeyError:
            raise NotFound("Request") from None

    def queue_position(self, rid: RequestID) -> int | None:
        """How many waiting requests are ahead of this one; ``None`` if it is not waiting."""
        req = self.get_request(rid)
        return self._queue.position(req) if req.state is RequestState.WAITING else None

    def list_requests(self, spec: ListSpec[Request, RequestID]) -> Page[Request]:
        return listing.page(listing.REQUESTS, self._requests, spec)

    # ---- workers -----------------------------------------------------------------------

    def get_worker(self, uuid: WorkerUUID) -> Worker:
        try:
            return self._workers[uuid]
        except KeyError:
            raise NotFound("Worker") from None

    def list_workers(self, spec: ListSpec[Worker, WorkerUUID]) -> Page[Worker]:
        return listing.page(listing.WORKERS, self._workers, spec)

    async def register(self, caps: Mapping[str, str], ssh_address: str) -> Worker:
        """A dryad (re-)registers; called by the dryad link."""
        async with self._lock:
            batch = self._batch("")
            known = self._workers.get(WorkerUUID(caps.get("UUID", "")))
            new = workers.register(known, caps, ssh_address, batch.now)
            self._put_worker(batch, new)
            if known is None or dict(known.caps) != dict(new.caps):
                self._invalidate_unsatisfiable(batch)
            await self._commit_and_follow(batch)
            return new

    async def set_fail(self, uuid: WorkerUUID, reason: str) -> None:
        """The dryad reports a failure; its running job, if any, FAILS."""
        async with self._lock:
            batch = self._batch("")
            self._put_worker(batch, workers.set_fail(self.get_worker(uuid), reason, batch.now))
            await self._commit_and_follow(batch)

    def connected(self, uuid: WorkerUUID) -> bool:
        """Whether the worker's dryad link is up now."""
        return self._links.get(uuid, 0) % 2 == 1

    def last_health(self, uuid: WorkerUUID) -> tuple[datetime, HealthReport] | None:
        return self._health.get(uuid)

    def link_up(self, uuid: WorkerUUID) -> None:
        """The dryad link of ``uuid`` connected (the link server calls this)."""
        if not self.connected(uuid):
            self._links[uuid] = self._links.get(uuid, 0) + 1
            logger.info("worker %s: link up", uuid)

    def link_down(self, uuid: WorkerUUID) -> None:
        """The link dropped; the worker FAILS if it stays away for the grace period."""
        if self.connected(uuid):
            self._links[uuid] += 1
            logger.warning("worker %s: link down; %.0f s grace", uuid, self.link_grace)
            self._start_grace(uuid)

    def _start_grace(self, uuid: WorkerUUID) -> None:
        if self._tg is not None and not self.connected(uuid):
            self._tg.start_soon(self._grace, uuid, self._links.get(uuid, 0))

    async def _grace(self, uuid: WorkerUUID, epoch: int) -> None:
        await anyio.sleep(self.link_grace)
        async with self._lock:
            worker = self._workers.get(uuid)
            if self._links.get(uuid, 0) != epoch or worker is None:
                return  # it came back (or went) meanwhile
            if worker.state in _OUT_OF_SERVICE:
                return  # maintenance and FAIL need no reminder that the board is away
            batch = self._batch("")
            self._put_worker(batch, workers.move(worker, WorkerState.FAIL, batch.now, _AWAY))
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
            failed = report.failed_critical
            if failed and worker.state not in _OUT_OF_SERVICE:
                reason = "; ".join(f"healthcheck {c.name} failed: {c.detail}" for c in failed)
                self._put_worker(batch, workers.set_fail(worker, reason, batch.now))
            elif not failed and self.self_heal and worker.state is WorkerState.FAIL:
                batch.put_worker(workers.move(worker, WorkerState.PREPARE, batch.now))
            else:
                summary = ", ".join(
                    f"{c.name} {'ok' if c.passed else 'FAILED'}" for c in report.checks
                )
                batch.note(worker, f"healthcheck: {summary}")
            await self._commit_and_follow(batch)

    async def button(self, uuid: WorkerUUID, number: int) -> None:
        """Someone pressed a button on the MuxPi: recorded in the worker's history."""
        async with self._lock:
            batch = self._batch("")
            batch.note(self.get_worker(uuid), f"button {number} pressed")
            await self._commit(batch)

    async def identify(self, admin: User, uuid: WorkerUUID, seconds: float) -> None:
        """Make the board blink brightly so it can be found in the rack."""
        self._require_admin(admin)
        self.get_worker(uuid)
        await self._ask_dryad(uuid, self._dryads.identify(uuid, seconds))

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
                self._put_worker(batch, new)
                await self._commit_and_follow(batch)

    async def set_worker_groups(self, admin: User, uuid: WorkerUUID, groups: Iterable[str]) -> None:
        """Replace a worker's groups; requests no worker can take any more become INVALID."""
        self._require_admin(admin)
        async with self._lock:
            batch = self._batch(admin.name)
            new = workers.set_groups(self.get_worker(uuid), groups)
            batch.put_worker(new)
            self._invalidate_unsatisfiable(batch)
            await self._commit_and_follow(batch)

    async def deregister(self, admin: User, uuid: WorkerUUID) -> None:
        """Remove a worker in MAINTENANCE or FAIL."""
        self._require_admin(admin)
        async with self._lock:
            batch = self._batch(admin.name)
            worker = self.get_worker(uuid)
            workers.check_deregister(worker)
            batch.remove_worker(worker)
            self._invalidate_unsatisfiable(batch, gone=uuid)
            await self._commit(batch)

    # ---- timers ------------------------------------------------------------------------

    async def fire_timers(self) -> None:
        """Act on every timer that is due now (the timer loop calls this; so may tests)."""
        async with self._lock:
            await self._fire_due_locked()

    async def _timer_loop(self) -> None:
        while True:
            nxt = self._timers.next()
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
        due = self._timers.pop_due(batch.now)
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
                self._finish_job(batch, req)
        rematch, self._rematch = self._rematch, False
        try:
            await self._commit_and_follow(batch, ready, everything=rematch)
        except StoreUnavailable:
            for kind, rid in due:  # nothing was applied: try these again
                self._timers.push(batch.now, kind, rid)
            self._rematch = rematch
            raise

    # ---- internals -----------------------------------------------------------------------

    def _batch(self, actor: str) -> Batch:
        return Batch(self._clock.now(), actor, self._requests, self._workers)

    def _owned(self, user: User, rid: RequestID) -> Request:
        req = self.get_request(rid)
        if not user.admin and req.owner != user.name:
            raise Forbidden("only the owner of a request or an admin may do this")
        return req

    @staticmethod
    def _require_admin(user: User) -> None:
        if not user.admin:
            raise Forbidden("only an admin may do this")

    def _put_worker(self, batch: Batch, new: Worker) -> None:
        """Record a worker change; leaving RUN for FAIL or BUSY fails its job (spec §1.8)."""
        old = batch.worker(new.uuid)
        batch.put_worker(new)
        if old is not None and workers.fails_job(old.state, new.state):
            req = self._running_on(new.uuid)
            if req is not None:
                reason = f"worker {new.uuid} left RUNNING for {new.state}"
                batch.put_request(requests.fail(req, new.reason or reason))

    def _finish_job(self, batch: Batch, req: Request) -> None:
        """A running request ended: its worker goes to PREPARE for a new key."""
        if req.state is not RequestState.IN_PROGRESS or req.job is None:
            return
        worker = batch.worker(req.job.worker)
        if worker is not None and (prepared := workers.finish_job(worker, batch.now)):
            batch.put_worker(prepared)

    def _invalidate_unsatisfiable(self, batch: Batch, gone: WorkerUUID | None = None) -> None:
        everyone = {**self._workers, **batch.workers}
        if gone is not None:
            everyone.pop(gone, None)
        waiting = [batch.request(rid) for rid in self._queue]
        for req in matcher.unsatisfiable([r for r in waiting if r], everyone.values()):
            batch.put_request(requests.invalidate(req, _NO_WORKER))

    async def _commit(self, batch: Batch) -> None:
        changes = batch.changes()
        if not changes:
            return
        await anyio.to_thread.run_sync(self._store.commit, changes)
        for req in changes.requests:
            self._apply_request(req, batch.now)
        for worker in changes.workers:
            old = self._workers.get(worker.uuid)
            self._workers[worker.uuid] = worker
            if old is None or old.state is not worker.state:
                self._show(worker)
        for req in changes.requests:  # a prolonged job shows its new end
            if (
                req.state is RequestState.IN_PROGRESS
                and req.job
                and req.job.worker in self._workers
            ):
                self._show(self._workers[req.job.worker])
        for uuid in changes.removed_workers:
            self._workers.pop(uuid, None)
        self._changed.set()
        self._changed = anyio.Event()

    async def changed(self) -> None:
        """Return after the next committed change (for watchers and tests; no polling)."""
        await self._changed.wait()

    def _apply_request(self, new: Request, now: datetime) -> None:
        old = self._requests.get(new.id)
        if old is not None and old.state is RequestState.WAITING:
            self._queue.remove(old)
        self._requests[new.id] = new
        self._next_id = max(self._next_id, new.id + 1)
        self._next_queued = max(self._next_queued, new.queued + 1)
        if old is not None and old.job is not None and self._jobs.get(old.job.worker) == new.id:
            del self._jobs[old.job.worker]
        if new.state is RequestState.IN_PROGRESS and new.job is not None:
            self._jobs[new.job.worker] = new.id
        if new.state is RequestState.WAITING:
            self._queue.add(new)
        elif (event := self._waiters.pop(new.id, None)) is not None:
            event.set()
        if (
            old is None
            or (old.valid_after, old.deadline, old.job) != (new.valid_after, new.deadline, new.job)
            or old.state is not new.state
        ):
            earliest = self._timers.next()
            self._timers.arm(new, now)
            if self._timers.next() != earliest:  # wake the timer loop only to sleep less
                self._rearm.set()

    def _show(self, worker: Worker) -> None:
        """Tell the board what to show for its state, without waiting for it."""
        if self._tg is None or not self.connected(worker.uuid):
            return
        panel = Display(worker.state.value, reason=worker.reason)
        if worker.state is WorkerState.RUN:
            job = self._running_on(worker.uuid)
            if job is not None and job.job is not None:
                panel = Display(
                    worker.state.value, owner=job.owner, until=job.job.timeout.isoformat()
                )
        elif worker.state in (WorkerState.BUSY, WorkerState.MAINTENANCE):
            panel = Display(worker.state.value, message=MAINTENANCE_MESSAGE)
        self._tg.start_soon(
            self._tell, worker.uuid, "display", self._dryads.display(worker.uuid, panel)
        )

    async def _tell(self, uuid: WorkerUUID, what: str, call: Awaitable[None]) -> None:
        try:
            await call
        except Exception as exc:
            logger.warning("worker %s: %s not delivered: %s", uuid, what, exc)

    def _running_on(self, uuid: WorkerUUID) -> Request | None:
        rid = self._jobs.get(uuid)
        return None if rid is None else self._requests[rid]

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
                await self._close_tunnel(rid)
            raise
        for req in batch.requests.values():
            if req.state in (RequestState.DONE, RequestState.FAILED):
                await self._close_tunnel(req.id)
            if req.state is RequestState.FAILED and req.job and self._tg:
                # No PREPARE follows a failed job, so its user is removed on its own.
                self._tg.start_soon(
                    self._tell, req.job.worker, "release", self._dryads.release(req.job.worker)
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
        pool = {**self._workers, **batch.workers}
        for uuid in batch.removed:
            pool.pop(uuid, None)
        idle = [w for w in pool.values() if w.state is WorkerState.IDLE]
        if not idle:
            return []
        reqs = ChainMap(batch.requests, self._requests)
        fresh = {rid for rid, r in batch.requests.items() if r.state is RequestState.WAITING}
        fresh.update(rid for rid in ready if reqs[rid].state is RequestState.WAITING)
        if everything or any(w.state is WorkerState.IDLE for w in batch.workers.values()):
            if not fresh:
                order: Iterable[RequestID] = self._queue
            else:
                fresh.update(self._queue)
                order = sorted(fresh, key=lambda rid: (reqs[rid].priority, reqs[rid].queued))
        else:
            order = sorted(fresh, key=lambda rid: (reqs[rid].priority, reqs[rid].queued))
        opened: list[RequestID] = []
        for assignment in matcher.match(order, reqs, idle, batch.now):
            req, worker = reqs[assignment.request], pool[assignment.worker]
            if not await self._open_tunnel(req.id, worker):
                continue  # the worker stays IDLE with its key, as the original does
            opened.append(req.id)
            batch.put_request(requests.run(req, worker.uuid, batch.now, self.policy))
            batch.put_worker(workers.take(worker, batch.now))
        return opened

    async def _open_tunnel(self, rid: RequestID, worker: Worker) -> bool:
        try:
            self._access[rid] = await self._tunnels.open(rid, worker)
        except Exception:
            logger.exception("request %s: cannot open a tunnel to worker %s", rid, worker.uuid)
            return False
        return True

    async def _close_tunnel(self, rid: RequestID) -> None:
        if self._access.pop(rid, None) is not None:
            await self._tunnels.close(rid)

    def _start_background(self, worker: Worker) -> None:
        if self._tg is None:
            return
        if worker.state is WorkerState.PREPARE:
            self._tg.start_soon(self._prepare, worker.uuid, worker.epoch)
        elif worker.state is WorkerState.BUSY:
            self._tg.start_soon(self._maintenance, worker.uuid, worker.epoch)

    async def _prepare(self, uuid: WorkerUUID, epoch: int) -> None:
        """PREPARE: a new key, the dryad recreates the job user with it, then IDLE."""
        key = await self._keys.get()
        try:
            await self._dryads.prepare(uuid, key.public_openssh)
            failure = ""
        except Exception as exc:
            failure = f"prepare failed: {exc}"
        await self._background_done(uuid, epoch, failure, key.private_pem)

    async def _maintenance(self, uuid: WorkerUUID, epoch: int) -> None:
        """BUSY: the dryad shows maintenance, then MAINTENANCE."""
        try:
            await self._dryads.maintenance(uuid, MAINTENANCE_MESSAGE)
            failure = ""
        except Exception as exc:
            failure = f"maintenance failed: {exc}"
        await self._background_done(uuid, epoch, failure, b"")

    async def _background_done(
        self, uuid: WorkerUUID, epoch: int, failure: str, key: bytes
    ) -> None:
        async with self._lock:
            worker = self._workers.get(uuid)
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


_NO_WORKER = "no registered worker has these caps and groups"
_AWAY = "disconnected"  # the FAIL reason of a dryad gone past the grace period
_OUT_OF_SERVICE = frozenset({WorkerState.MAINTENANCE, WorkerState.BUSY, WorkerState.FAIL})
