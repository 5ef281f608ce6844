"""Admins' quotas and scheduling, and the usage report (docs/scheduling.md §endpoints).

Every change is stored first, then applied to the committed farm and to the pending view
the operations decide on (``Service.adjust``), and followed by a matcher pass over the
whole queue: a raised limit or a new order takes effect at once, and nothing waiting is
lost.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

import anyio

from coordinator.domain import fairshare, quotas as quota_rules
from coordinator.domain.clock import Clock
from coordinator.domain.fairshare import Policy, Scheduling, UsageReport, UserUsage
from coordinator.domain.model import User
from coordinator.domain.quotas import Quota, Quotas
from coordinator.errors import NotFound
from coordinator.service.farm import Farm
from coordinator.service.operations import Service
from coordinator.service.rights import require_admin
from coordinator.store import QuotaKind, Store

logger = logging.getLogger(__name__)


class QuotaAdmin:
    """Quotas and scheduling for admins, the report for everyone, on one service."""

    def __init__(self, service: Service, store: Store, clock: Clock) -> None:
        self._service = service
        self._store = store
        self._clock = clock

    def quotas(self) -> Quotas:
        return self._service.farm.quotas

    def scheduling(self) -> Scheduling:
        return self._service.shares.scheduling

    async def set_quota(self, admin: User, kind: QuotaKind, name: str, quota: Quota) -> None:
        """Set a user's or group's quota; unknown names and bad values are refused."""
        require_admin(admin)
        quota_rules.checked(quota)
        await self._check_known(kind, name)

        async def change(farm: Farm) -> None:
            await anyio.to_thread.run_sync(self._store.put_quota, kind, name, quota)
            farm.quotas = _with(farm.quotas, kind, name, quota)

        await self._service.adjust(change)
        logger.info("quota of %s %s set to %s by %s", kind, name, quota, admin.name)

    async def delete_quota(self, admin: User, kind: QuotaKind, name: str) -> None:
        """Remove a user's or group's quota: its members are no longer limited by it."""
        require_admin(admin)

        async def change(farm: Farm) -> None:
            await anyio.to_thread.run_sync(self._store.delete_quota, kind, name)
            farm.quotas = _with(farm.quotas, kind, name, None)

        await self._service.adjust(change)
        logger.info("quota of %s %s removed by %s", kind, name, admin.name)

    async def set_scheduling(
        self, admin: User, policy: Policy | None, half_life: timedelta | None
    ) -> Scheduling:
        """Switch the policy or the half-life; the queue is re-ordered at once (until the
        coordinator restarts: the settings file holds what it starts with)."""
        require_admin(admin)
        if half_life is not None:
            fairshare.check_half_life(half_life)
        shares = self._service.shares

        async def change(farm: Farm) -> None:
            old = shares.scheduling
            shares.scheduling = Scheduling(policy or old.policy, half_life or old.half_life)

        await self._service.adjust(change)
        logger.info("scheduling set to %s by %s", shares.scheduling, admin.name)
        return shares.scheduling

    async def usage(self) -> UsageReport:
        """Every user's usage now (the known users and every owner the farm holds)."""
        users = await anyio.to_thread.run_sync(self._store.users)
        service = self._service
        farm, shares = service.farm, service.shares
        used = shares.usage(farm, self._clock.now())
        groups = {u.name: u.groups for u in users}
        names = set(groups) | set(used) | set(farm.held) | set(farm.queue.waiting)
        lines = [
            UserUsage(
                name,
                used.get(name, 0.0),
                farm.held[name],
                farm.queue.waiting[name],
                farm.quotas.limits(name, groups.get(name, ())),
            )
            for name in names
        ]
        lines.sort(key=lambda u: (u.usage, u.name))
        return UsageReport(shares.scheduling, lines)

    async def _check_known(self, kind: QuotaKind, name: str) -> None:
        """A quota for nobody is a typo: the user must exist, the group must be someone's."""
        users = await anyio.to_thread.run_sync(self._store.users)
        if kind == "user":
            if all(u.name != name for u in users):
                raise NotFound(f"user {name}")
            return
        known = {g for u in users for g in u.groups}
        known.update(g for w in self._service.farm.workers.values() for g in w.groups)
        if name not in known:
            raise NotFound(f"group {name}")


def _with(quotas: Quotas, kind: QuotaKind, name: str, quota: Quota | None) -> Quotas:
    """``quotas`` with ``name``'s quota set, or removed when ``quota`` is None."""
    table = dict(quotas.users if kind == "user" else quotas.groups)
    if quota is None:
        table.pop(name, None)
    else:
        table[name] = quota
    return replace(quotas, users=table) if kind == "user" else replace(quotas, groups=table)
