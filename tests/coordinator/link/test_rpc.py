"""JSON-RPC both ways over the link: the service's commands and the dryads' reports."""

from __future__ import annotations

import json

import pytest

from coordinator import wire
from coordinator.domain.states import WorkerState
from coordinator.wire import (
    BUTTON,
    HEALTH,
    MAX_LINE,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    PREPARE,
    REFUSED,
    REGISTER,
    SET_FAIL,
    CheckResult,
    HealthReport,
    RpcError,
    request,
)
from tests.coordinator.doubles import ADMIN, until

from .dryads import TestDryad, dial, enrol_and_register
from .link_farm import LinkFarm

pytestmark = pytest.mark.anyio


async def test_prepare_reaches_the_dryad_and_the_worker_becomes_idle(farm: LinkFarm) -> None:
    dryad = TestDryad()
    async with dial(farm.port, dryad) as link:
        await enrol_and_register(farm, link, dryad)
        await farm.service.set_worker_state(ADMIN, dryad.uuid, WorkerState.IDLE)
        await until(
            farm.service, lambda: farm.service.get_worker(dryad.uuid).state is WorkerState.IDLE
        )
    (key,) = [p["public_key"] for m, p in dryad.calls if m == PREPARE]
    assert key.startswith("ssh-rsa ")


async def test_a_dryads_refusal_to_prepare_fails_the_worker_with_its_reason(farm: LinkFarm) -> None:
    dryad = TestDryad(fail="useradd: group dialout does not exist")
    async with dial(farm.port, dryad) as link:
        await enrol_and_register(farm, link, dryad)
        await farm.service.set_worker_state(ADMIN, dryad.uuid, WorkerState.IDLE)
        await until(
            farm.service, lambda: farm.service.get_worker(dryad.uuid).state is WorkerState.FAIL
        )
    reason = farm.service.get_worker(dryad.uuid).reason
    assert reason == "prepare failed: useradd: group dialout does not exist"


async def test_an_admins_healthcheck_runs_on_the_dryad(farm: LinkFarm) -> None:
    dryad = TestDryad()
    async with dial(farm.port, dryad) as link:
        await enrol_and_register(farm, link, dryad)
        report = await farm.service.run_healthcheck(ADMIN, dryad.uuid)
    assert report == HealthReport((CheckResult("stm", True, True),))


async def test_a_command_to_an_absent_dryad_says_it_is_not_connected(farm: LinkFarm) -> None:
    with pytest.raises(ConnectionError, match=f"dryad {TestDryad().uuid} is not connected"):
        await farm.link.identify(TestDryad().uuid, 1)


async def test_set_fail_health_and_button_reach_the_service(farm: LinkFarm) -> None:
    dryad = TestDryad()
    bad = HealthReport((CheckResult("sd", False, False, "no card"),))
    async with dial(farm.port, dryad) as link:
        await enrol_and_register(farm, link, dryad)
        await farm.service.set_worker_state(ADMIN, dryad.uuid, WorkerState.IDLE)
        await until(
            farm.service, lambda: farm.service.get_worker(dryad.uuid).state is WorkerState.IDLE
        )  # the original refuses FAIL in MAINTENANCE
        await link.peer.call(HEALTH, bad.to_wire())
        await link.peer.call(BUTTON, {"button": 2})
        await link.peer.call(SET_FAIL, {"reason": "STM does not answer"})
    worker = farm.service.get_worker(dryad.uuid)
    assert (worker.state, worker.reason) == (WorkerState.FAIL, "STM does not answer")
    health = farm.service.last_health(dryad.uuid)
    assert health is not None and health[1] == bad
    notes = [t.reason for t in farm.store.transitions("worker", dryad.uuid)]
    assert "button 2 pressed" in notes


async def test_a_service_refusal_comes_back_as_refused(farm: LinkFarm) -> None:
    dryad = TestDryad()
    async with dial(farm.port, dryad) as link:
        await enrol_and_register(farm, link, dryad)
        with pytest.raises(RpcError) as refused:
            await link.peer.call(REGISTER, {**dryad.registration(), "ssh_address": "nowhere"})
    assert refused.value.code == REFUSED


async def test_an_empty_host_is_the_dryads_address_as_seen_by_the_coordinator(
    farm: LinkFarm,
) -> None:
    dryad = TestDryad()
    async with dial(farm.port, dryad) as link:
        await enrol_and_register(farm, link, dryad)
    assert farm.service.get_worker(dryad.uuid).ssh_address == "127.0.0.1:22"


async def test_malformed_lines_are_answered_and_the_link_survives(farm: LinkFarm) -> None:
    dryad = TestDryad()
    async with dial(farm.port, dryad) as link:
        await enrol_and_register(farm, link, dryad)
    async with dial(farm.port, dryad, raw=True) as link:
        answers = []
        for line in (
            b"{not json\n",
            b'{"jsonrpc":"2.0","id":7,"method":"reboot"}\n',
            request(8, REGISTER, dryad.registration()),
        ):
            link.writer.write(line)
            answers.append(json.loads(await link.reader.readline()))
    assert answers[0]["error"]["code"] == PARSE_ERROR
    assert answers[1]["error"]["code"] == METHOD_NOT_FOUND
    assert answers[2]["result"] == {"state": "MAINTENANCE"}


async def test_an_oversize_line_closes_the_channel(farm: LinkFarm) -> None:
    dryad = TestDryad()
    async with dial(farm.port, dryad) as link:
        await enrol_and_register(farm, link, dryad)
    async with dial(farm.port, dryad, raw=True) as link:
        link.writer.write(b"x" * (MAX_LINE + 1))
        answer = json.loads(await link.reader.readline())
        assert await link.reader.read() == b""
    assert "line too long" in answer["error"]["message"]
    assert not farm.link.connected(dryad.uuid)


async def test_a_dryad_calling_a_method_of_the_coordinators_is_method_not_found(
    farm: LinkFarm,
) -> None:
    dryad = TestDryad()
    async with dial(farm.port, dryad) as link:
        await enrol_and_register(farm, link, dryad)
        with pytest.raises(RpcError) as refused:
            await link.peer.call(PREPARE, {"public_key": "ssh-ed25519 AAAA"})
        # The link survives: a call of the right direction still works.
        await link.peer.call(BUTTON, {"button": 1})
    assert refused.value.code == METHOD_NOT_FOUND
    assert "coordinator → dryad" in refused.value.message


async def test_the_coordinator_serves_every_method_that_comes_its_way(farm: LinkFarm) -> None:
    assert farm.link._calls.missing() == []
    assert farm.link._calls.serves is wire.Direction.TO_COORDINATOR


async def test_our_calls_wait_as_long_as_their_row_says(farm: LinkFarm) -> None:
    dryad = TestDryad()
    seen: list[float] = []
    async with dial(farm.port, dryad) as link:
        await enrol_and_register(farm, link, dryad)
        session = farm.link._sessions[dryad.uuid]
        assert session.peer is not None
        call = session.peer.call

        async def spy(method: str, params: dict[str, object], seconds: float = 30.0) -> object:
            seen.append(seconds)
            return await call(method, params, seconds)

        session.peer.call = spy  # type: ignore[method-assign]
        await farm.link.identify(dryad.uuid, 5)
        await farm.link.healthcheck(dryad.uuid)
    assert seen == [wire.IDENTIFY.timeout, wire.HEALTHCHECK.timeout] == [10.0, 60.0]
