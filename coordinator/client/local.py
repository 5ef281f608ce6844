"""``LocalClient``: the ``AsyncClient`` interface on an in-process ``Service``, for one user."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from coordinator import boruta_json as bj
from coordinator.client.http import RequestSpec, WorkerSpec
from coordinator.client.models import RequestInfo, WorkerInfo
from coordinator.domain import listing
from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.listing import ListSpec, Page, RequestFilter, WorkerFilter
from coordinator.domain.model import AccessInfo, User
from coordinator.domain.states import WorkerState
from coordinator.errors import WrongStateArgument
from coordinator.service.operations import Service
from coordinator.wire import HealthReport

_SETTABLE = (WorkerState.IDLE, WorkerState.MAINTENANCE)


class LocalClient:
    """Binds ``user`` to the service's calls and answers what the HTTP API would answer."""

    def __init__(self, service: Service, user: User) -> None:
        self.service = service
        self.user = user

    async def version(self) -> dict[str, str]:
        return bj.version_json()

    async def new_request(
        self,
        priority: int | None,
        caps: Mapping[str, str],
        valid_after: datetime | None = None,
        deadline: datetime | None = None,
    ) -> RequestID:
        if priority is None:
            priority = self.service.policy.default_priority
        return await self.service.new_request(self.user, priority, caps, valid_after, deadline)

    async def update_request(
        self,
        rid: RequestID,
        priority: int | None = None,
        valid_after: datetime | None = None,
        deadline: datetime | None = None,
    ) -> None:
        # The API reads priority 0 as "unchanged" (docs/boruta-api.md §update request).
        await self.service.update_request(self.user, rid, priority or None, valid_after, deadline)

    async def close_request(self, rid: RequestID) -> None:
        await self.service.close_request(self.user, rid)

    async def prolong_access(self, rid: RequestID) -> None:
        await self.service.prolong_access(self.user, rid)

    async def acquire_worker(self, rid: RequestID, wait: float | None = None) -> AccessInfo:
        return await self.service.acquire_worker(self.user, rid, wait)

    async def get_request(self, rid: RequestID) -> RequestInfo:
        return RequestInfo.from_domain(self.service.get_request(rid))

    async def queue_position(self, rid: RequestID) -> int | None:
        self.service.get_request(rid)  # NotFound, as the API answers
        return self.service.queue_position(rid)

    async def list_requests(self, spec: RequestSpec | None = None) -> Page[RequestInfo]:
        spec = spec or ListSpec(RequestFilter(), listing.request_sort_key(""))
        page = self.service.list_requests(spec)
        return Page([RequestInfo.from_domain(r) for r in page.items], page.total, page.remaining)

    async def get_worker(self, uuid: WorkerUUID) -> WorkerInfo:
        return self._info(uuid)

    async def list_workers(self, spec: WorkerSpec | None = None) -> Page[WorkerInfo]:
        spec = spec or ListSpec(WorkerFilter(), listing.worker_sort_key(""))
        page = self.service.list_workers(spec)
        return Page([self._info(w.uuid) for w in page.items], page.total, page.remaining)

    async def set_worker_state(self, uuid: WorkerUUID, state: WorkerState) -> None:
        if state not in _SETTABLE:
            raise WrongStateArgument  # checked by the endpoint before the service
        await self.service.set_worker_state(self.user, uuid, state)

    async def set_worker_groups(self, uuid: WorkerUUID, groups: Iterable[str]) -> None:
        await self.service.set_worker_groups(self.user, uuid, groups)

    async def deregister(self, uuid: WorkerUUID) -> None:
        await self.service.deregister(self.user, uuid)

    async def identify(self, uuid: WorkerUUID, seconds: float = 30) -> None:
        await self.service.identify(self.user, uuid, seconds)

    async def run_healthcheck(self, uuid: WorkerUUID) -> HealthReport:
        return await self.service.run_healthcheck(self.user, uuid)

    def _info(self, uuid: WorkerUUID) -> WorkerInfo:
        worker = self.service.get_worker(uuid)
        return WorkerInfo.from_domain(
            worker, self.service.connected(uuid), self.service.last_health(uuid)
        )
