"""``Client`` and ``AsyncClient``: the service's operations over HTTP API v1, on httpx."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from coordinator import __version__
from coordinator.client import calls
from coordinator.client.calls import Call
from coordinator.client.errors import ServerUnreachable, error_from_answer
from coordinator.client.models import RequestInfo, TransitionInfo, WorkerInfo
from coordinator.domain.fairshare import Policy, Scheduling, UsageReport
from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.listing import ListSpec, Page
from coordinator.domain.model import AccessInfo, KeyType, Request, Worker
from coordinator.domain.quotas import Quota, Quotas
from coordinator.domain.states import WorkerState
from coordinator.errors import ERROR_CODE_HEADER, BorutaError
from coordinator.wire import HealthReport

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0  # seconds; a healthcheck may take as long
RequestSpec = ListSpec[Request, RequestID]
WorkerSpec = ListSpec[Worker, WorkerUUID]


def _verify(url: str) -> bool:
    """Certificates are checked for https; for plain http no TLS happens, and not loading
    the CA bundle saves a third of the CLI's start-up (redirects are never followed)."""
    return not url.lower().startswith("http://")


def _error(answer: httpx.Response) -> BorutaError:
    return error_from_answer(
        answer.status_code, answer.content, answer.headers.get(ERROR_CODE_HEADER)
    )


class _Base:
    def __init__(self, url: str, token: str | None, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._headers = {"User-Agent": f"boruta-client/{__version__}"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    def _args(self, call: Call[Any], method: str | None = None) -> dict[str, Any]:
        return {
            "method": method or call.method,
            "url": f"{self.url}/api/v1{call.path}",
            "params": call.params,
            "content": call.content(),
            "headers": self._headers,
            "timeout": call.timeout or self.timeout,
        }

    def _unreachable(self, exc: httpx.HTTPError) -> ServerUnreachable:
        reason = str(exc) or type(exc).__name__
        return ServerUnreachable(f"cannot reach the coordinator at {self.url}: {reason}")

    def __repr__(self) -> str:  # never the token
        return f"{type(self).__name__}({self.url!r})"


class Client(_Base):
    """Blocking client; ``transport`` lets tests talk to an app in-process."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(url, token, timeout)
        self._http = httpx.Client(transport=transport, verify=_verify(self.url))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _send(self, call: Call[T]) -> T:
        try:
            answer = self._http.request(**self._args(call))
            if answer.is_error and call.method == "HEAD":
                # A HEAD error has no body; the same GET carries the server's message.
                answer = self._http.request(**self._args(call, "GET"))
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if not answer.is_success:
            raise _error(answer)
        return call.parse(answer.headers, answer.content)

    def version(self) -> dict[str, str]:
        return self._send(calls.version())

    def new_request(
        self,
        priority: int | None,
        caps: Mapping[str, str],
        valid_after: datetime | None = None,
        deadline: datetime | None = None,
        key_type: KeyType = KeyType.ED25519,
    ) -> RequestID:
        """A new request; its job key is Ed25519 unless ``key_type`` says RSA."""
        return self._send(calls.new_request(priority, caps, valid_after, deadline, key_type))

    def update_request(
        self,
        rid: RequestID,
        priority: int | None = None,
        valid_after: datetime | None = None,
        deadline: datetime | None = None,
    ) -> None:
        self._send(calls.update_request(rid, priority, valid_after, deadline))

    def close_request(self, rid: RequestID) -> None:
        self._send(calls.close_request(rid))

    def prolong_access(self, rid: RequestID) -> None:
        self._send(calls.prolong_access(rid))

    def acquire_worker(self, rid: RequestID, wait: float | None = None) -> AccessInfo:
        return self._send(calls.acquire_worker(rid, wait, self.timeout))

    def get_request(self, rid: RequestID) -> RequestInfo:
        return self._send(calls.get_request(rid))

    def queue_position(self, rid: RequestID) -> int | None:
        return self._send(calls.queue_position(rid))

    def list_requests(self, spec: RequestSpec | None = None) -> Page[RequestInfo]:
        return self._send(calls.list_requests(spec))

    def get_worker(self, uuid: WorkerUUID) -> WorkerInfo:
        return self._send(calls.get_worker(uuid))

    def worker_host_keys(self, uuid: WorkerUUID) -> tuple[str, ...]:
        """The worker sshd's host keys (``type base64``) the coordinator vouches for."""
        return self._send(calls.worker_host_keys(uuid))

    def list_workers(self, spec: WorkerSpec | None = None) -> Page[WorkerInfo]:
        return self._send(calls.list_workers(spec))

    def set_worker_state(self, uuid: WorkerUUID, state: WorkerState) -> None:
        self._send(calls.set_worker_state(uuid, state))

    def set_worker_groups(self, uuid: WorkerUUID, groups: Iterable[str]) -> None:
        self._send(calls.set_worker_groups(uuid, groups))

    def deregister(self, uuid: WorkerUUID) -> None:
        self._send(calls.deregister(uuid))

    def identify(self, uuid: WorkerUUID, seconds: float = 30) -> None:
        self._send(calls.identify(uuid, seconds))

    def run_healthcheck(self, uuid: WorkerUUID) -> HealthReport:
        return self._send(calls.run_healthcheck(uuid, self.timeout))

    def history(self, kind: str, subject: str, limit: int = 100) -> list[TransitionInfo]:
        """The latest changes of one request or worker (from the coordinator's feed, which
        the service does not hold: ``LocalClient`` has no such method)."""
        return self._send(calls.history(kind, subject, limit))

    def quotas(self) -> Quotas:
        return self._send(calls.quotas())

    def set_quota(self, kind: str, name: str, quota: Quota) -> None:
        """Set a user's (``kind`` "user") or group's quota (admins)."""
        return self._send(calls.set_quota(kind, name, quota))

    def delete_quota(self, kind: str, name: str) -> None:
        return self._send(calls.delete_quota(kind, name))

    def usage(self) -> UsageReport:
        return self._send(calls.usage())

    def scheduling(self) -> Scheduling:
        return self._send(calls.scheduling())

    def set_scheduling(
        self, policy: Policy | None = None, half_life: timedelta | None = None
    ) -> Scheduling:
        """Switch the order within a priority or the usage half-life (admins)."""
        return self._send(calls.set_scheduling(policy, half_life))


class AsyncClient(_Base):
    """The same operations, awaitable; ``LocalClient`` has exactly these signatures, but
    for ``history`` (the feed's, not the service's)."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(url, token, timeout)
        self._http = httpx.AsyncClient(transport=transport, verify=_verify(self.url))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _send(self, call: Call[T]) -> T:
        try:
            answer = await self._http.request(**self._args(call))
            if answer.is_error and call.method == "HEAD":
                answer = await self._http.request(**self._args(call, "GET"))
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if not answer.is_success:
            raise _error(answer)
        return call.parse(answer.headers, answer.content)

    async def version(self) -> dict[str, str]:
        return await self._send(calls.version())

    async def new_request(
        self,
        priority: int | None,
        caps: Mapping[str, str],
        valid_after: datetime | None = None,
        deadline: datetime | None = None,
        key_type: KeyType = KeyType.ED25519,
    ) -> RequestID:
        """A new request; its job key is Ed25519 unless ``key_type`` says RSA."""
        return await self._send(calls.new_request(priority, caps, valid_after, deadline, key_type))

    async def update_request(
        self,
        rid: RequestID,
        priority: int | None = None,
        valid_after: datetime | None = None,
        deadline: datetime | None = None,
    ) -> None:
        await self._send(calls.update_request(rid, priority, valid_after, deadline))

    async def close_request(self, rid: RequestID) -> None:
        await self._send(calls.close_request(rid))

    async def prolong_access(self, rid: RequestID) -> None:
        await self._send(calls.prolong_access(rid))

    async def acquire_worker(self, rid: RequestID, wait: float | None = None) -> AccessInfo:
        return await self._send(calls.acquire_worker(rid, wait, self.timeout))

    async def get_request(self, rid: RequestID) -> RequestInfo:
        return await self._send(calls.get_request(rid))

    async def queue_position(self, rid: RequestID) -> int | None:
        return await self._send(calls.queue_position(rid))

    async def list_requests(self, spec: RequestSpec | None = None) -> Page[RequestInfo]:
        return await self._send(calls.list_requests(spec))

    async def get_worker(self, uuid: WorkerUUID) -> WorkerInfo:
        return await self._send(calls.get_worker(uuid))

    async def worker_host_keys(self, uuid: WorkerUUID) -> tuple[str, ...]:
        """The worker sshd's host keys (``type base64``) the coordinator vouches for."""
        return await self._send(calls.worker_host_keys(uuid))

    async def list_workers(self, spec: WorkerSpec | None = None) -> Page[WorkerInfo]:
        return await self._send(calls.list_workers(spec))

    async def set_worker_state(self, uuid: WorkerUUID, state: WorkerState) -> None:
        await self._send(calls.set_worker_state(uuid, state))

    async def set_worker_groups(self, uuid: WorkerUUID, groups: Iterable[str]) -> None:
        await self._send(calls.set_worker_groups(uuid, groups))

    async def deregister(self, uuid: WorkerUUID) -> None:
        await self._send(calls.deregister(uuid))

    async def identify(self, uuid: WorkerUUID, seconds: float = 30) -> None:
        await self._send(calls.identify(uuid, seconds))

    async def run_healthcheck(self, uuid: WorkerUUID) -> HealthReport:
        return await self._send(calls.run_healthcheck(uuid, self.timeout))

    async def history(self, kind: str, subject: str, limit: int = 100) -> list[TransitionInfo]:
        """As ``Client.history``."""
        return await self._send(calls.history(kind, subject, limit))

    async def quotas(self) -> Quotas:
        return await self._send(calls.quotas())

    async def set_quota(self, kind: str, name: str, quota: Quota) -> None:
        """Set a user's (``kind`` "user") or group's quota (admins)."""
        return await self._send(calls.set_quota(kind, name, quota))

    async def delete_quota(self, kind: str, name: str) -> None:
        return await self._send(calls.delete_quota(kind, name))

    async def usage(self) -> UsageReport:
        return await self._send(calls.usage())

    async def scheduling(self) -> Scheduling:
        return await self._send(calls.scheduling())

    async def set_scheduling(
        self, policy: Policy | None = None, half_life: timedelta | None = None
    ) -> Scheduling:
        """Switch the order within a priority or the usage half-life (admins)."""
        return await self._send(calls.set_scheduling(policy, half_life))
