"""The STM contract: runs on the simulator, or on a real MuxPi when $BORUTA_STM_PORT is set.

Only behaviour a real board shows is asserted here; faults live in test_client.py. What
``stm``, ``fota`` and the dryad need of every board (``any_stm``) also runs against the
generic board's simulated backends.
"""

from __future__ import annotations

import pytest

from hardware import Stm
from hardware.errors import BadArgument, StmUnknownCommand
from hardware.stm.client import SerialStm
from hardware.stm.protocol import Mux, Rgb

pytestmark = pytest.mark.anyio


async def test_board_names_its_firmware(contract_stm: SerialStm) -> None:
    assert (await contract_stm.version()).startswith("MuxPi firmware v")


async def test_ts_and_dut_move_card_and_power(any_stm: Stm) -> None:
    await any_stm.dut()
    assert (await any_stm.mux(), await any_stm.power()) == (Mux.DUT, True)
    await any_stm.ts()
    assert (await any_stm.mux(), await any_stm.power()) == (Mux.TS, False)


async def test_led_reads_back_what_was_set(any_stm: Stm) -> None:
    await any_stm.set_led(1, (96, 144, 0))
    assert await any_stm.led(1) == Rgb(96, 144, 0)
    await any_stm.set_led(1, (0, 0, 0))


async def test_power_on_and_off_read_back(any_stm: Stm) -> None:
    await any_stm.power_on()
    assert await any_stm.power() is True
    await any_stm.power_off()
    assert await any_stm.power() is False


async def test_the_board_names_itself_and_what_it_offers(any_stm: Stm) -> None:
    assert await any_stm.version()
    assert {"power", "led", "mux"} <= await any_stm.commands()


@pytest.mark.slow
async def test_power_tick_ends_with_power_on(any_stm: Stm) -> None:
    await any_stm.power_tick(0.3)
    assert await any_stm.power() is True
    await any_stm.ts()


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
