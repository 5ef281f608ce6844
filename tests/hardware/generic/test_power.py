"""DUT power: the relay's line and the commands, each driven and refused as configured."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest
from gpiozero.pins.mock import MockFactory

from hardware.errors import BadConfig, CommandFailed
from hardware.generic.config import CommandPowerSettings, GpioPowerSettings
from hardware.generic.power import CommandPower, GpioPower, cycle
from tests.hardware.generic.conftest import recorder

pytestmark = pytest.mark.anyio


async def test_an_active_low_relay_starts_off_and_drives_its_line_low_for_on(
    factory: MockFactory,
) -> None:
    power = GpioPower(GpioPowerSettings("GPIO17", active_high=False), factory)
    assert power.powered is False and factory.pin(17).state is True
    await power.on()
    assert power.powered is True and factory.pin(17).state is False
    await power.aclose()


async def test_a_cycle_keeps_the_dut_off_for_at_least_the_configured_time(
    factory: MockFactory,
) -> None:
    power = GpioPower(GpioPowerSettings("GPIO17", off_time=0.05), factory)
    await power.on()
    started = anyio.current_time()
    await cycle(power, 0.001)
    assert anyio.current_time() - started >= 0.05
    factory.pin(17).assert_states([False, True, False, True])


async def test_a_pin_that_does_not_exist_is_named_with_its_key(factory: MockFactory) -> None:
    with pytest.raises(BadConfig, match=r"^generic\.power\.pin: GPIO99 does not exist"):
        GpioPower(GpioPowerSettings("GPIO99"), factory)


async def test_commands_run_without_a_shell_and_record_the_state(tmp_path: Path) -> None:
    log = tmp_path / "log"
    power = CommandPower(
        CommandPowerSettings(tuple(recorder(log, "on")), tuple(recorder(log, "off")))
    )
    assert power.powered is None  # a command cannot be read back
    await power.on()
    await power.off()
    assert log.read_text().split() == ["on", "off"] and power.powered is False


async def test_a_failing_command_names_its_key_exit_status_and_output() -> None:
    fail = (sys.executable, "-c", "import sys; sys.exit('port 9 not found')")
    power = CommandPower(CommandPowerSettings(("true",), fail))
    with pytest.raises(CommandFailed, match=r"^generic\.power\.off: .* exited with 1: port 9 not"):
        await power.off()
    assert power.powered is None


async def test_a_hanging_command_is_killed_at_its_timeout() -> None:
    hang = (sys.executable, "-c", "import time; time.sleep(60)")
    power = CommandPower(CommandPowerSettings(hang, ("true",), timeout=0.2))
    with pytest.raises(CommandFailed, match=r"generic\.power\.on: .* did not finish within 0.2 s"):
        await power.on()


def test_a_missing_program_is_refused_before_anything_runs() -> None:
    with pytest.raises(BadConfig, match=r"generic\.power\.on: program 'no-such-uhubctl' not found"):
        CommandPower(CommandPowerSettings(("no-such-uhubctl",), ("true",)))


async def test_a_command_that_cannot_start_is_a_clear_failure(tmp_path: Path) -> None:
    script = tmp_path / "switch"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    power = CommandPower(CommandPowerSettings((str(script),), ("true",)))
    script.chmod(0o644)  # lost its execute bit after the check
    with pytest.raises(CommandFailed, match="could not start"):
        await power.on()
