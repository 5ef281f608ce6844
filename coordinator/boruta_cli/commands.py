"""``boruta requests|workers|admin …``: one API call each, answered as a table or JSON."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from coordinator.boruta_cli import keys, known_hosts, output
from coordinator.client import Client, RequestInfo, WorkerInfo
from coordinator.client.http import RequestSpec, WorkerSpec
from coordinator.domain import listing
from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.listing import ListSpec, RequestFilter, WorkerFilter
from coordinator.domain.states import RequestState, WorkerState
from coordinator.errors import BorutaError, ModificationForbidden

RECOVERY_WAIT: Final = 60.0  # seconds a FAILED worker gets to reach MAINTENANCE
RECOVERY_POLL: Final = 0.25  # seconds between looks at it meanwhile


class UsageError(Exception):
    """A bad argument the parser cannot check (exit code 2)."""


class Refused(Exception):
    """Something the coordinator would refuse, said better by the CLI (exit code 1)."""


_DURATION = re.compile(r"^\+(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def ended(info: RequestInfo) -> str:
    reason = f": {info.reason}" if info.reason else ""
    return f"request {info.id} is {info.state.value}{reason}"


def parse_when(text: str | None) -> datetime | None:
    """``+DURATION`` (``+90s``, ``+30m``, ``+4h``, ``+1d``) from now, or an RFC 3339 time."""
    if text is None:
        return None
    try:
        if m := _DURATION.match(text):
            return datetime.now(UTC) + timedelta(**{_UNITS[m[2]]: float(m[1])})
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"not a time: {text!r} (use RFC 3339 or +30m, +4h, +1d)") from None
    except OverflowError:
        raise UsageError(f"too far away: {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def parse_caps(text: str) -> dict[str, str]:
    """``key=value[,key=value]``: a key given twice or left empty is refused, since the
    request would silently ask for something else."""
    caps: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = (s.strip() for s in part.partition("="))
        if not sep or not key:
            raise UsageError(f"capability {part!r} is not key=value")
        if key in caps:
            raise UsageError(f"capability {key!r} is given twice")
        caps[key] = value
    return caps


def requests(client: Client, args: Any) -> int:
    action, as_json = args.action, args.json
    if action == "list":
        states = frozenset(state.value for state in args.state or ())
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
        try:
            client.close_request(rid)
        except ModificationForbidden:
            raise Refused(
                f"{ended(client.get_request(rid))}; only a WAITING or IN PROGRESS request "
                "can be closed"
            ) from None
        keys.forget(rid)
        known_hosts.forget(rid)
    elif action == "prolong":
        client.prolong_access(rid)
    else:
        client.update_request(
            rid, args.priority, parse_when(args.valid_after), parse_when(args.deadline)
        )
    info = client.get_request(rid)
    end = _ended_at(client, info) if action == "close" else None
    if as_json:
        output.dump({**output.plain(info), "ended_at": end and output.when(end)})
    elif end is not None:
        what = ", job ended" if info.state is RequestState.DONE else " at"
        output.say(f"request {rid}: {info.state.value}{what} {output.when(end)}")
    else:
        running = info.job and info.state is RequestState.IN_PROGRESS
        ends = f", job ends {output.when(info.job.timeout)}" if info.job and running else ""
        output.say(f"request {rid}: {info.state.value}{ends}")
    return 0


def _ended_at(client: Client, info: RequestInfo) -> datetime | None:
    """When the coordinator recorded the request's final state, from its history; None
    from a coordinator without one (the original)."""
    try:
        changes = client.history("request", str(info.id), limit=5)
    except BorutaError:
        return None
    return next((c.at for c in reversed(changes) if c.new == info.state.value), None)


def workers(client: Client, args: Any) -> int:
    if args.action == "list":
        spec: WorkerSpec = ListSpec(
            WorkerFilter(frozenset(args.group or ()), parse_caps(args.caps) if args.caps else {}),
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
        target = WorkerState(args.state.upper())
        if target is WorkerState.IDLE:
            _to_maintenance_first(client, client.get_worker(uuid))
        client.set_worker_state(uuid, target)
        done = f"worker {uuid}: going to {target.value}"
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


def _to_maintenance_first(client: Client, worker: WorkerInfo) -> None:
    """IDLE is allowed only from MAINTENANCE (docs/boruta-api.md §set state); a FAILED
    worker goes there first, through BUSY, which takes its dryad a moment."""
    if worker.state not in (WorkerState.FAIL, WorkerState.BUSY):
        return
    uuid, again = worker.uuid, f"boruta admin setstate {worker.uuid} idle"
    if worker.state is WorkerState.FAIL:
        why = f" ({worker.reason})" if worker.reason else ""
        output.say(
            f"worker {uuid} is FAILED{why}; IDLE is allowed only from MAINTENANCE, "
            "so it goes to MAINTENANCE first",
            err=True,
        )
        client.set_worker_state(uuid, WorkerState.MAINTENANCE)
    limit = time.monotonic() + RECOVERY_WAIT
    while (now := client.get_worker(uuid)).state is WorkerState.BUSY:
        if time.monotonic() > limit:
            raise Refused(
                f"worker {uuid} is still BUSY (on its way to MAINTENANCE) after "
                f"{RECOVERY_WAIT:g} s; once `boruta workers show {uuid}` says MAINTENANCE, "
                f"run: {again}"
            )
        time.sleep(RECOVERY_POLL)
    if now.state is WorkerState.FAIL:
        why = f": {now.reason}" if now.reason else ""
        raise Refused(
            f"worker {uuid} FAILED again on its way to MAINTENANCE{why}; fix that, then "
            f"run: {again}"
        )
    if now.state is WorkerState.MAINTENANCE:
        output.say(f"worker {uuid}: in MAINTENANCE", err=True)
