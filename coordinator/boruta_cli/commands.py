"""``boruta requests|workers|admin …``: one API call each, answered as a table or JSON."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from coordinator.boruta_cli import output
from coordinator.client import Client
from coordinator.client.http import RequestSpec, WorkerSpec
from coordinator.domain import listing
from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.listing import ListSpec, RequestFilter, WorkerFilter
from coordinator.domain.states import WorkerState


class UsageError(Exception):
    """A bad argument the parser cannot check (exit code 2)."""


_DURATION = re.compile(r"^\+(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_when(text: str | None) -> datetime | None:
    """``+DURATION`` (``+90s``, ``+30m``, ``+4h``, ``+1d``) from now, or an RFC 3339 time."""
    if text is None:
        return None
    if m := _DURATION.match(text):
        return datetime.now(UTC) + timedelta(**{_UNITS[m[2]]: float(m[1])})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"not a time: {text!r} (use RFC 3339 or +30m, +4h, +1d)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def parse_caps(text: str) -> dict[str, str]:
    caps: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise UsageError(f"capability {part!r} is not key=value")
        caps[key.strip()] = value.strip()
    return caps


def requests(client: Client, args: Any) -> int:
    action, as_json = args.action, args.json
    if action == "list":
        states = frozenset(s.upper().replace("_", " ") for s in args.state or ())
        spec: RequestSpec = ListSpec(RequestFilter(states=states), listing.request_sort_key("id"))
        items = client.list_requests(spec).items
        output.dump(items) if as_json else output.requests_table(items)
        return 0
    rid = RequestID(args.id)
    if action == "show":
        info, position = client.get_request(rid), client.queue_position(rid)
        if as_json:
            output.dump({**output.plain(info), "queue_position": position})
        else:
            output.request_details(info, position)
        return 0
    if action == "close":
        client.close_request(rid)
    elif action == "prolong":
        client.prolong_access(rid)
    else:
        client.update_request(
            rid, args.priority, parse_when(args.valid_after), parse_when(args.deadline)
        )
    info = client.get_request(rid)
    if as_json:
        output.dump(info)
    else:
        ends = f", job ends {output.when(info.job.timeout)}" if info.job else ""
        output.say(f"request {rid}: {info.state.value}{ends}")
    return 0


def workers(client: Client, args: Any) -> int:
    if args.action == "list":
        spec: WorkerSpec = ListSpec(
            WorkerFilter(frozenset(args.group or ()), parse_caps(args.caps or "")),
            listing.worker_sort_key("uuid"),
        )
        items = client.list_workers(spec).items
        output.dump(items) if args.json else output.workers_table(items)
        return 0
    info = client.get_worker(WorkerUUID(args.uuid))
    output.dump(info) if args.json else output.worker_details(info)
    return 0


def admin(client: Client, args: Any) -> int:
    action = args.action
    if action in ("quota", "scheduling"):
        from coordinator.boruta_cli import shares

        return shares.admin(client, args)
    uuid = WorkerUUID(args.uuid)
    if action == "healthcheck":
        report = client.run_healthcheck(uuid)
        if args.json:
            output.dump(report)
        else:
            for c in report.checks:
                mark = "ok" if c.passed else ("FAILED" if c.critical else "failed (not critical)")
                output.say(f"{c.name}: {mark}" + (f" ({c.detail})" if c.detail else ""))
        return 0 if not report.failed_critical else 1
    if action == "setstate":
        client.set_worker_state(uuid, WorkerState(args.state.upper()))
        done = f"worker {uuid}: going to {args.state.upper()}"
    elif action == "setgroups":
        groups = [g for arg in args.groups for g in arg.split(",") if g]
        client.set_worker_groups(uuid, groups)
        done = f"worker {uuid}: groups {','.join(groups) or '(none)'}"
    elif action == "deregister":
        client.deregister(uuid)
        done = f"worker {uuid}: deregistered"
    else:
        client.identify(uuid, args.seconds)
        done = f"worker {uuid}: blinking for {args.seconds:g} s"
    output.dump({"ok": True, "worker": uuid}) if args.json else output.say(done)
    return 0
