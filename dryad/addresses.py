"""The coordinators a dryad may link to: ``HOST:PORT`` entries, checked where they enter.

One farm may run several coordinators (docs/failover.md §configuration); the dryad is
given their link addresses as a list, or a name whose A/AAAA records list them.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Final

from dryad.errors import ConfigError

MAX_COORDINATORS: Final = 16  # more is a mistake (a pasted list), and a round would take ages
_LABEL: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


@dataclass(frozen=True)
class Address:
    """One configured coordinator link address: a DNS name or an IP literal, and a port."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def literal(self) -> bool:
        """Whether the host is an IP address, dialled without asking DNS."""
        return is_ip(self.host)


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def parse_list(value: Any, key: str, default_port: int) -> tuple[Address, ...]:
    """Check a TOML list of ``HOST[:PORT]`` strings: not empty, no duplicates, at most
    ``MAX_COORDINATORS``; each problem is a ``ConfigError`` naming the entry."""
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected a list of HOST:PORT strings, got {value!r}")
    if not value:
        raise ConfigError(f'{key}: empty; give at least one, e.g. ["boruta.example.com:7175"]')
    if len(value) > MAX_COORDINATORS:
        raise ConfigError(f"{key}: {len(value)} entries; at most {MAX_COORDINATORS}")
    seen: dict[Address, int] = {}
    found: list[Address] = []
    for i, entry in enumerate(value):
        where = f"{key}[{i}]"
        if not isinstance(entry, str):
            raise ConfigError(f"{where}: expected a HOST:PORT string, got {entry!r}")
        address = parse_one(entry, where, default_port)
        if address in seen:
            raise ConfigError(f"{where}: {entry!r} repeats {key}[{seen[address]}]")
        seen[address] = i
        found.append(address)
    return tuple(found)


def parse_one(value: str, key: str, default_port: int) -> Address:
    """Check one ``HOST:PORT``, ``[IPv6]:PORT``, bare ``HOST`` or bare IPv6 address."""
    host, port = split_host_port(value, key, default_port)
    if not host:
        raise ConfigError(f"{key}: the host is missing in {value!r}")
    if not is_ip(host):
        check_name(host, key)
        host = host.lower().rstrip(".")  # one spelling, so duplicates are seen
    else:
        host = str(ipaddress.ip_address(host))
    return Address(host, port)


def check_name(host: str, key: str) -> None:
    """A DNS name: dot-separated labels of letters, digits and inner hyphens."""
    name = host[:-1] if host.endswith(".") else host
    if len(name) > 253 or not name or not all(_LABEL.fullmatch(part) for part in name.split(".")):
        raise ConfigError(f"{key}: {host!r} is neither a host name nor an IP address")


def split_host_port(
    value: str, key: str, default: int | None, *, any_port: bool = False
) -> tuple[str, int]:
    """Split HOST:PORT, [IPv6]:PORT or (with a default port) a bare HOST; with
    ``any_port``, port 0 (any free one) is allowed too."""
    host, sep, port = value.rpartition(":")
    if value.startswith("[") and "]" in value:
        end = value.index("]")
        host, rest = value[1:end], value[end + 1 :]
        sep, port = (":", rest[1:]) if rest.startswith(":") else ("", "")
        if rest and not sep:
            raise ConfigError(f"{key}: expected HOST:PORT, got {value!r}")
    elif not sep or ":" in host:  # a bare host, or a bare IPv6 address
        host, port = value, ""
    if not port:
        if default is None:
            raise ConfigError(f"{key}: expected HOST:PORT, got {value!r}")
        return host, default
    if not (port.isascii() and port.isdigit()) or not (0 if any_port else 1) <= int(port) < 65536:
        lowest = 0 if any_port else 1
        raise ConfigError(f"{key}: {port!r} is not a port number ({lowest}-65535)")
    return host, int(port)
