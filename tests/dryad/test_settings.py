"""Dryad settings: defaults, overrides, and every refusal naming its key."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, strategies as st

from dryad.errors import ConfigError
from dryad.health import HealthSettings
from dryad.settings import (
    JobUserSettings,
    SimSettings,
    StmSettings,
    load,
    parse,
)
from hardware.generic.config import (
    ButtonSettings,
    GenericSettings,
    GpioPowerSettings,
    OledSettings,
    RgbLed,
    SingleLed,
    UsbSdMuxSettings,
)

FULL = """
coordinator = "boruta.example.com:7000"
enrol_token = "tok-123"
profile = "sim"
state_dir = "state"
ssh_address = "10.0.0.7:22"

[caps]
board = "rpi4"
arch = "arm64"

[job_user]
name = "tester"
groups = ["disk"]
manage = false

[health]
interval = 60
power_cycle = true
sd_reader = "/dev/sdb"
min_disk_free_mb = 200
min_mem_free_mb = 64
max_temp_c = 75
sshd_port = 2222

[stm]
port = "/dev/ttyUSB0"

[sim]
state_file = "sim/state.json"
png_file = "/tmp/oled.png"
"""


def test_defaults() -> None:
    s = parse({"coordinator": "boruta.example.com"})
    assert (s.coordinator_host, s.coordinator_port) == ("boruta.example.com", 7175)
    assert s.coordinator == "boruta.example.com:7175"
    assert s.enrol_token is None and s.enrol_token_file is None
    assert dict(s.caps) == {}
    assert s.profile == "muxpi"
    assert s.state_dir == Path("/var/lib/boruta-dryad")
    assert s.ssh_address == ":22"
    assert s.job_user == JobUserSettings("boruta-user", ("disk", "dialout", "stm", "uucp"), True)
    assert s.health == HealthSettings(300.0, False, "/dev/sda", 100, 32, 80.0, 22)
    assert s.stm == StmSettings("/dev/ttyS2")
    assert s.sim == SimSettings(None, None)
    assert s.read_enrol_token() is None


def test_every_key_overridden(tmp_path: Path) -> None:
    path = tmp_path / "dryad.toml"
    path.write_text(FULL)
    s = load(path)
    assert s.coordinator == "boruta.example.com:7000"
    assert s.read_enrol_token() == "tok-123"
    assert "tok-123" not in repr(s)  # settings may be logged; the token must not be
    assert s.profile == "sim"
    assert s.state_dir == tmp_path / "state"  # relative to the configuration file
    assert s.ssh_address == "10.0.0.7:22"
    assert dict(s.caps) == {"board": "rpi4", "arch": "arm64"}
    assert s.job_user == JobUserSettings("tester", ("disk",), False)
    assert s.health == HealthSettings(60.0, True, "/dev/sdb", 200, 64, 75.0, 2222, s.state_dir)
    assert isinstance(s.health.interval, float)
    assert s.stm == StmSettings("/dev/ttyUSB0")
    assert s.sim == SimSettings(tmp_path / "sim/state.json", Path("/tmp/oled.png"))
    assert s.with_profile("generic").profile == "generic"


def test_caps_cannot_be_changed_afterwards() -> None:
    s = parse({"coordinator": "h", "caps": {"a": "b"}})
    with pytest.raises(TypeError):
        s.caps["a"] = "c"  # type: ignore[index]


@pytest.mark.parametrize(
    ("value", "host", "port"),
    [
        ("h", "h", 7175),
        ("h:1", "h", 1),
        ("10.1.2.3:65535", "10.1.2.3", 65535),
        ("[::1]:8000", "::1", 8000),
        ("[fe80::1]", "fe80::1", 7175),
        ("::1", "::1", 7175),
    ],
)
def test_coordinator_addresses(value: str, host: str, port: int) -> None:
    s = parse({"coordinator": value})
    assert (s.coordinator_host, s.coordinator_port) == (host, port)


def test_ipv6_coordinator_is_written_with_brackets() -> None:
    assert parse({"coordinator": "[::1]:9"}).coordinator == "[::1]:9"


def test_token_file_is_read_at_each_use(tmp_path: Path) -> None:
    token = tmp_path / "token"
    s = parse({"coordinator": "h", "enrol_token_file": "token"}, base=tmp_path)
    assert s.enrol_token_file == token
    assert s.read_enrol_token() is None  # not written yet
    token.write_text("  tok-9\n")
    assert s.read_enrol_token() == "tok-9"
    token.write_text("\n")
    assert s.read_enrol_token() is None
    token.unlink()
    token.mkdir()
    with pytest.raises(ConfigError, match="enrol_token_file: cannot read"):
        s.read_enrol_token()


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({}, "coordinator: required"),
        ({"coordinator": 5}, "coordinator: expected a string"),
        ({"coordinator": ""}, "coordinator: the host is missing"),
        ({"coordinator": ":7175"}, "coordinator: the host is missing"),
        ({"coordinator": "h:0"}, "coordinator: '0' is not a port"),
        ({"coordinator": "h:70000"}, "coordinator: '70000' is not a port"),
        ({"coordinator": "h:x"}, "coordinator: 'x' is not a port"),
        ({"coordinator": "[::1]x"}, "coordinator: expected HOST:PORT"),
        ({"coordinatr": "h"}, "coordinatr: unknown key"),
        ({"enrol_token": 5}, "enrol_token: expected a string"),
        ({"enrol_token": " "}, "enrol_token: empty"),
        ({"enrol_token": "a", "enrol_token_file": "f"}, "enrol_token, enrol_token_file"),
        ({"enrol_token_file": ""}, "enrol_token_file: empty path"),
        ({"caps": "x"}, "caps: expected a table"),
        ({"caps": {"n": 1}}, "caps.n: expected a string"),
        ({"caps": {"UUID": "x"}}, "caps.UUID: set by the dryad"),
        ({"profile": "raspberry"}, "profile: unknown board profile 'raspberry'"),
        ({"profile": True}, "profile: expected a string"),
        ({"state_dir": 1}, "state_dir: expected a string"),
        ({"ssh_address": "host"}, "ssh_address: expected HOST:PORT"),
        ({"ssh_address": ":99999"}, "ssh_address: '99999' is not a port"),
        ({"job_user": "x"}, "job_user: expected a table"),
        ({"job_user": {"nam": "x"}}, "job_user.nam: unknown key"),
        ({"job_user": {"name": ""}}, "job_user.name: must not be empty"),
        ({"job_user": {"name": 1}}, "job_user.name: expected a string"),
        ({"job_user": {"groups": "disk"}}, "job_user.groups: expected a list of strings"),
        ({"job_user": {"groups": [1]}}, "job_user.groups: expected a list of strings"),
        ({"job_user": {"manage": "yes"}}, "job_user.manage: expected true or false"),
        ({"health": {"interval": "5m"}}, "health.interval: expected a number"),
        ({"health": {"interval": 0}}, "health.interval: must be positive"),
        ({"health": {"interval": -1}}, "health.interval: must not be negative"),
        ({"health": {"interval": True}}, "health.interval: expected a number"),
        ({"health": {"power_cycle": 1}}, "health.power_cycle: expected true or false"),
        ({"health": {"min_disk_free_mb": 1.5}}, "health.min_disk_free_mb: expected an integer"),
        ({"health": {"max_temp_c": "hot"}}, "health.max_temp_c: expected a number"),
        ({"health": {"sshd_port": 0}}, "health.sshd_port: 0 is not a port"),
        ({"health": {"sd_reader": 1}}, "health.sd_reader: expected a string"),
        ({"health": {"cron": "x"}}, "health.cron: unknown key"),
        ({"stm": {"port": ""}}, "stm.port: must not be empty"),
        ({"stm": {"baud": 9600}}, "stm.baud: unknown key"),
        ({"sim": {"state_file": 1}}, "sim.state_file: expected a path"),
        ({"sim": {"png_file": ""}}, "sim.png_file: expected a path"),
    ],
)
def test_refusals_name_the_key(data: dict[str, Any], key: str) -> None:
    base = {"coordinator": "h"} if "coordinator" not in data and data else {}
    with pytest.raises(ConfigError) as refused:
        parse({**base, **data})
    assert str(refused.value).startswith(key), str(refused.value)


def test_an_unknown_profile_on_the_command_line() -> None:
    with pytest.raises(ConfigError, match="--profile: unknown board profile"):
        parse({"coordinator": "h"}).with_profile("nope")


def test_file_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("coordinator = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(bad)
    with pytest.raises(ConfigError, match="Is a directory"):
        load(tmp_path)


def _readme_generic_toml() -> str:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    blocks = [b.split("```")[0] for b in readme.split("```toml\n")[1:]]
    return next(b for b in blocks if 'profile = "generic"' in b)


def test_the_readme_generic_example_is_read_as_documented() -> None:
    s = parse(tomllib.loads(_readme_generic_toml()))
    g = s.generic
    assert s.profile == "generic" and not g.simulate
    assert g.power == GpioPowerSettings("GPIO17", active_high=False, off_time=2.0)
    assert g.sd == UsbSdMuxSettings(Path("/dev/usb-sd-mux/id-000000001234"))
    assert g.leds == (RgbLed("GPIO5", "GPIO6", "GPIO13"), SingleLed("GPIO19", "green"))
    assert g.display == OledSettings("sh1106", 1, 0x3C, 64)
    assert g.button == ButtonSettings("GPIO26", True, 0.05, 1)


def test_generic_defaults_to_nothing_fitted() -> None:
    assert parse({"coordinator": "h"}).generic == GenericSettings()


@pytest.mark.parametrize(
    ("generic", "key"),
    [
        ({"power": {"type": "gpio", "pin": True}}, "generic.power.pin: expected a pin"),
        ({"power": {"type": "command", "on": ["x"], "off": "y"}}, "generic.power.off: expected"),
        ({"display": {"type": "ssd1306", "i2c_address": 2}}, "generic.display.i2c_address"),
        ({"button": {"pin": "GPIO1", "bounce_time": "fast"}}, "generic.button.bounce_time"),
        ("yes", "generic: expected a table"),
    ],
)  # fmt: skip
def test_generic_refusals_name_the_key(generic: Any, key: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse({"coordinator": "h", "profile": "generic", "generic": generic})
    assert str(refused.value).startswith(key), str(refused.value)


def test_a_simulated_generic_board_keeps_its_sockets_in_its_state_dir(tmp_path: Path) -> None:
    s = parse(
        {"coordinator": "h", "profile": "generic", "generic": {"simulate": True}}, base=tmp_path
    )
    assert s.simulated
    assert s.control_sockets() == (
        s.state_dir / "stm-user.socket",
        s.state_dir / "stm.socket",
    )
    real = parse({"coordinator": "h", "profile": "generic"})
    assert not real.simulated and real.control_sockets()[1] == Path("/run/boruta/stm.socket")


@given(generic=st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["power", "sd", "leds", "display", "button", "type", "pin", "on",
                         "off", "device", "i2c_address", "simulate", "x"]),
        inner, max_size=4),
    max_leaves=10,
))  # fmt: skip
def test_any_generic_table_is_read_or_refused_with_a_config_error(generic: Any) -> None:
    try:
        parse({"coordinator": "h", "generic": generic})
    except ConfigError as exc:
        assert str(exc).startswith("generic")
