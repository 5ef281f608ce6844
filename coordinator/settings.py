"""The coordinator's settings: one frozen value loaded from TOML, then the command line."""

from __future__ import annotations

import socket
import tomllib
from dataclasses import dataclass, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from coordinator.domain.fairshare import Policy, Scheduling
from coordinator.domain.requests import RequestPolicy


class SettingsError(ValueError):
    """A config file or flag that cannot be used; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting with its default; the README's configuration section lists them."""

    http: str = "127.0.0.1:8487"  # HOST:PORT of the HTTP API
    db: str = "boruta.db"  # a SQLite file path, or a postgresql:// URL
    sqlite_sync: str = "FULL"  # FULL survives power loss; NORMAL survives a process crash
    job_timeout: int = 3600  # seconds a job runs before DONE, and each prolong's period
    max_job_length: int = 86400  # seconds: prolong never takes a job past this
    job_username: str = "boruta-user"  # the dryads' job user (docs/boruta-api.md §access)
    max_body_bytes: int = 1 << 20
    max_acquire_wait: int = 600  # seconds acquire_worker?wait= may block
    log_level: str = "INFO"
    # The coordinator's event loop: "uvloop" (libuv's, about half the CPU per HTTP request
    # of asyncio's own) or "asyncio" (docs/architecture.md §the event loop).
    event_loop: str = "uvloop"
    link: str = "127.0.0.1:7175"  # HOST:PORT the dryads dial (SSH); "" turns the link off
    link_host_key: str = ""  # the link's SSH host key file; "" = link_host_key beside the db
    link_grace: int = 60  # seconds a dryad may be away before its worker FAILS
    link_keepalive: int = 5  # seconds between keepalives; 3 missed = the dryad is gone
    # On PostgreSQL: seconds a serving coordinator that cannot reach the database keeps
    # serving (reads; writes get 503) before it stands by, so that its dryads move to a
    # coordinator that can write (docs/failover.md §standby).
    lease_grace: int = 15
    self_heal: bool = False  # a FAILED worker whose checks pass again returns to service
    # RSA job keys made ahead by one process per core, in idle time: a PREPARE that
    # wants an RSA key waits only when this stock is empty (docs/boruta-api.md §keys).
    key_stock: int = 32
    # Finished requests held in memory besides the live ones (the newest by ID); older ones
    # are read from the database when asked for (docs/architecture.md §requests in memory).
    finished_in_memory: int = 10_000
    # The order within a priority (docs/scheduling.md §order): "fifo" as the original, or
    # "fair" (least recent usage first); an admin may switch it until the next restart.
    scheduling: str = "fifo"
    usage_half_life: int = 86400  # seconds until a board-second of usage counts half
    # /metrics asks for a token like the API unless this is set, for a Prometheus on a
    # trusted network without one: the metrics show who uses the farm and how.
    metrics_public: bool = False
    webhook_timeout: float = 10.0  # seconds per delivery attempt
    webhook_max_attempts: int = 8  # attempts before a delivery is dropped
    webhook_backoff: float = 1.0  # seconds before the first retry; doubled for each next one
    # How users reach a job's worker: "dialback" = a per-job port here; for each connection
    # the dryad dials back a plain TCP connection (its user's SSH, not encrypted again)
    # that a relay thread splices to the user's (the board needs no inbound port; the
    # link carries it where the dial-back cannot come); "link" = a per-job port here,
    # carried inside the dryad link; "direct" = a per-job port here that dials the
    # worker's registered sshd address; "none" = users dial that address.
    tunnel_mode: str = "dialback"
    # HOST:PORT the dial-back listener binds; dryads dial that port at the host they dial
    # the link at. "" = the host of `link` and the port after its (7176 by default).
    dialback: str = ""
    tunnel_ports: str = "20000-20999"  # FIRST-LAST: the per-job ports, one per running job
    tunnel_bind: str = ""  # the address tunnels listen on; "" = the host of `http`
    # The host users dial, put in AccessInfo.Addr: Go clients need an IP literal there,
    # so a name is resolved once at start-up. "" = tunnel_bind when that is a specific
    # address, else the address this host's name resolves to.
    public_host: str = ""
    # On PostgreSQL: where the other coordinators reach this one's HTTP API when it serves
    # (they forward their clients' requests to it: docs/failover.md §scale-out), as
    # http://HOST:PORT. "" = http://<public_host, else the host of `http` unless a
    # wildcard, else this machine's name>:<the port of `http`>.
    peer_url: str = ""
    # On PostgreSQL: whether this coordinator also holds dryad links while it follows
    # (announced to the leader, their calls and jobs' tunnels served here), so links and
    # tunnel traffic spread over the coordinators (docs/failover.md §scale-out).
    follower_link: bool = True
    # Slow and idle HTTP clients (docs/architecture.md §connections): seconds to send a
    # request's headers, to send the next request on a kept-alive connection, and for a
    # response to make progress towards a client that does not read; and the connections
    # one client address may hold (over it, its oldest idle one is closed).
    http_header_timeout: float = 10.0
    http_keepalive_timeout: float = 5.0
    http_send_timeout: float = 30.0
    http_max_per_client: int = 128
    # Seconds the event loop's lag probe sleeps between wake-ups (docs/events.md §loop lag):
    # how late it wakes shows in /metrics; 0 turns it off.
    loop_lag_probe: float = 0.01

    @property
    def http_host(self) -> str:
        return self.http.rpartition(":")[0].strip("[]") or "127.0.0.1"

    @property
    def http_port(self) -> int:
        return int(self.http.rpartition(":")[2])

    @property
    def peer_address(self) -> str:
        """``peer_url``, or the one derived from ``public_host`` and ``http``; "" when the
        HTTP port is chosen at start (0), as nobody could be told it beforehand."""
        if self.peer_url:
            return self.peer_url.rstrip("/")
        if self.http_port == 0:
            return ""
        host = self.public_host or self.http_host
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()
        return f"http://{f'[{host}]' if ':' in host else host}:{self.http_port}"

    @property
    def tunnel_port_range(self) -> range:
        first, _, last = self.tunnel_ports.partition("-")
        return range(int(first), int(last or first) + 1)

    @property
    def tunnel_bind_host(self) -> str:
        return self.tunnel_bind.strip("[]") or self.http_host

    @property
    def dialback_address(self) -> tuple[str, int]:
        """Where dial-backs are accepted: ``dialback``, else next to the link."""
        if self.dialback:
            host, _, port = self.dialback.rpartition(":")
            return host.strip("[]"), int(port)
        host, _, port = self.link.rpartition(":")
        return host.strip("[]"), int(port) + 1 if port and int(port) else 0

    @property
    def link_host_key_path(self) -> Path:
        if self.link_host_key:
            return Path(self.link_host_key)
        db = Path(self.db) if "://" not in self.db else Path.cwd() / "boruta.db"
        return db.parent / "link_host_key"

    @property
    def scheduling_rules(self) -> Scheduling:
        return Scheduling(Policy(self.scheduling), timedelta(seconds=self.usage_half_life))

    @property
    def policy(self) -> RequestPolicy:
        return RequestPolicy(
            job_timeout=timedelta(seconds=self.job_timeout),
            max_job_length=timedelta(seconds=self.max_job_length),
        )

    def validate(self) -> Settings:
        host, sep, port = self.http.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
            raise SettingsError(f"http must be HOST:PORT, not {self.http!r}")
        if self.sqlite_sync not in ("FULL", "NORMAL"):
            raise SettingsError("sqlite_sync must be FULL or NORMAL")
        if self.event_loop not in ("uvloop", "asyncio"):
            raise SettingsError(f"event_loop must be uvloop or asyncio, not {self.event_loop!r}")
        for name in (
            "job_timeout",
            "max_job_length",
            "max_body_bytes",
            "link_grace",
            "link_keepalive",
            "lease_grace",
            "webhook_timeout",
            "webhook_max_attempts",
            "webhook_backoff",
            "http_header_timeout",
            "http_keepalive_timeout",
            "http_send_timeout",
            "http_max_per_client",
            "key_stock",
        ):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be positive")
        if self.link:
            lhost, lsep, lport = self.link.rpartition(":")
            if not lsep or not lport.isdigit() or not 0 <= int(lport) < 65536:
                raise SettingsError(f"link must be HOST:PORT or empty, not {self.link!r}")
        if self.tunnel_mode not in ("dialback", "link", "direct", "none"):
            raise SettingsError(
                f"tunnel_mode must be dialback, link, direct or none, not {self.tunnel_mode!r}"
            )
        if self.dialback:
            dhost, dsep, dport = self.dialback.rpartition(":")
            if not dsep or not dport.isdigit() or not 0 <= int(dport) < 65536:
                raise SettingsError(f"dialback must be HOST:PORT or empty, not {self.dialback!r}")
        elif self.link and self.link.rpartition(":")[2] == "65535":
            raise SettingsError("dialback must be set when link uses port 65535")
        first, sep, last = self.tunnel_ports.partition("-")
        if not (first.isdigit() and (last if sep else first).isdigit()) or not (
            0 < int(first) <= int(last or first) < 65536
        ):
            raise SettingsError(
                f"tunnel_ports must be FIRST-LAST within 1-65535, not {self.tunnel_ports!r}"
            )
        if self.peer_url:
            _check_peer_url(self.peer_url)
        if self.scheduling not in ("fifo", "fair"):
            raise SettingsError(f"scheduling must be fifo or fair, not {self.scheduling!r}")
        if not 60 <= self.usage_half_life <= 365 * 86400:
            raise SettingsError(
                "usage_half_life must be from 60 to 31536000 seconds (zero would forget all"
                f" usage at once), not {self.usage_half_life}"
            )
        if not 0 <= self.loop_lag_probe <= 1:
            raise SettingsError("loop_lag_probe must be from 0 to 1 second")
        if self.finished_in_memory < 0:
            raise SettingsError("finished_in_memory must be zero or more")
        if self.max_job_length < self.job_timeout:
            raise SettingsError("max_job_length must be at least job_timeout")
        return self


def _check_peer_url(url: str) -> None:
    problem = f"peer_url must be http://HOST:PORT, not {url!r}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise SettingsError(problem) from None
    if (
        parts.scheme != "http"
        or not parts.hostname
        or port is None
        or not 0 < port < 65536
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
        or not url.isascii()
        or any(c.isspace() for c in url)
    ):
        raise SettingsError(problem)


def load(path: Path | None, **overrides: Any) -> Settings:
    """Defaults, then the TOML file (a flat table or ``[coordinator]``), then ``overrides``."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"cannot read {path}: {exc}") from exc
        values = data.get("coordinator", data)
    known = {f.name: f for f in fields(Settings)}
    for key, value in values.items():
        if key not in known:
            raise SettingsError(f"{path}: unknown setting {key!r}")
        expected = type(getattr(Settings(), key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = values[key] = float(value)  # `timeout = 10` means 10.0
        if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
            raise SettingsError(f"{path}: {key} must be a {expected.__name__}")
    settings = replace(Settings(), **values)
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    return settings.validate()
