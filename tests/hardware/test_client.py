"""SerialStm against the simulated firmware, through real serial bytes on a pty."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from hardware.errors import (
    BadArgument,
    DeviceNotFound,
    PortInUse,
    PortLost,
    StmCommandFailed,
    StmProtocolError,
    StmTimeout,
    StmUnknownCommand,
    StmUnsupported,
)
from hardware.sim.firmware import Firmware
from hardware.sim.pty import PtyStm
from hardware.stm.client import SerialStm
from hardware.stm.protocol import Color, Lthor, Mux, Rgb
from tests.hardware.sim_waits import wait_until

pytestmark = pytest.mark.anyio


async def test_dut_and_ts_switch_mux_and_power_together(stm: SerialStm, sim: PtyStm) -> None:
    await stm.dut()
    assert (await stm.mux(), await stm.power()) == (Mux.DUT, True)
    await stm.ts()
    assert (sim.firmware.state.mux, sim.firmware.state.power) == (Mux.TS, False)


async def test_mux_and_power_can_be_set_alone(stm: SerialStm, sim: PtyStm) -> None:
    await stm.set_mux(Mux.DUT)
    await stm.power_on()
    await stm.power_off()
    assert (sim.firmware.state.mux, sim.firmware.state.power) == (Mux.DUT, False)
    with pytest.raises(BadArgument):
        await stm.set_mux(Mux.INVALID)


async def test_relays_and_hotplug_reach_the_board(stm: SerialStm, sim: PtyStm) -> None:
    await stm.dyper(2, True)
    await stm.hdmi(True)
    assert sim.firmware.state.dypers == [False, True]
    assert sim.firmware.state.hdmi is True
    with pytest.raises(BadArgument):
        await stm.dyper(3, True)


async def test_led_colour_round_trips(stm: SerialStm) -> None:
    await stm.set_led(2, (128, 16, 32))
    assert await stm.led(2) == Rgb(128, 16, 32)
    assert await stm.led(1) == Rgb(0, 0, 0)


async def test_out_of_range_led_value_is_refused_before_sending(
    stm: SerialStm, sim: PtyStm
) -> None:
    sent = len(sim.firmware.log)
    with pytest.raises(BadArgument, match="RGB LED red value 300"):
        await stm.set_led(1, (300, 0, 0))
    with pytest.raises(BadArgument, match="RGB LED number 3"):
        await stm.set_led(3, (0, 0, 0))
    assert len(sim.firmware.log) == sent


async def test_over_long_text_is_refused_and_never_sent(stm: SerialStm, sim: PtyStm) -> None:
    with pytest.raises(BadArgument, match="at most 16"):
        await stm.text(0, 0, "seventeen chars!!")
    assert not any(c.startswith("text") for c in sim.firmware.log)


async def test_text_and_draw_reach_the_panel(stm: SerialStm, sim: PtyStm) -> None:
    await stm.clear()
    await stm.text(0, 2, "x", Color.ON)
    await stm.draw_point(127, 0)
    await stm.draw_line(0, 0, 3, 0)
    await stm.draw_rectangle(100, 10, 5, 5)
    await stm.draw_circle(60, 16, 4, Color.ON)
    panel = sim.firmware.panel
    assert panel.lit(127, 0) and panel.lit(2, 0) and panel.lit(100, 10) and panel.lit(64, 16)
    assert any(panel.lit(x, y) for x in range(8) for y in range(16, 32))


async def test_current_is_zero_while_off_and_minus_idle_while_on(stm: SerialStm) -> None:
    assert await stm.current() == 0
    await stm.power_on()
    await stm.set_idle_current(50)
    assert await stm.current() == 200
    await stm.set_idle_current()
    assert await stm.current() == 0


async def test_measurements_and_vloc_are_parsed(stm: SerialStm, sim: PtyStm) -> None:
    sim.firmware.state.keys = [True, False]
    assert set(await stm.adc()) == {1, 2, 3, 4, 5}
    assert await stm.voltage(2) == {2: 1000}
    assert (await stm.key(1), await stm.key(2)) == (True, False)
    await stm.set_uart_voltage(3300)
    assert await stm.uart_voltage() == 3300


async def test_firmware_refusals_raise_named_errors(stm: SerialStm) -> None:
    with pytest.raises(StmUnknownCommand):
        await stm.raw("bogus")
    with pytest.raises(StmCommandFailed):
        await stm.raw("dyper 3 on")


async def test_version_and_commands_describe_the_firmware(stm: SerialStm) -> None:
    assert await stm.version() == "MuxPi firmware v1.0"
    assert {"power", "draw", "text"} <= await stm.commands()
    await stm.set_echo(False)  # published firmware echoes anyway; the client copes
    assert await stm.power() is False


async def test_lthor_is_refused_where_the_firmware_lacks_it(stm: SerialStm) -> None:
    with pytest.raises(StmUnsupported, match="lthor"):
        await stm.lthor_vbus(True)


async def test_lthor_works_on_the_firmware_branch_that_has_it() -> None:
    async with PtyStm(Firmware(lthor=True)) as sim, SerialStm(sim.path) as stm:
        assert await stm.lthor_switch(Lthor.UART) is Lthor.UART
        assert await stm.lthor_switch() is Lthor.UART
        assert await stm.lthor_id() is Lthor.USB
        assert await stm.lthor_vbus(True) is True
        assert await stm.lthor_vbus() is True


@pytest.mark.slow
async def test_power_tick_waits_longer_than_the_plain_timeout(stm: SerialStm, sim: PtyStm) -> None:
    stm.link.timeout = 0.2
    await stm.power_tick(0.4)
    assert sim.firmware.state.power is True
    assert sim.firmware.log[-1] == "power tick 400"


async def test_concurrent_callers_are_serialised_never_pipelined(
    stm: SerialStm, sim: PtyStm
) -> None:
    async with anyio.create_task_group() as tg:
        for n in range(20):
            tg.start_soon(stm.set_led, 1 + n % 2, (n, n, n))
    assert len(sim.firmware.log) == 20
    assert all(c.startswith("led ") and len(c.split()) == 5 for c in sim.firmware.log)


async def test_pipelined_bytes_during_a_tick_are_lost_in_the_32_byte_queue(
    sim: PtyStm,
) -> None:
    # Why the client never pipelines: the firmware drops what its queue cannot hold.
    async with SerialStm(sim.path) as stm:
        burst = "power tick 50\n" + "led 1 10 20 30\n" * 4
        await stm.link._write(burst.encode())
        with anyio.fail_after(2):
            while not sim.firmware.log or sim.firmware.log[-1].startswith("power"):
                await sim.changed.wait()
    assert sim.firmware.log[1:] == ["led 1 10 20 30", "led 1 10 20 30"]


async def test_presses_reach_subscribers_between_commands(stm: SerialStm, sim: PtyStm) -> None:
    with stm.presses() as presses, anyio.fail_after(2):
        await sim.press(2)
        assert await presses.receive() == 2


async def test_press_inside_an_echo_is_delivered_and_not_taken_for_a_reply(
    stm: SerialStm, sim: PtyStm
) -> None:
    with stm.presses() as presses:
        sim.press_during_next_command(1, after=3)
        assert await stm.power() is False
        assert presses.receive_nowait() == 1


async def test_closed_subscriber_is_forgotten(stm: SerialStm, sim: PtyStm) -> None:
    stm.presses().close()
    with stm.presses() as live, anyio.fail_after(2):
        await sim.press(1)
        assert await live.receive() == 1
    assert len(stm.link._subscribers) == 1


async def test_hung_firmware_times_out_then_the_port_is_reopened(
    stm: SerialStm, sim: PtyStm
) -> None:
    sim.mute()
    with pytest.raises(StmTimeout, match="did not finish 'version'.*powered"):
        await stm.raw("version", within=0.1)
    sim.mute(False)
    assert await stm.version() == "MuxPi firmware v1.0"
    assert stm.link.reopened == 1


async def test_half_written_reply_times_out_naming_what_was_heard(
    stm: SerialStm, sim: PtyStm
) -> None:
    sim.half_next_reply()
    with pytest.raises(StmTimeout, match="heard"):
        await stm.raw("version", within=0.2)


async def test_garbage_reply_is_an_error_and_the_next_command_works(
    stm: SerialStm, sim: PtyStm
) -> None:
    sim.garble_next_reply()
    with pytest.raises(StmProtocolError, match="garbled"):
        await stm.power()
    assert await stm.power() is False


async def test_dropped_port_is_reported_and_reopened_on_next_use(
    stm: SerialStm, sim: PtyStm
) -> None:
    sim.drop()
    with pytest.raises((PortLost, StmTimeout)):
        await stm.raw("version", within=0.3)
    assert await stm.version() == "MuxPi firmware v1.0"


async def test_reboot_returns_the_board_to_ts_with_its_splash(stm: SerialStm, sim: PtyStm) -> None:
    await stm.dut()
    await stm.clear()
    sim.reboot()
    assert (await stm.mux(), await stm.power()) == (Mux.TS, False)
    assert sim.firmware.state.boots == 2
    assert any(sim.firmware.panel.lit(x, y) for x in range(128) for y in range(16))


async def test_second_owner_of_the_port_is_refused(stm: SerialStm, sim: PtyStm) -> None:
    with pytest.raises(PortInUse, match="held by another process"):
        async with SerialStm(sim.path):
            pass


async def test_missing_device_node_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DeviceNotFound, match="ttyNOPE does not exist"):
        async with SerialStm(str(tmp_path / "ttyNOPE")):
            pass


async def test_state_file_follows_every_change(stm: SerialStm, tmp_path: Path) -> None:
    await stm.dut()
    state = json.loads((tmp_path / "state.json").read_text())
    assert (state["mux"], state["power"], len(state["oled"])) == ("dut", True, 32)


@pytest.mark.slow
async def test_a_command_cancelled_mid_exchange_does_not_hand_its_reply_to_the_next(
    firmware: Firmware,
) -> None:
    # A slow line, so the cancel lands while the reply is still arriving.
    async with PtyStm(firmware, baud=1200) as sim, SerialStm(sim.path, timeout=2) as stm:
        async with anyio.create_task_group() as tg:
            tg.start_soon(stm.set_led, 1, (96, 144, 0))
            await wait_until(sim, lambda: firmware.state.leds[0] == (96, 144, 0))
            tg.cancel_scope.cancel()
        assert await stm.led(2) == Rgb(0, 0, 0)  # its own answer, not the old one's
        await stm.set_led(2, (0, 0, 128))
        assert firmware.state.leds[1] == (0, 0, 128)
