"""Dryad link doubles: a fake coordinator over real SSH, settings for it, a state log."""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import asyncssh
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from coordinator import wire
from dryad.candidates import home_position
from dryad.identity import UUID_FILE, Identity
from dryad.link import Backoff
from dryad.settings import Settings, parse
from dryad.states import LinkState

TOKEN = "s3cret-enrol-token-0123456789"
FAST = Backoff(base=0.01, cap=0.05, refused=0.05)


def uuid_at(position: int, count: int) -> str:
    """A dryad UUID whose first round starts at target ``position`` of ``count``."""
    for n in range(1000):
        seed = str(uuid.UUID(int=n))
        if home_position(seed, count) == position:
            return seed
    raise AssertionError(f"no UUID starts at {position} of {count}")


def identity_at(state_dir: Path, position: int, count: int) -> Identity:
    """A dryad identity in ``state_dir`` whose first round starts at ``position`` of
    ``count`` targets (so a test knows which coordinator it dials first)."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    (state_dir / UUID_FILE).write_text(uuid_at(position, count) + "\n")
    return Identity.load(state_dir)


@dataclass
class Session:
    """One dryad connection as the fake coordinator sees it."""

    username: str
    key: asyncssh.SSHKey
    conn: asyncssh.SSHServerConnection
    peer: wire.Peer | None = None

    def drop(self) -> None:
        """Cut the connection as a crashing coordinator would."""
        self.conn.abort()


@dataclass
class Received:
    method: str
    params: dict[str, Any]
    session: Session


@dataclass
class FakeCoordinator:
    """Answers ``enrol`` and ``register`` the way the contract says; records the rest."""

    port: int = 0
    host_key: asyncssh.SSHKey = field(
        default_factory=lambda: asyncssh.generate_private_key("ssh-ed25519")
    )
    enrolled: set[bytes] = field(default_factory=set)  # public key blobs bound by a token
    sessions: list[Session] = field(default_factory=list)
    refuse_keys: bool = False  # as for a UUID bound to another key
    unavailable: int = 0  # enrolments answered UNAVAILABLE first (a follower without leader)
    registered_state: wire.WorkerState = wire.WorkerState.MAINTENANCE  # register's answer
    send: MemoryObjectSendStream[Received] = field(init=False)
    received: MemoryObjectReceiveStream[Received] = field(init=False)

    def open_streams(self) -> None:
        self.send, self.received = anyio.create_memory_object_stream[Received](math.inf)

    async def next(self, *methods: str, within: float = 5.0) -> Received:
        """The next call of one of ``methods`` (others are skipped)."""
        with anyio.fail_after(within):
            async for item in self.received:
                if not methods or item.method in methods:
                    return item
        raise AssertionError("coordinator closed")  # pragma: no cover

    def bind(self, identity: Identity) -> None:
        """Enrol ``identity`` beforehand, as a coordinator restarted with its store would."""
        self.enrolled.add(identity.key.public_data)
        identity.mark_enrolled("test")

    async def handle(self, session: Session, method: str, params: dict[str, Any]) -> Any:
        known = session.key.public_data in self.enrolled
        if method == wire.ENROL:
            self.send.send_nowait(Received(method, params, session))
            if self.unavailable > 0:
                self.unavailable -= 1
                raise wire.RpcError(wire.UNAVAILABLE, "the farm's leader cannot be reached")
            if params.get("token") != TOKEN:
                raise wire.RpcError(wire.REFUSED, "enrolment token invalid or expired")
            self.enrolled.add(session.key.public_data)
            return wire.Enrolled(session.username).to_wire()
        if not known:
            raise wire.RpcError(wire.NOT_ENROLLED, "enrol first")
        if method == wire.REGISTER:
            wire.Registration.from_wire(params)
        self.send.send_nowait(Received(method, params, session))
        if method == wire.REGISTER:
            return wire.Registered(self.registered_state).to_wire()
        return None

    async def process(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        conn = process.channel.get_connection()
        session = next(s for s in self.sessions if s.conn is conn)
        if process.subsystem != wire.LINK_SUBSYSTEM:
            process.exit(1)
            return
        session.peer = wire.Peer(
            process.stdin,
            process.stdout,
            lambda method, params: self.handle(session, method, params),
        )
        try:
            await session.peer.serve()
        except (OSError, asyncssh.Error):
            pass
        finally:
            process.exit(0)


class _Server(asyncssh.SSHServer):
    def __init__(self, coordinator: FakeCoordinator) -> None:
        self._coordinator = coordinator
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn

    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        assert self._conn is not None
        if self._coordinator.refuse_keys:
            return False
        self._coordinator.sessions.append(Session(username, key, self._conn))
        return True


@asynccontextmanager
async def serve_coordinator(coord: FakeCoordinator) -> AsyncIterator[FakeCoordinator]:
    """Run ``coord`` on 127.0.0.1 (port 0 unless it has one); close everything after."""
    coord.open_streams()
    coord.sessions.clear()
    server = await asyncssh.create_server(
        lambda: _Server(coord),
        "127.0.0.1",
        coord.port,
        server_host_keys=[coord.host_key],
        process_factory=coord.process,
        encoding=None,
    )
    coord.port = server.sockets[0].getsockname()[1]
    try:
        yield coord
    finally:
        server.close()
        await server.wait_closed()
        for session in coord.sessions:
            session.conn.close()
            await session.conn.wait_closed()
        coord.send.close()
        coord.received.close()


def settings_for(coord: FakeCoordinator, state_dir: Path, **extra: Any) -> Settings:
    data: dict[str, Any] = {
        "coordinator": f"127.0.0.1:{coord.port}",
        "enrol_token": TOKEN,
        "caps": {"board": "rpi4", "arch": "arm"},
        "profile": "sim",
        "state_dir": str(state_dir),
        "ssh_address": ":2222",
    }
    data.update(extra)
    return parse({k: v for k, v in data.items() if v is not None})


class StateLog:
    """The link's state hook, recording every change; tests wait for one."""

    def __init__(self) -> None:
        self.states: list[tuple[LinkState, str]] = []
        self._changed = anyio.Event()

    async def __call__(self, state: LinkState, detail: str) -> None:
        self.states.append((state, detail))
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, state: LinkState, count: int = 1, within: float = 5.0) -> None:
        with anyio.fail_after(within):
            while sum(1 for s, _ in self.states if s is state) < count:
                await self._changed.wait()
