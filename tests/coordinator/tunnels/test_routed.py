"""A job's tunnel opens where its worker's dryad link is: here for a local link (or none),
on the holder for a remote one, through the holder's real peer route; it moves with the
link, and a holder that cannot open it or be reached is a clear TunnelUnavailable."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.model import Worker
from coordinator.domain.states import WorkerState
from coordinator.errors import TunnelUnavailable
from coordinator.httpd.holding import DryadCalls
from coordinator.link.holders import LOCAL
from coordinator.link.peerclient import PeerClient
from coordinator.tunnels.routed import RoutedTunnels
from tests.coordinator.doubles import RecordingTunnels

pytestmark = pytest.mark.anyio

SECRET = "7e" * 32
W = WorkerUUID("33333333-3333-4333-8333-333333333333")
HOLDER = "http://follower:8487"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
WORKER = Worker(W, WorkerState.RUN, {"UUID": W}, (), NOW, NOW, "10.0.0.9:22")
RID = RequestID(7)


class Where:
    def __init__(self) -> None:
        self.holder: str | None = None

    def __call__(self, uuid: WorkerUUID) -> str | None:
        return self.holder


def routed(
    holder_app: Any, lost: Callable[[str, str], None] | None = None
) -> tuple[RoutedTunnels, RecordingTunnels, RecordingTunnels, Where]:
    """The leader's routed tunnels, its own, the holder's, and where the link is."""
    mine, theirs, where = RecordingTunnels(), RecordingTunnels(), Where()
    app = holder_app if holder_app is not None else DryadCalls(None, lambda: SECRET, theirs)
    peers = PeerClient(SECRET, httpx.ASGITransport(app=app))
    return RoutedTunnels(mine, where, peers, lost), mine, theirs, where


async def test_a_tunnel_opens_where_the_link_is_and_follows_it() -> None:
    tunnels, mine, theirs, where = routed(None)
    assert await tunnels.open(RID, WORKER) == ("10.0.0.9", 20007)  # nobody holds it: here
    assert (mine.open_now, tunnels.holder_of(RID)) == ({RID: W}, LOCAL)
    where.holder = HOLDER
    assert await tunnels.open(RID, WORKER) == ("10.0.0.9", 20007)  # the holder's answer
    assert (mine.open_now, theirs.open_now, tunnels.holder_of(RID)) == ({}, {RID: W}, HOLDER)
    where.holder = LOCAL
    await tunnels.open(RID, WORKER)  # the link came back here: closed there
    assert (mine.open_now, theirs.open_now) == ({RID: W}, {})
    where.holder = HOLDER
    await tunnels.open(RID, WORKER)
    await tunnels.close(RID)
    assert (mine.open_now, theirs.open_now) == ({}, {})


async def test_a_holder_that_cannot_open_it_says_why() -> None:
    theirs = RecordingTunnels()
    theirs.fail = True
    tunnels, mine, _, where = routed(DryadCalls(None, lambda: SECRET, theirs))
    where.holder = HOLDER
    with pytest.raises(TunnelUnavailable, match="503.*tunnel not opened: no free port"):
        await tunnels.open(RID, WORKER)
    assert tunnels.holder_of(RID) == LOCAL and mine.open_now == {}
    tunnels, _, _, where = routed(DryadCalls(None, lambda: SECRET, None))
    where.holder = HOLDER
    with pytest.raises(TunnelUnavailable, match="serves no tunnels"):
        await tunnels.open(RID, WORKER)


async def test_a_holder_that_cannot_be_reached_is_tunnel_unavailable() -> None:
    async def away(scope: Any, receive: Any, send: Any) -> None:
        raise httpx.ConnectError("connection refused")

    tunnels, _, _, where = routed(away)
    where.holder = HOLDER
    with pytest.raises(TunnelUnavailable, match="follower:8487 cannot be reached"):
        await tunnels.open(RID, WORKER)


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/peer/v1/tunnels/x", {"worker": W}, 400),
        ("/peer/v1/tunnels/-1", {"worker": W}, 400),
        ("/peer/v1/tunnels/99999999999999999999", {"worker": W}, 400),
        ("/peer/v1/tunnels/7", [], 400),
        ("/peer/v1/tunnels/7", {"worker": 5}, 400),
        ("/peer/v1/tunnels/7", {"worker": "not-a-uuid"}, 400),
        ("/peer/v1/tunnels/7", {"worker": W, "ssh_address": 22}, 400),
    ],
)
async def test_a_bad_tunnel_order_is_refused_and_opens_nothing(
    path: str, body: Any, status: int
) -> None:
    theirs = RecordingTunnels()
    app = DryadCalls(None, lambda: SECRET, theirs)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://follower"
    ) as client:
        answer = await client.put(path, json=body, headers={"Boruta-Peer": SECRET})
        no_secret = await client.put("/peer/v1/tunnels/7", json={"worker": W})
    assert answer.status_code == status
    assert no_secret.status_code == 403
    assert theirs.open_now == {}


async def test_a_holder_that_refuses_the_connection_is_dropped_and_the_tunnel_opens_here() -> None:
    """The link's claims of a holder found gone go at once (``lost``); the tunnel opens
    where the link is next: here, when the dryad's older claim is this coordinator's."""

    async def away(scope: Any, receive: Any, send: Any) -> None:
        raise httpx.ConnectError("connection refused")

    lost: list[str] = []

    def drop(holder: str, why: str) -> None:
        lost.append(holder)
        where.holder = LOCAL  # what Holders.lost leaves: the older, local claim

    tunnels, mine, _, where = routed(away, drop)
    where.holder = HOLDER
    assert await tunnels.open(RID, WORKER) == ("10.0.0.9", 20007)
    assert lost == [HOLDER] and mine.open_now == {RID: W}


async def test_a_holder_that_times_out_is_kept_and_the_tunnel_unavailable() -> None:
    async def slow(scope: Any, receive: Any, send: Any) -> None:
        raise httpx.ReadTimeout("timed out")

    lost: list[str] = []
    tunnels, mine, _, where = routed(slow, lambda holder, why: lost.append(holder))
    where.holder = HOLDER
    with pytest.raises(TunnelUnavailable, match="follower:8487 cannot be reached"):
        await tunnels.open(RID, WORKER)
    assert lost == [] and mine.open_now == {}


async def test_a_holder_found_gone_when_its_tunnel_closes_is_dropped() -> None:
    theirs = RecordingTunnels()
    holder = DryadCalls(None, lambda: SECRET, theirs)
    app: list[Any] = [holder]

    async def now(scope: Any, receive: Any, send: Any) -> None:
        await app[0](scope, receive, send)

    async def away(scope: Any, receive: Any, send: Any) -> None:
        raise httpx.ConnectError("connection refused")

    lost: list[str] = []
    tunnels, _, _, where = routed(now, lambda holder, why: lost.append(holder))
    where.holder = HOLDER
    await tunnels.open(RID, WORKER)
    app[0] = away  # the holder died with the job's tunnel
    await tunnels.close(RID)
    assert lost == [HOLDER] and tunnels.holder_of(RID) == LOCAL
