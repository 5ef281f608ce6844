"""A coordinator at a 1,024 open-file limit keeps serving well-behaved clients through
floods of idle, slow and never-reading connections, and says so in a few log lines."""

from __future__ import annotations

import asyncio
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
ESTABLISHED, CLOSE_WAIT = "01", "08"  # socket states in /proc/net/tcp


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


async def _create_requests(url: str, token: str, n: int) -> list[int]:
    headers = {"Authorization": f"Bearer {token}"}
    todo = iter(range(n))
    statuses: list[int] = []
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:

        async def lane() -> None:
            for _ in todo:
                made = await http.post("/api/v1/reqs/", json={"Priority": 8, "Caps": {"x": "y"}})
                statuses.append(made.status_code)

        await asyncio.gather(*(lane() for _ in range(8)))
    return statuses


def _never_reading_stream(host: str, port: int, token: str) -> socket.socket:
    """An event-stream subscriber that never reads what it subscribed to."""
    s = socket.create_connection((host, port), source_address=(FLOOD_ADDRESSES[5], 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(
        f"GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    return s


def _closed_by_server(s: socket.socket, timeout: float) -> bool:
    """Whether the server closed its end of ``s`` within ``timeout`` seconds, seen from
    the server's side in /proc/net/tcp: reading would unblock a stalled answer, and a
    reset towards a client whose receive window is shut never reaches it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _server_end_open(s):
            return True
        time.sleep(0.05)  # polling a condition, with a deadline
    return False


def _server_end_open(s: socket.socket) -> bool:
    try:
        client_ip, client_port = s.getsockname()[:2]
        server_ip, server_port = s.getpeername()[:2]
    except OSError:
        return False  # the reset reached the client: not connected any more
    local, remote = _hex_address(server_ip, server_port), _hex_address(client_ip, client_port)
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[2] == remote:
            return fields[3] in (ESTABLISHED, CLOSE_WAIT)  # anything else: closed by it
    return False


def _hex_address(ip: str, port: int) -> str:
    """An IPv4 address as /proc/net/tcp spells it (little-endian address, big-endian port)."""
    return socket.inet_aton(ip)[::-1].hex().upper() + f":{port:04X}"


def test_good_clients_are_served_through_floods_and_the_log_stays_short(
    guarded: tuple[Coordinator, str], tmp_path: Path
) -> None:
    coordinator, token = guarded
    parts = urlsplit(coordinator.url)
    host, port = parts.hostname or "", parts.port or 0
    stalled_stream = _never_reading_stream(host, port, token)
    # A list long enough to stall writes, and 2,000 events the stream never takes.
    assert asyncio.run(_create_requests(coordinator.url, token, 1000)) == [201] * 1000
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
        # The server pushes back: it evicts idle connections for new ones at its limit,
        # and ends each within the header timeout (2 s) at the latest.
        deadline = time.monotonic() + 60
        while flood.closed_by_server == 0 and time.monotonic() < deadline:
            time.sleep(0.05)  # polling a condition, with a deadline
        assert flood.closed_by_server > 0
    # Slow headers and unread answers end within their timeouts (2 s), not never.
    assert all(_closed_by_server(s, 30) for s in slow)
    assert all(_closed_by_server(s, 30) for s in unread)
    # The stream that never reads is dropped once the kernel's capped buffer and the
    # transport's are full and the send timeout passes: a bounded number of events.
    events = 2000
    while not _closed_by_server(stalled_stream, 3):
        assert events < 10_000, "a subscriber that never reads was never dropped"
        assert asyncio.run(_create_requests(coordinator.url, token, 250)) == [201] * 250
        events += 500
    for s in [*slow, *unread, stalled_stream]:
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
