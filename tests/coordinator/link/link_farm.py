"""LinkFarm: the dryad link on a loopback port with the real store and service behind it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from coordinator.domain.clock import FakeClock
from coordinator.link.registry import DryadLink
from coordinator.service.operations import Service
from coordinator.store.sql import SqlStore
from coordinator.tokens import hash_token, new_token

GRACE = 0.5  # seconds a dryad may be away before its worker FAILS, in these tests


@dataclass
class LinkFarm:
    """A running link: its port, the service behind it and the parts to inspect."""

    port: int
    service: Service
    link: DryadLink
    store: SqlStore
    clock: FakeClock
    host_key: Path

    def token(self, valid_for: timedelta = timedelta(hours=1)) -> str:
        token = new_token()
        self.store.add_enrol_token(hash_token(token), self.clock.now() + valid_for)
        return token
