"""Test dryads for the link tests: recording handlers, dialled over real SSH to the link."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import asyncssh

from coordinator.domain.ids import WorkerUUID
from coordinator.wire import (
    ENROL,
    HEALTHCHECK,
    LINK_SUBSYSTEM,
    REFUSED,
    REGISTER,
    CheckResult,
    HealthReport,
    Peer,
    Registration,
    RpcError,
)
from tests.coordinator.doubles import uuid_of
from tests.coordinator.link.link_farm import LinkFarm


@dataclass
class TestDryad:
    """A dryad's link end: a fixed UUID and key, and handlers that record every call."""

    uuid: WorkerUUID = field(default_factory=lambda: uuid_of(1))
    key: asyncssh.SSHKey = field(
        default_factory=lambda: asyncssh.generate_private_key("ssh-ed25519")
    )
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    fail: str = ""  # prepare and maintenance refuse with this reason when set

    __test__ = False  # not a test class, despite its name

    async def handle(self, method: str, params: dict[str, Any]) -> Any:
        self.calls.append((method, params))
        if self.fail and method != HEALTHCHECK:
            raise RpcError(REFUSED, self.fail)
        if method == HEALTHCHECK:
            return HealthReport((CheckResult("stm", True, True),)).to_wire()
        return None

    def registration(self, **caps: str) -> dict[str, Any]:
        return Registration({"UUID": self.uuid, **caps}, ":22", "test").to_wire()


@dataclass
class Dialled:
    """One connection of a test dryad: the SSH connection and the JSON-RPC peer on it."""

    conn: asyncssh.SSHClientConnection
    peer: Peer
    reader: asyncssh.SSHReader[bytes]
    writer: asyncssh.SSHWriter[bytes]


async def ssh(port: int, username: str, key: asyncssh.SSHKey | None, **options: Any) -> Any:
    """An asyncssh client connection to the link, with no host, agent or config lookups."""
    return await asyncssh.connect(
        "127.0.0.1",
        port,
        username=username,
        client_keys=[key] if key is not None else [],
        known_hosts=None,
        agent_path=None,
        config=None,
        **options,
    )


@asynccontextmanager
async def dial(port: int, dryad: TestDryad, raw: bool = False) -> AsyncIterator[Dialled]:
    """Connect ``dryad``, open the link channel and serve the coordinator's calls
    (``raw``: leave the reading to the test)."""
    conn = await ssh(port, dryad.uuid, dryad.key)
    try:
        writer, reader, _ = await conn.open_session(subsystem=LINK_SUBSYSTEM, encoding=None)
        peer = Peer(reader, writer, dryad.handle)
        async with anyio.create_task_group() as tg:
            if not raw:
                tg.start_soon(peer.serve)
            yield Dialled(conn, peer, reader, writer)
            conn.close()
    finally:
        conn.close()
        await conn.wait_closed()


async def enrol_and_register(farm: LinkFarm, dialled: Dialled, dryad: TestDryad) -> None:
    await dialled.peer.call(ENROL, {"token": farm.token()})
    await dialled.peer.call(REGISTER, dryad.registration())
