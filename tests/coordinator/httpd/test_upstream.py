"""The follower's connections to its leader: kept alive and reused, bounded, and every way
an answer can end (length, chunks, the connection's end, a HEAD's head) read right."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import pytest
from starlette.types import Receive, Scope, Send

from coordinator.httpd import upstream as upstream_module
from coordinator.httpd.upstream import Cut, Lost, Malformed, Unreachable, Upstream
from tests.coordinator.uvicorn_server import serving

pytestmark = pytest.mark.anyio


async def ports(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with the client's port: the connection the request came on."""
    await receive()
    body = str(scope["client"][1]).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def read(pool: Upstream, method: bytes = b"GET", target: bytes = b"/") -> bytes:
    answer = await pool.request(method, target, [(b"host", b"leader")], b"")
    try:
        return b"".join([chunk async for chunk in answer.body()])
    finally:
        answer.close()


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


async def test_a_connection_is_kept_alive_and_reused() -> None:
    async with serving(ports) as url:
        pool = Upstream(*address(url), size=4, keepalive=5.0)
        used = {await read(pool) for _ in range(5)}
        pool.close()
    assert len(used) == 1


async def test_an_idle_connection_past_its_keepalive_is_not_reused() -> None:
    async with serving(ports) as url:
        pool = Upstream(*address(url), size=4, keepalive=0.0)
        used = {await read(pool) for _ in range(3)}
        pool.close()
    assert len(used) == 3


async def test_a_head_answer_has_no_body_whatever_its_length_says() -> None:
    async with serving(ports) as url:
        pool = Upstream(*address(url), size=4, keepalive=5.0)
        with anyio.fail_after(10):
            assert await read(pool, b"HEAD") == b""
            assert await read(pool) != b""  # and the next request works
        pool.close()


@contextmanager
def raw_leader(answer: bytes, close: bool = True) -> Iterator[tuple[str, int]]:
    """A leader that reads one request and sends ``answer`` (then closes)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)
            conn.sendall(answer)
            if not close:
                conn.recv(1)  # until the other end closes

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[:2]
    finally:
        listener.close()
        thread.join(10)


async def test_a_body_ended_by_the_connection_is_whole() -> None:
    with raw_leader(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nhello, all of it") as at:
        pool = Upstream(*at, size=1, keepalive=5.0)
        assert await read(pool) == b"hello, all of it"


async def test_an_answer_shorter_than_its_length_is_cut() -> None:
    with raw_leader(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nten bytes.") as at:
        pool = Upstream(*at, size=1, keepalive=5.0)
        with pytest.raises(Cut):
            await read(pool)


async def test_chunks_without_their_end_are_cut() -> None:
    answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n"
    with raw_leader(answer) as at:
        pool = Upstream(*at, size=1, keepalive=5.0)
        with pytest.raises(Cut):
            await read(pool)


@pytest.mark.parametrize("answer", [b"", b"NOT HTTP AT ALL\r\n\r\n", b"HTTP/1.1 200 OK\r\n"])
async def test_no_head_or_a_broken_one_is_lost(answer: bytes) -> None:
    with raw_leader(answer) as at:
        pool = Upstream(*at, size=1, keepalive=5.0)
        with pytest.raises(Lost):
            await read(pool, b"POST")


async def test_a_refused_connection_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pool = Upstream("127.0.0.1", port, size=1, keepalive=5.0)
    with pytest.raises(Unreachable):
        await read(pool)


async def test_a_full_pool_makes_the_next_request_wait_then_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(upstream_module, "POOL_TIMEOUT", 0.2)
    with raw_leader(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", close=False) as at:
        pool = Upstream(*at, size=1, keepalive=5.0)
        held = await pool.request(b"GET", b"/", [], b"")  # its body never comes
        with pytest.raises(Unreachable, match="too many requests in flight"):
            await pool.request(b"GET", b"/", [], b"")
        held.close()


@pytest.mark.parametrize(
    ("method", "target", "headers"),
    [
        (b"GET", b"/a\r\nx: y", []),
        (b"GET", b"/ok", [(b"x-bad", b"line\r\nbreak")]),
        (b"GET", b"/ok", [(b"bad name", b"v")]),
        (b"GE T", b"/ok", []),
        (b"GET", b"no-slash", []),
    ],
)
async def test_what_http_cannot_carry_is_refused_before_sending(
    method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    pool = Upstream("127.0.0.1", 9, size=1, keepalive=5.0)  # never dialled
    with pytest.raises(Malformed):
        await pool.request(method, target, headers, b"")
