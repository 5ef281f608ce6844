"""The HTTP clients against the app in-process: every operation, and errors without codes."""

from __future__ import annotations

from datetime import timedelta

import anyio
import httpx
import pytest

from coordinator.api.errors import error_response
from coordinator.client import AsyncClient, Client, ServerUnreachable, UnexpectedAnswer
from coordinator.client.errors import error_from_answer
from coordinator.client.http import RequestSpec
from coordinator.client.local import LocalClient
from coordinator.domain import listing
from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.listing import ListSpec, RequestFilter, WorkerFilter
from coordinator.domain.model import KeyType, User
from coordinator.domain.states import RequestState, WorkerState
from coordinator.errors import (
    BadAddress,
    BadID,
    BadUUID,
    BodyTooLarge,
    BorutaError,
    Conflict,
    DeadlineInThePast,
    DryadUnreachable,
    EmptyBody,
    Forbidden,
    ForbiddenStateChange,
    IDMismatch,
    InMaintenance,
    InvalidTimeRange,
    MalformedInput,
    MissingUUID,
    ModificationForbidden,
    NotFound,
    NotInFailOrMaintenance,
    PriorityOutOfBounds,
    ProlongLimitReached,
    StoreUnavailable,
    Unauthorized,
    WorkerNotAssigned,
    WrongListDirection,
    WrongSortItem,
    WrongSortOrder,
    WrongStateArgument,
)
from tests.coordinator.client.thread_bridge import ThreadBridge
from tests.plugins.app_harness import AppFarm

pytestmark = pytest.mark.anyio

# The original's errors: its answers carry no code, and status and message tell them apart.
ORIGINAL_ERRORS: list[BorutaError] = [
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
    ModificationForbidden("WAITING", "DONE"),
    MalformedInput("malformed JSON: Expecting value"),
    BadAddress("Port is missing from address"),
    EmptyBody(),
    WrongSortItem(),
    WrongSortOrder(),
    WrongListDirection(),
    NotFound("Request"),
    NotFound("worker"),
    Unauthorized("invalid credentials"),
    Forbidden("only an admin may do this"),
    BodyTooLarge("request body over 10 bytes"),
    Conflict("user alice exists"),
    DryadUnreachable("worker 1: dryad link is not running"),
    StoreUnavailable("disk full"),
]


@pytest.mark.parametrize("error", ORIGINAL_ERRORS, ids=lambda e: type(e).__name__)
def test_an_answer_without_a_code_maps_back_by_status_and_message(error: BorutaError) -> None:
    answer = error_response(error)
    back = error_from_answer(answer.status_code, bytes(answer.body))  # as from the Go server
    assert type(back) is type(error)
    assert (back.message, back.wire_message) == (error.message, error.wire_message)


def test_answers_that_are_not_the_coordinators_errors() -> None:
    back = error_from_answer(500, b"Internal Server Error:\nsee the coordinator's log")
    assert isinstance(back, UnexpectedAnswer)
    assert (back.http_status, back.message) == (500, "HTTP 500: Internal Server Error:")
    assert error_from_answer(502, b"").message == "HTTP 502: no message"
    assert type(error_from_answer(400, b'{"message":"odd"}')) is MalformedInput


async def test_a_request_from_creation_to_close(farm: AppFarm, alice: AsyncClient) -> None:
    await farm.parked_worker()
    rid = await alice.new_request(None, {"board": "rpi4"})
    info = await alice.get_request(rid)
    assert (info.id, info.priority, info.owner, info.state) == (rid, 8, "alice", "WAITING")
    assert info.caps == {"board": "rpi4"} and info.job is None
    assert await alice.queue_position(rid) == 0
    await alice.update_request(rid, priority=3, deadline=farm.clock.now() + timedelta(hours=2))
    info = await alice.get_request(rid)
    assert (info.priority, info.deadline) == (3, farm.clock.now() + timedelta(hours=2))
    page = await alice.list_requests()
    assert [r.id for r in page.items] == [rid] and (page.total, page.remaining) == (1, 0)
    await alice.close_request(rid)
    assert (await alice.get_request(rid)).state is RequestState.CANCELLED
    assert await alice.queue_position(rid) is None
    assert await alice.version() == {"Server": "0.2.1", "API_Version": "v1", "API_State": "devel"}


async def test_acquire_prolong_and_list_filters(farm: AppFarm, alice: AsyncClient) -> None:
    uuid = await farm.idle_worker(1, {"board": "rpi4"})
    rid = await alice.new_request(4, {"board": "rpi4"})
    access = await alice.acquire_worker(rid, wait=5)
    assert (access.host, access.port, access.username) == ("10.0.0.1", 20000 + rid, "boruta-user")
    assert access.key_pem.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    before = await alice.get_request(rid)
    assert before.job is not None and before.job.worker == uuid
    farm.clock.advance(timedelta(minutes=30))
    await alice.prolong_access(rid)
    after = await alice.get_request(rid)
    assert after.job is not None and after.job.timeout > before.job.timeout
    other = await alice.new_request(9, {"board": "rpi4"})
    spec: RequestSpec = ListSpec(
        RequestFilter(states=frozenset({"WAITING"})),
        listing.request_sort_key("priority"),
        descending=True,
    )
    assert [r.id for r in (await alice.list_requests(spec)).items] == [other]
    everyone: RequestSpec = ListSpec(
        RequestFilter(), listing.request_sort_key("id"), descending=True, limit=1
    )
    page = await alice.list_requests(everyone)
    assert ([r.id for r in page.items], page.total, page.remaining) == ([other], 2, 1)
    workers = await alice.list_workers(
        ListSpec(WorkerFilter(caps={"board": "rpi4"}), listing.worker_sort_key(""))
    )
    assert [(w.uuid, w.state, w.connected) for w in workers.items] == [
        (uuid, WorkerState.RUN, False)
    ]
    assert (await alice.get_worker(uuid)).caps == {"UUID": uuid, "board": "rpi4"}


async def test_admin_operations(farm: AppFarm, root: AsyncClient) -> None:
    uuid = await farm.worker(1)
    await root.set_worker_groups(uuid, ["lab", "ci"])
    assert (await root.get_worker(uuid)).groups == ("ci", "lab")
    await root.identify(uuid, 5)
    report = await root.run_healthcheck(uuid)
    assert [(c.name, c.passed) for c in report.checks] == [("stm", True)]
    assert ("identify", uuid, "5.0") in farm.dryads.calls
    health = (await root.get_worker(uuid)).health
    assert health is not None and health[1] == report
    await root.set_worker_state(uuid, WorkerState.IDLE)
    await farm.until_worker(uuid, WorkerState.IDLE)
    with pytest.raises(NotInFailOrMaintenance):
        await root.deregister(uuid)
    await root.set_worker_state(uuid, WorkerState.MAINTENANCE)
    await farm.until_worker(uuid, WorkerState.MAINTENANCE)
    await root.deregister(uuid)
    with pytest.raises(NotFound, match="^Worker not found$"):
        await root.get_worker(uuid)


async def test_the_servers_errors_arrive_as_the_services_classes(
    farm: AppFarm, alice: AsyncClient, root: AsyncClient
) -> None:
    parked = await farm.parked_worker()
    rid = await alice.new_request(None, {"board": "rpi4"})
    cases = [
        (alice.get_request(RequestID(404)), NotFound, "Request not found"),
        (alice.queue_position(RequestID(404)), NotFound, "Request not found"),  # HEAD
        (alice.get_request(RequestID(-1)), BadID, "ID provided in URL isn't valid"),
        (alice.get_worker(WorkerUUID("x")), BadUUID, "ID provided in URL isn't valid UUID"),
        (alice.acquire_worker(rid), WorkerNotAssigned, "worker not assigned"),
        (alice.acquire_worker(rid, wait=0.01), WorkerNotAssigned, "worker not assigned"),
        (alice.new_request(99, {}), PriorityOutOfBounds, "requested priority out of bounds"),
        (
            alice.new_request(None, {}, deadline=farm.clock.now() - timedelta(hours=1)),
            DeadlineInThePast,
            "deadline in the past",
        ),
        (
            alice.new_request(
                None,
                {},
                valid_after=farm.clock.now() + timedelta(hours=2),
                deadline=farm.clock.now() + timedelta(hours=1),
            ),
            InvalidTimeRange,
            InvalidTimeRange().message,
        ),
        (alice.set_worker_state(parked, WorkerState.IDLE), Forbidden, "only an admin may do this"),
        (root.set_worker_state(parked, WorkerState.FAIL), WrongStateArgument, None),
        (alice.acquire_worker(rid, wait=10**6), MalformedInput, "wait must be a number of seconds"),
    ]
    for call, kind, message in cases:
        with pytest.raises(kind) as caught:
            await call
        assert message is None or str(caught.value).startswith(message)
    farm.dryads.fail = "cable cut"
    with pytest.raises(DryadUnreachable, match="cable cut"):
        await root.run_healthcheck(parked)
    await alice.close_request(rid)
    with pytest.raises(ModificationForbidden):
        await alice.update_request(rid, priority=2)
    async with AsyncClient(
        "http://boruta", "wrong", transport=httpx.ASGITransport(farm.app)
    ) as stranger:
        with pytest.raises(Unauthorized, match="invalid credentials"):
            await stranger.list_requests()


async def test_an_unreachable_server_is_one_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with AsyncClient("http://nowhere:1/", "t", transport=httpx.MockTransport(refuse)) as c:
        with pytest.raises(ServerUnreachable, match="^cannot reach the coordinator at"):
            await c.version()
    with (
        Client("http://nowhere:1", "t", transport=httpx.MockTransport(refuse)) as sync,
        pytest.raises(ServerUnreachable),
    ):
        sync.version()
    with Client("http://boruta", "token-xyz") as quiet:
        assert "token-xyz" not in repr(quiet)


async def test_the_blocking_client_does_the_same(farm: AppFarm, bridge: ThreadBridge) -> None:
    uuid = await farm.idle_worker(1, {"board": "rpi4"})

    def scenario() -> list[object]:
        with Client("http://boruta", farm.tokens["alice"], transport=bridge) as c:
            rid = c.new_request(None, {"board": "rpi4"})
            access = c.acquire_worker(rid, wait=1)
            c.prolong_access(rid)
            seen: list[object] = [c.get_request(rid).state, access.port, c.queue_position(rid)]
            seen += [len(c.list_requests().items), c.get_worker(uuid).state]
            seen.append(len(c.list_workers().items))
            c.update_request(rid)
            c.close_request(rid)
            try:
                c.get_request(RequestID(99))
            except NotFound as exc:
                seen.append(exc.message)
        with Client("http://boruta", farm.tokens["root"], transport=bridge) as admin:
            admin.set_worker_groups(uuid, ["a"])
            admin.identify(uuid)
            seen.append(len(admin.run_healthcheck(uuid).checks))
            admin.set_worker_state(uuid, WorkerState.MAINTENANCE)
            seen.append(admin.version()["API_Version"])
        return seen

    seen = await anyio.to_thread.run_sync(scenario)
    assert seen == [RequestState.IN_PROGRESS, 20001, None, 1, WorkerState.RUN, 1] + [
        "Request not found",
        1,
        "v1",
    ]
    await farm.until_worker(uuid, WorkerState.MAINTENANCE)


@pytest.mark.parametrize("local", [False, True], ids=["http", "local"])
async def test_the_client_asks_for_ed25519_unless_told_rsa(
    farm: AppFarm, alice: AsyncClient, local: bool
) -> None:
    api = LocalClient(farm.service, User("alice")) if local else alice
    await farm.idle_worker(1, {"board": "rpi4"})
    await farm.idle_worker(2, {"board": "rpi4"})
    default = await api.new_request(4, {"board": "rpi4"})
    rsa_one = await api.new_request(4, {"board": "rpi4"}, key_type=KeyType.RSA)
    assert (await api.get_request(default)).key_type is KeyType.ED25519
    assert (await api.get_request(rsa_one)).key_type is KeyType.RSA
    assert (await api.acquire_worker(default)).key_pem.startswith(b"-----BEGIN OPENSSH")
    assert (await api.acquire_worker(rsa_one)).key_pem.startswith(b"-----BEGIN RSA")
