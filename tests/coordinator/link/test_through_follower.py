"""A dryad linked to a follower, in one process: it enrols and registers through the
follower's link, the leader sees it connected and sends it a job's prepare through the
follower, and the leader learns when the link drops (the grace then FAILS the worker).

The two coordinators talk over their real peer routes (the leader's behind its peer
gate), each reaching the other's app in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette

from coordinator.api.errors import boruta_error
from coordinator.api.peer import PeerRoutes
from coordinator.domain.clock import FakeClock
from coordinator.domain.ids import WorkerUUID
from coordinator.domain.states import RequestState, WorkerState
from coordinator.errors import BorutaError
from coordinator.feed.panels import Panels
from coordinator.httpd.holding import DryadCalls
from coordinator.httpd.peergate import PeerGate
from coordinator.link.announcer import LeaderLinks
from coordinator.link.holders import Holders
from coordinator.link.peerclient import PeerClient
from coordinator.link.registry import DryadLink
from coordinator.link.server import LinkConfig, LinkServer
from coordinator.service.keys import KeyPool
from coordinator.service.operations import Service
from coordinator.store.sql import SqlStore
from coordinator.wire import ENROL, PREPARE, REFUSED, REGISTER, RpcError
from tests.coordinator.doubles import ADMIN, ALICE, RecordingTunnels, until
from tests.coordinator.link.test_holders import Presence

from .dryads import TestDryad, dial
from .link_farm import GRACE, LinkFarm

pytestmark = pytest.mark.anyio

SECRET = "5a" * 32
LEADER = "http://leader:8487"
FOLLOWER = "http://follower:8487"


@dataclass
class Pair:
    farm: LinkFarm  # the follower's link port, the leader's service
    holders: Holders
    links: LeaderLinks


@pytest.fixture
async def pair(store: SqlStore, clock: FakeClock, tmp_path: Path) -> AsyncIterator[Pair]:
    follower_link = DryadLink(store, clock)
    to_follower = httpx.ASGITransport(app=DryadCalls(follower_link, lambda: SECRET))
    holders = Holders(None, PeerClient(SECRET, to_follower))
    service = Service(
        store, holders, RecordingTunnels(), clock, keys=KeyPool(2, processes=False),
        link_grace=GRACE,
    )  # fmt: skip
    holders.service = service
    leader_app = Starlette(
        routes=PeerRoutes(holders, Panels(clock)).routes(),
        exception_handlers={BorutaError: boruta_error},
    )
    to_leader = httpx.ASGITransport(app=PeerGate(leader_app, lambda: SECRET))
    links = LeaderLinks(PeerClient(SECRET, to_leader), FOLLOWER, lambda: LEADER, every=0.2)
    follower_link.service = links
    follower_link.panels = links
    config = LinkConfig("127.0.0.1", 0, tmp_path / "link_host_key", keepalive=5)
    async with anyio.create_task_group() as tg:
        await tg.start(service.run)
        await tg.start(links.run)
        _, port = await tg.start(LinkServer(config, store, follower_link).run)
        yield Pair(LinkFarm(port, service, follower_link, store, clock, config.host_key),
                   holders, links)  # fmt: skip
        tg.cancel_scope.cancel()
    await holders.aclose()


async def test_a_dryad_on_a_follower_registers_and_gets_its_calls_through_it(
    pair: Pair,
) -> None:
    farm, service = pair.farm, pair.farm.service
    dryad = TestDryad()
    async with dial(farm.port, dryad) as link:
        await link.peer.call(ENROL, {"token": farm.token()})
        answer = await link.peer.call(REGISTER, dryad.registration())
        assert answer == {"state": "MAINTENANCE"}
        assert await pair.links.announce()  # as its loop does after each change
        assert service.connected(dryad.uuid)
        assert pair.holders.holder(dryad.uuid) == FOLLOWER
        worker = service.get_worker(dryad.uuid)
        assert worker.ssh_address == "127.0.0.1:22"  # completed by the holder
        await service.set_worker_state(ADMIN, dryad.uuid, WorkerState.IDLE)
        rid = await service.new_request(ALICE, 8, {})
        await until(service, lambda: service.farm.requests[rid].state is RequestState.IN_PROGRESS)
        assert PREPARE in [method for method, _ in dryad.calls]
        link.conn.abort()
    await until(service, lambda: service.get_worker(dryad.uuid).state is WorkerState.FAIL)
    assert service.get_worker(dryad.uuid).reason == "disconnected"
    assert pair.holders.holder(dryad.uuid) is None


async def test_a_refusal_of_the_leader_reaches_the_dryad(pair: Pair) -> None:
    farm = pair.farm
    dryad = TestDryad()
    async with dial(farm.port, dryad) as link:
        await link.peer.call(ENROL, {"token": farm.token()})
        registration = dryad.registration()
        registration["ssh_address"] = "no port"
        with pytest.raises(RpcError, match="IP address is missing from address") as refused:
            await link.peer.call(REGISTER, registration)
        assert refused.value.code == REFUSED  # the leader's own reason, as a link refusal
    assert dryad.uuid not in farm.service.farm.workers  # nothing half registered


async def test_a_dryad_is_refused_while_no_leader_can_be_reached(
    store: SqlStore, clock: FakeClock, tmp_path: Path
) -> None:
    async def away(scope: object, receive: object, send: object) -> None:
        raise httpx.ConnectError("connection refused")

    link = DryadLink(store, clock)
    links = LeaderLinks(PeerClient(SECRET, httpx.ASGITransport(app=away)), FOLLOWER, lambda: LEADER)
    link.service = links
    config = LinkConfig("127.0.0.1", 0, tmp_path / "link_host_key", keepalive=5)
    async with anyio.create_task_group() as tg:
        _, port = await tg.start(LinkServer(config, store, link).run)
        farm = LinkFarm(port, None, link, store, clock, config.host_key)  # type: ignore[arg-type]
        dryad = TestDryad()
        async with dial(port, dryad) as dialled:
            await dialled.peer.call(ENROL, {"token": farm.token()})
            with pytest.raises(RpcError, match="leader cannot take register.*cannot be reached"):
                await dialled.peer.call(REGISTER, dryad.registration())
            assert not await links.announce()
        tg.cancel_scope.cancel()


class Told(Presence):
    """Records the ups and downs, and says when the first up came."""

    def __init__(self) -> None:
        super().__init__()
        self.up = anyio.Event()

    def link_up(self, uuid: WorkerUUID) -> None:
        super().link_up(uuid)
        self.up.set()


async def test_a_new_leader_learns_the_links_from_the_next_announcement(
    store: SqlStore, clock: FakeClock, tmp_path: Path
) -> None:
    """The follower's loop sends its whole set to whoever leads now, within its period."""
    leaders = {name: Holders(None, PeerClient(SECRET)) for name in (b"old:1", b"new:1")}
    told = {name: Told() for name in leaders}
    apps = {}
    for name, holders in leaders.items():
        holders.service = told[name]
        routes = PeerRoutes(holders, Panels(clock)).routes()
        app = Starlette(routes=routes, exception_handlers={BorutaError: boruta_error})
        apps[name] = PeerGate(app, lambda: SECRET)

    async def by_host(scope: Any, receive: Any, send: Any) -> None:
        await apps[dict(scope["headers"])[b"host"]](scope, receive, send)

    now = ["http://old:1"]
    links = LeaderLinks(
        PeerClient(SECRET, httpx.ASGITransport(app=by_host)), FOLLOWER, lambda: now[0], 0.05
    )
    link = DryadLink(store, clock)
    link.service = links
    config = LinkConfig("127.0.0.1", 0, tmp_path / "link_host_key", keepalive=5)
    async with anyio.create_task_group() as tg:
        _, port = await tg.start(LinkServer(config, store, link).run)
        await tg.start(links.run)
        farm = LinkFarm(port, None, link, store, clock, config.host_key)  # type: ignore[arg-type]
        dryad = TestDryad()
        async with dial(port, dryad) as dialled:
            await dialled.peer.call(ENROL, {"token": farm.token()})
            with anyio.fail_after(10):
                await told[b"old:1"].up.wait()
            now[0] = "http://new:1"  # the follower read a new leader in the serving row
            with anyio.fail_after(10):
                await told[b"new:1"].up.wait()
            assert leaders[b"new:1"].holder(dryad.uuid) == FOLLOWER
        tg.cancel_scope.cancel()
    for holders in leaders.values():
        await holders.aclose()
