"""A coordinator's calls to its peers: each failure is the exception its handling needs
(a peer that is gone, one that is slow, a lost answer), every call is counted by whom it
went to, route and result with its latency, per process, on the leader's /metrics and a
follower's; and no call logs a line at INFO once logging is configured."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from coordinator import logs
from coordinator.assembly import Parts, assemble
from coordinator.link.peerclient import PeerClient, PeerDown, PeerTimedOut, PeerUnreachable
from coordinator.link.peerfigures import route_of
from coordinator.settings import Settings
from coordinator.store.sql import SqlStore

pytestmark = pytest.mark.anyio

SECRET = "5a" * 32
PEER = "http://peer:8487"


def answering(status: int, body: bytes = b'{"result": null}') -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(status, content=body))


def failing(exc: Exception) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return httpx.MockTransport(handler)


def sample(peers: PeerClient, name: str, **labels: str) -> float | None:
    registry = CollectorRegistry()
    registry.register(peers.figures)
    return registry.get_sample_value(name, labels)


@pytest.mark.parametrize(
    ("transport", "raised", "result"),
    [
        (answering(200), None, "ok"),
        (answering(204, b""), None, "ok"),
        (answering(403, b'{"error": "forbidden"}'), None, "refused"),
        (answering(503, b'{"error": "farm-lost"}'), None, "refused"),
        (answering(200, b"<html>"), PeerUnreachable, "lost"),
        (failing(httpx.ConnectError("connection refused")), PeerDown, "unreachable"),
        (failing(httpx.ConnectTimeout("timed out")), PeerTimedOut, "timeout"),
        (failing(httpx.ReadTimeout("timed out")), PeerTimedOut, "timeout"),
        (failing(httpx.ReadError("connection reset")), PeerUnreachable, "lost"),
        (failing(httpx.RemoteProtocolError("disconnected")), PeerUnreachable, "lost"),
    ],
)
async def test_each_call_is_counted_by_its_result(
    transport: httpx.MockTransport, raised: type[Exception] | None, result: str
) -> None:
    peers = PeerClient(SECRET, transport)
    try:
        if raised is None:
            await peers.send("POST", PEER, "/peer/v1/dryads/x/release", {}, 1.0)
        else:
            with pytest.raises(raised) as caught:
                await peers.send("POST", PEER, "/peer/v1/dryads/x/release", {}, 1.0)
            assert type(caught.value) is raised  # a lost answer is not a peer that is down
    finally:
        await peers.aclose()
    counted = "boruta_peer_calls_total"
    assert sample(peers, counted, to="holder", route="dryads", result=result) == 1
    others = {"ok", "refused", "unreachable", "timeout", "lost"} - {result}
    for other in others:
        assert sample(peers, counted, to="holder", route="dryads", result=other) is None
    timed = "boruta_peer_call_duration_seconds_count"
    assert sample(peers, timed, to="holder", route="dryads") == 1


@pytest.mark.parametrize(
    ("path", "where"),
    [
        ("/peer/v1/holders", ("leader", "holders")),
        ("/peer/v1/links/u/register", ("leader", "links")),
        ("/peer/v1/enrol/u", ("leader", "enrol")),
        ("/peer/v1/dryads/u/prepare", ("holder", "dryads")),
        ("/peer/v1/tunnels/7", ("holder", "tunnels")),
        ("/peer/v1/whatever/7", ("holder", "other")),
        ("/elsewhere", ("holder", "other")),
    ],
)
def test_each_path_has_a_bounded_route_label(path: str, where: tuple[str, str]) -> None:
    assert route_of(path) == where


async def test_the_help_says_the_figures_are_per_process() -> None:
    peers = PeerClient(SECRET, answering(200))
    await peers.send("PUT", PEER, "/peer/v1/holders", {}, 1.0)
    await peers.aclose()
    registry = CollectorRegistry()
    registry.register(peers.figures)
    text = generate_latest(registry).decode()
    assert "# HELP boruta_peer_calls_total" in text and "per process, not farm-wide" in text
    assert 'boruta_peer_calls_total{result="ok",route="holders",to="leader"} 1.0' in text


async def test_the_leaders_metrics_show_its_peer_calls(store: SqlStore) -> None:
    peers = PeerClient(SECRET, answering(200))
    settings = replace(Settings(), link="", tunnel_mode="none")
    coordinator = assemble(settings, Parts(store, peers=peers))
    await peers.send("POST", PEER, "/peer/v1/tunnels/7", {}, 1.0)
    await peers.aclose()
    text = coordinator.metrics.exposition().decode()
    assert 'boruta_peer_calls_total{result="ok",route="tunnels",to="holder"} 1.0' in text


@pytest.fixture
def levels() -> Iterator[None]:
    """The quiet loggers' levels, restored after the test."""
    before = {name: logging.getLogger(name).level for name in logs.QUIET}
    yield
    for name, level in before.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture
def configured(levels: None) -> None:
    """The process's logging as ``serve`` configures it."""
    logs.configure(logging.INFO)


async def test_httpx_would_log_each_call_at_info(
    levels: None, caplog: pytest.LogCaptureFixture
) -> None:
    """What the configuration silences (so the next test could fail)."""
    caplog.set_level(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.NOTSET)
    peers = PeerClient(SECRET, answering(200))
    await peers.send("PUT", PEER, "/peer/v1/holders", {}, 1.0)
    await peers.aclose()
    assert any(r.name == "httpx" and r.levelno == logging.INFO for r in caplog.records)


async def test_a_peer_call_logs_nothing_at_info(
    configured: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the root's level: each quiet logger keeps its own
    peers = PeerClient(SECRET, answering(200))
    await peers.send("PUT", PEER, "/peer/v1/holders", {}, 1.0)
    await peers.send("POST", PEER, "/peer/v1/links/u/panel", {}, 1.0)
    await peers.aclose()
    noisy = [r for r in caplog.records if r.name.startswith(("httpx", "httpcore"))]
    assert noisy == []
