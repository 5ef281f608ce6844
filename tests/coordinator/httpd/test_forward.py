"""A follower's forwarding: requests reach the leader whole, answers come back as they come,
a client gone closes the upstream request, and a leader away or broken is never hidden."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from starlette.types import Message, Receive, Scope, Send

from coordinator.errors import ERROR_CODE_HEADER
from coordinator.httpd.forward import Forwarder, Leader, Pool
from tests.coordinator.uvicorn_server import serving

pytestmark = pytest.mark.anyio

SECRET = "ab" * 32


class Upstream:
    """A small leader: echoes what it got, streams on demand, breaks off on demand."""

    def __init__(self) -> None:
        self.release = anyio.Event()  # /stream's second chunk waits for this
        self.gone = anyio.Event()  # /forever's client went away
        self.seen: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        seen = {
            "method": scope["method"],
            "path": scope["path"],
            "raw_path": scope["raw_path"].decode(),
            "query": scope["query_string"].decode(),
            "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]],
            "body": body.decode("latin-1"),
        }
        self.seen.append(seen)
        path = scope["path"]
        if path == "/stream":
            await _start(send, [(b"content-type", b"text/event-stream")])
            await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
            await self.release.wait()
            await send({"type": "http.response.body", "body": b"data: 2\n\n", "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        elif path == "/forever":
            await _start(send, [(b"content-type", b"text/event-stream")])
            await send({"type": "http.response.body", "body": b": hello\n\n", "more_body": True})
            while (await receive())["type"] != "http.disconnect":
                pass
            self.gone.set()
        elif path == "/no-head-yet":  # as acquire_worker?wait= before its match
            while (await receive())["type"] != "http.disconnect":
                pass
            self.gone.set()
        elif path == "/cut-chunked":
            await _start(send, [])
            await send({"type": "http.response.body", "body": b"half", "more_body": True})
            # Returning without the answer's end: uvicorn closes the connection.
        elif path == "/cut-length":
            await _start(send, [(b"content-length", b"100")])
            await send({"type": "http.response.body", "body": b"ten bytes.", "more_body": True})
        else:
            answer = json.dumps(seen).encode()
            await _start(
                send,
                [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(answer)).encode()),
                    (b"x-leader", b"yes"),
                    (b"connection", b"x-private"),  # names a hop-by-hop header
                    (b"x-private", b"not for the client"),
                ],
                status=201 if scope["method"] == "POST" else 200,
            )
            await send({"type": "http.response.body", "body": answer})


async def _start(send: Send, headers: list[tuple[bytes, bytes]], status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})


@asynccontextmanager
async def chain(
    upstream: Any = None, leader_url: str | None = None, max_body: int = 1 << 20
) -> AsyncIterator[tuple[str, Forwarder]]:
    """The forwarder served on a free port, forwarding to ``upstream`` served too."""
    if leader_url is not None:
        forwarder = Forwarder(lambda: Leader(leader_url, SECRET), max_body, Pool(8, 2.0))
        async with serving(forwarder) as url:
            yield url, forwarder
        await forwarder.stop()
        return
    async with serving(upstream) as leader:
        forwarder = Forwarder(lambda: Leader(leader, SECRET), max_body, Pool(8, 2.0))
        async with serving(forwarder) as url:
            yield url, forwarder
        await forwarder.stop()


async def test_a_request_reaches_the_leader_whole_and_its_answer_comes_back() -> None:
    upstream = Upstream()
    async with chain(upstream) as (url, forwarder), httpx.AsyncClient() as client:
        answer = await client.post(
            f"{url}/api/v1/reqs/?x=1&y=%2F",
            content=b'{"Priority": 4}',
            headers={"Authorization": "Bearer t", "Content-Type": "application/json"},
        )
    assert answer.status_code == 201
    assert answer.headers["x-leader"] == "yes"
    assert "x-private" not in answer.headers  # hop-by-hop: named by the leader's Connection
    seen = answer.json()
    assert (seen["method"], seen["path"], seen["query"]) == ("POST", "/api/v1/reqs/", "x=1&y=%2F")
    assert seen["body"] == '{"Priority": 4}'
    headers = dict(seen["headers"])
    assert headers["authorization"] == "Bearer t"
    assert headers["content-type"] == "application/json"
    assert headers["boruta-peer"] == SECRET
    assert headers["boruta-peer-client"] == "127.0.0.1"
    assert headers["host"] == url.removeprefix("http://")  # the client's, for its links
    assert forwarder.answered["2xx"] == 1


async def test_a_client_cannot_smuggle_peer_or_hop_by_hop_headers() -> None:
    upstream = Upstream()
    async with chain(upstream) as (url, _), httpx.AsyncClient() as client:
        answer = await client.get(
            f"{url}/api/v1/version",
            headers=[
                ("Boruta-Peer", "guessed"),
                ("Boruta-Peer-Client", "6.6.6.6"),
                ("Boruta-Peer-Other", "x"),
                ("Connection", "keep-alive, X-Hop"),
                ("X-Hop", "dropped"),
                ("TE", "trailers"),
                ("X-Kept", "kept"),
            ],
        )
    names = [n for n, _ in answer.json()["headers"]]
    headers = dict(answer.json()["headers"])
    assert names.count("boruta-peer") == 1 and headers["boruta-peer"] == SECRET
    assert names.count("boruta-peer-client") == 1 and headers["boruta-peer-client"] == "127.0.0.1"
    assert "boruta-peer-other" not in names
    assert not {"x-hop", "te"} & set(names)
    assert headers["x-kept"] == "kept"


async def test_an_event_stream_flows_chunk_by_chunk() -> None:
    upstream = Upstream()
    async with chain(upstream) as (url, _), httpx.AsyncClient() as client:
        async with client.stream("GET", f"{url}/stream") as answer:
            assert answer.headers["content-type"] == "text/event-stream"
            chunks = answer.aiter_raw()
            with anyio.fail_after(10):  # the first chunk, while the leader holds the second
                assert await chunks.__anext__() == b"data: 1\n\n"
            upstream.release.set()
            rest = b"".join([c async for c in chunks])
    assert rest == b"data: 2\n\n"


async def test_a_client_that_goes_away_closes_the_upstream_request() -> None:
    upstream = Upstream()
    async with chain(upstream) as (url, _), httpx.AsyncClient() as client:
        async with client.stream("GET", f"{url}/forever") as answer:
            with anyio.fail_after(10):
                assert await answer.aiter_raw().__anext__() == b": hello\n\n"
        with anyio.fail_after(10):
            await upstream.gone.wait()


async def test_a_client_that_goes_away_before_the_answers_head_closes_the_upstream_request() -> (
    None
):
    upstream = Upstream()
    async with chain(upstream) as (url, _), httpx.AsyncClient() as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(
                f"{url}/no-head-yet", content=b"{}", timeout=httpx.Timeout(5, read=0.5)
            )
        with anyio.fail_after(10):
            await upstream.gone.wait()


@pytest.mark.parametrize("path", ["/cut-chunked", "/cut-length"])
async def test_an_answer_the_leader_breaks_off_is_cut_never_ended_as_whole(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    upstream = Upstream()
    async with chain(upstream) as (url, forwarder), httpx.AsyncClient() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(f"{url}{path}")
    assert forwarder.failed["cut"] == 1
    assert any("answer was broken mid-way; cut" in r.getMessage() for r in caplog.records)


async def test_a_leader_that_refuses_connections_gets_503_with_retry_after() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    async with chain(leader_url=dead) as (url, forwarder), httpx.AsyncClient() as client:
        answer = await client.post(f"{url}/api/v1/reqs/", content=b"{}")
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "1"
    assert answer.headers[ERROR_CODE_HEADER] == "leader-unreachable"
    assert answer.json()["message"].startswith("the farm is changing leader")
    assert forwarder.failed["leader-unreachable"] == 1


async def test_a_leader_that_drops_a_request_it_took_gets_502_may_be_applied() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(10)
    leader = f"http://127.0.0.1:{listener.getsockname()[1]}"

    def drop_after_reading() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.close()

    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(anyio.to_thread.run_sync, drop_after_reading)
            async with chain(leader_url=leader) as (url, forwarder), httpx.AsyncClient() as c:
                answer = await c.post(f"{url}/api/v1/reqs/", content=b"{}")
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):  # a POST is never sent twice
            listener.accept()
    finally:
        listener.close()
    assert answer.status_code == 502
    assert answer.headers[ERROR_CODE_HEADER] == "leader-answer-lost"
    assert "may have been applied" in answer.json()["message"]
    assert forwarder.failed["leader-answer-lost"] == 1


async def test_no_leader_known_gets_503_and_a_body_too_large_gets_413() -> None:
    forwarder = Forwarder(lambda: None, 10, Pool(2, 1.0))
    async with serving(forwarder) as url, httpx.AsyncClient() as client:
        answer = await client.get(f"{url}/api/v1/reqs/1")
        assert (answer.status_code, answer.headers["Retry-After"]) == (503, "1")
    await forwarder.stop()
    upstream = Upstream()
    async with chain(upstream, max_body=10) as (url, forwarder), httpx.AsyncClient() as client:
        answer = await client.post(f"{url}/api/v1/reqs/", content=b"x" * 11)
        assert answer.status_code == 413
        assert answer.headers[ERROR_CODE_HEADER] == "body-too-large"
        assert upstream.seen == []  # nothing of it reached the leader
        ok = await client.post(f"{url}/api/v1/reqs/", content=b"x" * 10)
        assert ok.status_code == 201


async def test_stopping_cuts_the_streams_being_forwarded() -> None:
    upstream = Upstream()
    async with chain(upstream) as (url, forwarder), httpx.AsyncClient() as client:
        async with client.stream("GET", f"{url}/forever") as answer:
            chunks = answer.aiter_raw()
            with anyio.fail_after(10):
                await chunks.__anext__()
            await forwarder.stop()
            with pytest.raises(httpx.RemoteProtocolError), anyio.fail_after(10):
                async for _ in chunks:
                    pass
    assert forwarder.failed["stopped"] == 1


# ---- hostile input: whatever a client sends, the leader gets one secret, no hop header ----

_TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)
_VALUE = st.binary(max_size=40).map(
    lambda b: bytes(c for c in b if c >= 0x20 and c != 0x7F).strip()
)


@pytest.fixture
async def echoed() -> AsyncIterator[tuple[Upstream, Forwarder]]:
    upstream = Upstream()
    async with serving(upstream) as leader:
        forwarder = Forwarder(lambda: Leader(leader, SECRET), 1 << 20, Pool(2, 1.0))
        yield upstream, forwarder
        await forwarder.stop()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    headers=st.lists(st.tuples(_TOKEN.map(str.encode), _VALUE), max_size=12),
    path=st.text(min_size=0, max_size=30).map(lambda t: "/" + t),
)
async def test_whatever_a_client_sends_the_leader_gets_one_secret_and_no_hop_header(
    echoed: tuple[Upstream, Forwarder], headers: list[tuple[bytes, bytes]], path: str
) -> None:
    upstream, forwarder = echoed
    upstream.seen.clear()
    sent: list[Message] = []
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogatepass"),
        "query_string": b"",
        "headers": headers,
        "client": ("10.1.2.3", 5555),
    }
    messages = iter([{"type": "http.request", "body": b"", "more_body": False}])

    async def receive() -> Message:
        try:
            return next(messages)
        except StopIteration:
            await anyio.sleep_forever()
            raise AssertionError("unreachable") from None

    async def send(message: Message) -> None:
        sent.append(message)

    with anyio.fail_after(10):
        await forwarder(scope, receive, send)
    status = sent[0]["status"]
    if not upstream.seen:  # refused here or by the leader's parser, with a clear answer
        assert status == 400
        return
    assert status == 200
    got = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in upstream.seen[0]["headers"]]
    names = [n for n, _ in got]
    assert names.count(b"boruta-peer") == 1 and dict(got)[b"boruta-peer"] == SECRET.encode()
    assert dict(got)[b"boruta-peer-client"] == b"10.1.2.3"
    assert not {b"connection", b"te", b"transfer-encoding", b"upgrade"} & set(names)
    named = {t.strip() for n, v in headers if n == b"connection" for t in v.lower().split(b",")}
    assert not (named - {b""}) & set(names) - {b"host"}
