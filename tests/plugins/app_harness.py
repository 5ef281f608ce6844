"""The in-process app harness, a pytest plugin: ``AppFarm`` and fixtures farm, settings, template.

Registered once in tests/conftest.py, so that every test folder has these fixtures (a
folder's conftest may override ``farm``, as tests/coordinator/link does). The app is on a
real SQLite store with fake dryads and clock, served in-process to an httpx client; its
lifespan (migration, service start) runs around each test, because ``httpx.ASGITransport``
does not run it.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import anyio
import httpx
import pytest
from anyio.abc import TaskStatus
from starlette.applications import Starlette

from coordinator.assembly import Parts, assemble
from coordinator.domain.clock import FakeClock
from coordinator.domain.ids import WorkerUUID
from coordinator.domain.model import KeyType, User
from coordinator.domain.states import WorkerState
from coordinator.service.keys import JobKey, KeyPool, generate, generate_ed25519
from coordinator.service.operations import Service
from coordinator.settings import Settings
from coordinator.store.sql import SqlStore
from coordinator.tokens import hash_token, new_token
from tests.coordinator.doubles import RecordingDryads, RecordingTunnels, until, uuid_of

USERS = (User("alice"), User("bob"), User("root", admin=True))
NOW = "2026-01-01T00:00:00Z"  # the fake clock's start, as the API writes it


class StockKeys(KeyPool):
    """Real RSA-2048 keys, made once per session and handed out in turn, so that no test
    waits for a key thread to finish when its app stops."""

    _shared: ClassVar[list[JobKey]] = []

    def __init__(self) -> None:
        super().__init__(1)
        self._next = 0

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        while len(self._shared) < 4:
            self._shared.append(await anyio.to_thread.run_sync(generate))
        task_status.started()
        await anyio.sleep_forever()

    async def get(self, kind: KeyType = KeyType.RSA) -> JobKey:
        if kind is KeyType.ED25519:
            return generate_ed25519()  # cheap: made afresh, as the pool does
        self._next += 1
        return self._shared[self._next % len(self._shared)]


@dataclass
class AppFarm:
    """The app, its client and the parts behind it; ``scheme`` picks Bearer or Basic."""

    app: Starlette
    client: httpx.AsyncClient
    store: SqlStore
    clock: FakeClock
    dryads: RecordingDryads
    tunnels: RecordingTunnels
    tokens: dict[str, str] = field(default_factory=dict)
    scheme: str = "bearer"

    @property
    def service(self) -> Service:
        service: Service = self.app.state.coordinator.service
        return service

    def auth(self, name: str) -> dict[str, str]:
        token = self.tokens[name]
        if self.scheme == "basic":
            pair = base64.b64encode(f"{name}:{token}".encode()).decode()
            return {"Authorization": f"Basic {pair}"}
        return {"Authorization": f"Bearer {token}"}

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        as_: str | None = "alice",
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One API call as user ``as_`` (``None``: no credentials); ``body`` goes as JSON."""
        sent = {**(self.auth(as_) if as_ else {}), **(headers or {})}
        if body is not None:
            content = _json(body)
        return await self.client.request(method, path, content=content, headers=sent)

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.call("GET", path, **kw)

    async def head(self, path: str, **kw: Any) -> httpx.Response:
        return await self.call("HEAD", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        return await self.call("POST", path, body, **kw)

    async def new_request(self, body: Any | None = None, as_: str = "alice") -> int:
        answer = await self.post("/api/v1/reqs/", body or {"Priority": 8}, as_=as_)
        assert answer.status_code == 201, answer.text
        rid: int = answer.json()["ReqID"]
        return rid

    async def request_json(self, rid: int) -> Any:
        answer = await self.get(f"/api/v1/reqs/{rid}")
        assert answer.status_code == 200, answer.text
        return answer.json()

    async def snapshot(self) -> tuple[Any, Any]:
        """Every request and worker as the API shows them, to compare around a failed call."""
        reqs = await self.post("/api/v1/reqs/list", as_="root")
        workers = await self.post("/api/v1/workers/list", as_="root")
        assert reqs.status_code == workers.status_code == 200
        return reqs.json(), workers.json()

    async def worker(self, n: int, caps: Mapping[str, str] | None = None) -> WorkerUUID:
        """Register worker ``n``: it starts in MAINTENANCE, as a new dryad does."""
        uuid = uuid_of(n)
        await self.service.register({"UUID": uuid, **(caps or {})}, f"10.0.0.{n}:22")
        return uuid

    async def parked_worker(self) -> WorkerUUID:
        """Worker 9 with ``board: rpi4`` in MAINTENANCE: requests it could take stay
        WAITING instead of becoming INVALID, and none of them is matched."""
        return await self.worker(9, {"board": "rpi4"})

    async def idle_worker(self, n: int, caps: Mapping[str, str] | None = None) -> WorkerUUID:
        """Register worker ``n`` and put it in service through the admin endpoint."""
        uuid = await self.worker(n, caps)
        answer = await self.post(
            f"/api/v1/workers/{uuid}/setstate", {"WorkerState": "IDLE"}, as_="root"
        )
        assert (answer.status_code, answer.content) == (202, b"null")
        await self.until_worker(uuid, WorkerState.IDLE)
        return uuid

    async def until_worker(self, uuid: WorkerUUID, state: WorkerState) -> None:
        await until(self.service, lambda: self.service.get_worker(uuid).state is state)


def _json(body: Any) -> bytes:
    return json.dumps(body).encode()


@dataclass(frozen=True)
class Template:
    """A migrated database holding the three users, copied for each test."""

    path: Path
    tokens: dict[str, str]


def make_template(where: Path) -> Template:
    path, tokens = where / "template.db", {}
    store = SqlStore.open(path)
    try:
        store.migrate()
        for user in USERS:
            tokens[user.name] = new_token()
            store.add_user(user, hash_token(tokens[user.name]))
    finally:
        store.close()
    return Template(path, tokens)


@asynccontextmanager
async def open_farm(
    template: Template, db: Path, settings: Settings | None = None
) -> AsyncIterator[AppFarm]:
    """A copy of the template database, the app with its lifespan running, a client."""
    shutil.copyfile(template.path, db)
    store = SqlStore.open(db)
    clock, dryads, tunnels = FakeClock(), RecordingDryads(), RecordingTunnels()
    app = assemble(settings or Settings(), Parts(store, dryads, tunnels, clock, StockKeys())).app
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app), base_url="http://boruta"
            ) as client,
        ):
            yield AppFarm(app, client, store, clock, dryads, tunnels, dict(template.tokens))
    finally:
        store.close()


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    return make_template(tmp_path_factory.mktemp("template"))


@pytest.fixture
def settings() -> Settings:
    return Settings()


@pytest.fixture
async def farm(tmp_path: Path, template: Template, settings: Settings) -> AsyncIterator[AppFarm]:
    async with open_farm(template, tmp_path / "boruta.db", settings) as f:
        yield f
