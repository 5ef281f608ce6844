"""The redial order: rounds of every address, from the dryad's own place until one served,
then from the one that last served."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from hypothesis import given, strategies as st

from dryad.addresses import Address
from dryad.candidates import Rotation, Target, home_position, resolve
from tests.dryad.link_doubles import uuid_at

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

    rotation = Rotation([NAME], resolver, seed=uuid_at(0, 3))
    assert [t.ip for t in await rotation.round(never)] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    rotation.served(Target(NAME, "10.0.0.2"))
    assert [t.ip for t in await rotation.round(never)] == ["10.0.0.3", "10.0.0.1", "10.0.0.2"]
    assert [t.ip for t in await rotation.round(never)] == ["10.0.0.2", "10.0.0.3", "10.0.0.1"]
    records[0] = ["10.0.0.9", "10.0.0.1"]  # the one that served is gone from the records
    assert [t.ip for t in await rotation.round(never)] == ["10.0.0.9", "10.0.0.1"]


def test_a_target_names_its_entry_and_the_address_dialled() -> None:
    assert str(Target(NAME, "10.0.0.1")) == "farm.example:7175 (10.0.0.1)"
    assert str(Target(Address("::1", 9), "::1")) == "[::1]:9"


@given(st.text(), st.integers(min_value=1, max_value=100))
def test_the_home_position_is_a_target_of_the_list(seed: str, count: int) -> None:
    position = home_position(seed, count)
    assert 0 <= position < count
    assert home_position(seed, count) == position  # the same on every start


def test_no_targets_no_position() -> None:
    assert home_position("any", 0) == 0  # an empty round: nothing to start at


def test_many_dryads_spread_about_evenly_over_three_coordinators() -> None:
    counts = Counter(home_position(str(uuid.uuid4()), 3) for _ in range(3000))
    assert set(counts) == {0, 1, 2}
    assert all(800 <= n <= 1200 for n in counts.values()), counts  # 1000 each, give or take


@given(st.uuids(), st.integers(min_value=1, max_value=5))
async def test_the_first_round_starts_at_the_home_and_tries_every_address_once(
    seed: uuid.UUID, count: int
) -> None:
    literals = [Address(f"10.0.0.{n}", 7175) for n in range(1, count + 1)]
    rotation = Rotation(literals, seed=str(seed))
    home = home_position(str(seed), count)
    first = [t.address for t in await rotation.round(never)]
    assert first == literals[home:] + literals[:home]
    assert [t.address for t in await rotation.round(never)] == first  # none served yet


async def test_after_a_link_served_the_rounds_follow_the_old_rule() -> None:
    literals = [Address(f"10.0.0.{n}", 7175) for n in (1, 2, 3)]
    rotation = Rotation(literals, seed=uuid_at(2, 3))
    assert [t.ip for t in await rotation.round(never)] == ["10.0.0.3", "10.0.0.1", "10.0.0.2"]
    rotation.served(Target(literals[2], "10.0.0.3"))  # its link dropped: the next one first
    assert [t.ip for t in await rotation.round(never)] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    rotation.served(Target(literals[0], "10.0.0.1"))
    assert [t.ip for t in await rotation.round(never)] == ["10.0.0.2", "10.0.0.3", "10.0.0.1"]
    assert [t.ip for t in await rotation.round(never)] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
