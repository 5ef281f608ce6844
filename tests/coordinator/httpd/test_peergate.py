"""The leader's door for forwarded requests: the right secret vouches for the client's
address, a wrong one is refused and logged without its value, and no peer header ever
reaches the app."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from coordinator.errors import ERROR_CODE_HEADER, StoreUnavailable
from coordinator.httpd.peergate import PeerGate

pytestmark = pytest.mark.anyio

SECRET = "cd" * 32


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with the client address and the headers the app was given."""
    headers = sorted(n.decode() for n, _ in scope["headers"])
    body = f"{scope['client'][0]}|{','.join(headers)}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


class Secret:
    def __init__(self, value: str = SECRET, fails: bool = False) -> None:
        self.value, self.fails, self.reads = value, fails, 0

    def __call__(self) -> str:
        self.reads += 1
        if self.fails:
            raise StoreUnavailable("database is away")
        return self.value


async def get(gate: PeerGate, headers: list[tuple[str, str]]) -> httpx.Response:
    transport = httpx.ASGITransport(app=gate, client=("10.0.0.5", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://leader") as client:
        return await client.get("/api/v1/reqs/1", headers=headers)


async def test_the_right_secret_vouches_for_the_client_and_no_peer_header_remains() -> None:
    secret = Secret()
    gate = PeerGate(echo, secret)
    for _ in range(3):
        answer = await get(gate, [("Boruta-Peer", SECRET), ("Boruta-Peer-Client", "192.0.2.7")])
        client, headers = answer.text.split("|")
        assert client == "192.0.2.7"
        assert "boruta-peer" not in headers
    assert secret.reads == 1  # read once, kept: it never changes


async def test_a_wrong_secret_is_refused_and_logged_without_its_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    gate = PeerGate(echo, Secret())
    for wrong in ("guessed", SECRET[:-1], SECRET + "0", ""):
        answer = await get(gate, [("Boruta-Peer", wrong), ("Boruta-Peer-Client", "192.0.2.7")])
        assert answer.status_code == 403
        assert answer.headers[ERROR_CODE_HEADER] == "forbidden"
    twice = await get(gate, [("Boruta-Peer", SECRET), ("Boruta-Peer", SECRET)])
    assert twice.status_code == 403  # one follower sends one secret
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "a wrong peer secret" in logged and "10.0.0.5" in logged
    assert "guessed" not in logged and SECRET[:8] not in logged


async def test_without_a_secret_the_vouched_address_is_dropped() -> None:
    gate = PeerGate(echo, Secret())
    answer = await get(gate, [("Boruta-Peer-Client", "192.0.2.7"), ("Boruta-Peer-X", "y")])
    client, headers = answer.text.split("|")
    assert (answer.status_code, client) == (200, "10.0.0.5")
    assert "boruta-peer" not in headers


@pytest.mark.parametrize("vouched", ["not an address", "1.2.3.4.5", "ünïcode", ""])
async def test_a_malformed_vouched_address_keeps_the_followers_own(vouched: str) -> None:
    gate = PeerGate(echo, Secret())
    headers: list[Any] = [("Boruta-Peer", SECRET), ("Boruta-Peer-Client", vouched.encode())]
    answer = await get(gate, headers)
    assert (answer.status_code, answer.text.split("|")[0]) == (200, "10.0.0.5")


async def test_a_secret_that_cannot_be_read_gets_503_and_no_secret_yet_403() -> None:
    away = await get(PeerGate(echo, Secret(fails=True)), [("Boruta-Peer", SECRET)])
    assert away.status_code == 503 and away.headers[ERROR_CODE_HEADER] == "store-unavailable"
    unset = await get(PeerGate(echo, Secret("")), [("Boruta-Peer", "")])
    assert unset.status_code == 403


async def test_a_request_without_peer_headers_is_passed_as_it_is() -> None:
    secret = Secret()
    answer = await get(PeerGate(echo, secret), [("X-Other", "1")])
    assert answer.text.split("|")[0] == "10.0.0.5" and "x-other" in answer.text
    assert secret.reads == 0
