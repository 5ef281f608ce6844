"""The leader's peer routes: only a request the peer gate admitted with the farm's secret
is served; a bad announcement or call is refused (400) and changes nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given, strategies as st
from starlette.applications import Starlette

from coordinator import wire
from coordinator.api.errors import boruta_error
from coordinator.api.peer import PeerRoutes
from coordinator.domain.clock import FakeClock
from coordinator.domain.ids import WorkerUUID
from coordinator.errors import BorutaError, StoreUnavailable
from coordinator.feed.panels import Panels
from coordinator.httpd.peergate import PeerGate
from coordinator.link import peerwire
from coordinator.link.enrolment import Enrolment, StoreEnrolment
from coordinator.link.holders import Holders
from coordinator.link.peerclient import PeerClient
from coordinator.store.sql import SqlStore
from coordinator.tokens import hash_token
from coordinator.wire import RpcError
from tests.coordinator.link.test_holders import W1, Presence

pytestmark = pytest.mark.anyio

SECRET = "9c" * 32
HOLDER = "http://follower:8487"


class Enrolments:
    """The leader's enrolment, as told: records each call."""

    def __init__(self, valid: bool = True, fails: Exception | None = None) -> None:
        self.valid, self.fails = valid, fails
        self.calls: list[tuple[str, str, str]] = []

    async def enrol(self, uuid: WorkerUUID, token_hash: str, public_key: str) -> bool:
        self.calls.append((uuid, token_hash, public_key))
        if self.fails is not None:
            raise self.fails
        return self.valid


def leader(enrolment: Enrolment | None = None) -> tuple[Any, Holders, Presence]:
    holders = Holders(None, PeerClient(SECRET))
    presence = Presence()
    holders.service = presence
    app = Starlette(
        routes=PeerRoutes(holders, Panels(FakeClock()), enrolment or Enrolments()).routes(),
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


KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHt0ZXN0a2V5"
TOKEN = "brt_a-token"


async def enrol(app: Any, body: Any, uuid: str = W1, secret: str | None = SECRET) -> httpx.Response:
    transport = httpx.ASGITransport(app=PeerGate(app, lambda: SECRET))
    headers = {"Boruta-Peer": secret} if secret is not None else {}
    async with httpx.AsyncClient(transport=transport, base_url="http://leader") as client:
        return await client.post(f"{peerwire.ENROL}{uuid}", json=body, headers=headers)


def enrolment_body(token: str = TOKEN, key: str = KEY) -> dict[str, str]:
    return peerwire.enrolment(HOLDER, hash_token(token), key)


async def test_an_enrolment_through_a_holder_binds_the_key_in_the_leaders_store(
    store: SqlStore,
) -> None:
    clock = FakeClock()
    app, _, _ = leader(StoreEnrolment(store, clock))
    store.add_enrol_token(hash_token(TOKEN), clock.now() + timedelta(hours=1))
    unknown = await enrol(app, enrolment_body(token="brt_unknown"))
    assert unknown.status_code == 200 and unknown.json() == {"result": {"bound": False}}
    assert store.dryad_key(W1) is None
    answer = await enrol(app, enrolment_body())
    assert answer.status_code == 200 and answer.json() == {"result": {"bound": True}}
    assert store.dryad_key(W1) == KEY
    again = await enrol(app, enrolment_body())  # a retried enrolment after a lost answer
    assert again.json() == {"result": {"bound": True}}
    other = await enrol(app, enrolment_body(key=KEY[:-4] + "b3Ro"))
    assert other.status_code == 200
    with pytest.raises(RpcError, match="enrolled with another key") as refused:
        peerwire.read_enrolled(other.json(), "the leader")
    assert refused.value.code == wire.REFUSED and store.dryad_key(W1) == KEY


@pytest.mark.parametrize(("secret", "status"), [(None, 403), ("00" * 32, 403)])
async def test_an_enrolment_without_the_secret_is_refused(secret: str | None, status: int) -> None:
    enrolments = Enrolments()
    app, _, _ = leader(enrolments)
    answer = await enrol(app, enrolment_body(), secret=secret)
    assert answer.status_code == status and enrolments.calls == []


@pytest.mark.parametrize(
    ("uuid", "body", "text"),
    [
        (W1, [], "must be an object"),
        (W1, {**enrolment_body(), "holder": ""}, "holder"),
        (W1, {**enrolment_body(), "token_hash": TOKEN}, "token_hash"),
        (W1, {**enrolment_body(), "token_hash": "AB" * 32}, "token_hash"),
        (W1, {**enrolment_body(), "token_hash": None}, "token_hash"),
        (W1, {**enrolment_body(), "public_key": "ssh-ed25519"}, "public_key"),
        (W1, {**enrolment_body(), "public_key": KEY + "\nssh-rsa AAAA"}, "public_key"),
        (W1, {**enrolment_body(), "public_key": "x " + "A" * (16 << 10)}, "public_key"),
        (W1, {**enrolment_body(), "public_key": 5}, "public_key"),
        ("not-a-uuid", enrolment_body(), "not a worker UUID"),
        ("AAAAAAAA-AAAA-4AAA-8AAA-AAAAAAAAAAAA", enrolment_body(), "not a worker UUID"),
    ],
)
async def test_a_bad_enrolment_is_refused_and_binds_nothing(
    uuid: str, body: Any, text: str
) -> None:
    enrolments = Enrolments()
    app, _, _ = leader(enrolments)
    answer = await enrol(app, body, uuid)
    assert answer.status_code == 400 and text in answer.json()["message"]
    assert enrolments.calls == []


async def test_an_enrolment_the_leader_cannot_write_is_its_http_error() -> None:
    """The holder then tells the dryad to try again (UNAVAILABLE), not that it is refused."""
    app, _, _ = leader(Enrolments(fails=StoreUnavailable("the database cannot be reached")))
    answer = await enrol(app, enrolment_body())
    assert answer.status_code == 503


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner)))  # fmt: skip
def test_any_json_is_read_as_an_enrolment_or_refused(body: Any) -> None:
    try:
        holder, token_hash, key = peerwire.read_enrolment(body)
    except peerwire.PeerWireError:
        return
    assert holder and len(token_hash) == 64 and " " in key and "\n" not in key
