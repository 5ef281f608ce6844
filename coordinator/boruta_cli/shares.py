"""``boruta usage`` and ``boruta admin quota|scheduling`` (docs/scheduling.md)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from coordinator.boruta_cli import output
from coordinator.boruta_cli.commands import UsageError
from coordinator.client import Client
from coordinator.domain.fairshare import Policy, Scheduling
from coordinator.domain.quotas import Quota

_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | None, what: str) -> timedelta | None:
    """``7200``, ``90s``, ``30m``, ``2h`` or ``1d``; the coordinator checks the range."""
    if text is None:
        return None
    m = _DURATION.match(text.strip())
    if not m:
        raise UsageError(f"{what}: not a duration: {text!r} (use 7200, 90s, 30m, 2h, 1d)")
    return timedelta(seconds=int(m[1]) * _SECONDS[m[2]])


def duration_text(span: timedelta | None) -> str:
    if span is None:
        return "-"
    seconds = int(span.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _limit(value: int | None) -> str:
    return "-" if value is None else str(value)


def _scheduling_text(s: Scheduling) -> str:
    return f"scheduling: {s.policy.value} (usage half-life {duration_text(s.half_life)})"


def usage(client: Client, args: Any) -> int:
    """Every user's usage, least first: the order ``fair`` serves them in."""
    report = client.usage()
    if args.json:
        output.dump(report)
        return 0
    output.say(_scheduling_text(report.scheduling))
    rows = [
        [
            u.name,
            f"{u.usage / 3600:.2f}",
            str(u.holds),
            str(u.waiting),
            _limit(u.limits.max_held),
            _limit(u.limits.max_waiting),
            duration_text(u.limits.max_job),
        ]
        for u in report.users
    ]
    header = ["USER", "BOARD-HOURS", "HOLDS", "WAITING", "MAX-HELD", "MAX-WAITING", "MAX-JOB"]
    output.table(header, rows)
    return 0


def admin(client: Client, args: Any) -> int:
    """``admin quota set|remove|list`` and ``admin scheduling [fifo|fair]``."""
    if args.action == "scheduling":
        half_life = parse_duration(args.half_life, "--half-life")
        policy = None if args.policy is None else Policy(args.policy)
        if policy is None and half_life is None:
            now = client.scheduling()
        else:
            now = client.set_scheduling(policy, half_life)
        output.dump(now) if args.json else output.say(_scheduling_text(now))
        return 0
    if args.quota_action == "list":
        quotas = client.quotas()
        if args.json:
            output.dump(quotas)
            return 0
        rows = [
            [kind, name, _limit(q.max_held), _limit(q.max_waiting), duration_text(q.max_job)]
            for kind, table in (("user", quotas.users), ("group", quotas.groups))
            for name, q in sorted(table.items())
        ]
        output.table(["KIND", "NAME", "MAX-HELD", "MAX-WAITING", "MAX-JOB"], rows)
        return 0
    kind, name = ("user", args.user) if args.user is not None else ("group", args.group)
    if args.quota_action == "remove":
        client.delete_quota(kind, name)
        done = f"quota of {kind} {name} removed"
    else:
        quota = Quota(args.max_held, args.max_waiting, parse_duration(args.max_job, "--max-job"))
        client.set_quota(kind, name, quota)
        done = (
            f"quota of {kind} {name}: max held {_limit(quota.max_held)}, max waiting "
            f"{_limit(quota.max_waiting)}, max job {duration_text(quota.max_job)}"
        )
    output.dump({"ok": True, kind: name}) if args.json else output.say(done)
    return 0
