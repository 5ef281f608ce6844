"""What the world is told once a change is durable: the boards' panels, tunnels closed,
the job user of a failed job released, PREPARE and BUSY steps started."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from anyio.abc import TaskGroup

from coordinator.domain.ids import WorkerUUID
from coordinator.domain.model import KeyType, Worker
from coordinator.domain.states import RequestState, WorkerState
from coordinator.service.access import Access
from coordinator.service.commits import Staged
from coordinator.service.farm import Farm
from coordinator.service.interfaces import Dryads
from coordinator.service.keys import kind_of
from coordinator.service.steps import Steps, panel_for, tell


class Effects:
    """Started in the service's task group; nothing is sent before that."""

    def __init__(
        self, dryads: Dryads, access: Access, steps: Steps, connected: Callable[[WorkerUUID], bool]
    ) -> None:
        self._dryads = dryads
        self._access = access
        self._steps = steps
        self._connected = connected
        self._tg: TaskGroup | None = None

    def start(self, tg: TaskGroup) -> None:
        self._tg = tg

    def show(self, farm: Farm, worker: Worker) -> None:
        """Tell the board what to show for its state, without waiting for it."""
        if self._tg is None or not self._connected(worker.uuid):
            return
        panel = panel_for(worker, farm.running_on(worker.uuid))
        self._tg.start_soon(tell, worker.uuid, "display", self._dryads.display(worker.uuid, panel))

    async def after(self, farm: Farm, staged: Staged, moved: Iterable[Worker]) -> None:
        """What a batch now in ``farm`` calls for; ``moved`` are the workers whose state it
        changed (or that it added)."""
        for worker in moved:
            if worker.uuid in farm.workers:
                self.show(farm, worker)
        for req in staged.changes.requests:  # a prolonged job shows its new end
            if req.state is RequestState.IN_PROGRESS and req.job and req.job.worker in farm.workers:
                self.show(farm, farm.workers[req.job.worker])
        if not staged.follow:
            return
        for req in staged.batch.requests.values():
            if req.state in (RequestState.DONE, RequestState.FAILED):
                await self._access.close(req.id)
            if req.state is RequestState.FAILED and req.job and self._tg:
                # No PREPARE follows a failed job, so its user is removed on its own.
                self._tg.start_soon(
                    tell, req.job.worker, "release", self._dryads.release(req.job.worker)
                )
        for worker in staged.batch.workers.values():
            self.start_background(worker)

    def resume(self, was: Worker, current: Callable[[WorkerUUID], Worker | None]) -> None:
        """The step of ``was``, begun before a restart or a takeover, now that its dryad is
        back, unless the worker changed meanwhile. Not at the start: the dryad is not back
        yet, and failing the step would FAIL a healthy board; the link's grace FAILS it if
        the dryad stays away."""
        worker = current(was.uuid)
        if worker is not None and worker.epoch == was.epoch:
            self.start_background(worker)

    def start_background(self, worker: Worker) -> None:
        """The PREPARE or BUSY step of a worker in that state."""
        if self._tg is None:
            return
        if worker.state is WorkerState.PREPARE:
            # The key type of the worker's last job: one farm's clients mostly ask for
            # one type, so a board rarely needs a second key when matched.
            kind = kind_of(worker.key) or KeyType.RSA
            self._tg.start_soon(self._steps.prepare, worker.uuid, worker.epoch, kind)
        elif worker.state is WorkerState.BUSY:
            self._tg.start_soon(self._steps.maintenance, worker.uuid, worker.epoch)
