"""dryad-seed: apply the technician's seed file to the dryad, and make its identity.

The seed file (boruta-seed.toml on the card's FAT boot partition) is edited on any
computer before the board's first power-on:

    coordinator = "boruta.lab:7175"   # HOST:PORT of the coordinator's dryad link
    enrol_token = "..."               # from `boruta-coordinator enrol-token create`
    hostname = ""                     # optional; empty: muxpi-<MAC> (first boot)
    [caps]
    device_type = "rpi4"

At boot (dryad-seed.service, before dryad.service) this merges it into the dryad's
configuration, which is validated by the dryad's own parser before it replaces the
old one; the token goes to the configured enrol_token_file (0600). Then the seed is
renamed to boruta-seed.applied.toml with the token removed, so the secret does not
stay on a partition any card reader can read, and the file is not applied twice.
A seed that does not validate is left in place, with the reason written beside it in
boruta-seed.error.txt, where the technician who edited it will look.

With --identity FILE it also creates the dryad's UUID and key (first boot) and writes
them, for the admin, to FILE (on the boot partition too).
"""

from __future__ import annotations

import argparse
import json
import os
import re
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

SEED_KEYS = frozenset({"coordinator", "enrol_token", "hostname", "caps"})
HOSTNAME = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")
HEADER = (
    "# The Boruta dryad's configuration. Written by dryad-seed from the boot partition's\n"
    "# boruta-seed.toml; later edits here stay until a new seed file is applied.\n\n"
)
APPLIED = "boruta-seed.applied.toml"
ERROR = "boruta-seed.error.txt"


class SeedError(Exception):
    """The seed cannot be applied; the message is for the technician."""


def apply_seed(seed_path: Path, config_path: Path, *, set_hostname: bool = True) -> bool:
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
    if not (coordinator or token or hostname or caps):
        return False  # the untouched template shipped on the image
    try:
        config: dict[str, Any] = tomllib.loads(config_path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SeedError(f"{config_path}: cannot read it: {exc}") from exc
    if coordinator:
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
    _write_atomically(config_path, HEADER + dump_toml(config), 0o644)
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
    parser.add_argument("--no-hostname", action="store_true", help="leave the hostname alone")
    args = parser.parse_args(argv)
    status = 0
    if args.seed is not None and args.seed.exists():
        try:
            if apply_seed(args.seed, args.config, set_hostname=not args.no_hostname):
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
