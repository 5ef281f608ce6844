"""Where the link runs: the SSH port and subsystem, and the virtual address of job tunnels."""

from __future__ import annotations

from typing import Final

LINK_PORT: Final = 7175  # the original Boruta's RPC port
LINK_SUBSYSTEM: Final = "boruta-link@v1"
# Job tunnels: once registered, the dryad asks for a remote port forward of this virtual
# address (no port opens on the coordinator for it); each user connection to a job's
# tunnel port then arrives at the dryad as a forwarded-tcpip channel to it, which the
# dryad connects to its local sshd.
TUNNEL_HOST: Final = "boruta-sshd"
TUNNEL_PORT: Final = 22
