"""The link client against an in-test SSH coordinator: enrol, register, reconnect, TOFU."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import asyncssh
import pytest

from coordinator import wire
from dryad import __version__
from dryad.errors import LinkError
from dryad.identity import Identity
from dryad.link import Backoff, Link
from dryad.settings import Settings
from dryad.states import LinkState
from tests.dryad.link_doubles import (
    FAST,
    TOKEN,
    FakeCoordinator,
    StateLog,
    serve_coordinator,
    settings_for,
)

pytestmark = pytest.mark.anyio

Handler = Callable[[str, dict[str, Any]], Awaitable[Any]]


async def echo(method: str, params: dict[str, Any]) -> Any:
    return {"method": method, "params": params}


@asynccontextmanager
async def running(
    settings: Settings, identity: Identity, handler: Handler = echo, backoff: Backoff = FAST
) -> AsyncIterator[tuple[Link, StateLog]]:
    link = Link(settings, identity, backoff=backoff, connect_timeout=5)
    log = StateLog()
    async with anyio.create_task_group() as tg:
        await tg.start(link.run, handler, log)
        yield link, log
        tg.cancel_scope.cancel()


async def test_enrols_then_registers_and_serves_calls(
    coordinator: FakeCoordinator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    identity = Identity.load(tmp_path / "state")
    assert not identity.enrolled
    settings = settings_for(coordinator, tmp_path / "state")
    async with running(settings, identity) as (link, log):
        enrol = await coordinator.next()
        assert (enrol.method, enrol.params) == (wire.ENROL, {"token": TOKEN})
        assert enrol.session.username == identity.uuid
        assert enrol.session.key.public_data == identity.key.public_data
        register = await coordinator.next()
        assert register.method == wire.REGISTER
        reg = wire.Registration.from_wire(register.params)
        assert reg == wire.Registration(
            {"board": "rpi4", "arch": "arm", "UUID": identity.uuid}, ":2222", __version__
        )
        await log.wait_for(LinkState.CONNECTED)
        assert identity.enrolled and link.connected
        # Calls go both ways on the one channel.
        assert register.session.peer is not None
        answer = await register.session.peer.call("display", {"state": "IDLE"})
        assert answer == {"method": "display", "params": {"state": "IDLE"}}
        await link.notify(wire.BUTTON, wire.Button(1))
        assert (await coordinator.next()).params == {"button": 1}
        assert await link.call(wire.HEALTH, wire.HealthReport(())) is None
    ready = f"dryad connected to coordinator 127.0.0.1:{coordinator.port} as {identity.uuid}"
    assert ready in caplog.messages
    assert TOKEN not in caplog.text  # secrets are never logged
    assert not link.connected


async def test_an_enrolled_dryad_registers_without_enrolling(
    coordinator: FakeCoordinator, tmp_path: Path
) -> None:
    identity = Identity.load(tmp_path / "state")
    coordinator.bind(identity)
    settings = settings_for(coordinator, tmp_path / "state", enrol_token=None)
    async with running(settings, identity) as (_, log):
        assert (await coordinator.next()).method == wire.REGISTER
        await log.wait_for(LinkState.CONNECTED)


async def test_reconnects_and_registers_again_after_a_drop(
    coordinator: FakeCoordinator, tmp_path: Path
) -> None:
    identity = Identity.load(tmp_path / "state")
    async with running(settings_for(coordinator, tmp_path / "state"), identity) as (link, log):
        first = await coordinator.next(wire.REGISTER)
        await log.wait_for(LinkState.CONNECTED)
        first.session.drop()
        await log.wait_for(LinkState.DISCONNECTED)
        second = await coordinator.next(wire.REGISTER)
        assert second.session is not first.session
        assert second.params == first.params
        await log.wait_for(LinkState.CONNECTED, count=2)
        assert [s for s, _ in log.states] == [
            LinkState.CONNECTED,
            LinkState.DISCONNECTED,
            LinkState.CONNECTED,
        ]
        # Enrolled once: the reconnection went straight to register.
        assert [s.method for s in [first, second]] == [wire.REGISTER, wire.REGISTER]
        assert link.connected


async def test_redials_a_coordinator_that_was_down(tmp_path: Path) -> None:
    coord = FakeCoordinator()
    async with serve_coordinator(coord):
        pass  # learn a free port, then leave it closed
    identity = Identity.load(tmp_path / "state")
    async with running(settings_for(coord, tmp_path / "state"), identity) as (link, log):
        await log.wait_for(LinkState.DISCONNECTED)
        with pytest.raises(LinkError, match="not connected"):
            await link.notify(wire.BUTTON, wire.Button(1))
        with pytest.raises(LinkError, match="not connected"):
            await link.call(wire.HEALTH, wire.HealthReport(()))
        async with serve_coordinator(coord):
            assert (await coord.next(wire.REGISTER)).session.username == identity.uuid
            await log.wait_for(LinkState.CONNECTED)


async def test_a_refused_enrolment_is_retried_slowly_and_never_registers(
    coordinator: FakeCoordinator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    identity = Identity.load(tmp_path / "state")
    settings = settings_for(coordinator, tmp_path / "state", enrol_token="wrong-token-xyz")
    async with running(settings, identity) as (link, log):
        assert (await coordinator.next()).method == wire.ENROL
        await log.wait_for(LinkState.ENROLMENT_REFUSED)
        assert (await coordinator.next()).method == wire.ENROL  # retried, not registered
        assert not link.connected and not identity.enrolled
    assert log.states == [(LinkState.ENROLMENT_REFUSED, "enrolment refused")]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "enrolment token invalid or expired" in errors[0]
    assert "wrong-token-xyz" not in caplog.text


async def test_an_enrolment_that_cannot_be_decided_now_is_retried_at_once(
    coordinator: FakeCoordinator, tmp_path: Path
) -> None:
    """UNAVAILABLE (a follower whose leader cannot be reached) is not a refusal only a
    person can fix: the dryad redials with its usual back-off and enrols."""
    coordinator.unavailable = 2
    identity = Identity.load(tmp_path / "state")
    async with running(settings_for(coordinator, tmp_path / "state"), identity) as (_, log):
        for _ in range(3):
            assert (await coordinator.next()).method == wire.ENROL
        assert (await coordinator.next()).method == wire.REGISTER
        await log.wait_for(LinkState.CONNECTED)
    assert identity.enrolled
    assert LinkState.ENROLMENT_REFUSED not in [state for state, _ in log.states]
    assert log.states[0][0] is LinkState.DISCONNECTED


async def test_without_a_token_an_unknown_dryad_says_so(
    coordinator: FakeCoordinator, tmp_path: Path
) -> None:
    identity = Identity.load(tmp_path / "state")
    settings = settings_for(coordinator, tmp_path / "state", enrol_token=None)
    async with running(settings, identity) as (_, log):
        await log.wait_for(LinkState.NOT_ENROLLED)
    assert coordinator.received.statistics().current_buffer_used == 0  # not even a call


async def test_a_key_the_coordinator_refuses_is_shown_as_refused(
    coordinator: FakeCoordinator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    coordinator.refuse_keys = True
    identity = Identity.load(tmp_path / "state")
    async with running(settings_for(coordinator, tmp_path / "state"), identity) as (_, log):
        await log.wait_for(LinkState.ENROLMENT_REFUSED)
    assert f"refused key {identity.fingerprint}" in caplog.text


async def test_a_lost_marker_is_restored_by_a_registration(
    coordinator: FakeCoordinator, tmp_path: Path
) -> None:
    identity = Identity.load(tmp_path / "state")
    coordinator.bind(identity)
    identity.forget_enrolment()
    settings = settings_for(coordinator, tmp_path / "state", enrol_token=None)
    async with running(settings, identity) as (_, log):
        assert (await coordinator.next()).method == wire.REGISTER
        await log.wait_for(LinkState.CONNECTED)
    assert identity.enrolled


async def test_the_token_file_is_read_when_needed(
    coordinator: FakeCoordinator, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    identity = Identity.load(tmp_path / "state")
    settings = settings_for(
        coordinator, tmp_path / "state", enrol_token=None, enrol_token_file=str(token_file)
    )
    async with running(settings, identity) as (_, log):
        await log.wait_for(LinkState.NOT_ENROLLED)
        token_file.write_text(TOKEN + "\n")  # first-boot tooling writes it late
        assert (await coordinator.next()).params == {"token": TOKEN}
        await log.wait_for(LinkState.CONNECTED)


async def test_enrols_again_when_the_coordinator_forgot_it(
    coordinator: FakeCoordinator, tmp_path: Path
) -> None:
    identity = Identity.load(tmp_path / "state")
    identity.mark_enrolled("an older coordinator")
    async with running(settings_for(coordinator, tmp_path / "state"), identity) as (_, log):
        assert (await coordinator.next()).method == wire.ENROL
        assert (await coordinator.next()).method == wire.REGISTER
        await log.wait_for(LinkState.CONNECTED)


async def test_a_changed_host_key_is_refused_and_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    identity = Identity.load(tmp_path / "state")
    first = FakeCoordinator()
    async with (
        serve_coordinator(first),
        running(settings_for(first, tmp_path / "state"), identity) as (_, log),
    ):
        await log.wait_for(LinkState.CONNECTED)
    impostor = FakeCoordinator(port=first.port)  # same address, another host key
    async with (
        serve_coordinator(impostor),
        running(settings_for(impostor, tmp_path / "state"), identity) as (link, log),
    ):
        await log.wait_for(LinkState.HOST_KEY_MISMATCH)
        assert not link.connected
    assert impostor.received.statistics().current_buffer_used == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(
        first.host_key.get_fingerprint() in e and impostor.host_key.get_fingerprint() in e
        for e in errors
    ), errors


async def test_a_refused_registration_is_retried(
    coordinator: FakeCoordinator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    handle = coordinator.handle

    async def refuse_once(session: Any, method: str, params: dict[str, Any]) -> Any:
        nonlocal calls
        if method == wire.REGISTER:
            calls += 1
            if calls == 1:
                raise wire.RpcError(wire.REFUSED, "caps.UUID does not match the key")
        return await handle(session, method, params)

    monkeypatch.setattr(coordinator, "handle", refuse_once)
    identity = Identity.load(tmp_path / "state")
    async with running(settings_for(coordinator, tmp_path / "state"), identity) as (_, log):
        await log.wait_for(LinkState.CONNECTED)
    assert calls == 2
    assert log.states[0] == (
        LinkState.DISCONNECTED,
        "register refused: caps.UUID does not match the key",
    )


async def test_a_call_in_flight_fails_as_a_link_error_when_the_link_drops(
    coordinator: FakeCoordinator, tmp_path: Path
) -> None:
    identity = Identity.load(tmp_path / "state")
    never = anyio.Event()

    async def stall(session: Any, method: str, params: dict[str, Any]) -> Any:
        if method == wire.SET_FAIL:
            session.drop()
            await never.wait()
        return await FakeCoordinator.handle(coordinator, session, method, params)

    coordinator.handle = stall  # type: ignore[method-assign]
    async with running(settings_for(coordinator, tmp_path / "state"), identity) as (link, log):
        await log.wait_for(LinkState.CONNECTED)
        with pytest.raises(LinkError, match="set_fail: link to the coordinator lost"):
            await link.call(wire.SET_FAIL, wire.SetFail("x"))


def test_backoff_doubles_to_its_cap_with_full_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("random.uniform", lambda low, high: high)
    backoff = Backoff()
    assert [backoff.delay(n) for n in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert backoff.delay(10_000) == 30
    monkeypatch.setattr("random.uniform", lambda low, high: low)
    assert backoff.delay(5) == 0


async def test_keepalive_settings_reach_asyncssh(
    coordinator: FakeCoordinator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}
    connect = asyncssh.connect

    async def spy(*args: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        return await connect(*args, **kwargs)

    monkeypatch.setattr(asyncssh, "connect", spy)
    identity = Identity.load(tmp_path / "state")
    async with running(settings_for(coordinator, tmp_path / "state"), identity) as (_, log):
        await log.wait_for(LinkState.CONNECTED)
    assert (seen["keepalive_interval"], seen["keepalive_count_max"]) == (5.0, 3)
    assert seen["username"] == identity.uuid
