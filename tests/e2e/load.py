"""A load generator through the load balancer that records every acknowledged operation,
every error and when it happened, and a reader of the event stream that resumes."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

DEVICE = "sim"
# How many times the load lists the requests, 0.2 s apart, for a create it got no answer to.
LOOKS = 5
SSH_BANNER = b"SSH-2.0-"


def banner(host: str, port: int, timeout: float = 10) -> bytes:
    """The first line a TCP connection to HOST:PORT gets (an sshd's version banner), or b""."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            data = b""
            while b"\n" not in data:
                chunk = s.recv(256)
                if not chunk:
                    break
                data += chunk
            return data
    except OSError:
        return b""


@dataclass
class Error:
    at: float  # time.monotonic()
    what: str


@dataclass
class Record:
    """What the load saw, shared by its threads (list.append is atomic)."""

    created: dict[int, datetime] = field(default_factory=dict)  # acknowledged: ReqID → marker
    adopted: dict[int, datetime] = field(default_factory=dict)  # create unanswered, but stored
    unknown: list[datetime] = field(default_factory=list)  # create unanswered, not found (yet)
    closed: list[int] = field(default_factory=list)
    prolonged: list[tuple[int, datetime]] = field(default_factory=list)  # ReqID, sent at
    quota: list[int] = field(default_factory=list)  # MaxWaiting values acknowledged
    banners: int = 0
    cycles: int = 0
    errors: list[Error] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)  # answers that are wrong at any time


class Load:
    """Threads that create, acquire, check the tunnel and close requests (``churn``), and one
    that prolongs the long jobs and sets a quota as an admin, all through ``url``."""

    def __init__(self, url: str, token: str, long_jobs: list[int], churn: int = 2) -> None:
        self.url = url
        self.token = token
        self.long_jobs = long_jobs
        self.record = Record()
        self.stop = threading.Event()
        self._markers = itertools.count(1)
        self._base = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._churn, daemon=True) for _ in range(churn)]
        self.threads.append(threading.Thread(target=self._admin, daemon=True))

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(120)
            assert not t.is_alive(), "a load thread hangs"

    def _client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def _call(self, http: httpx.Client, method: str, path: str, **kw: Any) -> httpx.Response | None:
        """The answer, or None (recorded as an error) when there is none or it is a 5xx."""
        try:
            answer = http.request(method, path, **kw)
        except httpx.TransportError as exc:
            self.record.errors.append(Error(time.monotonic(), f"{method} {path}: {exc!r}"))
            return None
        if answer.status_code >= 500:
            what = f"{method} {path}: {answer.status_code} {answer.text[:200]}"
            self.record.errors.append(Error(time.monotonic(), what))
            return None
        return answer

    def _marker(self) -> datetime:
        """A Deadline no other create uses: it tells which stored request a create made."""
        with self._lock:
            return self._base + timedelta(seconds=next(self._markers))

    def _churn(self) -> None:
        with self._client() as http:
            while not self.stop.is_set():
                rid = self._create(http)
                if rid is None:
                    continue
                self._use(http, rid)
                self._close(http, rid)
                self.record.cycles += 1

    def _create(self, http: httpx.Client) -> int | None:
        marker = self._marker()
        body = {"Caps": {"device_type": DEVICE}, "Deadline": marker.strftime("%Y-%m-%dT%H:%M:%SZ")}
        answer = self._call(http, "POST", "/api/v1/reqs/", json=body)
        if answer is not None:
            if answer.status_code != 201:
                self.record.unexpected.append(f"create: {answer.status_code} {answer.text}")
                return None
            rid: int = answer.json()["ReqID"]
            self.record.created[rid] = marker
            return rid
        # No answer: the coordinator may have stored it before dying, and a follower that
        # died while forwarding it may have handed it to the leader, which applies it a
        # moment later. Look for the marker a few times.
        looks = 0
        while not self.stop.is_set():
            listed = self._call(http, "POST", "/api/v1/reqs/list")
            if listed is not None and listed.status_code == 200:
                for r in listed.json():
                    if datetime.fromisoformat(r["Deadline"]) == marker:
                        self.record.adopted[r["ID"]] = marker
                        return int(r["ID"])
                looks += 1
                if looks == LOOKS:
                    self.record.unknown.append(marker)
                    return None
            self.stop.wait(0.2)
        return None

    def _acquire(self, http: httpx.Client, rid: int) -> tuple[str, int] | None:
        while not self.stop.is_set():
            path = f"/api/v1/reqs/{rid}/acquire_worker"
            answer = self._call(http, "POST", path, params={"wait": 10})
            if answer is None:
                self.stop.wait(0.2)
                continue
            if answer.status_code == 200:
                addr = answer.json()["Addr"]
                return addr["IP"], int(addr["Port"])
            if "worker not assigned" not in answer.text:
                self.record.unexpected.append(f"acquire {rid}: {answer.status_code} {answer.text}")
                return None
        return None

    def _use(self, http: httpx.Client, rid: int) -> None:
        """Acquire the job and check that its tunnel gives the board sshd's banner; when it
        does not, acquire again: after a failover the tunnel is at another address."""
        while not self.stop.is_set():
            access = self._acquire(http, rid)
            if access is None:
                return
            if banner(*access).startswith(SSH_BANNER):
                self.record.banners += 1
                return
            self.record.errors.append(Error(time.monotonic(), f"tunnel {access}: no banner"))
            self.stop.wait(0.2)

    def _close(self, http: httpx.Client, rid: int) -> None:
        """Close until acknowledged; a close whose answer was lost may have taken, which the
        request's state tells."""
        while True:
            answer = self._call(http, "POST", f"/api/v1/reqs/{rid}/close")
            if answer is not None and answer.status_code == 204:
                self.record.closed.append(rid)
                return
            state = self._call(http, "GET", f"/api/v1/reqs/{rid}")
            if state is not None and state.status_code == 200 and state.json()["State"] == "DONE":
                return
            if answer is not None:
                self.record.unexpected.append(f"close {rid}: {answer.status_code} {answer.text}")
                return
            time.sleep(0.2)  # a pause between tries, not a wait for a condition

    def _admin(self) -> None:
        value = itertools.count(1000)
        with self._client() as http:
            while not self.stop.is_set():
                for rid in self.long_jobs:
                    sent = datetime.now(UTC)
                    answer = self._call(http, "POST", f"/api/v1/reqs/{rid}/prolong")
                    if answer is not None and answer.status_code == 204:
                        self.record.prolonged.append((rid, sent))
                    elif answer is not None:
                        self.record.unexpected.append(f"prolong {rid}: {answer.status_code}")
                n = next(value)
                path = "/api/v1/quotas/users/bystander"
                answer = self._call(http, "PUT", path, json={"MaxWaiting": n})
                if answer is not None and answer.status_code == 204:
                    self.record.quota.append(n)
                elif answer is not None:
                    self.record.unexpected.append(f"quota: {answer.status_code} {answer.text}")
                self.stop.wait(0.2)  # pacing: a person's admin actions, not a flood


class EventReader:
    """Reads ``/api/v1/events`` through ``url`` from the start, and after any break resumes
    with ``Last-Event-ID``; records every id it got, in order."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token
        self.ids: list[int] = []
        self.reconnects = 0
        self.resumed: list[int] = []  # the Last-Event-ID of each connection that got 200
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        timeout = httpx.Timeout(10, read=40)  # keep-alive comments come every 15 s
        with httpx.Client(base_url=self.url, timeout=timeout) as http:
            while not self.stop.is_set():
                # From the first event on, then from the last one read.
                last = str(self.ids[-1]) if self.ids else "0"
                headers = {"Authorization": f"Bearer {self.token}", "Last-Event-ID": last}
                try:
                    with http.stream("GET", "/api/v1/events", headers=headers) as stream:
                        if stream.status_code == 200:
                            self.resumed.append(int(last))
                            for line in stream.iter_lines():
                                if line.startswith("id: "):
                                    self.ids.append(int(line[4:]))
                                if self.stop.is_set():
                                    return
                except httpx.HTTPError:
                    pass
                self.reconnects += 1
                self.stop.wait(0.2)
