"""The link's redial over several coordinators: the order it dials in, when it backs off,
names with several addresses (a scripted dialer), and one pinned host key (real SSH)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from coordinator import wire
from dryad.candidates import Target
from dryad.link import Backoff, Link, StateHook
from dryad.settings import parse
from dryad.states import LinkState
from tests.dryad.link_doubles import (
    FAST,
    FakeCoordinator,
    StateLog,
    identity_at,
    serve_coordinator,
    settings_for,
)

pytestmark = pytest.mark.anyio

A, B, C = "10.0.0.1", "10.0.0.2", "10.0.0.3"


@dataclass(frozen=True)
class RecordingBackoff(Backoff):
    """Never waits; records the attempt number of every back-off asked for."""

    asked: list[int] = field(default_factory=list)

    def delay(self, attempt: int) -> float:
        self.asked.append(attempt)
        return 0.0


class ScriptedLink(Link):
    """A link whose dial is scripted per IP: ``up`` serves until ``drop``, else refused."""

    def __init__(self, *args: Any, up: set[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.up = up
        self.dialled: list[str] = []
        self._drop = anyio.Event()

    def drop(self) -> None:
        self._drop.set()

    async def _session(self, target: Target, handler: wire.Handler, on_state: StateHook) -> None:
        self.dialled.append(target.ip)
        await anyio.lowlevel.checkpoint()  # a real dial yields too
        if target.ip not in self.up:
            raise ConnectionRefusedError(111, "Connection refused")
        await self._set_state(on_state, LinkState.CONNECTED, "IDLE")
        await self._drop.wait()
        self._drop = anyio.Event()
        raise ConnectionResetError(104, "Connection reset by peer")


async def until(check: Callable[[], bool], within: float = 5.0) -> None:
    with anyio.fail_after(within):
        while not check():  # noqa: ASYNC110 - the scripted link and back-off tell no one
            await anyio.sleep(0.005)


async def echo(method: str, params: dict[str, Any]) -> Any:
    return None


@asynccontextmanager
async def scripted(
    tmp_path: Path, coordinators: list[str], up: set[str], home: int = 0, **kwargs: Any
) -> AsyncIterator[tuple[ScriptedLink, RecordingBackoff]]:
    settings = parse({"coordinators": coordinators, "state_dir": str(tmp_path / "state")})
    backoff = RecordingBackoff()
    # Its UUID starts its first round at entry ``home`` (the spread is test_candidates').
    identity = identity_at(tmp_path / "state", home, len(coordinators))
    link = ScriptedLink(settings, identity, backoff=backoff, up=up, **kwargs)
    async with anyio.create_task_group() as tg:
        await tg.start(link.run, echo, StateLog())
        yield link, backoff
        tg.cancel_scope.cancel()


async def test_a_dead_first_coordinator_is_passed_over_for_the_second(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with scripted(tmp_path, [f"{A}:7175", f"{B}:7176"], up={B}) as (link, backoff):
        await until(lambda: link.dialled == [A, B])
        await until(lambda: link.coordinator == f"{B}:7176")
        assert backoff.asked == []  # a round that reached one never backs off
        assert link.host == B
    assert any(f"link to {A}:7175 failed: " in m for m in caplog.messages)


async def test_a_dropped_link_goes_on_to_the_next_coordinator(tmp_path: Path) -> None:
    up = {A, B}
    async with scripted(tmp_path, [f"{A}:1", f"{B}:1", f"{C}:1"], up=up) as (link, backoff):
        await until(lambda: link.dialled == [A])
        link.drop()
        await until(lambda: link.dialled == [A, B])
        up.discard(A)  # A is gone for good; B drops next, and C is the one after B
        up.add(C)
        link.drop()
        await until(lambda: link.dialled == [A, B, C])
        assert link.coordinator == f"{C}:1"
        # Each served link restarts the back-off: only the short jitter, never a growth.
        assert backoff.asked == [0, 0]


async def test_the_first_round_starts_at_the_dryads_own_place_on_every_start(
    tmp_path: Path,
) -> None:
    coordinators = [f"{A}:1", f"{B}:1", f"{C}:1"]
    async with scripted(tmp_path, coordinators, up={A, B, C}, home=1) as (link, _):
        await until(lambda: link.dialled == [B])
    # Restarted (the same state directory, so the same UUID): the same coordinator.
    async with scripted(tmp_path, coordinators, up={A, B, C}, home=1) as (link, _):
        await until(lambda: link.dialled == [B])
    async with scripted(tmp_path, coordinators, up={C}, home=1) as (link, _):
        await until(lambda: link.dialled == [B, C])  # its place is down: on round-robin


async def test_the_back_off_grows_only_after_a_whole_round_failed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with scripted(tmp_path, [f"{A}:1", f"{B}:1"], up=set()) as (link, backoff):
        await until(lambda: len(backoff.asked) >= 3)
        assert link.dialled[:6] == [A, B, A, B, A, B]
        assert backoff.asked[:3] == [0, 1, 2]  # one back-off per round, not per dial
    assert any(m.startswith("no coordinator reached") for m in caplog.messages)


async def test_after_a_failed_round_it_starts_from_the_one_that_last_worked(
    tmp_path: Path,
) -> None:
    up = {B}
    async with scripted(tmp_path, [f"{A}:1", f"{B}:1"], up=up) as (link, backoff):
        await until(lambda: link.dialled == [A, B])
        up.clear()
        link.drop()  # B drops: A next, then B; both dead: back-off, then B first again
        await until(lambda: len(link.dialled) >= 5)
        assert link.dialled[:5] == [A, B, A, B, B]
        assert backoff.asked[:2] == [0, 1]


async def test_a_name_with_several_addresses_is_dialled_address_by_address(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    asked: list[tuple[str, int]] = []

    async def resolver(host: str, port: int) -> list[str]:
        asked.append((host, port))
        if host == "gone.example":
            raise OSError("Name or service not known")
        return [A, B]

    names = ["gone.example", "farm.example:7175"]
    async with scripted(tmp_path, names, up={B}, resolver=resolver) as (link, _):
        await until(lambda: link.dialled == [A, B])
        assert link.coordinator == "farm.example:7175"
        assert link.host == B  # dial-backs go to the address linked, not to the name
    assert asked[:2] == [("gone.example", 7175), ("farm.example", 7175)]
    assert "link to gone.example:7175 failed: cannot resolve: " in caplog.text
    assert f"link to farm.example:7175 ({A}) failed" in caplog.text


# ---- real SSH: one pinned host key for the whole farm ----------------------------------


async def test_coordinators_sharing_the_host_key_are_all_trusted_and_another_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = FakeCoordinator()
    same_key = FakeCoordinator(host_key=first.host_key)
    stranger = FakeCoordinator()
    identity = identity_at(tmp_path / "state", 0, 2)  # it dials `first` first
    log = StateLog()
    async with serve_coordinator(first), serve_coordinator(same_key):
        settings = settings_for(
            first,
            tmp_path / "state",
            coordinator=None,
            coordinators=[f"127.0.0.1:{c.port}" for c in (first, same_key)],
        )
        link = Link(settings, identity, backoff=FAST, connect_timeout=5)
        async with anyio.create_task_group() as tg:
            await tg.start(link.run, echo, log)
            await first.next(wire.REGISTER)
            await log.wait_for(LinkState.CONNECTED)
            first.sessions[0].drop()
            assert (await same_key.next(wire.REGISTER)).session.username == identity.uuid
            await log.wait_for(LinkState.CONNECTED, count=2)
            assert link.coordinator == f"127.0.0.1:{same_key.port}"
            tg.cancel_scope.cancel()
    # A coordinator with its own key is refused, as one that changed its key is.
    async with serve_coordinator(stranger):
        settings = settings_for(stranger, tmp_path / "state")
        link = Link(settings, identity, backoff=FAST, connect_timeout=5)
        async with anyio.create_task_group() as tg:
            await tg.start(link.run, echo, log)
            await log.wait_for(LinkState.HOST_KEY_MISMATCH)
            tg.cancel_scope.cancel()
        assert stranger.sessions == []
    assert "host key changed" in caplog.text
