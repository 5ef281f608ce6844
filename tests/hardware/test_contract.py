"""The STM contract: runs on the simulator, or on a real MuxPi when $BORUTA_STM_PORT is set.

Only behaviour a real board shows is asserted here; faults live in test_client.py.
"""

from __future__ import annotations

import pytest

from hardware.errors import BadArgument, StmUnknownCommand
from hardware.stm.client import SerialStm
from hardware.stm.protocol import Mux, Rgb

pytestmark = pytest.mark.anyio


async def test_board_names_its_firmware(contract_stm: SerialStm) -> None:
    assert (await contract_stm.version()).startswith("MuxPi firmware v")


async def test_ts_and_dut_move_card_and_power(contract_stm: SerialStm) -> None:
    await contract_stm.dut()
    assert (await contract_stm.mux(), await contract_stm.power()) == (Mux.DUT, True)
    await contract_stm.ts()
    assert (await contract_stm.mux(), await contract_stm.power()) == (Mux.TS, False)


async def test_led_reads_back_what_was_set(contract_stm: SerialStm) -> None:
    await contract_stm.set_led(1, (96, 144, 0))
    assert await contract_stm.led(1) == Rgb(96, 144, 0)
    await contract_stm.set_led(1, (0, 0, 0))


@pytest.mark.slow
async def test_power_tick_ends_with_power_on(contract_stm: SerialStm) -> None:
    await contract_stm.power_tick(0.3)
    assert await contract_stm.power() is True
    await contract_stm.ts()


async def test_current_is_a_non_negative_number(contract_stm: SerialStm) -> None:
    assert await contract_stm.current() >= 0


async def test_refusals_are_named(contract_stm: SerialStm) -> None:
    with pytest.raises(StmUnknownCommand):
        await contract_stm.raw("no-such-command")
    with pytest.raises(BadArgument):
        await contract_stm.text(0, 0, "x" * 17)


async def test_text_fits_and_the_help_lists_the_basics(contract_stm: SerialStm) -> None:
    await contract_stm.clear()
    await contract_stm.text(0, 0, "0123456789abcdef")
    assert {"power", "led", "text", "clr", "mux"} <= await contract_stm.commands()
