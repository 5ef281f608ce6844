"""``LocalClient``: the ``AsyncClient`` interface on an in-process ``Service``, for one user.

It raises what the HTTP client would: the same classes, with the same messages, including
those the API's endpoints raise before the service is asked (bad IDs, out-of-range waits).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Final

from coordinator import boruta_json as bj
from coordinator.client.http import RequestSpec, WorkerSpec
from coordinator.client.models import RequestInfo, WorkerInfo
from coordinator.domain import listing
from coordinator.domain.ids import MAX_REQUEST_ID, RequestID, WorkerUUID, is_worker_uuid
from coordinator.domain.listing import ListSpec, Page, RequestFilter, WorkerFilter
from coordinator.domain.model import AccessInfo, KeyType, User
from coordinator.domain.states import WorkerState
from coordinator.errors import BadID, BadUUID, MalformedInput, WrongStateArgument
from coordinator.service.operations import Service
from coordinator.settings import Settings
from coordinator.wire import HealthReport

_SETTABLE = (WorkerState.IDLE, WorkerState.MAINTENANCE)
_MAX_IDENTIFY: Final = 600  # seconds, as the identify endpoint allows


class LocalClient:
    """Binds ``user`` to the service's calls and answers what the HTTP API would answer."""

    def __init__(
        self,
        service: Service,
        user: User,
        *,
        max_wait: float = Settings().max_acquire_wait,
    ) -> None:
        self.service = service
        self.user = user
        self.max_wait = max_wait  # the coordinator's max_acquire_wait

    async def version(self) -> dict[str, str]:
        return bj.version_json()

    async def new_request(
        self,
        priority: int | None,
        caps: Mapping[str, str],
        valid_after: datetime | None = None,
        deadline: datetime | None = None,
        key_type: KeyType = KeyType.ED25519,
    ) -> RequestID:
        if priority is None:
            priority = self.service.policy.default_priority
        caps = bj.caps_in(dict(caps), "Caps")  # the limits of the endpoint
        return await self.service.new_request(
            self.user, priority, caps, valid_after, deadline, key_type
        )

    async def update_request(
        self,
        rid: RequestID,
        priority: int | None = None,
        valid_after: datetime | None = None,
        deadline: datetime | None = None,
    ) -> None:
        # The API reads priority 0 as "unchanged" (docs/boruta-api.md §update request).
        await self.service.update_request(
            self.user, _rid(rid), priority or None, valid_after, deadline
        )

    async def close_request(self, rid: RequestID) -> None:
        await self.service.close_request(self.user, _rid(rid))

    async def prolong_access(self, rid: RequestID) -> None:
        await self.service.prolong_access(self.user, _rid(rid))

    async def acquire_worker(self, rid: RequestID, wait: float | None = None) -> AccessInfo:
        rid = _rid(rid)
        if wait is not None:
            _seconds(wait, self.max_wait, "wait")
        return await self.service.acquire_worker(self.user, rid, wait)

    async def get_request(self, rid: RequestID) -> RequestInfo:
        return RequestInfo.from_domain(await self.service.get_request(_rid(rid)))

    async def queue_position(self, rid: RequestID) -> int | None:
        await self.service.get_request(_rid(rid))  # NotFound, as the API answers
        return self.service.queue_position(rid)

    async def list_requests(self, spec: RequestSpec | None = None) -> Page[RequestInfo]:
        spec = spec or ListSpec(RequestFilter(), listing.request_sort_key(""))
        page = await self.service.list_requests(spec)
        return Page([RequestInfo.from_domain(r) for r in page.items], page.total, page.remaining)

    async def get_worker(self, uuid: WorkerUUID) -> WorkerInfo:
        return self._info(_uuid(uuid))

    async def worker_host_keys(self, uuid: WorkerUUID) -> tuple[str, ...]:
        return self.service.get_worker(_uuid(uuid)).host_keys

    async def list_workers(self, spec: WorkerSpec | None = None) -> Page[WorkerInfo]:
        spec = spec or ListSpec(WorkerFilter(), listing.worker_sort_key(""))
        page = self.service.list_workers(spec)
        return Page([self._info(w.uuid) for w in page.items], page.total, page.remaining)

    async def set_worker_state(self, uuid: WorkerUUID, state: WorkerState) -> None:
        uuid = _uuid(uuid)
        if state not in _SETTABLE:
            raise WrongStateArgument  # checked by the endpoint before the service
        await self.service.set_worker_state(self.user, uuid, state)

    async def set_worker_groups(self, uuid: WorkerUUID, groups: Iterable[str]) -> None:
        uuid = _uuid(uuid)
        await self.service.set_worker_groups(self.user, uuid, bj.names_in(list(groups), "groups"))

    async def deregister(self, uuid: WorkerUUID) -> None:
        await self.service.deregister(self.user, _uuid(uuid))

    async def identify(self, uuid: WorkerUUID, seconds: float = 30) -> None:
        uuid = _uuid(uuid)
        _seconds(seconds, _MAX_IDENTIFY, "seconds")
        await self.service.identify(self.user, uuid, seconds)

    async def run_healthcheck(self, uuid: WorkerUUID) -> HealthReport:
        return await self.service.run_healthcheck(self.user, _uuid(uuid))

    def _info(self, uuid: WorkerUUID) -> WorkerInfo:
        worker = self.service.get_worker(uuid)
        return WorkerInfo.from_domain(
            worker, self.service.connected(uuid), self.service.last_health(uuid)
        )


# The checks the endpoints make on the path and the query (coordinator.api.v1), with the
# same errors and messages.
def _rid(rid: RequestID) -> RequestID:
    if not 0 <= rid <= MAX_REQUEST_ID:
        raise BadID
    return rid


def _uuid(uuid: WorkerUUID) -> WorkerUUID:
    if not is_worker_uuid(uuid):
        raise BadUUID
    return uuid


def _seconds(value: float, limit: float, name: str) -> None:
    if not 0 <= value <= limit:  # also refuses nan
        raise MalformedInput(f"{name} must be a number of seconds from 0 to {limit:g}")
