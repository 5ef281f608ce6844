"""A dryad linked to a follower, in one process: it enrols and registers through the
follower's link (the enrolment decided and written by the leader: the follower's store
refuses writes here), the leader sees it connected and sends it a job's prepare through
the follower, and the leader learns when the link drops (the grace then FAILS the worker).

The two coordinators talk over their real peer routes (the leader's behind its peer
gate), each reaching the other's app in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import anyio
import httpx
import pytest
from prometheus_client import CollectorRegistry
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
from coordinator.link.enrolment import StoreEnrolment
from coordinator.link.holders import Holders
from coordinator.link.peerclient import PeerClient
from coordinator.link.registry import BAD_TOKEN, DryadLink
from coordinator.link.server import LinkConfig, LinkServer, openssh
from coordinator.service.keys import KeyPool
from coordinator.service.operations import Service
from coordinator.store import Store
from coordinator.store.sql import SqlStore
from coordinator.wire import ENROL, PREPARE, REFUSED, REGISTER, UNAVAILABLE, RpcError
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
    leader_peers: PeerClient  # the leader's calls to the follower
    follower_peers: PeerClient  # the follower's calls to the leader


class ReadOnly:
    """A follower's view of the store: it reads, and writes nothing of the farm's."""

    WRITES = frozenset({"bind_dryad", "put_tunnel_port", "add_enrol_token", "commit"})

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        if name in self.WRITES:
            raise AssertionError(f"a follower wrote to the store: {name}")
        return getattr(self._store, name)


@pytest.fixture
async def pair(store: SqlStore, clock: FakeClock, tmp_path: Path) -> AsyncIterator[Pair]:
    reads = cast("Store", ReadOnly(store))
    follower_link = DryadLink(reads, clock)
    to_follower = httpx.ASGITransport(app=DryadCalls(follower_link, lambda: SECRET))
    leader_peers = PeerClient(SECRET, to_follower)
    holders = Holders(None, leader_peers)
    service = Service(
        store, holders, RecordingTunnels(), clock, keys=KeyPool(2, processes=False),
        link_grace=GRACE,
    )  # fmt: skip
    holders.service = service
    leader_app = Starlette(
        routes=PeerRoutes(holders, Panels(clock), StoreEnrolment(store, clock)).routes(),
        exception_handlers={BorutaError: boruta_error},
    )
    to_leader = httpx.ASGITransport(app=PeerGate(leader_app, lambda: SECRET))
    follower_peers = PeerClient(SECRET, to_leader)
    links = LeaderLinks(follower_peers, FOLLOWER, lambda: LEADER, every=0.2)
    follower_link.service = links
    follower_link.panels = links
    follower_link.enrolment = links  # as httpd.follower sets it
    config = LinkConfig("127.0.0.1", 0, tmp_path / "link_host_key", keepalive=5)
    async with anyio.create_task_group() as tg:
        await tg.start(service.run)
        await tg.start(links.run)
        _, port = await tg.start(LinkServer(config, reads, follower_link).run)
        yield Pair(LinkFarm(port, service, follower_link, store, clock, config.host_key),
                   holders, links, leader_peers, follower_peers)  # fmt: skip
        await follower_peers.aclose()
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
        routes = PeerRoutes(holders, Panels(clock), StoreEnrolment(store, clock)).routes()
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


async def test_a_new_dryad_enrols_through_a_follower_and_the_leader_knows_its_key(
    pair: Pair, tmp_path: Path
) -> None:
    """The leader checks the token and binds the key (the follower's store refuses any
    write here); the leader keeps no copy of bound keys, so its own link admits the dryad
    at once with that key, without enrolling again."""
    farm, store = pair.farm, pair.farm.store
    dryad = TestDryad()
    async with dial(farm.port, dryad) as link:
        assert await link.peer.call(ENROL, {"token": farm.token()}) == {"uuid": dryad.uuid}
    assert store.dryad_key(dryad.uuid) == openssh(dryad.key)
    figures = CollectorRegistry()
    figures.register(pair.follower_peers.figures)
    labels = {"to": "leader", "route": "enrol", "result": "ok"}
    assert figures.get_sample_value("boruta_peer_calls_total", labels) == 1
    leader_link = DryadLink(store, farm.clock)
    leader_link.service = pair.holders
    config = LinkConfig("127.0.0.1", 0, tmp_path / "leader_host_key", keepalive=5)
    async with anyio.create_task_group() as tg:
        _, port = await tg.start(LinkServer(config, store, leader_link).run)
        async with dial(port, dryad) as link:  # the same key, on the leader's link
            assert await link.peer.call(REGISTER, dryad.registration()) == {"state": "MAINTENANCE"}
        tg.cancel_scope.cancel()


async def test_a_bad_token_through_a_follower_is_the_leaders_refusal(pair: Pair) -> None:
    farm = pair.farm
    dryad = TestDryad()
    async with dial(farm.port, dryad) as link:
        with pytest.raises(RpcError, match=BAD_TOKEN) as refused:
            await link.peer.call(ENROL, {"token": "brt_not-a-token"})
    assert refused.value.code == REFUSED
    assert farm.store.dryad_key(dryad.uuid) is None


async def test_an_enrolment_while_no_leader_can_be_reached_is_unavailable_not_refused(
    store: SqlStore, clock: FakeClock, tmp_path: Path
) -> None:
    """Not a refusal only a person can fix: the dryad redials with its usual back-off."""

    async def away(scope: object, receive: object, send: object) -> None:
        raise httpx.ConnectError("connection refused")

    reads = cast("Store", ReadOnly(store))
    link = DryadLink(reads, clock)
    leader: list[str | None] = [None]
    links = LeaderLinks(
        PeerClient(SECRET, httpx.ASGITransport(app=away)), FOLLOWER, lambda: leader[0]
    )
    link.service = link.enrolment = links
    config = LinkConfig("127.0.0.1", 0, tmp_path / "link_host_key", keepalive=5)
    async with anyio.create_task_group() as tg:
        _, port = await tg.start(LinkServer(config, reads, link).run)
        farm = LinkFarm(port, None, link, store, clock, config.host_key)  # type: ignore[arg-type]
        dryad = TestDryad()
        for now, reason in [(None, "no coordinator serves"), (LEADER, "cannot be reached")]:
            leader[0] = now
            async with dial(port, dryad) as dialled:
                with pytest.raises(RpcError, match=reason) as failed:
                    await dialled.peer.call(ENROL, {"token": farm.token()})
            assert failed.value.code == UNAVAILABLE
        tg.cancel_scope.cancel()
    assert store.dryad_key(dryad.uuid) is None
