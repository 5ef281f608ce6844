"""A coordinator at a 1,024 open-file limit keeps serving well-behaved clients through
floods of idle, slow and never-reading connections, and says so in a few log lines."""

from __future__ import annotations

import resource
import selectors
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.coordinators import Coordinator, client, run_cli, start

pytestmark = pytest.mark.e2e

FLOOD_ADDRESSES = [f"127.0.0.{n}" for n in range(2, 32)]  # loopback: any 127/8 source works
HELD = 2000  # idle connections the flood keeps open from its side
REOPEN_PER_SECOND = 200
TCP_CLOSE, TCP_CLOSE_WAIT = 7, 8  # tcpi_state after a reset, and after the peer's FIN


@pytest.fixture
def guarded(tmp_path: Path, coordinators: list[Coordinator]) -> tuple[Coordinator, str]:
    # Short timeouts so the test sees them fire; the limits are the defaults' shape.
    config = tmp_path / "coordinator.toml"
    config.write_text("http_header_timeout = 2\nhttp_send_timeout = 2\nhttp_max_per_client = 64\n")
    db = tmp_path / "boruta.db"
    token = run_cli(db, "user", "add", "ci").splitlines()[-1]
    started = start(db, tmp_path / "coordinator.log", "", "--config", str(config), nofile=1024)
    coordinators.append(started)
    return started, token


@pytest.fixture(autouse=True)
def many_descriptors_here() -> Iterator[None]:
    """The test process itself holds thousands of sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class Flood:
    """Holds ``HELD`` connections that never send a byte, re-opening those the server
    closes at up to ``REOPEN_PER_SECOND``, as a slow-connection attack tool does."""

    def __init__(self, host: str, port: int) -> None:
        self.where = (host, port)
        self.opened = 0
        self.closed_by_server = 0
        self._watch = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Flood:
        for _ in range(HELD):
            self._open()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        for key in list(self._watch.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._watch.close()

    def _open(self) -> None:
        s = socket.socket()
        s.setblocking(False)
        s.bind((FLOOD_ADDRESSES[self.opened % len(FLOOD_ADDRESSES)], 0))
        s.connect_ex(self.where)
        self._watch.register(s, selectors.EVENT_READ)
        self.opened += 1

    def _run(self) -> None:
        budget = 0.0
        while not self._stop.is_set():
            budget = min(budget + REOPEN_PER_SECOND * 0.1, REOPEN_PER_SECOND)
            for key, _ in self._watch.select(timeout=0.1):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                self._watch.unregister(sock)
                sock.close()  # readable with nothing sent: the server closed it
                self.closed_by_server += 1
                if budget >= 1:
                    budget -= 1
                    self._open()


def _slow_headers(host: str, port: int, n: int) -> list[socket.socket]:
    """Connections that start a request and never finish its headers."""
    out = []
    for i in range(n):
        s = socket.create_connection((host, port), source_address=(FLOOD_ADDRESSES[i % 3], 0))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        out.append(s)
    return out


def _never_reading(host: str, port: int, token: str, n: int) -> list[socket.socket]:
    """Connections that ask for a long list many times and never read an answer: more
    than the kernel's buffers hold, so the server's writes stall."""
    out = []
    ask = f"POST /api/v1/reqs/list HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
    asks = (ask + "Content-Length: 0\r\n\r\n").encode() * 200
    for i in range(n):
        s = socket.create_connection((host, port), source_address=(FLOOD_ADDRESSES[-1 - i % 3], 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(asks)  # about 30 KB: the server's receive buffer takes it all
        out.append(s)
    return out


def _closed_by_server(s: socket.socket, timeout: float) -> bool:
    """Whether the server closed ``s`` (FIN or reset) within ``timeout`` seconds, seen in
    the socket's TCP state so that nothing is read (reading would unblock a response)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
        if state in (TCP_CLOSE, TCP_CLOSE_WAIT):
            return True
        time.sleep(0.05)  # polling a condition, with a deadline
    return False


def test_good_clients_are_served_through_floods_and_the_log_stays_short(
    guarded: tuple[Coordinator, str], tmp_path: Path
) -> None:
    coordinator, token = guarded
    parts = urlsplit(coordinator.url)
    host, port = parts.hostname or "", parts.port or 0
    with client(coordinator.url, token) as setup:  # a list long enough to stall writes
        for _ in range(300):
            answer = setup.post("/api/v1/reqs/", json={"Priority": 8, "Caps": {"x": "y"}})
            assert answer.status_code == 201
    slow = _slow_headers(host, port, 30)
    unread = _never_reading(host, port, token, 10)
    with Flood(host, port) as flood:
        for _ in range(40):
            # A patient client: SYNs the full accept queue dropped are sent again at 1,
            # 3, 7 … s; under a flood that is what a well-behaved client lives with.
            with client(coordinator.url, token) as good:
                good.timeout = httpx.Timeout(60)
                assert good.get("/healthz").status_code == 200
                answer = good.post("/api/v1/reqs/", json={"Priority": 8, "Caps": {"x": "y"}})
                assert answer.status_code == 201, answer.text
                assert good.post("/api/v1/reqs/list").status_code == 200
        assert flood.closed_by_server > 0  # the server had to push back meanwhile
    # Slow headers and unread answers end within their timeouts (2 s), not never.
    assert all(_closed_by_server(s, 30) for s in slow)
    assert all(_closed_by_server(s, 30) for s in unread)
    for s in slow + unread:
        s.close()
    assert coordinator.process.poll() is None
    with client(coordinator.url, token) as good:
        assert good.get("/healthz").status_code == 200
    coordinator.process.terminate()  # the last summary is written at the stop
    assert coordinator.process.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises it
    log = (tmp_path / "coordinator.log").read_text()
    assert "http: closed connections:" in log
    assert "too slow to send a request" in log and "not reading a response" in log
    assert "Traceback" not in log
    complaints = [line for line in log.splitlines() if " WARNING " in line or " ERROR " in line]
    assert len(complaints) < 5, complaints  # a summary per interval, not a line per socket
    assert "open files: limit 1024" in log
