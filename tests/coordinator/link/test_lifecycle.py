"""Links that drop: grace, FAIL "disconnected", reconnection, and one link per worker."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from coordinator.domain.clock import FakeClock
from coordinator.domain.ids import RequestID
from coordinator.domain.states import RequestState, WorkerState
from coordinator.link.registry import DryadLink
from coordinator.link.server import LinkConfig, LinkServer
from coordinator.service.keys import KeyPool
from coordinator.service.operations import Service
from coordinator.store.sql import SqlStore
from coordinator.wire import REGISTER
from tests.coordinator.doubles import ADMIN, ALICE, RecordingTunnels, until

from .dryads import Dialled, TestDryad, dial, enrol_and_register
from .link_farm import GRACE, LinkFarm

pytestmark = pytest.mark.anyio


async def running_job(farm: LinkFarm, link: Dialled, dryad: TestDryad) -> RequestID:
    """Enrol and register ``dryad``, put it in service, and give it a job."""
    await enrol_and_register(farm, link, dryad)
    await farm.service.set_worker_state(ADMIN, dryad.uuid, WorkerState.IDLE)
    rid = await farm.service.new_request(ALICE, 8, {})
    await until(
        farm.service, lambda: farm.service.farm.requests[rid].state is RequestState.IN_PROGRESS
    )
    return rid


@pytest.mark.slow
async def test_a_killed_dryad_fails_its_worker_and_job_after_the_grace(farm: LinkFarm) -> None:
    dryad = TestDryad()
    async with dial(farm.port, dryad) as link:
        rid = await running_job(farm, link, dryad)
        link.conn.abort()  # as a kill -9 or a cut cable would
    with anyio.fail_after(GRACE * 10):
        while farm.link.connected(dryad.uuid):
            await farm.link.changed()
    await until(farm.service, lambda: farm.service.get_worker(dryad.uuid).state is WorkerState.FAIL)
    assert farm.service.get_worker(dryad.uuid).reason == "disconnected"
    assert (await farm.service.get_request(rid)).state is RequestState.FAILED


@pytest.mark.slow
async def test_a_dryad_back_within_the_grace_keeps_its_job(farm: LinkFarm) -> None:
    dryad = TestDryad()
    async with dial(farm.port, dryad) as link:
        rid = await running_job(farm, link, dryad)
        link.conn.abort()
    async with dial(farm.port, dryad) as link:
        await link.peer.call(REGISTER, dryad.registration())
        # Nothing may happen now: wait past the grace for a FAIL that must not come.
        with anyio.move_on_after(GRACE * 2):
            await until(
                farm.service,
                lambda: farm.service.get_worker(dryad.uuid).state is not WorkerState.RUN,
            )
        assert farm.service.get_worker(dryad.uuid).state is WorkerState.RUN
        assert (await farm.service.get_request(rid)).state is RequestState.IN_PROGRESS
        assert farm.service.connected(dryad.uuid)


async def test_a_new_connection_replaces_the_old_one(farm: LinkFarm) -> None:
    dryad = TestDryad()
    async with dial(farm.port, dryad) as old:
        await enrol_and_register(farm, old, dryad)
        async with dial(farm.port, dryad) as new:
            await old.reader.read()  # the coordinator closed the old link
            await new.peer.call(REGISTER, dryad.registration())
            assert farm.link.connected(dryad.uuid) and farm.service.connected(dryad.uuid)


@pytest.mark.slow
async def test_keepalives_end_the_link_of_a_dryad_that_went_silent(
    store: SqlStore, clock: FakeClock, tmp_path: Path
) -> None:
    link = DryadLink(store, clock)
    service = Service(
        store, link, RecordingTunnels(), clock, keys=KeyPool(1, processes=False), link_grace=60
    )
    link.service = service
    config = LinkConfig("127.0.0.1", 0, tmp_path / "key", keepalive=0.1)
    dryad = TestDryad()
    store.bind_dryad(dryad.uuid, dryad.key.export_public_key().decode().strip())
    async with anyio.create_task_group() as tg:
        await tg.start(service.run)
        _, port = await tg.start(LinkServer(config, store, link).run)
        async with dial(port, dryad) as dialled:
            await dialled.peer.call(REGISTER, dryad.registration())
            # A dryad that hangs (or a cable that drops packets) answers nothing but keeps
            # its TCP connection: stop reading it, as the server would then see.
            transport = dialled.conn._transport  # no public way to stop reading
            assert transport is not None
            transport.pause_reading()
            with anyio.fail_after(5):
                while link.connected(dryad.uuid):
                    await link.changed()
            transport.resume_reading()
        tg.cancel_scope.cancel()
    assert not service.connected(dryad.uuid)
