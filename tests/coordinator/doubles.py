"""Coordinator test doubles (recording dryads and tunnels), the test users, service steps."""

from __future__ import annotations

from collections.abc import Callable

import anyio

from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.model import User, Worker
from coordinator.domain.states import WorkerState
from coordinator.domain.workers import split_address
from coordinator.service.operations import Service
from coordinator.wire import CheckResult, Display, HealthReport

ALICE = User("alice", groups=())
BOB = User("bob", groups=())
ADMIN = User("root", admin=True)


class RecordingDryads:
    """Dryads that answer at once and remember what they were told; ``fail`` makes them err."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, WorkerUUID, str]] = []
        self.shown: list[tuple[WorkerUUID, Display]] = []
        self.fail: str = ""
        self.report = HealthReport((CheckResult("stm", True, True, "version 1.2"),))

    async def prepare(self, worker: WorkerUUID, public_key: str) -> None:
        self.calls.append(("prepare", worker, public_key))
        if self.fail:
            raise ConnectionError(self.fail)

    async def maintenance(self, worker: WorkerUUID, message: str) -> None:
        self.calls.append(("maintenance", worker, message))
        if self.fail:
            raise ConnectionError(self.fail)

    async def release(self, worker: WorkerUUID) -> None:
        self.calls.append(("release", worker, ""))

    async def healthcheck(self, worker: WorkerUUID) -> HealthReport:
        self.calls.append(("healthcheck", worker, ""))
        if self.fail:
            raise ConnectionError(self.fail)
        return self.report

    async def identify(self, worker: WorkerUUID, seconds: float) -> None:
        self.calls.append(("identify", worker, str(seconds)))

    async def display(self, worker: WorkerUUID, panel: Display) -> None:
        self.shown.append((worker, panel))


class RecordingTunnels:
    """Tunnels that hand out the worker's address on a made-up port per request."""

    def __init__(self) -> None:
        self.open_now: dict[RequestID, WorkerUUID] = {}
        self.fail = False

    async def open(self, rid: RequestID, worker: Worker) -> tuple[str, int]:
        if self.fail:
            raise OSError("no free port")
        self.open_now[rid] = worker.uuid
        return split_address(worker.ssh_address)[0], 20000 + rid

    async def close(self, rid: RequestID) -> None:
        self.open_now.pop(rid, None)


async def until(service: Service, condition: Callable[[], bool], seconds: float = 10) -> None:
    """Wait, change by change, until ``condition`` holds."""
    with anyio.fail_after(seconds):
        while not condition():
            await service.changed()


def uuid_of(n: int) -> WorkerUUID:
    return WorkerUUID(f"00000000-0000-4000-8000-{n:012d}")


async def idle_worker(
    service: Service, n: int, caps: dict[str, str] | None = None, groups: tuple[str, ...] = ()
) -> WorkerUUID:
    """Register worker ``n``, put it in service as an admin would, and wait for IDLE."""
    uuid = uuid_of(n)
    await service.register({"UUID": uuid, **(caps or {})}, f"10.0.0.{n}:22")
    if groups:
        await service.set_worker_groups(ADMIN, uuid, groups)
    await service.set_worker_state(ADMIN, uuid, WorkerState.IDLE)
    await until(service, lambda: service.get_worker(uuid).state is not WorkerState.PREPARE)
    return uuid
