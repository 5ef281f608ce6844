"""What the service asks of fair share and quotas (docs/scheduling.md): the order of a
matcher pass, its limits, a job's longest length, queue places and a waiting request's
reason, from the farm as committed and the scheduling in force."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta

from coordinator.domain import fairshare, quotas
from coordinator.domain.fairshare import Policy, Scheduling
from coordinator.domain.ids import RequestID
from coordinator.domain.listing import Page
from coordinator.domain.matcher import Limits
from coordinator.domain.model import Request
from coordinator.domain.states import RequestState
from coordinator.service.farm import Farm


class Shares:
    """The scheduling in force (an admin may switch it), applied to a farm."""

    def __init__(self, scheduling: Scheduling | None = None) -> None:
        self.scheduling = scheduling or Scheduling()

    @property
    def policy(self) -> Policy:
        return self.scheduling.policy

    @property
    def half_life(self) -> timedelta:
        return self.scheduling.half_life

    def usage(self, farm: Farm, now: datetime) -> dict[str, float]:
        """Each user's usage now: stored charges decayed, plus the jobs still running."""
        running = [
            (req.owner, req.job.started)
            for rid in farm.jobs.values()
            if (req := farm.requests[rid]).job is not None
        ]
        return fairshare.usage_now(farm.usage, running, now, self.half_life)

    def _usage_for_order(self, farm: Farm, now: datetime) -> dict[str, float]:
        return self.usage(farm, now) if self.policy is Policy.FAIR else {}

    def order(
        self,
        farm: Farm,
        reqs: Mapping[RequestID, Request],
        fresh: Iterable[RequestID] | None,
        now: datetime,
    ) -> Iterable[RequestID]:
        """The order a pass takes: the whole queue (``fresh`` None) or just ``fresh``."""
        usage = self._usage_for_order(farm, now)
        if fresh is None:
            return farm.queue.ordered(self.policy, usage)
        key = fairshare.order_key(self.policy, usage)
        return sorted(fresh, key=lambda rid: key(reqs[rid]))

    def limits(self, farm: Farm, changed: Mapping[RequestID, Request]) -> Limits | None:
        """The held-board limits of a pass over ``changed`` requests not yet committed (a
        job that ends there frees its owner's place); ``None`` when no quota is set."""
        if not farm.quotas:
            return None
        held = Counter(farm.held)
        for rid, new in changed.items():
            old = farm.requests.get(rid)
            was = old is not None and old.state is RequestState.IN_PROGRESS
            if was != (new.state is RequestState.IN_PROGRESS):
                held[new.owner] += -1 if was else 1
        return Limits(held, farm.quotas)

    def max_job(self, farm: Farm, req: Request) -> timedelta | None:
        """The longest job ``req``'s owner may have."""
        return farm.quotas.limits(req.owner, req.groups).max_job

    def position(self, farm: Farm, rid: RequestID, now: datetime) -> int | None:
        """How many waiting requests come first in the order in force; ``None`` if not waiting."""
        req = farm.requests.get(rid)  # a request not held in memory has finished
        if req is None or req.state is not RequestState.WAITING:
            return None
        return farm.queue.position(req, self.policy, self._usage_for_order(farm, now))

    def explained(self, farm: Farm, req: Request) -> Request:
        """``req`` with the ``Reason`` a waiting request over its held limit shows."""
        if req.state is not RequestState.WAITING or not farm.quotas:
            return req
        limit = farm.quotas.limits(req.owner, req.groups)
        return replace(req, reason=quotas.over_held(limit, farm.held[req.owner]))

    def explained_page(self, farm: Farm, page: Page[Request]) -> Page[Request]:
        if not farm.quotas:
            return page
        return replace(page, items=[self.explained(farm, r) for r in page.items])
