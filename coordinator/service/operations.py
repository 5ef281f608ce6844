"""The application service: the domain decides, the store before every answer, the matcher.

Every operation decides under one lock on the *pending* view of the farm (what is
committed plus what is staged), stages its batch and lets the lock go; its group of
batches commits in one transaction while the next group gathers (``service.commits``).
The operation answers once its group is durable and applied to the committed farm, which
every read uses. A failed commit raises ``StoreUnavailable`` to every caller of the group
(and of the group staged on top of it) and the pending view goes back to the committed
one (docs/architecture.md §the commit path). Matching runs on the events that can change
its outcome (new request, worker idle, ValidAfter reached, groups changed), never by
polling.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from functools import partial

import anyio
from anyio.abc import TaskStatus

from coordinator.domain import listing, matcher, requests, workers
from coordinator.domain.clock import Clock
from coordinator.domain.fairshare import Scheduling
from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.listing import ListSpec, Page
from coordinator.domain.model import AccessInfo, KeyType, Request, User, Worker
from coordinator.domain.requests import RequestPolicy
from coordinator.domain.states import FINAL_REQUEST_STATES, RequestState, WorkerState
from coordinator.domain.timers import Timers
from coordinator.errors import StoreUnavailable
from coordinator.service import cascade, creations, lookup
from coordinator.service.access import Access
from coordinator.service.batch import Batch
from coordinator.service.commits import Commits, Group, Staged, opened
from coordinator.service.creations import Creation, Creations
from coordinator.service.effects import Effects
from coordinator.service.farm import Farm
from coordinator.service.interfaces import Dryads, Tunnels
from coordinator.service.keys import KeyPool, kind_of
from coordinator.service.presence import Presence
from coordinator.service.pulse import Pulse
from coordinator.service.rights import check_owner, require_admin
from coordinator.service.shares import Shares
from coordinator.service.steps import Steps, ask
from coordinator.store import Store
from coordinator.store.records import Numbered
from coordinator.wire import HealthReport

logger = logging.getLogger(__name__)

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
        # Over deciding and staging; never held across a commit. asyncio's: taken free, it
        # neither yields nor asks which task holds it, which anyio's lock does every time.
        self._lock = asyncio.Lock()
        self._adjusting = anyio.Lock()  # admins' quota and scheduling changes take turns
        # Finished requests held in memory besides the live ones; None = all of them.
        self.finished_in_memory = finished_in_memory
        self._committed = Farm(finished_in_memory, timed=False)  # what the store holds
        self._pending = Farm(finished_in_memory)  # plus what is staged: operations decide on it
        self._commits = Commits(store.commit)
        self._access = Access(tunnels)
        self._creations = Creations()
        self._rearm = anyio.Event()
        self._rematch = False  # a matcher pass failed to commit; the timer loop retries it
        self._changed = Pulse()  # fired after every durable group
        self._presence = Presence(link_grace, self._away)
        self._steps = Steps(dryads, self._keys, self._background_done)
        self._effects = Effects(dryads, self._access, self._steps, self.connected)
        self.self_heal = self_heal  # passing checks bring a FAILED worker back to service
        self._health: dict[WorkerUUID, tuple[datetime, HealthReport]] = {}
        # Told of every stored healthcheck report (metrics count the failed ones).
        self.health_listeners: list[Callable[[WorkerUUID, HealthReport], None]] = []
        # Called with each commit's numbered transitions, in commit order; it must not
        # block or raise (the event feed's ``Broadcaster.publish``; nothing without one).
        self.publish: Callable[[Sequence[Numbered]], None] = lambda numbered: None

    # ---- lifecycle -------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Load the stored state, resume what was under way, then serve until cancelled."""
        keep = self.finished_in_memory
        snapshot = await anyio.to_thread.run_sync(self._store.load, keep)
        now = self._clock.now()
        self._committed = Farm.load(snapshot, now, keep, timed=False)
        self._pending = self._committed.copy(now)
        async with anyio.create_task_group() as tg:
            self._effects.start(tg)
            self._presence.start(tg)
            await tg.start(self._keys.run)
            await tg.start(partial(self._commits.run, self._durable, self._failed))
            await self._resume()
            tg.start_soon(self._timer_loop)
            logger.info(
                "service resumed: %d requests (%d waiting), %d workers",
                len(self._committed.requests),
                len(self._committed.queue),
                len(self._committed.workers),
            )
            task_status.started()

    async def _resume(self) -> None:
        """Re-open running jobs' tunnels; go on with the steps a crash cut off once their
        dryads are back (docs/failover.md §standby)."""
        farm = self._committed
        for req in farm.requests.values():
            if req.state is RequestState.IN_PROGRESS and req.job is not None:
                worker = farm.workers.get(req.job.worker)
                if worker is not None:
                    await self._access.open(req.id, worker)
        for worker in farm.workers.values():
            resume = partial(self._effects.resume, worker, lambda u: self._committed.workers.get(u))
            self._presence.when_up(worker.uuid, resume)
            self._presence.watch(worker.uuid)  # ... within the grace, or the worker FAILS
        await self.fire_timers()
        await self._match_pass(None)

    # ---- requests ----------------------------------------------------------------------

    async def new_request(
        self,
        user: User,
        priority: int,
        caps: Mapping[str, str],
        valid_after: datetime | None = None,
        deadline: datetime | None = None,
        key_type: KeyType = KeyType.RSA,
    ) -> RequestID:
        """Queue a request; it is INVALID at once when no registered worker could take it.
        Requests that arrive while the lock is held are decided together (``creations``)."""
        creation = Creation(user, priority, caps, valid_after, deadline, key_type)
        self._creations.add(creation)
        try:
            async with self._lock:
                if not creation.taken:
                    asked = self._creations.take()
                    # Shielded: the other callers in ``asked`` wait on this batch too.
                    with anyio.CancelScope(shield=True):
                        try:
                            batch = self._batch(creations.actor_of(asked))
                            creations.put_all(asked, batch, self._pending)
                            group = await self._stage(batch)
                        except BaseException as exc:  # a bug: every caller hears of it
                            group = Group()
                            group.settle(exc)
                            raise
                        finally:
                            creations.settle(asked, group)
        finally:
            self._creations.withdraw(creation)  # cancelled before anyone took it
        return await creation.outcome()

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
        async with self._deciding(user.name) as batch:
            req = await self._owned(user, rid)
            new = requests.update(
                req, priority, valid_after, deadline, batch.now, self._pending.next_queued
            )
            if new != req:
                batch.put_request(new)

    async def close_request(self, user: User, rid: RequestID) -> None:
        """Cancel a WAITING request or end an IN PROGRESS one (its worker is prepared anew)."""
        async with self._deciding(user.name) as batch:
            req = await self._owned(user, rid)
            batch.put_request(requests.close(req))
            cascade.finish_job(batch, req)

    async def prolong_access(self, user: User, rid: RequestID) -> None:
        """Move the job timeout one period on, within the maximum job length."""
        async with self._deciding(user.name, match=False) as batch:
            req = await self._owned(user, rid)
            longest = self.shares.max_job(self._pending, req)
            batch.put_request(requests.prolong(req, batch.now, self.policy, longest))

    async def acquire_worker(
        self, user: User, rid: RequestID, wait: float | None = None
    ) -> AccessInfo:
        """The access to the request's worker; with ``wait``, first wait up to that many
        seconds for a WAITING request to be matched (an extension of the original)."""
        req = await lookup.find(self._committed, self._store, rid)
        check_owner(user, req)
        if wait and req.state is RequestState.WAITING:
            await self._access.wait(rid, wait)
            req = await lookup.find(self._committed, self._store, rid)  # it may have ended
        access = self._access.address(rid)
        if req.state is not RequestState.IN_PROGRESS or req.job is None or access is None:
            raise self._access.refusal(rid)
        worker = self._committed.workers[req.job.worker]
        return AccessInfo(access[0], access[1], worker.key, self._username, worker.host_keys)

    async def get_request(self, rid: RequestID) -> Request:
        """The request; a waiting one over its owner's quota says so in ``reason``."""
        req = await lookup.find(self._committed, self._store, rid)
        return self.shares.explained(self._committed, req)

    def queue_position(self, rid: RequestID) -> int | None:
        """Waiting requests ahead of this one in the order in force; ``None`` if not waiting."""
        return self.shares.position(self._committed, rid, self._clock.now())

    async def list_requests(self, spec: ListSpec[Request, RequestID]) -> Page[Request]:
        page = await lookup.page(self._committed, self._store, spec)
        return self.shares.explained_page(self._committed, page)

    @property
    def farm(self) -> Farm:
        """The committed state, for reports; change it only through ``adjust``."""
        return self._committed

    @property
    def timers(self) -> Timers:
        """The timers in force (those of the pending view)."""
        return self._pending.timers

    async def adjust(self, change: Callable[[Farm], Awaitable[None]]) -> None:
        """An admin's ``change`` to quotas or scheduling (``service.quotas``), then a pass
        over the whole queue, which it may have unblocked.

        ``change`` stores its own change and then sets it on the committed farm; admins'
        changes take turns, so memory ends as the store does, but operations go on
        meanwhile: the service lock is taken only to hand the quotas to the pending view.
        """
        async with self._adjusting:
            await change(self._committed)
            async with self._lock:
                self._pending.quotas = self._committed.quotas
        await self._match_pass(None)

    # ---- workers -----------------------------------------------------------------------

    def get_worker(self, uuid: WorkerUUID) -> Worker:
        return self._committed.worker(uuid)

    def list_workers(self, spec: ListSpec[Worker, WorkerUUID]) -> Page[Worker]:
        return listing.page(listing.WORKERS, self._committed.workers, spec)

    async def register(
        self, caps: Mapping[str, str], ssh_address: str, host_keys: tuple[str, ...] = ()
    ) -> Worker:
        """A dryad (re-)registers; called by the dryad link, which checked ``host_keys``."""
        async with self._deciding("") as batch:
            known = self._pending.workers.get(WorkerUUID(caps.get("UUID", "")))
            new = workers.register(known, caps, ssh_address, batch.now, host_keys)
            batch.put_worker(new)
            if known is None or dict(known.caps) != dict(new.caps):
                await cascade.invalidate_unsatisfiable(self._pending, batch)
        if known is not None and known.state is new.state:
            # A commit shows only changed states; a board that reconnects (a restarted
            # dryad shows its boot screen) needs its view again: the wire's promise.
            self._effects.show(self._committed, self._committed.workers.get(new.uuid, new))
        return new

    async def set_fail(self, uuid: WorkerUUID, reason: str) -> None:
        """The dryad reports a failure; its running job, if any, FAILS."""
        async with self._deciding("") as batch:
            batch.put_worker(workers.set_fail(self._pending.worker(uuid), reason, batch.now))

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

    async def relinked(self, uuid: WorkerUUID) -> None:
        """The worker's dryad link moved to another coordinator: its running job's tunnel
        re-opens on the new one (docs/failover.md §scale-out)."""
        req, worker = self._committed.running_on(uuid), self._committed.workers.get(uuid)
        if req is not None and worker is not None:
            await self._access.reopen(req, worker, lambda: self._committed.running_on(uuid))

    @property
    def link_grace(self) -> float:
        """Seconds a dryad may be away before its worker FAILS."""
        return self._presence.grace

    @link_grace.setter
    def link_grace(self, seconds: float) -> None:
        self._presence.grace = seconds

    async def _away(self, uuid: WorkerUUID) -> None:
        try:
            async with self._deciding("") as batch:
                worker = self._pending.workers.get(uuid)
                if worker is not None and worker.state not in cascade.OUT_OF_SERVICE:
                    batch.put_worker(workers.move(worker, WorkerState.FAIL, batch.now, _AWAY))
                # else gone, or in maintenance or FAIL: no reminder needed
        except StoreUnavailable:
            logger.error("worker %s: store unavailable; FAIL not recorded", uuid)

    async def report_health(self, uuid: WorkerUUID, report: HealthReport) -> None:
        """Healthcheck results: a failed critical check sends a worker in service to FAIL;
        with self-heal, passing checks send a FAILED worker back through PREPARE."""
        async with self._deciding("") as batch:
            worker = self._pending.worker(uuid)
            self._health[uuid] = (batch.now, report)
            cascade.apply_health(batch, worker, report, self.self_heal)
        for listener in self.health_listeners:
            listener(uuid, report)  # once per stored report, before the caller goes on

    async def button(self, uuid: WorkerUUID, number: int) -> None:
        """Someone pressed a button on the MuxPi: recorded in the worker's history."""
        await self._note("", uuid, f"button {number} pressed")

    async def _note(self, actor: str, uuid: WorkerUUID, reason: str) -> None:
        async with self._deciding(actor, match=False) as batch:
            batch.note(self._pending.worker(uuid), reason)

    async def identify(self, admin: User, uuid: WorkerUUID, seconds: float) -> None:
        """Make the board blink brightly so it can be found in the rack."""
        require_admin(admin)
        self.get_worker(uuid)
        await ask(uuid, self._dryads.identify(uuid, seconds))
        await self._note(admin.name, uuid, f"identify for {seconds:g} s")  # in the audit

    async def run_healthcheck(self, admin: User, uuid: WorkerUUID) -> HealthReport:
        """Run the worker's healthchecks now; the results are applied as reported ones."""
        require_admin(admin)
        self.get_worker(uuid)
        report: HealthReport = await ask(uuid, self._dryads.healthcheck(uuid))
        await self.report_health(uuid, report)
        return report

    async def set_worker_state(self, admin: User, uuid: WorkerUUID, state: WorkerState) -> None:
        """An admin's IDLE (through PREPARE) or MAINTENANCE (through BUSY)."""
        require_admin(admin)
        async with self._deciding(admin.name) as batch:
            new = workers.set_state(self._pending.worker(uuid), state, batch.now)
            if new is not None:
                batch.put_worker(new)

    async def set_worker_groups(self, admin: User, uuid: WorkerUUID, groups: Iterable[str]) -> None:
        """Replace a worker's groups; requests no worker can take any more become INVALID."""
        require_admin(admin)
        async with self._deciding(admin.name) as batch:
            new = workers.set_groups(self._pending.worker(uuid), groups)
            batch.put_worker(new)
            batch.note(new, f"groups set to {', '.join(new.groups) or 'none'}")  # in the audit
            await cascade.invalidate_unsatisfiable(self._pending, batch)

    async def deregister(self, admin: User, uuid: WorkerUUID) -> None:
        """Remove a worker in MAINTENANCE or FAIL."""
        require_admin(admin)
        async with self._deciding(admin.name, match=False) as batch:
            worker = self._pending.worker(uuid)
            workers.check_deregister(worker)
            batch.remove_worker(worker)
            await cascade.invalidate_unsatisfiable(self._pending, batch, gone=uuid)
        self._health.pop(uuid, None)

    # ---- timers ------------------------------------------------------------------------

    async def fire_timers(self) -> None:
        """Act on every timer that is due now (the timer loop calls this; so may tests)."""
        async with self._lock:
            batch = self._batch("")
            ready = cascade.fire(batch, self._pending.timers.pop_due(batch.now))
            # A failed commit sets it again, and re-arms the timers it popped (``_failed``).
            rematch, self._rematch = self._rematch, False
            with anyio.CancelScope(shield=True):
                group = await self._stage(batch, ready, everything=rematch)
        await group.wait()

    async def _timer_loop(self) -> None:
        while True:
            nxt = self._pending.timers.next()
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

    # ---- deciding and committing -----------------------------------------------------------

    def _batch(self, actor: str) -> Batch:
        farm, half_life = self._pending, self.shares.half_life
        return Batch(self._clock.now(), actor, farm.requests, farm.workers, farm.jobs, half_life)

    @asynccontextmanager
    async def _deciding(self, actor: str, *, match: bool = True) -> AsyncIterator[Batch]:
        """Decide under the lock on the pending view, stage the batch, then wait, without
        the lock, until it is durable; ``match`` also runs a matcher pass over it and the
        follow-up work after the commit.

        A refusal (an exception in the block) is raised once everything staged before it
        is durable: it may rest on that, and if that failed, the caller hears
        ``StoreUnavailable`` instead (docs/architecture.md §the commit path).
        """
        refused: Exception | None = None
        async with self._lock:
            batch = self._batch(actor)
            try:
                yield batch
            except Exception as exc:  # the domain refused: nothing of the batch is staged
                refused, group = exc, self._commits.tail()
            else:
                # Shielded: the tunnels a matcher pass opens must end up staged or closed.
                with anyio.CancelScope(shield=True):
                    group = await self._stage(batch, match=match)
        await group.wait()
        if refused is not None:
            raise refused

    async def _stage(
        self,
        batch: Batch,
        ready: Iterable[RequestID] = (),
        everything: bool = False,
        match: bool = True,
    ) -> Group:
        """Under the lock: match what the batch made possible, apply the batch to the
        pending view and stage it; returns the group to wait for.

        The matcher considers the batch's waiting requests and ``ready`` ones (ValidAfter
        reached), or the whole queue when a worker became IDLE or ``everything`` is set.
        An empty batch waits for the newest group staged: what it decided rests on it.
        """
        opened = await self._match_into(batch, ready, everything) if match else []
        changes = batch.changes()
        if not changes:
            return self._commits.tail()
        earliest = self._pending.timers.next()
        self._pending.apply(changes, batch.now)
        if self._pending.timers.sooner(earliest):  # wake the timer loop only to sleep less
            self._rearm.set()
        return self._commits.stage(Staged(batch, changes, opened, follow=match))

    async def _durable(self, group: Group) -> None:
        """The one place where a group is now stored: the committed farm takes it in, then
        what the new states call for happens, and watchers of ``changed`` wake."""
        for staged in group.staged:
            await self._apply_durable(staged)
        if group.stored:
            self.publish(group.stored)  # durable and applied: the feed hands them on from memory
        self._changed.fire()

    async def _apply_durable(self, staged: Staged) -> None:
        farm, changes = self._committed, staged.changes
        moved = [
            w
            for w in changes.workers
            if (was := farm.workers.get(w.uuid)) is None or was.state is not w.state
        ]
        for old, new in farm.apply(changes, staged.batch.now):
            if old is not None and old.state is not new.state:
                self._access.changed(new.id, new.state in FINAL_REQUEST_STATES)
        await self._effects.after(farm, staged, moved)

    async def _failed(self, group: Group, exc: Exception) -> None:
        """A group was not stored: the group staged on top of it fails too, the pending
        view goes back to the committed farm, and the tunnels their passes opened close.
        The timers it popped are armed again and a pass over the whole queue follows."""
        async with self._lock:
            later = self._commits.drop_open(exc)
            self._pending = self._committed.copy(self._clock.now())
            self._rematch = True
            self._rearm.set()
        for rid in opened([group, later]):
            await self._access.close(rid)

    async def changed(self) -> None:
        """Return after the next durable group (for watchers and tests; no polling)."""
        await self._changed.wait()

    async def _owned(self, user: User, rid: RequestID) -> Request:
        """The request as the pending view has it, if ``user`` may change it."""
        req = self._pending.requests.get(rid) or self._commits.staged_request(rid)
        if req is None:  # finished and let go: as stored (no reason explained)
            req = await lookup.find(self._pending, self._store, rid)
        check_owner(user, req)
        return req

    async def _match_pass(self, only: list[RequestID] | None) -> None:
        """A matcher pass of its own: all waiting requests, or ``only`` these."""
        try:
            async with self._lock:
                batch = self._batch("")
                with anyio.CancelScope(shield=True):
                    group = await self._stage(batch, only or (), everything=only is None)
            await group.wait()
        except StoreUnavailable:
            # What triggered this pass is committed and answered; the timers retry it.
            logger.warning("matcher: store unavailable; retrying shortly")
            self._rematch = True
            self._rearm.set()

    async def _match_into(
        self, batch: Batch, ready: Iterable[RequestID], everything: bool
    ) -> list[RequestID]:
        """Add the matcher's assignments to ``batch``; returns the requests given tunnels."""
        farm, shares = self._pending, self.shares
        pool, reqs, order = await cascade.match_candidates(farm, batch, ready, everything, shares)
        idle = [w for w in pool.values() if w.state is WorkerState.IDLE]
        if not idle:
            return []
        opened: list[RequestID] = []
        limits = shares.limits(farm, batch.requests)
        for assignment in matcher.match(order, reqs, idle, batch.now, limits):
            req, worker = reqs[assignment.request], pool[assignment.worker]
            if kind_of(worker.key) is not req.key_type:
                # The board holds a key of the other type: it gets one of the asked type
                # first (docs/boruta-api.md §keys); a dryad that fails it fails the worker.
                key, failure = await self._steps.rekey(worker.uuid, req.key_type)
                if failure:
                    batch.put_worker(workers.set_fail(worker, failure, batch.now))
                    continue
                worker = workers.rekeyed(worker, key)
                # The board holds this key now, committed or not: both copies of the farm
                # follow the board at once, so a failed commit (which rebuilds the pending
                # copy from the committed one) cannot leave a job a key the board refuses.
                self._committed.workers[worker.uuid] = worker
                self._pending.workers[worker.uuid] = worker
            if not await self._access.open(req.id, worker):
                continue  # the worker stays IDLE with its key, as the original does
            opened.append(req.id)
            longest = shares.max_job(farm, req)
            batch.put_request(requests.run(req, worker.uuid, batch.now, self.policy, longest))
            batch.put_worker(workers.take(worker, batch.now))
        return opened

    async def _background_done(
        self, uuid: WorkerUUID, epoch: int, failure: str, key: bytes
    ) -> None:
        try:
            async with self._deciding("") as batch:
                worker = self._pending.workers.get(uuid)
                if worker is None:
                    return
                if failure:
                    new = workers.operation_failed(worker, epoch, failure, batch.now)
                elif worker.state is WorkerState.PREPARE:
                    new = workers.prepared(worker, epoch, key, batch.now)
                else:
                    new = workers.in_maintenance(worker, epoch, batch.now)
                if new is not None:  # else overtaken by a newer state; its own step is under way
                    batch.put_worker(new)
        except StoreUnavailable:
            logger.error("worker %s: store unavailable; its step's end is not recorded", uuid)


_AWAY = "disconnected"  # the FAIL reason of a dryad gone past the grace period
