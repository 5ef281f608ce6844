"""Host keys a dryad reports over the link: the valid ones stored, bad ones logged and
dropped, a list over the bounds refused whole."""

from __future__ import annotations

import logging

import pytest

from coordinator.wire import ENROL, INVALID_PARAMS, REGISTER, RpcError
from coordinator.wire.hostkeys import MAX_HOST_KEYS
from tests.host_key_samples import ED25519, ED25519_PUB, RSA_2048

from .dryads import TestDryad, dial
from .link_farm import LinkFarm

pytestmark = pytest.mark.anyio


async def _register(farm: LinkFarm, dryad: TestDryad, keys: object) -> object:
    """The answer to ``register`` with ``keys``, or the ``RpcError`` it got."""
    async with dial(farm.port, dryad) as link:
        await link.peer.call(ENROL, {"token": farm.token()})
        try:
            return await link.peer.call(REGISTER, {**dryad.registration(), "host_keys": keys})
        except RpcError as exc:
            return exc


async def test_reported_keys_are_stored_with_the_worker(farm: LinkFarm) -> None:
    dryad = TestDryad()
    await _register(farm, dryad, [ED25519_PUB, RSA_2048])
    assert farm.service.get_worker(dryad.uuid).host_keys == (ED25519, RSA_2048)
    assert farm.store.load().workers[0].host_keys == (ED25519, RSA_2048)


async def test_a_bad_key_is_logged_with_the_worker_and_not_stored(
    farm: LinkFarm, caplog: pytest.LogCaptureFixture
) -> None:
    dryad = TestDryad()
    await _register(farm, dryad, ["ssh-ed25519 AAAA", ED25519, "ssh-dss AAAAB3NzaC1kc3M="])
    assert farm.service.get_worker(dryad.uuid).host_keys == (ED25519,)
    refused = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(dryad.uuid in w and "host key 'ssh-ed25519 AAAA' refused" in w for w in refused)
    assert any(dryad.uuid in w and "unknown key type 'ssh-dss'" in w for w in refused)


async def test_a_dryad_with_no_valid_key_registers_and_is_warned_about(
    farm: LinkFarm, caplog: pytest.LogCaptureFixture
) -> None:
    dryad = TestDryad()
    assert await _register(farm, dryad, ["junk"]) == {"state": "MAINTENANCE"}
    assert farm.service.get_worker(dryad.uuid).host_keys == ()
    assert any("users cannot check the board" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("keys", [[ED25519] * (MAX_HOST_KEYS + 1), "x", [None]])
async def test_a_list_over_the_bounds_refuses_the_registration(
    farm: LinkFarm, keys: object
) -> None:
    dryad = TestDryad()
    refused = await _register(farm, dryad, keys)
    assert isinstance(refused, RpcError)
    assert refused.code == INVALID_PARAMS and "host_keys" in refused.message
    assert dryad.uuid not in farm.service.farm.workers
