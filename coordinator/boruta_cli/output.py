"""What the CLI prints: aligned tables for people, JSON for scripts."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from coordinator.client.models import RequestInfo, WorkerInfo


def say(text: str = "", *, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")
    stream.flush()


def dump(data: Any) -> None:
    say(json.dumps(plain(data), indent=2, sort_keys=True))


def plain(data: Any) -> Any:
    """Dataclasses, enums and times as JSON values (times in RFC 3339, UTC)."""
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        return {f.name: plain(getattr(data, f.name)) for f in dataclasses.fields(data)}
    if isinstance(data, datetime):
        return when(data)
    if isinstance(data, timedelta):
        return data.total_seconds()
    if isinstance(data, Mapping):
        return {str(k): plain(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [plain(v) for v in data]
    if isinstance(data, bytes):
        return data.decode()
    return data


def when(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        say("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def caps_text(caps: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(caps.items()) if k != "UUID")


def requests_table(items: Sequence[RequestInfo]) -> None:
    rows = [
        [
            str(r.id),
            str(r.priority),
            r.state.value,
            r.owner,
            r.job.worker if r.job else "-",
            when(r.job.timeout) if r.job else when(r.deadline),
            caps_text(r.caps),
        ]
        for r in items
    ]
    table(["ID", "PRI", "STATE", "OWNER", "WORKER", "ENDS/DEADLINE", "CAPS"], rows)


def request_details(r: RequestInfo, position: int | None) -> None:
    lines = [
        ("request", str(r.id)),
        ("state", r.state.value + (f" ({r.reason})" if r.reason else "")),
        ("priority", str(r.priority)),
        ("owner", r.owner + (f" (groups {','.join(r.groups)})" if r.groups else "")),
        ("caps", caps_text(r.caps) or "-"),
        ("valid after", when(r.valid_after)),
        ("deadline", when(r.deadline)),
    ]
    if position is not None:
        lines.append(("queue position", f"{position} waiting ahead"))
    if r.job:
        lines += [("worker", r.job.worker), ("job ends", when(r.job.timeout))]
    _pairs(lines)


def workers_table(items: Sequence[WorkerInfo]) -> None:
    rows = [
        [
            w.uuid,
            w.state.value,
            {True: "up", False: "down", None: "-"}[w.connected],
            ",".join(w.groups) or "-",
            caps_text(w.caps),
            w.reason,
        ]
        for w in items
    ]
    table(["UUID", "STATE", "LINK", "GROUPS", "CAPS", "REASON"], rows)


def worker_details(w: WorkerInfo) -> None:
    lines = [
        ("worker", w.uuid),
        ("state", w.state.value + (f" ({w.reason})" if w.reason else "")),
        ("link", {True: "up", False: "down", None: "-"}[w.connected]),
        ("groups", ",".join(w.groups) or "-"),
        ("caps", caps_text(w.caps) or "-"),
    ]
    if w.health is not None:
        at, report = w.health
        lines.append(("healthcheck", when(at)))
        lines += [
            (
                f"  {c.name}",
                ("ok" if c.passed else "FAILED") + (f": {c.detail}" if c.detail else ""),
            )
            for c in report.checks
        ]
    _pairs(lines)


def _pairs(lines: Sequence[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        say(f"{key.ljust(width)}  {value}")
