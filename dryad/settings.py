"""The dryad's configuration: frozen dataclasses loaded once from a TOML file."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TypeVar

from coordinator.wire import LINK_PORT
from dryad import addresses
from dryad.addresses import Address
from dryad.errors import ConfigError
from dryad.health import HealthSettings
from dryad.stm_cli import ADMIN_SOCKET, USER_SOCKET
from hardware.errors import BadConfig
from hardware.generic import config as generic_config
from hardware.generic.config import GenericSettings

DEFAULT_CONFIG: Final = Path("/etc/boruta/dryad.toml")
# Where OpenSSH's sshd keeps its host public keys (``ssh-keygen -A`` makes them there).
DEFAULT_HOST_KEYS: Final = "/etc/ssh/ssh_host_*_key.pub"
PROFILE_NAMES: Final = ("muxpi", "generic", "sim")
_NON_EMPTY: Final = frozenset({"job_user.name", "stm.port", "control.group"})

T = TypeVar("T")


@dataclass(frozen=True)
class JobUserSettings:
    """The local user each job logs in as; recreated with the job's key."""

    name: str = "boruta-user"
    groups: tuple[str, ...] = ("disk", "dialout", "stm", "uucp")
    manage: bool = True  # False: leave users alone (a laptop running the sim profile)
    # True: no system user; the dryad serves the job's key itself, as this process's
    # user, in ``home`` (docs/simulated-board.md). Needs manage = false.
    simulate: bool = False
    home: Path | None = None  # the simulated job user's home; None: STATE_DIR/job-home

    def home_in(self, state_dir: Path) -> Path:
        """The simulated job user's home: as configured, else under the state directory."""
        return self.home or state_dir / "job-home"


@dataclass(frozen=True)
class StmSettings:
    port: str = "/dev/ttyS2"


@dataclass(frozen=True)
class ControlSettings:
    """The local control sockets through which job users and root drive the STM."""

    enabled: bool = True
    user_socket: Path | None = None  # None: see Settings.control_sockets()
    admin_socket: Path | None = None
    group: str = "stm"  # the user socket's group, as the original's stm-user.socket


@dataclass(frozen=True)
class SimSettings:
    """The simulated board's files, for watching it by hand (both optional)."""

    state_file: Path | None = None
    png_file: Path | None = None


@dataclass(frozen=True)
class Settings:
    """Everything the dryad reads from its configuration file."""

    # The coordinators' link addresses, in the order first tried (docs/failover.md).
    coordinators: tuple[Address, ...]
    # repr=False: the token is a secret and settings end up in logs and tracebacks.
    enrol_token: str | None = field(default=None, repr=False)
    enrol_token_file: Path | None = None
    caps: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    profile: str = "muxpi"
    state_dir: Path = Path("/var/lib/boruta-dryad")
    ssh_address: str = ":22"  # an empty host means "my address as the coordinator sees it"
    # A glob of the sshd's host public key files, reported to the coordinator at each
    # registration; a simulated job user (``job_user.simulate``) reports its own instead.
    sshd_host_keys: str = DEFAULT_HOST_KEYS
    job_user: JobUserSettings = field(default_factory=JobUserSettings)
    health: HealthSettings = field(default_factory=HealthSettings)
    stm: StmSettings = field(default_factory=StmSettings)
    sim: SimSettings = field(default_factory=SimSettings)
    control: ControlSettings = field(default_factory=ControlSettings)
    generic: GenericSettings = field(default_factory=GenericSettings)

    @property
    def simulated(self) -> bool:
        """Whether the board is a simulation (``sim``, or ``generic`` with ``simulate``)."""
        return self.profile == "sim" or (self.profile == "generic" and self.generic.simulate)

    def control_sockets(self) -> tuple[Path, Path]:
        """The user and admin control sockets: as configured, else under /run/boruta/.

        A simulated dryad defaults to its state directory instead, so that several of
        them (the farm, the tests) share a machine without taking over its sockets.
        """
        base = self.state_dir if self.simulated else None
        user = self.control.user_socket or (base / "stm-user.socket" if base else Path(USER_SOCKET))
        admin = self.control.admin_socket or (base / "stm.socket" if base else Path(ADMIN_SOCKET))
        return user, admin

    @property
    def coordinator(self) -> str:
        """The coordinators as HOST:PORT, comma-separated, for logs before the link is up."""
        return ", ".join(str(a) for a in self.coordinators)

    @property
    def coordinator_host(self) -> str:
        """The first coordinator's host (the only one in a one-coordinator farm)."""
        return self.coordinators[0].host

    @property
    def coordinator_port(self) -> int:
        return self.coordinators[0].port

    def with_profile(self, name: str) -> Settings:
        return replace(self, profile=_profile(name, "--profile"))

    def read_enrol_token(self) -> str | None:
        """The enrolment token, read from its file at each use: first-boot tooling may
        write the file after the dryad started, and may delete it once enrolled."""
        if self.enrol_token is not None:
            return self.enrol_token
        if self.enrol_token_file is None:
            return None
        try:
            token = self.enrol_token_file.read_text().strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(
                f"enrol_token_file: cannot read {self.enrol_token_file}: {exc}"
            ) from exc
        return token or None


def load(path: Path) -> Settings:
    """Read and validate ``path``; every problem is a ``ConfigError`` naming the key."""
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse(data, base=path.parent)


def parse(data: Mapping[str, Any], *, base: Path = Path(".")) -> Settings:
    """Build ``Settings`` from parsed TOML; relative paths are taken from ``base``."""
    known = {
        "coordinator", "coordinators", "enrol_token", "enrol_token_file", "caps", "profile",
        "state_dir", "ssh_address", "sshd_host_keys", "job_user", "health", "stm", "sim",
        "control", "generic",
    }  # fmt: skip
    _no_unknown(data, known, "")
    coordinators = _coordinators(data)
    token = data.get("enrol_token")
    if token is not None:
        token = _get(data, "enrol_token", str)
        if not token.strip():
            raise ConfigError("enrol_token: empty")
    token_file = _path(data, "enrol_token_file", base)
    if token is not None and token_file is not None:
        raise ConfigError("enrol_token, enrol_token_file: give one of them, not both")
    ssh_address = _get(data, "ssh_address", str, ":22")
    job_user = _section(data, "job_user", JobUserSettings, base)
    if job_user.simulate and job_user.manage:
        raise ConfigError(
            "job_user.simulate: a simulated job user is the dryad's own user; "
            "set job_user.manage = false too"
        )
    # Port 0 asks the simulated sshd for any free port; a real sshd has a fixed one.
    addresses.split_host_port(ssh_address, "ssh_address", None, any_port=job_user.simulate)
    state_dir = _path(data, "state_dir", base) or Settings.state_dir
    host_keys = _get(data, "sshd_host_keys", str, DEFAULT_HOST_KEYS)
    if not host_keys.strip():
        raise ConfigError(f'sshd_host_keys: empty; the default is "{DEFAULT_HOST_KEYS}"')
    return Settings(
        coordinators=coordinators,
        enrol_token=token,
        enrol_token_file=token_file,
        caps=MappingProxyType(_caps(data.get("caps", {}))),
        profile=_profile(_get(data, "profile", str, "muxpi"), "profile"),
        state_dir=state_dir,
        ssh_address=ssh_address,
        sshd_host_keys=str(base / Path(host_keys).expanduser()),
        job_user=job_user,
        # The disk check watches the filesystem of the state directory.
        health=replace(_section(data, "health", HealthSettings, base), state_dir=state_dir),
        stm=_section(data, "stm", StmSettings, base),
        sim=_section(data, "sim", SimSettings, base),
        control=_section(data, "control", ControlSettings, base),
        generic=_generic(data.get("generic", {}), base),
    )


def _coordinators(data: Mapping[str, Any]) -> tuple[Address, ...]:
    """``coordinator = "HOST:PORT"`` (one), or ``coordinators = [...]`` (several)."""
    if "coordinator" in data and "coordinators" in data:
        raise ConfigError("coordinator, coordinators: give one of them, not both")
    if "coordinators" in data:
        return addresses.parse_list(data["coordinators"], "coordinators", LINK_PORT)
    if "coordinator" not in data:
        raise ConfigError('coordinator: required, e.g. coordinator = "boruta.example.com:7175"')
    return (addresses.parse_one(_get(data, "coordinator", str), "coordinator", LINK_PORT),)


def _generic(table: Any, base: Path) -> GenericSettings:
    """The ``[generic]`` table (docs/generic-board.md §configuration); read by that profile."""
    try:
        return generic_config.parse(table, base=base)
    except BadConfig as exc:
        raise ConfigError(str(exc)) from None


def _no_unknown(data: Mapping[str, Any], known: set[str], prefix: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"{prefix}{unknown[0]}: unknown key; known keys are {', '.join(sorted(known))}"
        )


def _get(data: Mapping[str, Any], key: str, kind: type, default: Any = None) -> Any:
    value = data.get(key, default)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {_kind_name(kind)}, got {value!r}")
    return value


def _kind_name(kind: type) -> str:
    names = {str: "a string", bool: "true or false", int: "an integer", float: "a number"}
    return names.get(kind, kind.__name__)


def _path(data: Mapping[str, Any], key: str, base: Path) -> Path | None:
    if data.get(key) is None:
        return None
    value = _get(data, key, str)
    if not value:
        raise ConfigError(f"{key}: empty path")
    return base / Path(value).expanduser()


def _caps(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ConfigError(f"caps: expected a table, got {value!r}")
    for key, cap in value.items():
        if not isinstance(cap, str):
            raise ConfigError(f"caps.{key}: expected a string, got {cap!r}")
    if "UUID" in value:
        # The UUID is this board's identity, generated in state_dir; a copied config
        # file must not make two boards claim one worker.
        raise ConfigError("caps.UUID: set by the dryad from its state directory; remove it")
    return dict(value)


def _profile(name: str, key: str) -> str:
    if name not in PROFILE_NAMES:
        raise ConfigError(f"{key}: unknown board profile {name!r}; choose one of {PROFILE_NAMES}")
    return name


def _section(data: Mapping[str, Any], name: str, cls: type[T], base: Path) -> T:
    """Fill the dataclass ``cls`` from table ``name``, checking each key against its type."""
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{name}: expected a table, got {table!r}")
    defaults = cls()
    specs = {f.name: getattr(defaults, f.name) for f in fields(cls)}  # type: ignore[arg-type]
    _no_unknown(table, set(specs), f"{name}.")
    values: dict[str, Any] = {}
    for key, value in table.items():
        values[key] = _value(f"{name}.{key}", value, specs[key], base)
    return cls(**values)


def _value(key: str, value: Any, default: Any, base: Path) -> Any:
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int | float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and isinstance(default, int) and not isinstance(value, int):
            ok = False
        if ok and value < 0:
            raise ConfigError(f"{key}: must not be negative, got {value!r}")
        if ok and key == "health.interval" and value == 0:
            raise ConfigError(f"{key}: must be positive")
        if ok and isinstance(default, float):
            value = float(value)
        if ok and key == "health.sshd_port" and not 0 < value < 65536:
            raise ConfigError(f"{key}: {value!r} is not a port number (1-65535)")
    elif isinstance(default, tuple):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    elif default is None or isinstance(default, Path):
        ok = isinstance(value, str) and bool(value)
        value = base / Path(value).expanduser() if ok else value
    else:
        ok = isinstance(value, str)
        if ok and not value and key in _NON_EMPTY:
            raise ConfigError(f"{key}: must not be empty")
    if not ok:
        raise ConfigError(f"{key}: expected {_describe(default)}, got {value!r}")
    return value


def _describe(default: Any) -> str:
    if isinstance(default, tuple):
        return "a list of strings"
    if default is None or isinstance(default, Path):
        return "a path"
    return _kind_name(type(default))
