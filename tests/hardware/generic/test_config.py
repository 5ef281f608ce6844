"""The [generic] table: what it accepts, and a refusal naming the key for everything else."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, strategies as st

from hardware.errors import BadConfig
from hardware.generic.config import (
    MAX_SECONDS,
    ButtonSettings,
    CommandPowerSettings,
    GenericSettings,
    GpioPowerSettings,
    GpioSdSettings,
    OledSettings,
    RgbLed,
    SingleLed,
    UsbSdMuxSettings,
    parse,
)

FULL: dict[str, Any] = {
    "power": {"type": "gpio", "pin": "GPIO17", "active_high": False, "off_time": 2},
    "sd": {"type": "usbsdmux", "device": "/dev/usb-sd-mux/id-000000001234"},
    "leds": [
        {"red": "GPIO5", "green": "GPIO6", "blue": "GPIO13"},
        {"pin": 19, "color": "green", "active_high": False},
    ],
    "display": {"type": "sh1106", "i2c_port": 0, "i2c_address": 0x3D, "height": 64},
    "button": {"pin": "GPIO26", "pull_up": False, "bounce_time": 0, "number": 2},
}


def test_nothing_configured_is_a_board_with_nothing_fitted() -> None:
    assert parse({}) == GenericSettings()


def test_every_part_is_read_with_its_options() -> None:
    s = parse(FULL)
    assert s.power == GpioPowerSettings("GPIO17", False, 2.0)
    assert s.sd == UsbSdMuxSettings(Path("/dev/usb-sd-mux/id-000000001234"))
    assert s.leds == (RgbLed("GPIO5", "GPIO6", "GPIO13"), SingleLed(19, "green", False))
    assert s.display == OledSettings("sh1106", 0, 0x3D, 64)
    assert s.button == ButtonSettings("GPIO26", False, 0.0, 2)
    assert not s.simulate


def test_command_power_and_gpio_sd_card() -> None:
    on, off = ["uhubctl", "-a", "on"], ["uhubctl", "-a", "off"]
    s = parse(
        {
            "power": {"type": "command", "on": on, "off": off, "timeout": 5},
            "sd": {"type": "gpio", "pin": "BOARD11", "dut_high": False},
        }
    )
    assert s.power == CommandPowerSettings(("uhubctl", "-a", "on"), ("uhubctl", "-a", "off"), 5.0)
    assert s.sd == GpioSdSettings("BOARD11", False)


def test_a_relative_mux_path_is_taken_from_the_configuration_directory(tmp_path: Path) -> None:
    s = parse({"sd": {"type": "usbsdmux", "device": "mux"}}, base=tmp_path)
    assert s.sd == UsbSdMuxSettings(tmp_path / "mux")


def power(**table: Any) -> dict[str, Any]:
    return {"power": table}


def cmd(on: Any = ("a",), off: Any = ("a",), **more: Any) -> dict[str, Any]:
    return power(type="command", on=list(on) if isinstance(on, tuple) else on, off=off, **more)


def oled(**table: Any) -> dict[str, Any]:
    return {"display": {"type": "ssd1306", **table}}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"relay": {}}, "generic.relay: unknown key"),
        ({"simulate": "yes"}, "generic.simulate: expected true or false"),
        (power(type="pdu"), "generic.power.type: expected one of gpio, command"),
        (power(type="gpio"), "generic.power.pin: required"),
        (power(type="gpio", pin="GPIO1", on=["x"]), "generic.power.on: unknown key"),
        (power(type="gpio", pin="GPIO 1"), "generic.power.pin: 'GPIO 1' is not a pin"),
        (power(type="gpio", pin=-3), "generic.power.pin: -3 is not a GPIO number"),
        (power(type="gpio", pin=1, off_time=math.inf), "generic.power.off_time: inf"),
        (power(type="command", on=["a"]), "generic.power.off: required"),
        (cmd(on="a b"), "generic.power.on: expected a list"),
        (cmd(on=()), "generic.power.on: expected 1..64"),
        (cmd(on=("a", "")), "generic.power.on: each"),
        (cmd(timeout=0), "generic.power.timeout"),
        ({"sd": {"type": "usbsdmux"}}, "generic.sd.device: expected a device path"),
        ({"sd": {"type": "gpio", "pin": 4, "device": "/x"}}, "generic.sd.device: unknown"),
        ({"leds": {"pin": 1}}, "generic.leds: expected a list"),
        ({"leds": [{"pin": 1}, {"pin": 2}, {"pin": 3}]}, "generic.leds: at most 2"),
        ({"leds": [{"red": 1, "green": 2}]}, r"generic.leds\[1\].blue: required"),
        ({"leds": [{"pin": 1, "color": "white"}]}, r"generic.leds\[1\].color: expected one"),
        (oled(i2c_address=0x80), "generic.display.i2c_address: 128 is outside 0x03..0x77"),
        (oled(height=48), "generic.display.height: expected 32 or 64"),
        ({"display": {}}, "generic.display.type: expected one of ssd1306, sh1106"),
        ({"button": {"pin": 3, "number": 3}}, "generic.button.number: 3 is outside 1..2"),
        ({"button": {"pin": 3, "bounce_time": -1}}, "generic.button.bounce_time"),
        (
            {**power(type="gpio", pin="GPIO4"), "sd": {"type": "gpio", "pin": "gpio4"}},
            "generic.sd.pin: gpio4 is already used by generic.power.pin",
        ),
    ],
)
def test_a_wrong_value_is_refused_naming_its_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(BadConfig, match=message) as caught:
        parse(table)
    assert str(caught.value).startswith(caught.value.key + ": ")


# Anything TOML can hold, at any depth the [generic] table has.
toml_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
pins = st.one_of(toml_scalars, st.sampled_from(["GPIO17", "BOARD11", "J8:11", "GPIO99"]))
seconds = st.one_of(toml_scalars, st.floats(min_value=-1, max_value=MAX_SECONDS * 2))
addresses = st.one_of(toml_scalars, st.integers(min_value=-1, max_value=0x200))
argvs = st.one_of(toml_values, st.lists(st.text(max_size=8), max_size=70))


def _accepted_or_named(table: Any) -> GenericSettings | None:
    try:
        return parse(table)
    except BadConfig as exc:
        assert str(exc).startswith("generic")
        return None


@given(
    pin=pins, active_high=toml_scalars, off_time=seconds, kind=st.sampled_from(["gpio", "command"])
)
def test_hostile_gpio_power_is_refused_or_sane(
    pin: Any, active_high: Any, off_time: Any, kind: str
) -> None:
    s = _accepted_or_named(
        {"power": {"type": kind, "pin": pin, "active_high": active_high, "off_time": off_time}}
    )
    if s is not None:
        assert isinstance(s.power, GpioPowerSettings)
        assert 0 <= s.power.off_time <= MAX_SECONDS and isinstance(s.power.active_high, bool)


@given(on=argvs, off=argvs, timeout=seconds)
def test_hostile_power_commands_are_refused_or_sane(on: Any, off: Any, timeout: Any) -> None:
    s = _accepted_or_named({"power": {"type": "command", "on": on, "off": off, "timeout": timeout}})
    if s is not None:
        assert isinstance(s.power, CommandPowerSettings)
        for argv in (s.power.on, s.power.off):
            assert 1 <= len(argv) <= 64 and all(a and "\0" not in a for a in argv)
        assert 0.1 <= s.power.timeout <= MAX_SECONDS


@given(port=addresses, address=addresses, height=toml_scalars)
def test_hostile_display_values_are_refused_or_sane(port: Any, address: Any, height: Any) -> None:
    s = _accepted_or_named(
        {"display": {"type": "ssd1306", "i2c_port": port, "i2c_address": address, "height": height}}
    )
    if s is not None and s.display is not None:
        assert 0 <= s.display.i2c_port <= 255 and 0x03 <= s.display.i2c_address <= 0x77
        assert s.display.height in (32, 64)


@given(table=toml_values)
def test_any_toml_value_is_refused_or_sane(table: Any) -> None:
    _accepted_or_named(table)


@given(leds=toml_values, button=toml_values, sd=toml_values)
def test_hostile_parts_are_refused_or_sane(leds: Any, button: Any, sd: Any) -> None:
    _accepted_or_named({"leds": leds, "button": button, "sd": sd})


def test_a_huge_value_is_cut_short_in_the_message() -> None:
    with pytest.raises(BadConfig) as caught:
        parse({"power": {"type": "gpio", "pin": "GPIO1", "off_time": "x" * 10_000}})
    assert len(str(caught.value)) < 200 and str(caught.value).endswith("...")
