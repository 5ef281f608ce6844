"""dryad-seed: apply the technician's seed file to the dryad, and make its identity.

The seed file (boruta-seed.toml on the card's FAT boot partition) is edited on any
computer before the board's first power-on:

    coordinator = "boruta.lab:7175"   # HOST:PORT of the coordinator's dryad link
    enrol_token = "..."               # from `boruta-coordinator enrol-token create`
    hostname = ""                     # optional; empty: muxpi-<MAC> (first boot)
    ssh_authorized_keys = [           # optional; admins who may log in as root
        "ssh-ed25519 AAAAC3Nza... alice@lab",
    ]
    dut_address = ""                  # optional; the USB Ethernet towards the DUT:
                                      # "192.168.69.1/24" (the image's default), or
                                      # "none" to leave that interface alone
    dut_dhcp_server = true            # optional; hand the DUT an address on it
    [caps]
    device_type = "rpi4"

At boot (dryad-seed.service, before dryad.service) this merges it into the dryad's
configuration, which is validated by the dryad's own parser before it replaces the
old one; the token goes to the configured enrol_token_file (0600). Then the seed is
renamed to boruta-seed.applied.toml with the token removed, so the secret does not
stay on a partition any card reader can read, and the file is not applied twice.
A seed that does not validate is left in place, with the reason written beside it in
boruta-seed.error.txt, where the technician who edited it will look.

ssh_authorized_keys become root's keys, in a block of /root/.ssh/authorized_keys that
dryad-seed owns (a new seed replaces that block; lines outside it are kept). Root has
no password on the image, so without keys there is no way in over SSH. Each line must
be one public key, TYPE BASE64 [COMMENT] as in a .pub file; anything else (a private
key, options, a wrapped line) refuses the whole seed with the line's number.

With --identity FILE it also creates the dryad's UUID and key (first boot) and writes
them, for the admin, to FILE (on the boot partition too).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import ipaddress
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from dryad.errors import ConfigError
from dryad.identity import Identity
from dryad.settings import DEFAULT_CONFIG, parse

SEED_KEYS = frozenset(
    {
        "coordinator", "enrol_token", "hostname", "caps", "ssh_authorized_keys",
        "dut_address", "dut_dhcp_server",
    }
)  # fmt: skip
DUT_NETWORK = Path("/etc/systemd/network/30-muxpi-dut.network")
AUTHORIZED_KEYS = Path("/root/.ssh/authorized_keys")
BLOCK_BEGIN = "# >>> dryad-seed: keys from boruta-seed.toml (replaced by the next seed)"
BLOCK_END = "# <<< dryad-seed"
KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)
COMMENT = re.compile(r"^[\x20-\x7e]*$")  # printable ASCII: sshd's file is line-based
HOSTNAME = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")
HEADER = (
    "# The Boruta dryad's configuration. Written by dryad-seed from the boot partition's\n"
    "# boruta-seed.toml; later edits here stay until a new seed file is applied.\n\n"
)
APPLIED = "boruta-seed.applied.toml"
ERROR = "boruta-seed.error.txt"


class SeedError(Exception):
    """The seed cannot be applied; the message is for the technician."""


def apply_seed(
    seed_path: Path,
    config_path: Path,
    *,
    set_hostname: bool = True,
    authorized_keys: Path = AUTHORIZED_KEYS,
    network_file: Path = DUT_NETWORK,
) -> bool:
    """Merge the seed into the configuration; False when the seed asks for nothing."""
    try:
        # utf-8-sig: Notepad may start the file with a byte-order mark.
        seed = tomllib.loads(seed_path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SeedError(f"cannot read it: {exc}") from exc
    unknown = sorted(set(seed) - SEED_KEYS)
    if unknown:
        raise SeedError(f"{unknown[0]}: unknown key; known keys are {', '.join(sorted(SEED_KEYS))}")
    for key in ("coordinator", "enrol_token", "hostname"):
        if not isinstance(seed.get(key, ""), str):
            raise SeedError(f'{key}: expected a string in quotes, e.g. {key} = "..."')
    coordinator = seed.get("coordinator", "").strip()
    token = seed.get("enrol_token", "").strip()
    hostname = seed.get("hostname", "").strip()
    caps = seed.get("caps", {})
    if hostname and not HOSTNAME.match(hostname):
        raise SeedError(f"hostname: {hostname!r} is not a host name (letters, digits, '-')")
    keys = parse_keys(seed.get("ssh_authorized_keys", []))
    dut = dut_network(seed)
    if not (coordinator or token or hostname or caps or keys or dut is not None):
        return False  # the untouched template shipped on the image
    try:
        config: dict[str, Any] = tomllib.loads(config_path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SeedError(f"{config_path}: cannot read it: {exc}") from exc
    if coordinator:
        config.pop("coordinators", None)  # the seed's one address replaces a list
        config["coordinator"] = coordinator
    if caps:
        config["caps"] = caps
    if token:
        # The token lives in its own 0600 file, never in the world-readable config.
        config.pop("enrol_token", None)
        config.setdefault("enrol_token_file", "/var/lib/boruta-dryad/enrol-token")
    try:
        settings = parse(config, base=config_path.parent)
    except ConfigError as exc:
        raise SeedError(str(exc)) from exc
    if token:
        token_file = settings.enrol_token_file
        assert token_file is not None  # set just above
        token_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_atomically(token_file, token + "\n", 0o600)
    if keys:
        try:
            install_keys(authorized_keys, keys)
        except OSError as exc:
            raise SeedError(f"ssh_authorized_keys: cannot write {authorized_keys}: {exc}") from exc
    _write_atomically(config_path, HEADER + dump_toml(config), 0o644)
    if dut is not None:
        _apply_network(network_file, dut, reload=set_hostname)  # both: the live system
    if hostname and set_hostname:
        _set_hostname(hostname)
    # Keep what was applied, minus the secret, so the technician can see it was taken.
    applied: dict[str, Any] = {k: v for k, v in seed.items() if k != "enrol_token"}
    if token:
        applied["enrol_token_applied"] = True
    _write_atomically(seed_path.with_name(APPLIED), dump_toml(applied), 0o644)
    seed_path.unlink()
    seed_path.with_name(ERROR).unlink(missing_ok=True)
    return True


def dut_network(seed: dict[str, Any]) -> str | None:
    """The networkd file for the USB Ethernet towards the DUT: None to keep the one
    there is, "" to remove it (the interface is left alone), else the file's text."""
    address = seed.get("dut_address", "")
    dhcp = seed.get("dut_dhcp_server", True)
    if not isinstance(address, str):
        raise SeedError('dut_address: expected a string, e.g. dut_address = "192.168.69.1/24"')
    if not isinstance(dhcp, bool):
        raise SeedError("dut_dhcp_server: expected true or false (no quotes)")
    address = address.strip()
    if not address:
        if "dut_dhcp_server" in seed:
            raise SeedError("dut_dhcp_server: give dut_address too (the server's own address)")
        return None
    if address == "none":
        return ""
    try:
        interface = ipaddress.ip_interface(address)
    except ValueError:
        raise SeedError(
            f"dut_address: {address!r} is not an IPv4 address with a prefix, "
            'e.g. "192.168.69.1/24", or "none"'
        ) from None
    net = interface.network
    if interface.version != 4 or "/" not in address or net.prefixlen > 30:
        raise SeedError(f"dut_address: {address!r}: give an IPv4 address/prefix of /30 or wider")
    if interface.ip in (net.network_address, net.broadcast_address):
        raise SeedError(f"dut_address: {address!r} is the network's own or broadcast address")
    lines = [
        "# Written by dryad-seed from boruta-seed.toml (dut_address, dut_dhcp_server).",
        "# The MuxPi's USB Ethernet adapter, the DUT's network: no route beyond it.",
        "[Match]",
        "Type=ether",
        "Path=platform-*.usb-usb-*",
        "",
        "[Network]",
        f"Address={interface}",
        "ConfigureWithoutCarrier=yes",
        "LinkLocalAddressing=no",
        "IPv6AcceptRA=no",
    ]
    if dhcp:
        # The MuxPi routes nothing, so the DUT is told of no router and no DNS.
        lines += ["DHCPServer=yes", "", "[DHCPServer]", "EmitRouter=no", "EmitDNS=no"]
        if net.num_addresses >= 32:
            # As the original lab's isc-dhcp-server did: the DUT from .10 on.
            lines += ["PoolOffset=10", "PoolSize=" + str(min(net.num_addresses - 12, 100))]
    return "\n".join(lines) + "\n"


def _apply_network(path: Path, text: str, *, reload: bool) -> None:
    if text:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(path, text, 0o644)
    else:
        path.unlink(missing_ok=True)
    if reload:  # networkd may be up already: dryad-seed runs late in boot
        subprocess.run(["networkctl", "reload"], check=False, capture_output=True)


def parse_keys(value: Any) -> list[str]:
    """The seed's ssh_authorized_keys, each checked to be one public key line."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SeedError(
            "ssh_authorized_keys: expected a list of strings, e.g. ssh_authorized_keys = "
            '["ssh-ed25519 AAAA... alice@lab"]'
        )
    keys = []
    for number, line in enumerate(value, 1):
        line = line.strip()
        if line:
            keys.append(_check_key(line, f"ssh_authorized_keys[{number}]"))
    return keys


def _check_key(line: str, where: str) -> str:
    if "PRIVATE KEY" in line:
        raise SeedError(f"{where}: this is a PRIVATE key; give the line of the .pub file")
    if "\n" in line or "\r" in line:
        raise SeedError(f"{where}: one key per string; this one spans several lines")
    fields = line.split(None, 2)
    if len(fields) < 2 or fields[0] not in KEY_TYPES:
        shown = line if len(line) <= 40 else line[:37] + "..."
        raise SeedError(
            f"{where}: {shown!r} is not a public key line: expected TYPE BASE64 [COMMENT] "
            f"with TYPE one of {', '.join(sorted(KEY_TYPES))} (no options)"
        )
    kind, blob = fields[0], fields[1]
    try:
        data = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        raise SeedError(f"{where}: the key's base64 is damaged (cut or wrapped?)") from None
    # The blob starts with its own type as an SSH string: a mismatch is a pasting error.
    (length,) = struct.unpack(">I", data[:4]) if len(data) >= 4 else (-1,)
    if data[4 : 4 + length].decode("ascii", "replace") != kind:
        raise SeedError(f"{where}: the key's data is not a {kind} key (cut or mixed up?)")
    try:
        import asyncssh  # the dryad's own SSH library: is the key material sound?

        asyncssh.import_public_key(f"{kind} {blob}")
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise SeedError(f"{where}: not a valid {kind} key: {exc}") from None
    comment = fields[2] if len(fields) > 2 else ""
    if not COMMENT.match(comment):
        raise SeedError(f"{where}: the comment may hold printable ASCII only")
    return " ".join(fields)


def install_keys(path: Path, keys: list[str]) -> None:
    """Put ``keys`` in dryad-seed's block of root's authorized_keys; other lines stay."""
    try:
        old = path.read_text().splitlines()
    except FileNotFoundError:
        old = []
    kept: list[str] = []
    inside = False
    for line in old:
        if line == BLOCK_BEGIN:
            inside = True
        elif line == BLOCK_END and inside:
            inside = False
        elif not inside:
            kept.append(line)
    text = "\n".join([*kept, BLOCK_BEGIN, *keys, BLOCK_END]) + "\n"
    # sshd's StrictModes: the directory and the file are root's and private.
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    _write_atomically(path, text, 0o600)


def write_identity(config_path: Path, report: Path) -> str:
    """Create the dryad's UUID and key now (the dryad would on its first start) and
    tell the admin which board this is; returns the report's text."""
    settings = parse(tomllib.loads(config_path.read_text()), base=config_path.parent)
    identity = Identity.load(settings.state_dir)
    text = (
        f"dryad UUID: {identity.uuid}\n"
        f"key fingerprint: {identity.fingerprint}\n"
        f"public key: {identity.public_key}\n"
        f"hostname: {os.uname().nodename}\n"
    )
    _write_atomically(report, text, 0o644)
    return text


def dump_toml(data: dict[str, Any]) -> str:
    """TOML for the dryad's configuration: top-level values and one level of tables
    (all the dryad's format has). JSON's string, number and list forms are valid TOML,
    which saves a dependency on a TOML writer."""
    top = [f"{_key(k)} = {_value(v)}\n" for k, v in data.items() if not isinstance(v, dict)]
    tables = [
        f"\n[{_key(name)}]\n" + "".join(f"{_key(k)} = {_value(v)}\n" for k, v in table.items())
        for name, table in data.items()
        if isinstance(table, dict)
    ]
    return "".join(top + tables)


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, dict):
        raise SeedError("nested tables are not supported")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, str | int | float):
        return json.dumps(value)
    raise SeedError(f"cannot write {value!r} as TOML")


def _set_hostname(name: str) -> None:
    Path("/etc/hostname").write_text(name + "\n")
    subprocess.run(["hostname", name], check=False)


def _write_atomically(path: Path, text: str, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _say(message: str, stream: TextIO = sys.stdout) -> None:
    """One line for the journal (the service's output goes there)."""
    stream.write(f"dryad-seed: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dryad-seed", description="Apply the boot partition's seed file to the dryad."
    )
    parser.add_argument("seed", type=Path, nargs="?", help="the seed file to apply")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--identity", type=Path, metavar="FILE", help="also create the identity")
    parser.add_argument(
        "--no-hostname",
        action="store_true",
        help="leave the hostname and the running network alone (tests)",
    )
    parser.add_argument(
        "--dut-network",
        type=Path,
        default=DUT_NETWORK,
        metavar="FILE",
        help=f"the networkd file for the DUT's USB Ethernet (default {DUT_NETWORK})",
    )
    parser.add_argument(
        "--authorized-keys",
        type=Path,
        default=AUTHORIZED_KEYS,
        metavar="FILE",
        help=f"where ssh_authorized_keys go (default {AUTHORIZED_KEYS})",
    )
    args = parser.parse_args(argv)
    status = 0
    if args.seed is not None and args.seed.exists():
        try:
            applied = apply_seed(
                args.seed,
                args.config,
                set_hostname=not args.no_hostname,
                authorized_keys=args.authorized_keys,
                network_file=args.dut_network,
            )
            if applied:
                _say(f"applied {args.seed} to {args.config}")
            else:
                _say(f"{args.seed} asks for nothing; left as it is")
        except SeedError as exc:
            _say(f"{args.seed}: {exc}", sys.stderr)
            args.seed.with_name(ERROR).write_text(f"The seed file was NOT applied: {exc}\n")
            status = 1
    if args.identity is not None:
        try:
            sys.stdout.write(write_identity(args.config, args.identity))
        except (ConfigError, OSError, tomllib.TOMLDecodeError) as exc:
            _say(f"identity: {exc}", sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
