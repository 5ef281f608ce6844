"""``boruta usage``, ``boruta admin quota|scheduling`` and the client's quota calls, against
the app in-process (docs/scheduling.md)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from coordinator.boruta_cli.commands import UsageError
from coordinator.boruta_cli.shares import duration_text, parse_duration
from coordinator.client import AsyncClient
from coordinator.domain.fairshare import Policy, Scheduling
from coordinator.domain.quotas import Quota, Quotas
from coordinator.errors import BadQuota, Forbidden, NotFound, QuotaExceeded
from tests.coordinator.client.cli_runner import Cli
from tests.plugins.app_harness import AppFarm

pytestmark = pytest.mark.anyio


async def test_the_client_sets_lists_and_removes_quotas(
    farm: AppFarm, root: AsyncClient, alice: AsyncClient
) -> None:
    await root.set_quota("user", "alice", Quota(max_held=2, max_job=timedelta(hours=2)))
    assert await alice.quotas() == Quotas(
        users={"alice": Quota(max_held=2, max_job=timedelta(hours=2))}
    )
    with pytest.raises(Forbidden):
        await alice.set_quota("user", "alice", Quota(max_held=9))
    with pytest.raises(BadQuota, match="MaxHeld must be a whole number from 0 to 10000"):
        await root.set_quota("user", "alice", Quota(max_held=-3))
    with pytest.raises(NotFound, match="group lab not found"):
        await root.set_quota("group", "lab", Quota(max_held=1))
    await root.delete_quota("user", "alice")
    assert await root.quotas() == Quotas()
    with pytest.raises(ValueError, match="of a user or a group"):
        await root.delete_quota("team", "x")


async def test_the_client_raises_quota_exceeded_on_create(
    farm: AppFarm, root: AsyncClient, alice: AsyncClient
) -> None:
    await farm.parked_worker()
    await root.set_quota("user", "alice", Quota(max_waiting=0))
    with pytest.raises(QuotaExceeded, match="alice has 0 requests waiting, the limit is 0"):
        await alice.new_request(8, {"board": "rpi4"})


async def test_the_client_reads_usage_and_switches_scheduling(
    farm: AppFarm, root: AsyncClient, alice: AsyncClient
) -> None:
    assert await alice.scheduling() == Scheduling()
    switched = await root.set_scheduling(Policy.FAIR, timedelta(hours=6))
    assert switched == Scheduling(Policy.FAIR, timedelta(hours=6))
    report = await alice.usage()
    assert report.scheduling == switched
    assert [u.name for u in report.users] == ["alice", "bob", "root"]


async def test_usage_and_quota_commands(farm: AppFarm, cli: Cli) -> None:
    code, out, err = await cli("admin", "quota", "set", "--user", "bob", "--max-held", "2",
                               "--max-job", "2h", as_="root")  # fmt: skip
    assert (code, out, err) == (0, "quota of user bob: max held 2, max waiting -, max job 2h\n", "")
    code, out, _ = await cli("admin", "quota", "list")
    assert out.splitlines()[1].split() == ["user", "bob", "2", "-", "2h"]
    code, out, _ = await cli("--json", "admin", "quota", "list")
    assert json.loads(out)["users"]["bob"]["max_held"] == 2
    code, _, err = await cli("admin", "quota", "set", "--user", "bob", "--max-held", "-1",
                             as_="root")  # fmt: skip
    assert code == 1 and "MaxHeld must be a whole number from 0 to 10000, not -1" in err
    code, _, err = await cli("admin", "quota", "set", "--user", "bob", "--max-held", "1")
    assert code == 4 and "only an admin" in err
    code, _, err = await cli("admin", "quota", "set", "--group", "x", "--max-job", "soon",
                             as_="root")  # fmt: skip
    assert code == 2 and "--max-job: not a duration" in err
    code, out, _ = await cli("usage")
    lines = out.splitlines()
    assert lines[0] == "scheduling: fifo (usage half-life 1d)"
    assert lines[1].split()[:4] == ["USER", "BOARD-HOURS", "HOLDS", "WAITING"]
    assert ["bob", "0.00", "0", "0", "2", "-", "2h"] in [line.split() for line in lines[2:]]
    code, out, _ = await cli("--json", "usage")
    assert json.loads(out)["scheduling"] == {"policy": "fifo", "half_life": 86400.0}
    assert await cli("admin", "quota", "remove", "--user", "bob", as_="root") == (
        0, "quota of user bob removed\n", "",
    )  # fmt: skip


async def test_scheduling_command_shows_and_switches(farm: AppFarm, cli: Cli) -> None:
    assert await cli("admin", "scheduling") == (0, "scheduling: fifo (usage half-life 1d)\n", "")
    assert await cli("admin", "scheduling", "fair", "--half-life", "12h", as_="root") == (
        0, "scheduling: fair (usage half-life 12h)\n", "",
    )  # fmt: skip
    code, _, err = await cli("admin", "scheduling", "--half-life", "0", as_="root")
    assert code == 1 and "half-life must be from 60" in err


@pytest.mark.parametrize(
    ("text", "seconds"), [("7200", 7200), ("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400)]
)
def test_durations_read_and_written(text: str, seconds: int) -> None:
    span = parse_duration(text, "x")
    assert span == timedelta(seconds=seconds)
    assert parse_duration(duration_text(span), "x") == span


def test_durations_refuse_other_words() -> None:
    assert parse_duration(None, "x") is None
    assert duration_text(None) == "-"
    assert duration_text(timedelta(seconds=61)) == "61s"
    with pytest.raises(UsageError):
        parse_duration("-5m", "--max-job")
