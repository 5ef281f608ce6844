"""The job key a request asks for: given at the match, kept for the board's next PREPARE,
stored across a restart, and never given to two jobs (docs/boruta-api.md §keys)."""

from __future__ import annotations

from typing import Any, cast

import anyio
import pytest

from coordinator.domain.clock import FakeClock
from coordinator.domain.model import KeyType
from coordinator.domain.states import RequestState, WorkerState
from coordinator.errors import StoreUnavailable
from coordinator.service.keys import KeyPool, kind_of, public_of
from coordinator.service.operations import Service
from coordinator.store import Changes, Store
from coordinator.store.sql import SqlStore
from tests.coordinator.doubles import (
    ADMIN,
    ALICE,
    RecordingDryads,
    RecordingTunnels,
    idle_worker,
    until,
    uuid_of,
)

pytestmark = pytest.mark.anyio

OPENSSH: bytes = b"-----BEGIN OPENSSH PRIVATE KEY-----"
PKCS1: bytes = b"-----BEGIN RSA PRIVATE KEY-----"


def prepared_keys(dryads: RecordingDryads) -> list[str]:
    """The key types the dryads were given, in order."""
    return [key.split()[0] for name, _, key in dryads.calls if name == "prepare"]


async def test_a_request_without_a_key_type_gets_rsa_as_the_original(
    service: Service, dryads: RecordingDryads
) -> None:
    await idle_worker(service, 1)
    rid = await service.new_request(ALICE, 8, {})
    access = await service.acquire_worker(ALICE, rid)
    assert access.key_pem.startswith(PKCS1)
    assert prepared_keys(dryads) == ["ssh-rsa"]  # no second key: the board had the right one


async def test_ed25519_on_a_board_with_an_rsa_key_gives_the_board_a_new_key_first(
    service: Service, dryads: RecordingDryads
) -> None:
    uuid = await idle_worker(service, 1)
    old = service.get_worker(uuid).key
    rid = await service.new_request(ALICE, 8, {}, key_type=KeyType.ED25519)
    assert (await service.get_request(rid)).state is RequestState.IN_PROGRESS
    access = await service.acquire_worker(ALICE, rid)
    assert access.key_pem.startswith(OPENSSH) and access.key_pem != old
    assert prepared_keys(dryads) == ["ssh-rsa", "ssh-ed25519"]
    assert service.get_worker(uuid).key == access.key_pem  # stored with the worker


async def test_the_next_prepare_makes_the_type_of_the_last_job_and_rsa_swaps_back(
    service: Service, dryads: RecordingDryads
) -> None:
    uuid = await idle_worker(service, 1)
    first = await service.new_request(ALICE, 8, {}, key_type=KeyType.ED25519)
    await service.close_request(ALICE, first)
    await until(service, lambda: service.get_worker(uuid).state is WorkerState.IDLE)
    assert kind_of(service.get_worker(uuid).key) is KeyType.ED25519
    second = await service.new_request(ALICE, 8, {}, key_type=KeyType.ED25519)
    assert (await service.acquire_worker(ALICE, second)).key_pem.startswith(OPENSSH)
    await service.close_request(ALICE, second)
    await until(service, lambda: service.get_worker(uuid).state is WorkerState.IDLE)
    third = await service.new_request(ALICE, 8, {})  # an old client: RSA
    assert (await service.acquire_worker(ALICE, third)).key_pem.startswith(PKCS1)
    assert prepared_keys(dryads) == [
        "ssh-rsa",  # put in service
        "ssh-ed25519",  # swapped for the first request
        "ssh-ed25519",  # PREPARE after it: the last job's type, so no swap for the second
        "ssh-ed25519",  # PREPARE after the second
        "ssh-rsa",  # swapped for the third
    ]


async def test_a_board_that_fails_the_new_key_fails_and_the_request_waits(
    service: Service, dryads: RecordingDryads
) -> None:
    uuid = await idle_worker(service, 1)
    dryads.fail = "link dropped"
    rid = await service.new_request(ALICE, 8, {}, key_type=KeyType.ED25519)
    worker = service.get_worker(uuid)
    assert worker.state is WorkerState.FAIL and worker.reason == "prepare failed: link dropped"
    assert (await service.get_request(rid)).state is RequestState.WAITING
    dryads.fail = ""
    await service.set_worker_state(ADMIN, uuid, WorkerState.MAINTENANCE)  # as after any FAIL
    await until(service, lambda: service.get_worker(uuid).state is WorkerState.MAINTENANCE)
    await service.set_worker_state(ADMIN, uuid, WorkerState.IDLE)  # back through PREPARE
    await until(service, lambda: service.farm.requests[rid].state is RequestState.IN_PROGRESS)
    assert (await service.acquire_worker(ALICE, rid)).key_pem.startswith(OPENSSH)


async def test_every_job_gets_a_key_of_its_own(service: Service) -> None:
    uuid = await idle_worker(service, 1)
    given: list[bytes] = []
    for n in range(8):
        kind = KeyType.ED25519 if n % 3 else KeyType.RSA  # swaps and PREPAREs mixed
        rid = await service.new_request(ALICE, 8, {}, key_type=kind)
        given.append((await service.acquire_worker(ALICE, rid)).key_pem)
        await service.close_request(ALICE, rid)
        await until(service, lambda: service.get_worker(uuid).state is WorkerState.IDLE)
    assert len(set(given)) == len(given)


async def test_a_restart_keeps_the_asked_key_type(
    store: SqlStore, clock: FakeClock, dryads: RecordingDryads, tunnels: RecordingTunnels
) -> None:
    async def started() -> Service:
        return Service(store, dryads, tunnels, clock, keys=KeyPool(1, processes=False))

    first = await started()
    async with anyio.create_task_group() as tg:
        await tg.start(first.run)
        await first.register({"UUID": uuid_of(1)}, "10.0.0.1:22")  # in MAINTENANCE: waits
        rid = await first.new_request(ALICE, 8, {}, key_type=KeyType.ED25519)
        tg.cancel_scope.cancel()
    again = await started()
    async with anyio.create_task_group() as tg:
        await tg.start(again.run)
        assert (await again.get_request(rid)).key_type is KeyType.ED25519
        await again.set_worker_state(ADMIN, uuid_of(1), WorkerState.IDLE)
        await until(again, lambda: again.farm.requests[rid].state is RequestState.IN_PROGRESS)
        assert (await again.acquire_worker(ALICE, rid)).key_pem.startswith(OPENSSH)
        tg.cancel_scope.cancel()


class RefusingStore:
    """The real store, refusing the commits it is told to."""

    def __init__(self, inner: SqlStore) -> None:
        self.inner = inner
        self.refuse = 0  # commits to refuse from now on

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def commit(self, changes: Changes) -> None:
        if self.refuse:
            self.refuse -= 1
            raise StoreUnavailable("database or disk is full")
        self.inner.commit(changes)


async def test_a_failed_commit_after_a_new_key_still_hands_out_the_boards_key(
    store: SqlStore, clock: FakeClock, dryads: RecordingDryads, tunnels: RecordingTunnels
) -> None:
    refusing = RefusingStore(store)
    service = Service(
        cast("Store", refusing), dryads, tunnels, clock, keys=KeyPool(1, processes=False)
    )
    async with anyio.create_task_group() as tg:
        await tg.start(service.run)
        await idle_worker(service, 1)
        refusing.refuse = 1
        with pytest.raises(StoreUnavailable):
            await service.new_request(ALICE, 8, {}, key_type=KeyType.ED25519)
        # The board took an Ed25519 key before the commit failed; RSA is now the other type.
        rid = await service.new_request(ALICE, 8, {})
        key = (await service.acquire_worker(ALICE, rid)).key_pem
        on_the_board = [k for name, _, k in dryads.calls if name == "prepare"][-1]
        assert public_of(key) == on_the_board
        tg.cancel_scope.cancel()
