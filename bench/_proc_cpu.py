"""CPU seconds a process (and, if asked, its descendants) has used, from /proc; stdlib only,
so that labgrid's half of the job-cycle bench can use it from labgrid's own venv."""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def own_cpu(pid: int) -> float:
    """User plus system CPU seconds of ``pid`` itself (all its threads), 0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name, in parentheses, may hold spaces: count fields after its end.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14 and 15)


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``, children first."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found.extend(children)
            todo.extend(children)
    return found


def tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of ``pid`` and of each live descendant, by pid."""
    return {p: own_cpu(p) for p in [pid, *descendants(pid)]}


def used_since(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two ``tree_cpu`` readings (a process that appeared in
    between counts from zero; one that ended in between is lost, so keep makers alive)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())
