"""Deny by default: an enrolled dryad's key opens the link subsystem and nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncssh
import pytest

from coordinator.wire import ENROL, LINK_SUBSYSTEM

from .dryads import TestDryad, dial, ssh
from .link_farm import LinkFarm

pytestmark = pytest.mark.anyio


@pytest.fixture
async def enrolled(farm: LinkFarm) -> AsyncIterator[asyncssh.SSHClientConnection]:
    """A second SSH connection of an enrolled dryad, with no channel open yet."""
    dryad = TestDryad()
    async with dial(farm.port, dryad) as link:
        await link.peer.call(ENROL, {"token": farm.token()})
    conn = await ssh(farm.port, dryad.uuid, dryad.key)
    try:
        yield conn
    finally:
        conn.close()
        await conn.wait_closed()


Attempt = Callable[[asyncssh.SSHClientConnection, int], Awaitable[Any]]

ATTEMPTS: dict[str, Attempt] = {
    "shell": lambda conn, port: conn.create_process(),
    "exec": lambda conn, port: conn.run("id"),
    "pty": lambda conn, port: conn.open_session(subsystem=LINK_SUBSYSTEM, term_type="xterm"),
    "sftp": lambda conn, port: conn.start_sftp_client(),
    "other subsystem": lambda conn, port: conn.open_session(subsystem="netconf"),
    "direct-tcpip": lambda conn, port: conn.open_connection("127.0.0.1", port),
    "forwarded-tcpip": lambda conn, port: conn.forward_remote_port("127.0.0.1", 0, "x", 1),
    "unix socket": lambda conn, port: conn.open_unix_connection("/run/dbus/system_bus_socket"),
}


@pytest.mark.parametrize("what", ATTEMPTS)
async def test_everything_but_the_link_subsystem_is_refused(
    farm: LinkFarm, enrolled: asyncssh.SSHClientConnection, what: str
) -> None:
    with pytest.raises((asyncssh.ChannelOpenError, asyncssh.ChannelListenError)):
        await ATTEMPTS[what](enrolled, farm.port)


async def test_one_connection_carries_one_link_channel(
    enrolled: asyncssh.SSHClientConnection,
) -> None:
    await enrolled.open_session(subsystem=LINK_SUBSYSTEM, encoding=None)
    with pytest.raises(asyncssh.ChannelOpenError):
        await enrolled.open_session(subsystem=LINK_SUBSYSTEM, encoding=None)
