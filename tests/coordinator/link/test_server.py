"""The link server's own life: its host key, its ready line, its shutdown, and the app's
lifespan that runs it."""

from __future__ import annotations

import logging
import re
import stat
from dataclasses import replace
from pathlib import Path

import anyio
import asyncssh
import pytest

from coordinator.assembly import Parts, assemble
from coordinator.domain.clock import FakeClock
from coordinator.link.hostkey import load_or_create
from coordinator.link.registry import DryadLink
from coordinator.link.server import LinkConfig, LinkServer
from coordinator.settings import Settings
from coordinator.store.sql import SqlStore
from coordinator.wire import ENROL

from .dryads import TestDryad, dial
from .link_farm import LinkFarm

pytestmark = pytest.mark.anyio


def test_the_host_key_is_made_once_private_and_then_kept(tmp_path: Path) -> None:
    path = tmp_path / "state" / "link_host_key"
    made = load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create(path).get_fingerprint() == made.get_fingerprint()
    assert made.algorithm == b"ssh-ed25519"
    assert [p.name for p in path.parent.iterdir()] == ["link_host_key"]  # no temp left


async def test_dryads_see_the_host_key_from_the_file(farm: LinkFarm) -> None:
    key = asyncssh.read_private_key(farm.host_key)
    seen = await asyncssh.get_server_host_key("127.0.0.1", farm.port, config=None)
    assert seen is not None and seen.get_fingerprint() == key.get_fingerprint()


async def test_stopping_the_server_closes_every_link(
    store: SqlStore, clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "coordinator.link.server")
    link = DryadLink(store, clock)  # no service: an unenrolled session never needs one
    config = LinkConfig("127.0.0.1", 0, tmp_path / "key", keepalive=5)
    async with anyio.create_task_group() as tg:
        host, port = await tg.start(LinkServer(config, store, link).run)
        async with dial(port, TestDryad(), raw=True) as dialled:
            tg.cancel_scope.cancel()
            with anyio.fail_after(5):
                assert await dialled.reader.read() == b""
    assert f"dryad link listening on 127.0.0.1:{port}" in caplog.messages
    assert "dryad link stopped" in caplog.messages


async def test_the_app_runs_the_link_and_says_where(
    db_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "coordinator.link.server")
    settings = replace(
        Settings(),
        db=str(db_path),
        link="127.0.0.1:0",
        link_host_key=str(tmp_path / "k"),
        link_grace=7,
        self_heal=True,
    )
    store = SqlStore.open(db_path)
    coordinator = assemble(settings, Parts(store))
    app = coordinator.app
    try:
        async with app.router.lifespan_context(app):
            (line,) = [m for m in caplog.messages if m.startswith("dryad link listening")]
            found = re.fullmatch(r"dryad link listening on 127\.0\.0\.1:(\d+)", line)
            assert found is not None
            async with dial(int(found[1]), TestDryad()) as dialled:
                with pytest.raises(Exception, match="invalid or expired"):
                    await dialled.peer.call(ENROL, {"token": "brt_nothing"})
    finally:
        store.close()
    assert isinstance(coordinator.link, DryadLink)
    assert (coordinator.service.link_grace, coordinator.service.self_heal) == (7, True)


async def test_injected_dryads_replace_the_link(db_path: Path) -> None:
    store = SqlStore.open(db_path)
    app = assemble(replace(Settings(), db=str(db_path)), Parts(store, dryads=DryadLink(store))).app
    store.close()
    assert app.state.coordinator.link is None
