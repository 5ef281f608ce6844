"""Enrolment and authentication: tokens bind a UUID to a key; nothing else gets in."""

from __future__ import annotations

import logging
from datetime import timedelta

import asyncssh
import pytest

from coordinator.domain.states import WorkerState
from coordinator.wire import ENROL, NOT_ENROLLED, REFUSED, REGISTER, RpcError
from tests.coordinator.doubles import uuid_of

from .dryads import TestDryad, dial, ssh
from .link_farm import LinkFarm

pytestmark = pytest.mark.anyio


async def test_a_valid_token_binds_the_key_and_the_dryad_registers(farm: LinkFarm) -> None:
    dryad = TestDryad()
    async with dial(farm.port, dryad) as link:
        assert await link.peer.call(ENROL, {"token": farm.token()}) == {"uuid": dryad.uuid}
        assert await link.peer.call(REGISTER, dryad.registration()) == {"state": "MAINTENANCE"}
    assert farm.store.dryad_key(dryad.uuid) == dryad.key.export_public_key().decode().strip()
    assert farm.service.get_worker(dryad.uuid).state is WorkerState.MAINTENANCE


async def test_an_enrolled_key_needs_no_token_next_time(farm: LinkFarm) -> None:
    dryad = TestDryad()
    async with dial(farm.port, dryad) as link:
        await link.peer.call(ENROL, {"token": farm.token()})
    farm.store.revoke_enrol_tokens()
    async with dial(farm.port, dryad) as link:
        assert await link.peer.call(REGISTER, dryad.registration()) == {"state": "MAINTENANCE"}


async def test_one_token_enrols_a_batch_of_boards(farm: LinkFarm) -> None:
    token = farm.token()
    for n in (1, 2, 3):
        dryad = TestDryad(uuid_of(n))
        async with dial(farm.port, dryad) as link:
            await link.peer.call(ENROL, {"token": token})
    assert all(farm.store.dryad_key(uuid_of(n)) for n in (1, 2, 3))


async def test_an_expired_token_is_refused_logged_and_the_link_closed(
    farm: LinkFarm, caplog: pytest.LogCaptureFixture
) -> None:
    token = farm.token(valid_for=timedelta(seconds=-1))
    async with dial(farm.port, TestDryad()) as link:
        with pytest.raises(RpcError) as refused:
            await link.peer.call(ENROL, {"token": token})
        assert await link.reader.read() == b""  # the coordinator closed the channel
    assert (refused.value.code, refused.value.message) == (
        REFUSED,
        "enrolment token invalid or expired",
    )
    assert farm.store.dryad_key(TestDryad().uuid) is None
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("invalid or expired" in w and TestDryad().uuid in w for w in warning)
    assert not any(token in r.getMessage() for r in caplog.records)


async def test_an_unknown_key_cannot_register_without_enrolling(farm: LinkFarm) -> None:
    dryad = TestDryad()
    async with dial(farm.port, dryad) as link:
        with pytest.raises(RpcError) as refused:
            await link.peer.call(REGISTER, dryad.registration())
    assert refused.value.code == NOT_ENROLLED
    with pytest.raises(LookupError):
        farm.service.get_worker(dryad.uuid)


async def test_a_second_key_claiming_an_enrolled_uuid_is_refused_at_login(
    farm: LinkFarm, caplog: pytest.LogCaptureFixture
) -> None:
    first = TestDryad()
    async with dial(farm.port, first) as link:
        await link.peer.call(ENROL, {"token": farm.token()})
    impostor = TestDryad(first.uuid)
    with pytest.raises(asyncssh.PermissionDenied):
        await ssh(farm.port, impostor.uuid, impostor.key)
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "coordinator.link.server"]
    assert first.uuid in warning
    assert impostor.key.get_fingerprint() in warning and first.key.get_fingerprint() in warning


async def test_a_uuid_taken_meanwhile_refuses_the_second_enrolment(farm: LinkFarm) -> None:
    first, second = TestDryad(), TestDryad()
    token = farm.token()
    async with dial(farm.port, first) as one, dial(farm.port, second) as two:
        await one.peer.call(ENROL, {"token": token})
        with pytest.raises(RpcError, match="enrolled with another key"):
            await two.peer.call(ENROL, {"token": token})


@pytest.mark.parametrize(
    "username",
    ["root", "00000000-0000-4000-8000-00000000000A", "{00000000-0000-4000-8000-000000000001}"],
)
async def test_only_canonical_worker_uuids_may_log_in(farm: LinkFarm, username: str) -> None:
    with pytest.raises(asyncssh.PermissionDenied):
        await ssh(farm.port, username, TestDryad().key)


async def test_password_and_keyboard_interactive_logins_are_refused(farm: LinkFarm) -> None:
    with pytest.raises(asyncssh.PermissionDenied):
        await ssh(farm.port, TestDryad().uuid, None, password="secret", kbdint_auth=True)


async def test_registering_another_uuid_than_ones_own_is_refused(farm: LinkFarm) -> None:
    dryad = TestDryad()
    async with dial(farm.port, dryad) as link:
        await link.peer.call(ENROL, {"token": farm.token()})
        with pytest.raises(RpcError, match="not this dryad's"):
            await link.peer.call(REGISTER, TestDryad(uuid_of(2)).registration())


async def test_enrolment_puts_the_link_up(farm: LinkFarm) -> None:
    dryad = TestDryad()
    async with dial(farm.port, dryad) as link:
        assert not farm.link.connected(dryad.uuid)
        await link.peer.call(ENROL, {"token": farm.token()})
        assert farm.link.connected(dryad.uuid) and farm.service.connected(dryad.uuid)
