"""The composition root: which tunnels settings assemble, as the coordinator's claim of its
tunnel range on the host assumes (docs/failover.md §tunnel range claim)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from coordinator.assembly import Parts, assemble, binds_tunnel_ports
from coordinator.settings import Settings
from coordinator.store.sql import SqlStore
from coordinator.tunnels.listeners import LinkTunnels
from coordinator.tunnels.relayed import Relayed


@pytest.mark.parametrize("mode", ["dialback", "link", "direct", "none"])
@pytest.mark.parametrize("link", ["127.0.0.1:0", ""])
def test_binds_tunnel_ports_says_what_assemble_builds(
    store: SqlStore, mode: str, link: str
) -> None:
    settings = replace(Settings(), tunnel_mode=mode, link=link)
    tunnels = assemble(settings, Parts(store)).tunnels
    assert binds_tunnel_ports(settings) is isinstance(tunnels, LinkTunnels)
    assert binds_tunnel_ports(settings) is (mode == "direct" or (mode != "none" and bool(link)))
    connector = getattr(tunnels, "_connector", None)
    if isinstance(connector, Relayed):
        connector.relay.stop()  # its wake-up socket pair, made when assembled
