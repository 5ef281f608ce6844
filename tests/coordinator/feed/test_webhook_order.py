"""Webhooks fed from memory: each event delivered once and in event order, also when memory
is full and the rest wait in the store; events stored while the coordinator was down are
delivered after a restart."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from coordinator.domain.model import Transition
from coordinator.feed.events import Broadcaster
from coordinator.feed.webhooks import Webhooks
from coordinator.settings import Settings
from coordinator.store import Changes
from coordinator.store.sql import SqlStore
from tests.coordinator.feed.test_webhooks import add_hook, receiving, until_settled
from tests.plugins.app_harness import AppFarm, Template, open_farm

T0 = datetime(2026, 1, 1, tzinfo=UTC)

pytestmark = pytest.mark.anyio


def _parts(farm: AppFarm) -> tuple[Webhooks, Broadcaster]:
    coordinator = farm.app.state.coordinator
    return coordinator.webhooks, coordinator.events


@pytest.mark.parametrize("memory", [1000, 3])
async def test_each_event_is_delivered_once_in_event_order(farm: AppFarm, memory: int) -> None:
    hooks, events = _parts(farm)
    hooks._memory = memory  # 3: most deliveries wait in the store for room in memory
    async with receiving(200) as (receiver, url):
        hook = await add_hook(farm, url, ["worker", "request"])
        await farm.worker(9)
        await until_settled(farm, hook, 1)  # the webhook is known: its backlog was read
        reads = hooks.store_reads
        for n in range(1, 9):
            await farm.worker(n)  # one worker event each
            await farm.new_request({"Caps": {"board": f"b{n}"}})  # WAITING, then INVALID
        found = (await until_settled(farm, hook, 25))[1:]
        with anyio.fail_after(10):
            await hooks.caught_up(events.cursor)
    sent = [json.loads(body)["id"] for _, body in receiver.got[1:]]
    assert sent == sorted(found_ids := [d["Event"] for d in found])
    assert len(set(sent)) == len(sent) == 24
    assert found_ids == list(range(found_ids[0], found_ids[0] + 24))
    assert all(d["Status"] == "delivered" and d["Attempts"] == 1 for d in found)
    # Read from the store: only what memory had no room for.
    assert (hooks.store_reads > reads) is (memory == 3)


async def test_a_retry_does_not_hold_up_the_next_events(farm: AppFarm) -> None:
    async with receiving(500, 200) as (receiver, url):
        hook = await add_hook(farm, url, ["worker"])
        for n in range(1, 4):
            await farm.worker(n)
        found = await until_settled(farm, hook, 3)
    sent = [json.loads(body)["id"] for _, body in receiver.got]
    first, *rest = sorted(d["Event"] for d in found)
    assert sent == [first, *rest, first]  # the one that got the 500 came again, last
    assert [d["Attempts"] for d in found] == [2, 1, 1]


async def test_events_stored_while_down_are_delivered_after_a_restart(
    tmp_path: Path, template: Template, settings: Settings
) -> None:
    async with receiving(200) as (receiver, url):
        async with open_farm(template, tmp_path / "first.db", settings) as first:
            hook = await add_hook(first, url, ["worker"])
        shutil.copyfile(tmp_path / "first.db", tmp_path / "saved.db")
        # Committed, but the coordinator went down before their deliveries were stored.
        store = SqlStore.open(tmp_path / "saved.db")
        try:
            made = store.commit(
                Changes(
                    transitions=[
                        Transition(T0, "worker", f"w{n}", "", "MAINTENANCE") for n in range(3)
                    ]
                )
            )
        finally:
            store.close()
        saved = Template(tmp_path / "saved.db", template.tokens)
        async with open_farm(saved, tmp_path / "second.db", settings) as second:
            found = await until_settled(second, hook, 3)
    assert [json.loads(body)["id"] for _, body in receiver.got] == [n.id for n in made]
    assert [d["Event"] for d in found] == [n.id for n in made]
