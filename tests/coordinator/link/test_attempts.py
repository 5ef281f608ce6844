"""Failed link logins and enrolments: paused per address, never for an enrolled key,
and logged once per address and window, not once per attempt."""

from __future__ import annotations

import asyncssh
import pytest
from hypothesis import given, strategies as st

from coordinator.link.attempts import FailedAttempts
from coordinator.wire import ENROL, REFUSED, REGISTER, RpcError
from tests.coordinator.doubles import uuid_of

from .dryads import TestDryad, dial, ssh
from .link_farm import LinkFarm


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_address_is_paused_at_the_limit_until_its_window_ends() -> None:
    clock = Clock()
    attempts = FailedAttempts(limit=3, window=60, clock=clock)
    assert [attempts.failed("10.0.0.5", "bad tokens") for _ in range(3)] == [True, False, False]
    assert not attempts.allowed("10.0.0.5") and attempts.allowed("10.0.0.6")
    clock.now = 20
    assert attempts.retry_after("10.0.0.5") == 40
    clock.now = 60
    assert attempts.allowed("10.0.0.5") and attempts.retry_after("10.0.0.5") == 0


def test_one_summary_line_per_address_and_window(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    attempts = FailedAttempts(limit=5, window=60, clock=clock)
    for _ in range(40):
        attempts.failed("10.0.0.5", "bad enrolment tokens")
    attempts.failed("10.0.0.5", "keys of other workers")
    attempts.failed("10.0.0.9", "bad enrolment tokens")  # one: logged by the caller only
    clock.now = 61
    attempts.sweep()
    attempts.sweep()
    (line,) = [r.getMessage() for r in caplog.records]
    assert line == (
        "link: 41 failed attempts from 10.0.0.5 within 60 s (40 bad enrolment tokens, "
        "1 keys of other workers); enrolment from it was paused"
    )


@given(st.lists(st.tuples(st.integers(0, 5), st.floats(0, 30)), max_size=200))
def test_never_more_than_the_limit_of_failures_gets_through_per_window(
    events: list[tuple[int, float]],
) -> None:
    clock = Clock()
    attempts = FailedAttempts(limit=4, window=60, clock=clock)
    let_through: dict[tuple[int, int], int] = {}
    for who, pause in events:
        clock.now += pause
        address = f"10.0.0.{who}"
        if attempts.allowed(address):
            attempts.failed(address, "x")
            key = (who, int(clock.now // 1))
            let_through[key] = let_through.get(key, 0) + 1
    # Within any 60 s one address gets at most limit tries (windows are 60 s long and
    # fixed, so two windows can overlap a 60 s span: at most twice the limit).
    for who, second in let_through:
        span = sum(n for (w, s), n in let_through.items() if w == who and second <= s < second + 60)
        assert span <= 8


pytestmark = pytest.mark.anyio


async def test_token_guessing_pauses_the_address_but_not_an_enrolled_dryad(
    farm: LinkFarm, caplog: pytest.LogCaptureFixture
) -> None:
    farm.link.attempts = FailedAttempts(limit=3, window=600)
    enrolled = TestDryad()
    async with dial(farm.port, enrolled) as link:
        await link.peer.call(ENROL, {"token": farm.token()})
    for n in (2, 3, 4):
        async with dial(farm.port, TestDryad(uuid_of(n))) as link:
            with pytest.raises(RpcError, match="invalid or expired"):
                await link.peer.call(ENROL, {"token": "guess"})
    # Paused: a new key from this address does not even get a session.
    with pytest.raises(asyncssh.PermissionDenied):
        await ssh(farm.port, uuid_of(5), TestDryad(uuid_of(5)).key)
    # The enrolled dryad, from the same address, still logs in and registers.
    async with dial(farm.port, enrolled) as link:
        assert await link.peer.call(REGISTER, enrolled.registration()) == {"state": "MAINTENANCE"}
    refusals = [r for r in caplog.records if "invalid or expired" in r.getMessage()]
    assert len(refusals) == 1  # the first in full; the rest counted for the summary


async def test_a_session_already_open_when_the_address_is_paused_is_refused_to_enrol(
    farm: LinkFarm,
) -> None:
    farm.link.attempts = FailedAttempts(limit=1, window=600)
    async with dial(farm.port, TestDryad(uuid_of(2))) as early:
        async with dial(farm.port, TestDryad(uuid_of(3))) as prober:
            with pytest.raises(RpcError):
                await prober.peer.call(ENROL, {"token": "guess"})
        with pytest.raises(RpcError) as refused:
            await early.peer.call(ENROL, {"token": farm.token()})
    assert refused.value.code == REFUSED
    assert "too many failed attempts from this address" in refused.value.message
