"""The redial order: rounds of every address, from the one that last served."""

from __future__ import annotations

import pytest

from dryad.addresses import Address
from dryad.candidates import Rotation, Target, resolve

pytestmark = pytest.mark.anyio

NAME = Address("farm.example", 7175)


def never(address: Address, exc: OSError) -> None:
    raise AssertionError(f"{address} did not resolve: {exc}")


async def test_localhost_resolves_to_a_loopback_address() -> None:
    assert {"127.0.0.1", "::1"} & set(await resolve("localhost", 7175))


async def test_a_name_that_does_not_resolve_raises_os_error() -> None:
    with pytest.raises(OSError):
        await resolve("no-such-host.invalid", 7175)


async def test_a_round_follows_the_name_when_its_records_change() -> None:
    records = [["10.0.0.1", "10.0.0.2", "10.0.0.3"]]

    async def resolver(host: str, port: int) -> list[str]:
        return records[0]

    rotation = Rotation([NAME], resolver)
    assert [t.ip for t in await rotation.round(never)] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    rotation.served(Target(NAME, "10.0.0.2"))
    assert [t.ip for t in await rotation.round(never)] == ["10.0.0.3", "10.0.0.1", "10.0.0.2"]
    assert [t.ip for t in await rotation.round(never)] == ["10.0.0.2", "10.0.0.3", "10.0.0.1"]
    records[0] = ["10.0.0.9", "10.0.0.1"]  # the one that served is gone from the records
    assert [t.ip for t in await rotation.round(never)] == ["10.0.0.9", "10.0.0.1"]


def test_a_target_names_its_entry_and_the_address_dialled() -> None:
    assert str(Target(NAME, "10.0.0.1")) == "farm.example:7175 (10.0.0.1)"
    assert str(Target(Address("::1", 9), "::1")) == "[::1]:9"
