"""The relay thread: bytes both ways, half-closes, resets, flow control, groups, many pairs."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from coordinator.wire import relay as relay_module
from coordinator.wire.relay import Relay, splice_available

MIB = 1 << 20


def eventually(check: Callable[[], Any], seconds: float = 10.0) -> Any:
    deadline = time.monotonic() + seconds
    while not (value := check()):
        assert time.monotonic() < deadline, f"not within {seconds} s"
        time.sleep(0.005)
    return value


def tcp_pair(listener: socket.socket) -> tuple[socket.socket, socket.socket]:
    """A connected (client, server) pair of loopback TCP sockets."""
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    for sock in (client, server):
        sock.settimeout(10)
    return client, server


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0), backlog=1024) as sock:
        yield sock


@pytest.fixture(params=[True, False], ids=["splice", "copy"])
def relay(request: pytest.FixtureRequest) -> Iterator[Relay]:
    if request.param and not splice_available():
        pytest.fail("splice is expected on the Linux machines this runs on")
    r = Relay("test-relay", splice=request.param)
    r.start()
    yield r
    r.stop()


class Ends:
    """A user's socket and a far (sshd's) socket, whose inner ends the relay joins."""

    def __init__(self, relay: Relay, listener: socket.socket, group: object = None) -> None:
        self.user, inner_user = tcp_pair(listener)
        inner_far, self.far = tcp_pair(listener)
        relay.add(inner_user, inner_far, group)

    def close(self) -> None:
        self.user.close()
        self.far.close()


def read_exactly(sock: socket.socket, n: int) -> bytes:
    got = bytearray()
    while len(got) < n:
        chunk = sock.recv(min(MIB, n - len(got)))
        assert chunk, f"end of stream after {len(got)} of {n} bytes"
        got += chunk
    return bytes(got)


def read_to_end(sock: socket.socket) -> bytes:
    got = bytearray()
    while chunk := sock.recv(MIB):
        got += chunk
    return bytes(got)


def test_bulk_bytes_go_both_ways_at_once_unchanged(relay: Relay, listener: socket.socket) -> None:
    ends = Ends(relay, listener)
    up = bytes(range(256)) * (32 * 1024)  # 8 MiB: more than every buffer on the way
    down = up[::-1]
    sent = threading.Thread(target=ends.far.sendall, args=(down,))
    sent.start()
    writer = threading.Thread(target=ends.user.sendall, args=(up,))
    writer.start()
    assert read_exactly(ends.far, len(up)) == up
    assert read_exactly(ends.user, len(down)) == down
    sent.join()
    writer.join()
    ends.close()
    eventually(lambda: relay.count() == 0)


def test_the_users_half_close_reaches_the_far_end_which_may_still_answer(
    relay: Relay, listener: socket.socket
) -> None:
    ends = Ends(relay, listener)
    ends.user.sendall(b"request")
    ends.user.shutdown(socket.SHUT_WR)
    assert read_to_end(ends.far) == b"request"  # EOF arrives after the data
    ends.far.sendall(b"answer after the user's EOF")
    assert read_exactly(ends.user, 27) == b"answer after the user's EOF"
    assert relay.count() == 1  # half-open: still relayed
    ends.far.shutdown(socket.SHUT_WR)
    assert ends.user.recv(10) == b""
    eventually(lambda: relay.count() == 0)  # both directions ended: closed
    ends.close()


def test_the_far_ends_half_close_reaches_the_user_who_may_still_send(
    relay: Relay, listener: socket.socket
) -> None:
    ends = Ends(relay, listener)
    ends.far.sendall(b"banner")
    ends.far.shutdown(socket.SHUT_WR)
    assert read_to_end(ends.user) == b"banner"
    ends.user.sendall(b"still talking")
    assert read_exactly(ends.far, 13) == b"still talking"
    ends.user.shutdown(socket.SHUT_WR)
    assert ends.far.recv(10) == b""
    eventually(lambda: relay.count() == 0)
    ends.close()


def reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.parametrize("side", ["user", "far"])
def test_a_reset_on_one_side_resets_the_other(
    relay: Relay, listener: socket.socket, side: str
) -> None:
    ends = Ends(relay, listener)
    ends.user.sendall(b"x")
    assert ends.far.recv(1) == b"x"  # relayed, so both inner sockets are up
    gone, other = (ends.user, ends.far) if side == "user" else (ends.far, ends.user)
    reset(gone)
    with pytest.raises(ConnectionResetError):
        while other.recv(MIB):  # a reset, not a clean end of stream
            pass
    eventually(lambda: relay.count() == 0)
    other.close()


def test_a_slow_reader_holds_the_sender_back_and_loses_nothing(
    relay: Relay, listener: socket.socket
) -> None:
    ends = Ends(relay, listener)
    payload = bytes(range(251)) * (64 * 1024 // 251 * 1024)  # ~64 MiB, never all buffered
    ends.user.settimeout(2)
    sent = 0
    with pytest.raises(TimeoutError):  # the far end reads nothing: the user must block
        while sent < len(payload):
            sent += ends.user.send(payload[sent : sent + MIB])
    assert sent < len(payload)
    assert read_exactly(ends.far, sent) == payload[:sent]
    ends.close()


def test_closing_a_group_closes_its_pairs_mid_transfer_and_no_other(
    relay: Relay, listener: socket.socket
) -> None:
    job = [Ends(relay, listener, group="job-1") for _ in range(3)]
    other = Ends(relay, listener, group="job-2")
    eventually(lambda: relay.count("job-1") == 3)
    job[0].user.sendall(b"y" * MIB)  # bytes in flight
    relay.close_group("job-1")
    for ends in job:
        for sock in (ends.user, ends.far):
            ends_promptly(sock)  # within the socket's 10 s timeout, not at a keepalive
    assert relay.count("job-1") == 0
    other.user.sendall(b"unaffected")
    assert read_exactly(other.far, 10) == b"unaffected"
    for ends in (*job, other):
        ends.close()


def ends_promptly(sock: socket.socket) -> None:
    """Read to the end: a clean end, or a reset where unread data was discarded."""
    try:
        read_to_end(sock)
    except ConnectionResetError:
        pass


def test_many_pairs_at_once(relay: Relay, listener: socket.socket) -> None:
    pairs = [Ends(relay, listener) for _ in range(300)]
    for i, ends in enumerate(pairs):
        ends.user.sendall(f"hello {i}".encode())
    for i, ends in enumerate(pairs):
        message = f"hello {i}".encode()
        assert read_exactly(ends.far, len(message)) == message
        ends.far.sendall(message[::-1])
    for i, ends in enumerate(pairs):
        assert read_exactly(ends.user, len(f"hello {i}")) == f"hello {i}".encode()[::-1]
        ends.close()
    eventually(lambda: relay.count() == 0)


def test_stop_closes_every_pair(listener: socket.socket) -> None:
    relay = Relay()
    relay.start()
    ends = Ends(relay, listener)
    eventually(lambda: relay.count() == 1)
    relay.stop()
    assert ends.user.recv(10) == b""
    assert relay.count() == 0
    relay.stop()  # idempotent
    late = Ends(relay, listener)  # added after stop: closed, never leaked
    assert late.user.recv(10) == b""
    ends.close()
    late.close()


def test_without_pipes_to_spare_it_copies_in_python(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    class NoPipe(relay_module._Pipe):
        def __init__(self) -> None:
            raise OSError(24, "Too many open files")

    monkeypatch.setattr(relay_module, "_Pipe", NoPipe)
    relay = Relay(splice=True)
    relay.start()
    try:
        ends = Ends(relay, listener)
        payload = bytes(range(256)) * 4096  # 1 MiB
        ends.user.sendall(payload)
        assert read_exactly(ends.far, len(payload)) == payload
        ends.close()
    finally:
        relay.stop()
