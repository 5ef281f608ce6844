"""The leader's router of dryad links: who holds each link (local sessions and followers'
announcements, the newest claim serving), presence fed from both, silent holders expired,
and calls to a remote dryad performed by a fake holder's real peer route."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from coordinator import wire
from coordinator.domain.ids import WorkerUUID
from coordinator.errors import StoreUnavailable
from coordinator.httpd.holding import DryadCalls
from coordinator.link.figures import HolderFigures
from coordinator.link.holders import LOCAL, Holders
from coordinator.link.peerclient import PeerClient, PeerUnreachable
from coordinator.wire import HealthReport, Method, RpcError

pytestmark = pytest.mark.anyio

SECRET = "ab" * 32
W1 = WorkerUUID("11111111-1111-4111-8111-111111111111")
W2 = WorkerUUID("22222222-2222-4222-8222-222222222222")
A = "http://follower-a:8487"
B = "http://follower-b:8487"


@dataclass
class Presence:
    """Records the ups and downs the router passes to the service."""

    events: list[tuple[str, WorkerUUID]] = field(default_factory=list)

    def link_up(self, uuid: WorkerUUID) -> None:
        self.events.append(("up", uuid))

    def link_down(self, uuid: WorkerUUID) -> None:
        self.events.append(("down", uuid))

    async def register(
        self, caps: Mapping[str, str], ssh_address: str, host_keys: tuple[str, ...] = ()
    ) -> Any:
        raise AssertionError("not called here")

    async def set_fail(self, uuid: WorkerUUID, reason: str) -> None:
        raise AssertionError("not called here")

    async def report_health(self, uuid: WorkerUUID, report: HealthReport) -> None:
        raise AssertionError("not called here")

    async def button(self, uuid: WorkerUUID, number: int) -> None:
        raise AssertionError("not called here")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeLink:
    """A holder's link: answers each call as told, recording what it was asked."""

    def __init__(self, answer: Any = None, fails: BaseException | None = None) -> None:
        self.answer, self.fails = answer, fails
        self.asked: list[tuple[WorkerUUID, str, Any]] = []

    async def ask(self, worker: WorkerUUID, method: Method[Any, Any], params: Any) -> Any:
        self.asked.append((worker, str(method), params))
        if self.fails is not None:
            raise self.fails
        return self.answer


def links(*uuids: WorkerUUID, seq: int = 1) -> dict[WorkerUUID, int]:
    """An announcement's links, each in its first session on the holder."""
    return dict.fromkeys(uuids, seq)


def router(
    holder_app: Any = None, clock: Clock | None = None, secret: str = SECRET
) -> tuple[Holders, Presence]:
    transport = httpx.ASGITransport(app=holder_app) if holder_app is not None else None
    holders = Holders(None, PeerClient(secret, transport), ttl=10.0, clock=clock or Clock())
    presence = Presence()
    holders.service = presence
    return holders, presence


def test_a_worker_is_up_while_anyone_holds_it_and_the_newest_claim_serves() -> None:
    holders, presence = router()
    holders.announce(A, links(W1))
    holders.link_up(W1)  # the dryad dialled the leader too, before A noticed it gone
    assert holders.holder(W1) == LOCAL
    holders.announce(B, links(W1, W2))
    assert holders.holder(W1) == B
    holders.announce(B, links(W2))  # B lost it: the previous claim serves again
    assert holders.holder(W1) == LOCAL
    holders.link_down(W1)
    assert holders.holder(W1) == A
    holders.announce(A, links())
    assert holders.holder(W1) is None
    assert presence.events == [("up", W1), ("up", W2), ("down", W1)]


def test_a_repeated_announcement_does_not_steal_a_link_back_a_new_session_does() -> None:
    holders, _ = router()
    holders.announce(A, links(W1))
    holders.announce(B, links(W1))
    holders.announce(A, links(W1))  # A's periodic re-announcement of a stale session
    assert holders.holder(W1) == B
    holders.announce(A, links(W1, seq=2))  # the dryad came back to A, replacing it
    assert holders.holder(W1) == A
    holders.announce(B, links())  # B's stale session ended
    assert holders.holder(W1) == A


def test_a_silent_holder_is_dropped_with_its_links_after_the_ttl() -> None:
    clock = Clock()
    holders, presence = router(clock=clock)
    holders.announce(A, links(W1, W2))
    holders.link_up(W2)
    clock.now += 9.9
    holders.expire()
    assert holders.holder(W1) == A
    clock.now += 0.2
    holders.expire()
    assert holders.holder(W1) is None
    assert holders.holder(W2) == LOCAL
    assert holders.remote() == {}
    assert presence.events == [("up", W1), ("up", W2), ("down", W1)]


def test_a_holder_must_be_named() -> None:
    holders, _ = router()
    with pytest.raises(ValueError, match="peer URL"):
        holders.announce(LOCAL, links(W1))


async def test_nobody_holding_the_link_is_a_connection_error() -> None:
    holders, _ = router()
    with pytest.raises(ConnectionError, match="not connected"):
        await holders.release(W1)
    holders.link_up(W1)  # a local session, but no link in this process
    with pytest.raises(ConnectionError, match="not running"):
        await holders.release(W1)


async def test_a_call_to_a_remote_dryad_is_performed_by_its_holder() -> None:
    report = HealthReport(checks=())
    link = FakeLink(answer=report)
    holders, _ = router(DryadCalls(link, lambda: SECRET))
    holders.announce(A, links(W1))
    assert await holders.healthcheck(W1) == report
    link.answer = None
    await holders.prepare(W1, "ssh-ed25519 AAAA")
    assert link.asked == [
        (W1, "healthcheck", wire.Empty()),
        (W1, "prepare", wire.Prepare("ssh-ed25519 AAAA")),
    ]


@pytest.mark.parametrize(
    ("fails", "raised", "text"),
    [
        (ConnectionError("dryad gone"), ConnectionError, "dryad gone"),
        (TimeoutError("no answer in 30 s"), TimeoutError, "no answer in 30 s"),
        (RpcError(wire.REFUSED, "user busy"), RpcError, "user busy"),
    ],
)
async def test_the_holders_failure_comes_back_as_it_was(
    fails: BaseException, raised: type[BaseException], text: str
) -> None:
    holders, _ = router(DryadCalls(FakeLink(fails=fails), lambda: SECRET))
    holders.announce(A, links(W1))
    with pytest.raises(raised, match=text) as caught:
        await holders.release(W1)
    if isinstance(caught.value, RpcError):
        assert caught.value.code == wire.REFUSED


async def test_a_holder_that_cannot_be_reached_is_a_connection_error() -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise httpx.ConnectError("connection refused")

    holders, _ = router(broken)
    holders.announce(A, links(W1))
    with pytest.raises(ConnectionError, match="follower-a:8487 cannot be reached"):
        await holders.release(W1)


async def test_a_wrong_result_from_the_holder_is_a_connection_error() -> None:
    holders, _ = router(
        DryadCalls(FakeLink(answer=wire.Registered(wire.WorkerState.IDLE)), lambda: SECRET)
    )
    holders.announce(A, links(W1))
    with pytest.raises(ConnectionError, match="wrong healthcheck result"):
        await holders.healthcheck(W1)


async def test_the_holder_refuses_a_leader_without_the_secret_and_nothing_is_called() -> None:
    link = FakeLink()
    holders, _ = router(DryadCalls(link, lambda: SECRET), secret="ef" * 32)
    holders.announce(A, links(W1))
    with pytest.raises(ConnectionError, match="answered 403"):
        await holders.release(W1)
    assert link.asked == []


async def test_a_link_that_moves_has_its_jobs_tunnel_follow() -> None:
    holders, _ = router()
    moved: list[WorkerUUID] = []
    done = anyio.Event()

    async def follow(uuid: WorkerUUID) -> None:
        moved.append(uuid)  # the tunnel re-opens where the link is when this runs
        if len(moved) == 4:
            done.set()

    holders.moved = follow
    async with anyio.create_task_group() as tg:
        await tg.start(holders.run)
        holders.link_up(W1)  # here first: its tunnel is here already, nothing moves
        holders.announce(A, links(W1))  # to A
        holders.announce(A, links(W1))  # the same again: no move
        holders.announce(B, links(W2))  # a new remote link: a new leader's job may be on it
        holders.announce(A, links())  # back to the older claim, here
        holders.link_down(W1)
        holders.announce(B, links(W2, W1))  # from nobody to B: comes up there
        with anyio.fail_after(5):
            await done.wait()
        tg.cancel_scope.cancel()
    assert moved == [W1, W2, W1, W1]  # to A, B's new link, back here, from nobody to B


async def test_a_link_lost_by_another_holder_and_made_here_moves_the_jobs_tunnel_here() -> None:
    # A follower dies (dropped, or announces its links gone) and its dryad re-links to this
    # coordinator: the job's tunnel is still on the follower, so this first claim is a move.
    holders, presence = router()
    moved: list[WorkerUUID] = []
    done = anyio.Event()

    async def follow(uuid: WorkerUUID) -> None:
        moved.append(uuid)
        if len(moved) == 4:
            done.set()

    holders.moved = follow
    async with anyio.create_task_group() as tg:
        await tg.start(holders.run)
        holders.announce(A, links(W1))  # W1 up on A (a move: its tunnel opens there)
        holders.lost(A, f"{A} cannot be reached: refused")  # A found gone: W1 down
        holders.link_up(W1)  # W1 re-linked here: its tunnel must leave A
        holders.announce(B, links(W2))  # W2 up on B
        holders.announce(B, links())  # B says W2 is gone
        holders.link_up(W2)  # here now
        holders.link_down(W2)  # a local link lost and made again here: no move
        holders.link_up(W2)
        with anyio.fail_after(5):
            await done.wait()
        tg.cancel_scope.cancel()
    assert moved == [W1, W1, W2, W2]
    assert presence.events == [
        ("up", W1), ("down", W1), ("up", W1), ("up", W2), ("down", W2), ("up", W2),
        ("down", W2), ("up", W2),
    ]  # fmt: skip


def test_the_links_per_holder_are_a_farm_wide_figure() -> None:
    holders, _ = router()
    holders.link_up(W1)
    holders.announce(A, links(W1, W2))
    registry = CollectorRegistry()
    registry.register(HolderFigures(holders))
    text = generate_latest(registry).decode()
    assert f'boruta_link_holder_links{{holder="{A}"}} 2.0' in text
    holders.announce(A, links())
    text = generate_latest(registry).decode()
    assert 'boruta_link_holder_links{holder="self"} 1.0' in text and A not in text


async def test_the_secret_is_read_when_first_needed_and_its_failure_is_unreachable() -> None:
    reads: list[int] = []

    def away() -> str:
        reads.append(1)
        raise StoreUnavailable("relation serving does not exist yet")

    peers = PeerClient(read_secret=away)
    with pytest.raises(PeerUnreachable, match="does not exist yet"):
        await peers.send("PUT", A, "/peer/v1/holders", {}, 1.0)
    link = FakeLink()
    holders = Holders(None, PeerClient(transport=httpx.ASGITransport(
        app=DryadCalls(link, lambda: SECRET)), read_secret=lambda: SECRET))  # fmt: skip
    holders.service = Presence()
    holders.announce(A, links(W1))
    await holders.release(W1)
    await holders.release(W1)
    assert len(link.asked) == 2 and reads == [1]
    await peers.aclose()
    await holders.aclose()


def by_host(apps: Mapping[str, Any]) -> Any:
    """An ASGI app that passes each request to the app of its Host (a fake holder each)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        host = dict(scope["headers"])[b"host"].decode()
        await apps[host](scope, receive, send)

    return app


def refusing(exc: Exception) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise exc

    return app


async def test_a_holder_that_refuses_the_connection_loses_its_claims_at_once() -> None:
    link = FakeLink(answer=None)
    apps = {
        "follower-a:8487": refusing(httpx.ConnectError("connection refused")),
        "follower-b:8487": DryadCalls(link, lambda: SECRET),
    }
    holders, presence = router(by_host(apps))
    holders.announce(B, links(W1))
    holders.announce(A, links(W1, W2))  # W1 re-linked to A, which then died
    await holders.release(W1)  # A's refusal drops it; B, the older claim, serves
    assert link.asked == [(W1, "release", wire.Empty())]
    assert holders.holder(W1) == B and holders.holder(W2) is None
    assert A not in holders.remote()
    assert presence.events == [("up", W1), ("up", W2), ("down", W2)]  # W2's grace starts
    holders.announce(A, links(W2))  # A was back after all: its announcement claims again
    assert holders.holder(W2) == A


async def test_a_holder_refusing_with_no_other_claim_is_the_callers_connection_error() -> None:
    holders, presence = router(refusing(httpx.ConnectError("connection refused")))
    holders.announce(A, links(W1))
    with pytest.raises(ConnectionError, match="follower-a:8487 cannot be reached"):
        await holders.release(W1)
    assert holders.holder(W1) is None and presence.events == [("up", W1), ("down", W1)]


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("timed out"),
        httpx.ConnectTimeout("timed out"),
        httpx.RemoteProtocolError("server disconnected without a response"),
    ],
)
async def test_a_holder_that_times_out_or_loses_an_answer_keeps_its_claims(
    exc: Exception,
) -> None:
    """A loaded holder may be slow, and a lost answer may have been performed: neither is
    repeated elsewhere, and the holder keeps its links until its silence says otherwise."""
    link = FakeLink(answer=None)
    apps = {"follower-a:8487": refusing(exc), "follower-b:8487": DryadCalls(link, lambda: SECRET)}
    holders, presence = router(by_host(apps))
    holders.announce(B, links(W1))
    holders.announce(A, links(W1))
    with pytest.raises(ConnectionError, match="follower-a:8487"):
        await holders.release(W1)
    assert holders.holder(W1) == A and link.asked == []
    assert presence.events == [("up", W1)]
