"""A follower's own answers: /healthz says ready only when the database and the leader
answer, and why not otherwise; /metrics shows its own figures."""

from __future__ import annotations

import socket
from typing import Any, cast

import httpx
import pytest
from prometheus_client import generate_latest

from coordinator.errors import ServingTaken, StoreUnavailable
from coordinator.httpd.follower import Follower, Standby
from coordinator.settings import Settings
from coordinator.store.serving import Serving
from coordinator.store.sql import SqlStore
from tests.coordinator.uvicorn_server import serving

pytestmark = pytest.mark.anyio

SECRET = "ef" * 32


class Database:
    """The few calls a follower makes of the store, answering as told."""

    def __init__(self, now: Serving, away: str = "") -> None:
        self.now = now
        self.away = away
        self.sqlite_path = None
        self.claims = 0

    def claim_serving(self, holder: str = "", peer_url: str = "") -> None:
        self.claims += 1
        if self.away:
            raise StoreUnavailable(self.away)
        raise ServingTaken(f"{self.now.holder} serves the database")

    def who_serves(self) -> Serving:
        if self.away:
            raise StoreUnavailable(self.away)
        return self.now

    def peer_secret(self) -> str:
        return SECRET

    def user_by_token(self, token_hash: str) -> Any:
        return None


def follower(db: Database, settings: Settings | None = None) -> Follower:
    """A follower; without ``settings``, one holding no links (most tests are about the
    API it forwards, and a link's dial-back relay would be left to close)."""
    store = cast("SqlStore", db)
    settings = settings or Settings(follower_link=False)
    return Follower(store, Standby(store, "coordinator b", "http://b:1"), settings)


async def health(f: Follower) -> httpx.Response:
    transport = httpx.ASGITransport(app=f)
    async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
        return await client.get("/healthz")


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


async def _learn(f: Follower) -> None:
    # One round of the poll loop, without its sleep: try the lock, learn, probe.
    assert not f._standby.attempt()
    await f._learn()


async def test_ready_when_the_leader_answers_its_healthz() -> None:
    async def leader(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b'{"status":"ok"}'})

    async with serving(leader) as url:
        f = follower(Database(Serving(True, "coordinator a", 4, url)))
        await _learn(f)
        answer = await health(f)
        await f.forwarder.stop()
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "role": "follower", "leader": url}


@pytest.mark.parametrize(
    ("db", "reason"),
    [
        (Database(Serving(False, "coordinator a", 4, "")), "no coordinator serves the farm now"),
        (Database(Serving(True, "coordinator a", 4, "")), "coordinator a has not said where"),
        (Database(Serving(True, "a", 4, "x"), away="connection refused"), "cannot reach the data"),
    ],
)
async def test_not_ready_says_why(db: Database, reason: str) -> None:
    f = follower(db)
    await _learn(f)
    answer = await health(f)
    await f.forwarder.stop()
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
    assert answer.json()["reason"].startswith(reason)


async def test_not_ready_while_the_leader_does_not_answer_and_requests_get_503() -> None:
    f = follower(Database(Serving(True, "coordinator a", 4, dead_url())))
    await _learn(f)
    answer = await health(f)
    assert answer.status_code == 503 and "does not answer" in answer.json()["reason"]
    transport = httpx.ASGITransport(app=f)
    async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
        forwarded = await client.get("/api/v1/reqs/1")
        metrics = await client.get("/metrics")
    await f.forwarder.stop()
    assert forwarded.status_code == 503 and forwarded.headers["Retry-After"] == "1"
    assert metrics.status_code == 401  # a token, as on the leader (none is valid here)


async def test_peer_paths_are_never_forwarded_and_need_the_secret() -> None:
    reached: list[str] = []

    async def leader(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b'{"status":"ok"}'})

    async with serving(leader) as url:
        f = follower(
            Database(Serving(True, "coordinator a", 4, url)),
            Settings(tunnel_mode="link"),  # links by default; no dial-back relay to stop
        )
        assert f.link is not None
        await _learn(f)
        reached.clear()
        transport = httpx.ASGITransport(app=f)
        async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
            # A client's announcement would carry the follower's trust if forwarded.
            body = {"holder": "http://evil:1", "links": []}
            refused = await client.put("/peer/v1/holders", json=body)
            wrong = await client.put(
                "/peer/v1/holders", json=body, headers={"Boruta-Peer": "00" * 32}
            )
            unknown = await client.put(
                "/peer/v1/holders", json=body, headers={"Boruta-Peer": SECRET}
            )
            call = await client.post(
                "/peer/v1/dryads/00000000-0000-4000-8000-000000000001/release",
                json={},
                headers={"Boruta-Peer": SECRET},
            )
        await f.forwarder.stop()
        await f.peers.aclose()
    assert (refused.status_code, wrong.status_code, unknown.status_code) == (403, 403, 404)
    figures = generate_latest(f.registry)
    assert b"boruta_follower_links 0.0" in figures
    assert b"# HELP boruta_peer_calls_total" in figures  # its own calls (none to a holder)
    assert reached == []
    # The worker's dryad is not linked here: the leader learns it, as from its own link.
    assert call.status_code == 200
    assert call.json()["error"]["kind"] == "unreachable"
    assert "not connected" in call.json()["error"]["message"]


async def test_a_follower_holds_no_link_unless_told_or_when_it_cannot_be_reached(
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = Database(Serving(True, "coordinator a", 4, "http://a:1"))
    assert Settings().follower_link  # the default: links spread over the coordinators
    assert follower(db, Settings(follower_link=False)).link is None
    assert follower(db, Settings(link="")).link is None
    assert follower(db, Settings(http="127.0.0.1:0")).link is None
    assert "the leader could not reach it" in caplog.text


async def test_a_followers_tunnel_ports_are_not_stored() -> None:
    """The tunnel_ports table is the leader's (rows by port number, one range per host):
    a follower keeps its tunnels' ports in memory (this store fake has no tunnel calls)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings(
        follower_link=True,
        tunnel_mode="direct",
        http="127.0.0.1:8487",
        tunnel_ports=f"{port}-{port}",
        public_host="127.0.0.1",
    )
    f = follower(Database(Serving(True, "coordinator a", 4, "http://a:1")), settings)
    await _learn(f)
    transport = httpx.ASGITransport(app=f)
    order = {"worker": "00000000-0000-4000-8000-000000000001", "ssh_address": "127.0.0.1:22"}
    headers = {"Boruta-Peer": SECRET}
    async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
        opened = await client.put("/peer/v1/tunnels/5", json=order, headers=headers)
        again = await client.put("/peer/v1/tunnels/5", json=order, headers=headers)
        closed = await client.delete("/peer/v1/tunnels/5", headers=headers)
    await f.forwarder.stop()
    await f.peers.aclose()
    assert opened.status_code == 200, opened.text
    assert opened.json() == again.json() == {"host": "127.0.0.1", "port": port}
    assert closed.status_code == 200
