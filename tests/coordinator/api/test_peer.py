"""The leader's peer routes: only a request the peer gate admitted with the farm's secret
is served; a bad announcement or call is refused (400) and changes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import given, strategies as st
from starlette.applications import Starlette

from coordinator.api.errors import boruta_error
from coordinator.api.peer import PeerRoutes
from coordinator.domain.clock import FakeClock
from coordinator.errors import BorutaError
from coordinator.feed.panels import Panels
from coordinator.httpd.peergate import PeerGate
from coordinator.link import peerwire
from coordinator.link.holders import Holders
from coordinator.link.peerclient import PeerClient
from tests.coordinator.link.test_holders import W1, Presence

pytestmark = pytest.mark.anyio

SECRET = "9c" * 32
HOLDER = "http://follower:8487"


def leader() -> tuple[Any, Holders, Presence]:
    holders = Holders(None, PeerClient(SECRET))
    presence = Presence()
    holders.service = presence
    app = Starlette(
        routes=PeerRoutes(holders, Panels(FakeClock())).routes(),
        exception_handlers={BorutaError: boruta_error},
    )
    return app, holders, presence


async def put(
    app: Any, body: Any, secret: str | None = SECRET, gate: bool = True
) -> httpx.Response:
    served = PeerGate(app, lambda: SECRET) if gate else app
    headers = {"Boruta-Peer": secret} if secret is not None else {}
    transport = httpx.ASGITransport(app=served)
    async with httpx.AsyncClient(transport=transport, base_url="http://leader") as client:
        return await client.put(peerwire.HOLDERS, json=body, headers=headers)


async def test_an_announcement_with_the_secret_is_taken() -> None:
    app, holders, presence = leader()
    answer = await put(app, {"holder": HOLDER, "links": {W1: 3}})
    assert answer.status_code == 204
    assert holders.holder(W1) == HOLDER and presence.events == [("up", W1)]


@pytest.mark.parametrize(("secret", "gate"), [(None, True), ("00" * 32, True), (SECRET, False)])
async def test_without_the_secret_nothing_is_announced(secret: str | None, gate: bool) -> None:
    app, holders, presence = leader()
    answer = await put(app, {"holder": HOLDER, "links": {W1: 1}}, secret, gate)
    assert answer.status_code == 403
    assert holders.holder(W1) is None and presence.events == []


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"holder": "", "links": {}},
        {"holder": HOLDER},
        {"holder": HOLDER, "links": "x"},
        {"holder": HOLDER, "links": [W1]},
        {"holder": HOLDER, "links": {W1: "1"}},
        {"holder": HOLDER, "links": {W1: True}},
        {"holder": HOLDER, "links": {W1: -1}},
        {"holder": HOLDER, "links": {"not-a-uuid": 1}},
        {"holder": HOLDER, "links": {"AAAAAAAA-AAAA-4AAA-8AAA-AAAAAAAAAAAA": 1}},
    ],
)
async def test_a_bad_announcement_is_refused_and_changes_nothing(body: Any) -> None:
    app, holders, presence = leader()
    answer = await put(app, body)
    assert answer.status_code == 400
    assert presence.events == [] and holders.remote() == {}


async def test_a_bad_link_call_is_refused() -> None:
    app, _, _ = leader()
    transport = httpx.ASGITransport(app=PeerGate(app, lambda: SECRET))
    headers = {"Boruta-Peer": SECRET}
    async with httpx.AsyncClient(transport=transport, base_url="http://leader") as client:
        path = f"{peerwire.LINKS}{W1}/"
        unknown = await client.post(path + "enrol", json={}, headers=headers)
        bad = await client.post(path + "set_fail", json={"holder": HOLDER}, headers=headers)
        wrong = await client.post(
            path + "set_fail", json={"holder": HOLDER, "params": {"reason": 1}}, headers=headers
        )
    assert (unknown.status_code, bad.status_code, wrong.status_code) == (404, 400, 400)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner)))  # fmt: skip
def test_any_json_is_read_as_an_announcement_or_refused(body: Any) -> None:
    try:
        holder, links = peerwire.read_announcement(body)
    except peerwire.PeerWireError:
        return
    assert holder and all(isinstance(uuid, str) and type(n) is int for uuid, n in links.items())


@given(st.dictionaries(st.sampled_from(["kind", "message", "code", "x"]),
                       st.none() | st.integers() | st.text()))  # fmt: skip
def test_any_error_body_raises_a_connection_error_a_timeout_or_a_refusal(err: Any) -> None:
    from coordinator.wire import RpcError

    with pytest.raises((ConnectionError, TimeoutError, RpcError)):
        peerwire.raise_failure({"error": err}, "a peer")
