"""The board's end of dial-back tunnels: the secret first, then the sshd relayed; failures."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import anyio
import pytest

from coordinator import wire
from dryad.agent import Agent
from dryad.dialback import DialBacks
from tests.coordinator.tunnels.test_listeners import free_ports

pytestmark = pytest.mark.anyio

SECRET = bytes(range(wire.SECRET_SIZE))


@pytest.fixture
async def sshd() -> AsyncIterator[int]:
    """A stand-in sshd: says its banner, then echoes."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-board\r\n")
        try:
            while data := await reader.read(65536):
                writer.write(data)
        except ConnectionResetError:
            pass  # closed with the banner unread (no dial-back): the kernel resets
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


@pytest.fixture
async def coordinator() -> AsyncIterator[tuple[int, asyncio.Queue[socket.socket]]]:
    """A stand-in dial-back listener: yields its port and the connections it accepted."""
    accepted: asyncio.Queue[socket.socket] = asyncio.Queue()
    listening = socket.create_server(("127.0.0.1", 0))
    listening.setblocking(False)
    loop = asyncio.get_running_loop()

    async def accept() -> None:
        while True:
            sock, _ = await loop.sock_accept(listening)
            await accepted.put(sock)

    task = loop.create_task(accept())
    yield listening.getsockname()[1], accepted
    task.cancel()
    listening.close()


@pytest.fixture
async def dialbacks(sshd: int) -> AsyncIterator[DialBacks]:
    d = DialBacks("localhost", sshd)  # a name: resolved, as a board's configuration has it
    d.start()
    yield d
    d.stop()


async def recv_exactly(sock: socket.socket, n: int) -> bytes:
    loop = asyncio.get_running_loop()
    got = b""
    with anyio.fail_after(10):
        while len(got) < n:
            chunk = await loop.sock_recv(sock, n - len(got))
            assert chunk, f"closed after {got!r}"
            got += chunk
    return got


async def test_the_dial_back_sends_the_secret_first_then_carries_the_sshd(
    dialbacks: DialBacks, coordinator: tuple[int, asyncio.Queue[socket.socket]]
) -> None:
    port, accepted = coordinator
    answer = await dialbacks.dial_back(wire.DialBack.of(port, SECRET))
    assert answer == wire.DialedBack(True)
    with anyio.fail_after(10):
        back = await accepted.get()
    assert await recv_exactly(back, wire.SECRET_SIZE) == SECRET
    assert await recv_exactly(back, 15) == b"SSH-2.0-board\r\n"
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(back, b"from the user")
    assert await recv_exactly(back, 13) == b"from the user"  # echoed by the sshd
    assert dialbacks.relay.count() == 1
    back.shutdown(socket.SHUT_WR)  # the user is done: the sshd hears it and ends too
    with anyio.fail_after(10):
        assert await loop.sock_recv(back, 10) == b""
    back.close()


async def test_an_unreachable_sshd_is_refused_so_the_user_is_told(
    coordinator: tuple[int, asyncio.Queue[socket.socket]],
) -> None:
    dead = free_ports(1)[0]
    d = DialBacks("127.0.0.1", dead)
    d.start()
    try:
        with pytest.raises(wire.RpcError) as refused:
            await d.dial_back(wire.DialBack.of(coordinator[0], SECRET))
        assert refused.value.code == wire.REFUSED
        assert refused.value.message.startswith(f"its sshd refused the connection (port {dead}")
        assert coordinator[1].empty()  # nothing dialled back for it
    finally:
        d.stop()


async def test_a_coordinator_port_it_cannot_reach_is_answered_not_dialled(
    dialbacks: DialBacks,
) -> None:
    closed = free_ports(1)[0]
    answer = await dialbacks.dial_back(wire.DialBack.of(closed, SECRET))
    assert not answer.dialled
    assert answer.reason.startswith(f"cannot connect to localhost:{closed}: ")
    assert dialbacks.relay.count() == 0


async def test_an_agent_without_dial_backs_says_so_and_the_link_carries_the_tunnel() -> None:
    nothing = object()  # the call needs no other part of the agent
    agent = Agent(nothing, nothing, nothing, nothing, coordinator="c")  # type: ignore[arg-type]
    answer = await agent.handle(wire.DIAL_BACK, wire.DialBack.of(7176, SECRET).to_wire())
    assert answer == {"dialled": False, "reason": "this dryad does not dial back"}


async def test_a_job_ending_closes_its_dial_backs(
    dialbacks: DialBacks, coordinator: tuple[int, asyncio.Queue[socket.socket]]
) -> None:
    port, accepted = coordinator
    assert (await dialbacks.dial_back(wire.DialBack.of(port, SECRET))).dialled
    with anyio.fail_after(10):
        back = await accepted.get()
    assert await recv_exactly(back, wire.SECRET_SIZE + 15) == SECRET + b"SSH-2.0-board\r\n"
    await dialbacks.end_job()  # prepare or release: the old job's sessions end
    with anyio.fail_after(10):
        assert await asyncio.get_running_loop().sock_recv(back, 10) == b""
    assert dialbacks.relay.count() == 0
    back.close()


async def test_dial_backs_go_to_the_coordinator_linked_now(
    sshd: int, coordinator: tuple[int, asyncio.Queue[socket.socket]]
) -> None:
    port, accepted = coordinator
    linked = ["127.0.0.9"]  # a coordinator the link has left: nothing listens there now
    d = DialBacks(lambda: linked[0], sshd)
    d.start()
    try:
        answer = await d.dial_back(wire.DialBack.of(port, SECRET))
        assert answer.reason.startswith(f"cannot connect to 127.0.0.9:{port}: ")
        linked[0] = "127.0.0.1"  # the link moved: the next dial-back follows it
        assert await d.dial_back(wire.DialBack.of(port, SECRET)) == wire.DialedBack(True)
        with anyio.fail_after(10):
            back = await accepted.get()
        assert await recv_exactly(back, wire.SECRET_SIZE) == SECRET
        back.close()
    finally:
        d.stop()
