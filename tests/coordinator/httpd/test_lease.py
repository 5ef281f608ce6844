"""The lease watcher: a coordinator stops serving when another took the database over, or
when the database has not answered for the grace; a short outage changes nothing."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import anyio
import pytest

from coordinator.httpd.lease import watch
from coordinator.store.serving import Lease

pytestmark = pytest.mark.anyio


def _checks(*leases: Lease) -> Callable[[], Lease]:
    """Answers ``leases`` in turn, then the last one for ever."""
    it: Iterator[Lease] = iter(leases)
    last = [leases[-1]]

    def check() -> Lease:
        last[0] = next(it, last[0])
        return last[0]

    return check


async def test_a_lost_lease_stops_serving(caplog: pytest.LogCaptureFixture) -> None:
    stops: list[None] = []
    with anyio.fail_after(30):
        await watch(_checks(Lease.HELD, Lease.LOST), lambda: stops.append(None), 0.001, 60)
    assert stops == [None]
    assert "another coordinator serves the database now" in caplog.text


async def test_a_short_outage_keeps_serving_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    stops: list[None] = []
    outage = [Lease.UNKNOWN] * 5
    with anyio.fail_after(30):
        # Ends only by the final LOST: the outage before it stayed within the grace.
        await watch(
            _checks(*outage, Lease.HELD, *outage, Lease.HELD, Lease.LOST),
            lambda: stops.append(None),
            0.001,
            60,
        )
    assert stops == [None]
    assert caplog.text.count("cannot reach the database") == 2  # once per outage
    assert caplog.text.count("the database answers again") == 2
    assert "has not answered" not in caplog.text


async def test_an_outage_past_the_grace_stands_by(caplog: pytest.LogCaptureFixture) -> None:
    stops: list[None] = []
    with anyio.fail_after(30):
        await watch(_checks(Lease.UNKNOWN), lambda: stops.append(None), 0.001, 0.05)
    assert stops == [None]
    assert "the database has not answered for 0.05 s" in caplog.text
