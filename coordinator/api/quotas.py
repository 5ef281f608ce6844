"""``/api/v1/quotas``, ``/usage`` and ``/scheduling``: read by anyone with a token, changed
by admins (docs/scheduling.md §endpoints)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Final

from starlette.requests import Request as HttpRequest
from starlette.responses import Response
from starlette.routing import Route

from coordinator import boruta_json as bj
from coordinator.api.auth import Authenticator
from coordinator.api.v1 import json_response, no_content
from coordinator.domain.fairshare import Scheduling, UsageReport, parse_policy
from coordinator.domain.quotas import Quota
from coordinator.errors import BadQuota, BodyTooLarge, MalformedInput
from coordinator.service.quotas import QuotaAdmin
from coordinator.store import QuotaKind

_MAX_BODY: Final = 4096
_KINDS: Final[dict[str, QuotaKind]] = {"users": "user", "groups": "group"}
_QUOTA_FIELDS: Final = ("MaxHeld", "MaxWaiting", "MaxJobSeconds")
_SCHEDULING_FIELDS: Final = ("Policy", "HalfLife")


def quota_json(quota: Quota) -> dict[str, int | None]:
    job = None if quota.max_job is None else int(quota.max_job.total_seconds())
    return {"MaxHeld": quota.max_held, "MaxWaiting": quota.max_waiting, "MaxJobSeconds": job}


def scheduling_json(scheduling: Scheduling) -> dict[str, object]:
    return {
        "Policy": scheduling.policy.value,
        "HalfLife": int(scheduling.half_life.total_seconds()),
    }


def usage_json(report: UsageReport) -> dict[str, object]:
    return {
        **scheduling_json(report.scheduling),
        "Users": [
            {
                "Name": u.name,
                "Usage": round(u.usage, 1),
                "Holds": u.holds,
                "Waiting": u.waiting,
                "Limits": quota_json(u.limits),
            }
            for u in report.users
        ],
    }


def _count(body: dict[str, Any], key: str) -> int | None:
    """A whole number or null; anything else is named in the error, as range errors are."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadQuota(f"{key} must be a whole number or null, not {value!r}")
    return value


def _fields(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise MalformedInput(f"unknown field {unknown[0]!r}; known: {', '.join(allowed)}")


def parse_quota(data: object) -> Quota:
    """A quota body; absent or null fields are no limit."""
    body = dict(bj.expect_object(data, "quota"))
    _fields(body, _QUOTA_FIELDS)
    job = _count(body, "MaxJobSeconds")
    max_job = None if job is None else _seconds(job)
    return Quota(_count(body, "MaxHeld"), _count(body, "MaxWaiting"), max_job)


class QuotaEndpoints:
    """The endpoints, bound to the quota operations and the authenticator."""

    def __init__(self, admin: QuotaAdmin, auth: Authenticator) -> None:
        self._admin = admin
        self._auth = auth

    def routes(self) -> list[Route]:
        p = "/api/v1"
        return [
            Route(f"{p}/quotas", self.list_quotas, methods=["GET"]),
            Route(f"{p}/quotas/{{kind}}/{{name}}", self.set_quota, methods=["PUT"]),
            Route(f"{p}/quotas/{{kind}}/{{name}}", self.delete_quota, methods=["DELETE"]),
            Route(f"{p}/usage", self.usage, methods=["GET"]),
            Route(f"{p}/scheduling", self.scheduling, methods=["GET"]),
            Route(f"{p}/scheduling", self.set_scheduling, methods=["POST"]),
        ]

    async def _body(self, http: HttpRequest) -> object:
        raw = await http.body()
        if len(raw) > _MAX_BODY:
            raise BodyTooLarge(f"request body over {_MAX_BODY} bytes")
        return bj.parse_body(raw)

    async def list_quotas(self, http: HttpRequest) -> Response:
        await self._auth.user(http)
        quotas = self._admin.quotas()
        rows = [
            {"Kind": kind, "Name": name, **quota_json(quota)}
            for kind, table in (("user", quotas.users), ("group", quotas.groups))
            for name, quota in sorted(table.items())
        ]
        return json_response(rows)

    async def set_quota(self, http: HttpRequest) -> Response:
        user = await self._auth.user(http)
        kind = _kind(http.path_params["kind"])
        quota = parse_quota(await self._body(http))
        await self._admin.set_quota(user, kind, http.path_params["name"], quota)
        return no_content()

    async def delete_quota(self, http: HttpRequest) -> Response:
        user = await self._auth.user(http)
        kind = _kind(http.path_params["kind"])
        await self._admin.delete_quota(user, kind, http.path_params["name"])
        return no_content()

    async def usage(self, http: HttpRequest) -> Response:
        await self._auth.user(http)
        return json_response(usage_json(await self._admin.usage()))

    async def scheduling(self, http: HttpRequest) -> Response:
        await self._auth.user(http)
        return json_response(scheduling_json(self._admin.scheduling()))

    async def set_scheduling(self, http: HttpRequest) -> Response:
        """``{"Policy": "fifo"|"fair", "HalfLife": seconds}``, either may be left out."""
        user = await self._auth.user(http)
        body = dict(bj.expect_object(await self._body(http), "scheduling"))
        _fields(body, _SCHEDULING_FIELDS)
        word = body.get("Policy")
        if word is not None and not isinstance(word, str):
            raise BadQuota(f"Policy must be fifo or fair, not {word!r}")
        seconds = _count(body, "HalfLife")
        half_life = None if seconds is None else _seconds(seconds)
        policy = None if word is None else parse_policy(word)
        done = await self._admin.set_scheduling(user, policy, half_life)
        return json_response(scheduling_json(done))


def _seconds(value: int) -> timedelta:
    """A duration for the range checks; beyond a few decades it is absurd anyway, and
    timedelta itself would overflow."""
    return timedelta(seconds=max(-(10**9), min(value, 10**9)))


def _kind(word: str) -> QuotaKind:
    try:
        return _KINDS[word]
    except KeyError:
        raise MalformedInput(f"quotas are of users or groups, not {word!r}") from None
