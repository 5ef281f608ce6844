"""Every class of the error tree, raised on the server, is raised again by the clients.

Over HTTP the class travels as its ``Boruta-Error-Code``; ``LocalClient`` raises the same
class with the same message wherever the service (or an endpoint's check it mirrors) can.
A new class of the tree fails here until it has a sample and a provocation (or a reason
why no client call can provoke it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import anyio
import httpx
import pytest
from starlette.requests import Request as HttpRequest
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from coordinator.client import AsyncClient, Client
from coordinator.client.errors import error_from_answer
from coordinator.client.local import LocalClient
from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.model import User, Worker
from coordinator.domain.quotas import Quota
from coordinator.domain.states import WorkerState
from coordinator.errors import (
    ERROR_CODE_HEADER,
    BadAddress,
    BadID,
    BadQuota,
    BadUUID,
    BodyTooLarge,
    BorutaError,
    Conflict,
    DeadlineInThePast,
    DryadUnreachable,
    EmptyBody,
    FarmLost,
    Forbidden,
    ForbiddenStateChange,
    IDMismatch,
    InMaintenance,
    InternalError,
    InvalidRequest,
    InvalidText,
    InvalidTimeRange,
    JobQuotaReached,
    LeaderAnswerLost,
    LeaderUnreachable,
    MalformedInput,
    MethodNotAllowed,
    MissingUUID,
    ModificationForbidden,
    NotFound,
    NotInFailOrMaintenance,
    OverLimit,
    PriorityOutOfBounds,
    ProlongLimitReached,
    QuotaExceeded,
    RouteNotFound,
    ServerUnreachable,
    ServingTaken,
    StoreUnavailable,
    TunnelUnavailable,
    Unauthorized,
    Unavailable,
    UnexpectedAnswer,
    UnsupportedMediaType,
    WorkerNotAssigned,
    WrongListDirection,
    WrongSortItem,
    WrongSortOrder,
    WrongStateArgument,
    error_classes,
)
from coordinator.settings import Settings
from tests.coordinator.api.test_store_failure import BIG_CAPS, disk_full
from tests.coordinator.client.thread_bridge import ThreadBridge
from tests.plugins.app_harness import AppFarm, Template, open_farm

pytestmark = pytest.mark.anyio

TREE = list(error_classes())
VERSION = "/api/v1/version"  # the route a test swaps for one that fails as it needs

# What a server raises for each class; the clients must raise it again, word for word.
SAMPLES: dict[type[BorutaError], BorutaError] = {
    error.__class__: error
    for error in (
        InvalidRequest("a 400 this client has no class for"),
        PriorityOutOfBounds(),
        DeadlineInThePast(),
        InvalidTimeRange(),
        WorkerNotAssigned(),
        IDMismatch(),
        BadID(),
        BadUUID(),
        WrongStateArgument(),
        ForbiddenStateChange(),
        NotInFailOrMaintenance(),
        InMaintenance(),
        MissingUUID(),
        ProlongLimitReached(),
        WrongSortItem(),
        WrongSortOrder(),
        WrongListDirection(),
        ModificationForbidden("WAITING", "DONE"),
        BadAddress("Port is missing from address"),
        MalformedInput("malformed JSON: Expecting value"),
        BadQuota("MaxHeld must be a whole number from 0 to 10000, not -1"),
        QuotaExceeded("over quota: alice has 0 requests waiting, the limit is 0"),
        JobQuotaReached("over quota: jobs of alice may last at most 60 s"),
        EmptyBody(),
        InvalidText("Caps key is not valid UTF-8 text (it holds a lone surrogate)"),
        OverLimit("Caps has more than 64 items"),
        Conflict("user alice exists"),
        Unauthorized("invalid credentials"),
        Forbidden("only an admin may do this"),
        NotFound("Request"),
        RouteNotFound("/api/v1/frobnicate"),
        MethodNotAllowed(),
        DryadUnreachable("worker 1: dryad link is not running"),
        BodyTooLarge("request body over 10 bytes"),
        UnsupportedMediaType(
            "Content-Type 'text/xml' is not JSON: send application/json (or none)"
        ),
        InternalError(),
        Unavailable("the farm is being moved"),
        StoreUnavailable("database is full"),
        ServingTaken("coordinator a.lab (HTTP port 8487, pid 812) serves postgresql://db/b"),
        FarmLost("coordinator b.lab (HTTP port 8487, pid 90) serves this database now"),
        TunnelUnavailable("no free tunnel port in 20000-20000"),
        LeaderUnreachable("the farm is changing leader: cannot reach http://a.lab:8487"),
        LeaderAnswerLost("the leader's answer was lost: the request may have been applied"),
        ServerUnreachable("cannot reach the coordinator at http://boruta: connection refused"),
        UnexpectedAnswer("HTTP 502: bad gateway", 502),
    )
}


def _name(kind: type[BorutaError]) -> str:
    return kind.__name__


def assert_same(caught: BaseException, expected: BorutaError) -> None:
    assert type(caught) is type(expected)
    assert isinstance(caught, BorutaError)
    assert (caught.message, caught.wire_message, caught.status) == (
        expected.message,
        expected.wire_message,
        expected.status,
    )
    if isinstance(expected, UnexpectedAnswer):
        assert isinstance(caught, UnexpectedAnswer)
        assert caught.http_status == expected.http_status


def swap_version(farm: AppFarm, *routes: BaseRoute) -> None:
    """Replace the version endpoint (which every client can call) with ``routes``."""
    kept = [r for r in farm.app.router.routes if getattr(r, "path", None) != VERSION]
    farm.app.router.routes[:] = [*routes, *kept]


def raising(error: BaseException) -> Callable[[HttpRequest], Awaitable[Response]]:
    async def endpoint(http: HttpRequest) -> Response:
        raise error

    return endpoint


async def caught(call: Awaitable[object]) -> BaseException:
    with pytest.raises(Exception) as raised:
        await call
    return raised.value


def http_client(farm: AppFarm, user: str | None) -> AsyncClient:
    """A client on the app that, as a real server would, answers a bug instead of raising
    it into the test."""
    transport = httpx.ASGITransport(farm.app, raise_app_exceptions=False)
    token = farm.tokens[user] if user else "no such token"
    return AsyncClient("http://boruta", token, transport=transport)


def test_every_class_has_a_sample() -> None:
    assert [k.__name__ for k in TREE if k not in SAMPLES] == []


@pytest.mark.parametrize("kind", TREE, ids=_name)
async def test_every_error_class_reaches_the_http_clients_as_itself(
    farm: AppFarm, bridge: ThreadBridge, kind: type[BorutaError]
) -> None:
    expected = SAMPLES[kind]
    if kind is ServerUnreachable:

        def refuse(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("connection refused", request=request)

        async with AsyncClient("http://boruta", transport=httpx.MockTransport(refuse)) as c:
            assert_same(await caught(c.version()), expected)
        return
    if kind is UnexpectedAnswer:  # a proxy's answer: no code, no status of ours
        swap_version(farm, Route(VERSION, lambda _: PlainTextResponse("bad gateway", 502)))
    else:
        swap_version(farm, Route(VERSION, raising(expected)))
        answer = await farm.get(VERSION)
        assert answer.status_code == kind.status
        assert answer.headers[ERROR_CODE_HEADER] == kind.code
    async with http_client(farm, "alice") as alice:
        assert_same(await caught(alice.version()), expected)

    def blocking() -> BaseException:
        with Client("http://boruta", transport=bridge) as c, pytest.raises(Exception) as raised:
            c.version()
        return raised.value

    assert_same(await anyio.to_thread.run_sync(blocking), expected)


async def test_an_unhandled_exception_reaches_the_client_as_internal_error(farm: AppFarm) -> None:
    swap_version(farm, Route(VERSION, raising(RuntimeError("a bug"))))
    async with http_client(farm, "alice") as alice:
        assert_same(await caught(alice.version()), InternalError())


# ---- real calls, over HTTP and embedded --------------------------------------------------

Api = AsyncClient | LocalClient


@dataclass
class Scene:
    """A farm with worker 9 (``board: rpi4``) in MAINTENANCE and worker 1 (``board: rpi3``)
    IDLE, and the clients of alice and root, over HTTP or embedded."""

    farm: AppFarm
    user: Api
    admin: Api
    parked: WorkerUUID
    idle: WorkerUUID
    monkeypatch: pytest.MonkeyPatch

    async def waiting(self) -> RequestID:
        """A request of alice that stays WAITING (only the parked worker could take it)."""
        return await self.user.new_request(None, {"board": "rpi4"})

    async def running(self) -> RequestID:
        rid = await self.user.new_request(None, {"board": "rpi3"})
        await self.user.acquire_worker(rid, wait=5)
        return rid


Provoke = Callable[[Scene], Awaitable[object]]


async def _unauthorized(s: Scene) -> object:
    async with http_client(s.farm, None) as stranger:
        return await stranger.list_requests()


async def _route_not_found(s: Scene) -> object:
    swap_version(s.farm)
    return await s.user.version()


async def _method_not_allowed(s: Scene) -> object:
    swap_version(s.farm, Route(VERSION, raising(AssertionError("not called")), methods=["POST"]))
    return await s.user.version()


async def _internal(s: Scene) -> object:
    swap_version(s.farm, Route(VERSION, raising(RuntimeError("a bug"))))
    return await s.user.version()


async def _close_then_update(s: Scene) -> None:
    rid = await s.waiting()
    await s.user.close_request(rid)
    await s.user.update_request(rid, priority=2)


async def _dryad_unreachable(s: Scene) -> object:
    s.farm.dryads.fail = "cable cut"
    return await s.admin.run_healthcheck(s.parked)


async def _store_unavailable(s: Scene) -> object:
    with disk_full(s.farm.store):
        return await s.user.new_request(None, {"board": "rpi4", **BIG_CAPS})


async def _tunnel_unavailable(s: Scene) -> object:
    async def full(rid: RequestID, worker: Worker) -> tuple[str, int]:
        raise TunnelUnavailable("no free tunnel port in 20000-20000")

    s.monkeypatch.setattr(s.farm.tunnels, "open", full)
    return await s.running()


async def _prolong_at_the_limit(s: Scene) -> None:
    await s.user.prolong_access(await s.running())  # max_job_length = job_timeout


async def _acquire_not_assigned(s: Scene) -> object:
    return await s.user.acquire_worker(await s.waiting())


async def _wait_out_of_range(s: Scene) -> object:
    return await s.user.acquire_worker(await s.waiting(), wait=10**6)


async def _quota(s: Scene, body: dict[str, int]) -> None:
    """Alice's quota, set over HTTP: the embedded client has no quota administration."""
    answer = await s.farm.call("PUT", "/api/v1/quotas/users/alice", body, as_="root")
    assert answer.status_code == 204, answer.text


async def _over_waiting(s: Scene) -> object:
    await _quota(s, {"MaxWaiting": 0})
    return await s.waiting()


async def _over_job_length(s: Scene) -> None:
    await _quota(s, {"MaxJobSeconds": 60})
    await s.user.prolong_access(await s.running())


async def _bad_quota(s: Scene) -> None:
    assert isinstance(s.admin, AsyncClient)
    await s.admin.set_quota("user", "alice", Quota(max_held=-1))


def _past(s: Scene) -> Awaitable[object]:
    return s.user.new_request(None, {}, deadline=s.farm.clock.now() - timedelta(hours=1))


def _reversed_range(s: Scene) -> Awaitable[object]:
    now = s.farm.clock.now()
    return s.user.new_request(
        None, {}, valid_after=now + timedelta(hours=2), deadline=now + timedelta(hours=1)
    )


@dataclass(frozen=True)
class Provocation:
    call: Provoke
    local: bool = True  # LocalClient meets it as well (no HTTP in between)


PROVOKED: dict[type[BorutaError], Provocation] = {
    PriorityOutOfBounds: Provocation(lambda s: s.user.new_request(99, {})),
    DeadlineInThePast: Provocation(_past),
    InvalidTimeRange: Provocation(_reversed_range),
    WorkerNotAssigned: Provocation(_acquire_not_assigned),
    BadID: Provocation(lambda s: s.user.get_request(RequestID(-1))),
    BadUUID: Provocation(lambda s: s.user.get_worker(WorkerUUID("x"))),
    WrongStateArgument: Provocation(lambda s: s.admin.set_worker_state(s.parked, WorkerState.FAIL)),
    ForbiddenStateChange: Provocation(lambda s: s.admin.set_worker_state(s.idle, WorkerState.IDLE)),
    NotInFailOrMaintenance: Provocation(lambda s: s.admin.deregister(s.idle)),
    ProlongLimitReached: Provocation(_prolong_at_the_limit),
    ModificationForbidden: Provocation(_close_then_update),
    MalformedInput: Provocation(_wait_out_of_range),
    OverLimit: Provocation(lambda s: s.user.new_request(None, {"x" * 65: "y"})),
    Unauthorized: Provocation(_unauthorized, local=False),
    Forbidden: Provocation(lambda s: s.user.set_worker_state(s.parked, WorkerState.IDLE)),
    NotFound: Provocation(lambda s: s.user.queue_position(RequestID(99))),  # HEAD, then GET
    RouteNotFound: Provocation(_route_not_found, local=False),
    MethodNotAllowed: Provocation(_method_not_allowed, local=False),
    DryadUnreachable: Provocation(_dryad_unreachable),
    BodyTooLarge: Provocation(
        lambda s: s.user.new_request(None, {"blob": "x" * (2 << 20)}), local=False
    ),
    InternalError: Provocation(_internal, local=False),  # embedded, a bug is the bug itself
    StoreUnavailable: Provocation(_store_unavailable),
    TunnelUnavailable: Provocation(_tunnel_unavailable),
    QuotaExceeded: Provocation(_over_waiting),
    JobQuotaReached: Provocation(_over_job_length),
    BadQuota: Provocation(_bad_quota, local=False),  # quota administration is HTTP only
}

# Why no client call can meet these; the HTTP round trip above still covers each.
NOT_PROVOKED: dict[type[BorutaError], str] = {
    InvalidRequest: "the general 400: what a client makes of a code it does not know",
    Unavailable: "the general 503: what a client makes of a code it does not know",
    IDMismatch: "a body whose ID is not the URL's; the clients send no ID",
    EmptyBody: "a request without a body; the clients always send one",
    InvalidText: "text no client can encode (tests/coordinator/api/test_hostile_text.py)",
    UnsupportedMediaType: "the clients always send application/json",
    WrongSortItem: "a raw list body; the clients take the sort from the domain's keys",
    WrongSortOrder: "a raw list body; the clients send ascending or descending",
    WrongListDirection: "a raw list body; the clients send forward or backward",
    InMaintenance: "a dryad's failure report, over the link",
    MissingUUID: "a dryad's registration, over the link",
    BadAddress: "a dryad's registration, over the link",
    Conflict: "user and enrolment administration, not a client call",
    ServerUnreachable: "client side, met for real in the HTTP round trip",
    ServingTaken: "the serving lock, met by `serve` at its start, never by a client call",
    FarmLost: "a write after another coordinator took the database over "
    "(tests/coordinator/store/test_store_fencing.py)",
    UnexpectedAnswer: "client side, met for real in the HTTP round trip",
    LeaderUnreachable: "a follower whose leader is away (tests/coordinator/httpd/test_forward.py)",
    LeaderAnswerLost: "a follower whose leader dropped a request it had taken "
    "(tests/coordinator/httpd/test_forward.py)",
}


def test_every_class_is_provoked_or_says_why_not() -> None:
    assert not set(PROVOKED) & set(NOT_PROVOKED)
    assert [k.__name__ for k in TREE if k not in PROVOKED and k not in NOT_PROVOKED] == []


@pytest.fixture
def settings() -> Settings:
    return Settings(max_job_length=Settings().job_timeout)  # the first prolong is refused


async def _provoke(
    template: Template, db: Path, settings: Settings, provocation: Provocation, http: bool
) -> BaseException:
    """What ``provocation`` raises on a fresh farm, over HTTP or embedded."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        async with open_farm(template, db, settings) as farm:
            parked = await farm.parked_worker()
            idle = await farm.idle_worker(1, {"board": "rpi3"})
            if not http:
                alice = LocalClient(farm.service, User("alice"))
                root = LocalClient(farm.service, User("root", admin=True))
                scene = Scene(farm, alice, root, parked, idle, monkeypatch)
                return await caught(provocation.call(scene))
            async with http_client(farm, "alice") as user, http_client(farm, "root") as admin:
                scene = Scene(farm, user, admin, parked, idle, monkeypatch)
                return await caught(provocation.call(scene))


@pytest.mark.parametrize("kind", list(PROVOKED), ids=_name)
async def test_a_real_call_raises_the_same_error_over_http_and_embedded(
    tmp_path: Path, template: Template, settings: Settings, kind: type[BorutaError]
) -> None:
    provocation = PROVOKED[kind]
    over_http = await _provoke(template, tmp_path / "http.db", settings, provocation, True)
    assert type(over_http) is kind, over_http
    if provocation.local:
        embedded = await _provoke(template, tmp_path / "local.db", settings, provocation, False)
        assert isinstance(over_http, BorutaError)
        assert_same(embedded, over_http)


# ---- answers with unknown codes, or none ---------------------------------------------------


def _body(message: str) -> bytes:
    return b'{"message":"%s"}' % message.encode()


def test_a_code_tells_apart_what_status_and_message_cannot() -> None:
    body = _body("no free tunnel port in 20000-20000")
    assert type(error_from_answer(503, body, "tunnel-unavailable")) is TunnelUnavailable
    assert type(error_from_answer(503, body)) is StoreUnavailable  # the Go server's 503


@pytest.mark.parametrize(
    ("status", "body", "kind", "message"),
    [
        (
            400,
            _body("invalid request: frobnication refused"),
            InvalidRequest,
            "frobnication refused",
        ),
        (404, _body("Frobnicator not found"), NotFound, "Frobnicator not found"),
        (503, _body("frobnicator warming up"), Unavailable, "frobnicator warming up"),
        (409, _body("frobnicated twice"), UnexpectedAnswer, "HTTP 409: frobnicated twice"),
        (418, b"short\nand stout", UnexpectedAnswer, "HTTP 418: short\nand stout"),
    ],
)
def test_an_unknown_code_falls_back_to_the_general_class_of_its_status(
    status: int, body: bytes, kind: type[BorutaError], message: str
) -> None:
    error = error_from_answer(status, body, "frobnicator-busy")  # a newer server's code
    assert (type(error), error.message) == (kind, message)
