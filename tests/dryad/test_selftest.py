"""dryad selftest: every part of the simulated MuxPi passes, faults fail their check,
the report file and the command's exit status."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from PIL import Image

import dryad.cli
from dryad import selftest as st
from dryad.selftest import Outcome, SelfTest, run_selftest, test_pattern
from dryad.settings import parse
from hardware import Board, BoardSettings, open_board
from hardware.display import StmDisplay, blank, render_text
from hardware.errors import PortInUse, StmUnsupported
from hardware.stm.protocol import Mux

pytestmark = pytest.mark.anyio


@pytest.fixture
async def board() -> AsyncIterator[Board]:
    async with open_board("sim", BoardSettings(stm_timeout=0.5)) as b:
        yield b


def outcomes(test: SelfTest) -> dict[tuple[str, str], Outcome]:
    return {(r.part, r.check): r.outcome for r in test.results}


async def test_every_part_of_the_sim_passes_with_a_press(board: Board) -> None:
    assert board.sim is not None and board.stm is not None
    firmware = board.sim.firmware
    firmware.state.mux = Mux.DUT  # as a job might have left it
    asked = anyio.Event()
    said: list[str] = []

    def say(line: str) -> None:
        said.append(line)
        asked.set()

    test = SelfTest(board, button_timeout=10, say=say, led_show=0)

    async def technician() -> None:
        await asked.wait()
        assert board.sim is not None
        await board.sim.press(2)

    async with anyio.create_task_group() as tg:
        tg.start_soon(technician)
        results = await test.run()
    assert [r for r in results if r.outcome is not Outcome.PASS] == []
    assert test.passed
    checks = {(r.part, r.check): r.detail for r in results}
    assert checks["stm", "version"] == "MuxPi firmware v1.0"
    assert checks["current", "reading with DUT power on"] == "250 mA"
    assert checks["button", "press"] == "button 2 pressed"
    assert {part for part, _ in checks} >= {
        "board", "stm", "dut power", "current", "sd mux", "led 1", "led 2", "status leds",
        "oled", "button",
    }  # fmt: skip
    assert len([p for p, _ in checks if p.startswith("led ")]) == 8  # 4 colours x 2 LEDs
    assert "Press button 1 or 2" in said[0]
    # Left as found: the SD card where the job had it, the LEDs dark; the panel the
    # firmware really drew is the one the display drew last.
    assert firmware.state.mux is Mux.DUT
    assert firmware.state.leds == [(0, 0, 0), (0, 0, 0)]
    assert firmware.panel.image().tobytes() == board.display.image.convert("1").tobytes()


async def test_the_pattern_reaches_the_firmware(board: Board) -> None:
    """What the OLED check draws arrives on the (simulated) panel pixel for pixel."""
    assert board.sim is not None
    await board.display.show(test_pattern())
    assert board.sim.firmware.panel.image().tobytes() == test_pattern().tobytes()


async def test_a_firmware_without_draw_gets_text(board: Board) -> None:
    assert board.stm is not None
    text_only = Board("sim", StmDisplay(board.stm, text_only=True), None, board.stm, None)
    test = SelfTest(text_only, button=False, say=lambda _: None, led_show=0)
    await test.run()
    oled = next(r for r in test.results if r.part == "oled")
    assert oled.outcome is Outcome.PASS and oled.detail.startswith("text only")


async def test_a_part_that_is_not_fitted_is_skipped(
    board: Board, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A board whose STM stand-in lacks a part (a generic board without a current
    meter) says so with StmUnsupported: that check is skipped, not failed."""

    async def no_meter() -> int:
        raise StmUnsupported("this generic board has no current meter")

    monkeypatch.setattr(board.stm, "current", no_meter)
    test = SelfTest(board, button=False, say=lambda _: None, led_show=0)
    await test.run()
    current = next(r for r in test.results if r.part == "current")
    assert current.outcome is Outcome.SKIP and "no current meter" in current.detail
    assert test.passed


async def test_no_press_in_time_fails(board: Board) -> None:
    test = SelfTest(board, button_timeout=0.2, say=lambda _: None, led_show=0)
    await test.run()
    assert outcomes(test)["button", "press"] is Outcome.FAIL
    assert not test.passed
    assert "no press within" in test.results[-1].detail


async def test_no_button_skips_it(board: Board) -> None:
    test = SelfTest(board, button=False, say=lambda _: None, led_show=0)
    await test.run()
    assert outcomes(test)["button", "press"] is Outcome.SKIP
    assert test.passed  # a skipped check is not a failure


async def test_a_mux_that_does_not_switch_fails_that_check_only(board: Board) -> None:
    assert board.sim is not None
    firmware = board.sim.firmware
    firmware._table["mux"] = lambda args: "ts" if len(args) == 1 else ""  # stuck on ts
    test = SelfTest(board, button=False, say=lambda _: None, led_show=0)
    await test.run()
    result = next(r for r in test.results if r.part == "sd mux")
    assert result.outcome is Outcome.FAIL and result.detail == "set to dut, reads ts"
    assert [r.part for r in test.results if r.outcome is Outcome.FAIL] == ["sd mux"]


async def test_a_silent_stm_fails_each_stm_check_without_hanging() -> None:
    async with open_board("sim", BoardSettings(stm_timeout=0.1)) as board:
        assert board.sim is not None
        board.sim.mute()
        test = SelfTest(board, button=False, say=lambda _: None, led_show=0)
        with anyio.fail_after(60):
            await test.run()
    failed = outcomes(test)
    for key in (("stm", "version"), ("dut power", "off, then on"), ("led 1", "red")):
        assert failed[key] is Outcome.FAIL, key
    assert failed["board", "power line (PWR_CTRL) on"] is Outcome.PASS


class FakeDisplay:
    """A panel that keeps its frame (what an I2C OLED board has, without the bus)."""

    def __init__(self) -> None:
        self.image = blank()

    async def show(self, image: Image.Image) -> None:
        self.image = image.convert("1")

    async def show_text(self, *lines: str) -> None:
        self.image = render_text(*lines)

    async def clear(self) -> None:
        self.image = blank()

    async def aclose(self) -> None:
        pass


async def test_a_board_without_stm_skips_its_parts() -> None:
    board = Board("generic", FakeDisplay(), None, None, None)
    test = SelfTest(board, say=lambda _: None, led_show=0)
    await test.run()
    assert outcomes(test) == {
        ("stm", "version"): Outcome.SKIP,
        ("leds", "colours"): Outcome.SKIP,
        ("oled", "test pattern"): Outcome.PASS,
        ("button", "press"): Outcome.SKIP,
    }


def sim_settings(tmp_path: Path) -> Any:
    return parse(
        {"coordinator": "127.0.0.1:1", "profile": "sim", "state_dir": str(tmp_path / "state"),
         "job_user": {"manage": False}}
    )  # fmt: skip


async def test_run_selftest_writes_the_report(tmp_path: Path) -> None:
    settings = sim_settings(tmp_path)
    (tmp_path / "state").mkdir()
    (tmp_path / "state/uuid").write_text("0b1c2d3e-0000-4000-8000-000000000001\n")
    said: list[str] = []
    status = await run_selftest(
        settings, BoardSettings(), button=False, say=said.append, led_show=0
    )
    assert status == 0
    report = next((tmp_path / "state").glob("selftest-*.txt"))
    text = report.read_text()
    assert text.startswith("dryad selftest: PASS\n")
    assert "worker: 0b1c2d3e-0000-4000-8000-000000000001\n" in text
    assert "profile: sim\n" in text
    assert "button       press" in text and "SKIP" in text
    assert said[-1].endswith(f"report: {report}")
    assert report.stat().st_mode & 0o777 == 0o644


async def test_run_selftest_says_where_the_report_could_not_go(tmp_path: Path) -> None:
    settings = sim_settings(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("")
    said: list[str] = []
    status = await run_selftest(
        settings,
        BoardSettings(),
        button=False,
        report=blocker / "r.txt",
        say=said.append,
        led_show=0,
    )
    assert status == 0  # the board passed; only the report is missing, and it says so
    assert "the report could not be written" in said[-1]


def test_the_command_exits_1_when_a_check_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "dryad.toml"
    config.write_text(
        f'coordinator = "127.0.0.1:1"\nprofile = "sim"\nstate_dir = "{tmp_path}/s"\n'
        "[job_user]\nmanage = false\n"
    )
    report = tmp_path / "report.txt"
    args = ["--config", str(config), "selftest", "--button-timeout", "0.1", "--show", "0"]
    args += ["--report", str(report)]
    assert dryad.cli.main(args) == 1
    out = capsys.readouterr().out
    assert "button       press" in out and "FAIL" in out
    assert report.read_text().startswith("dryad selftest: FAIL (1 of ")
    # --no-button, the options after the sub-command: everything passes.
    args = ["selftest", "--config", str(config), "--no-button", "--show", "0"]
    args += ["--report", str(report)]
    assert dryad.cli.main(args) == 0
    assert report.read_text().startswith("dryad selftest: PASS\n")


def test_a_busy_port_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def busy(*args: object, **kw: object) -> object:
        raise PortInUse("/dev/ttyS2 is in use by another process (the dryad service?)")

    monkeypatch.setattr(st, "open_board", busy)
    config = tmp_path / "dryad.toml"
    config.write_text(f'coordinator = "h"\nprofile = "sim"\nstate_dir = "{tmp_path}/s"\n')
    assert dryad.cli.main(["--config", str(config), "selftest", "--no-button"]) == 1
    err = capsys.readouterr().err
    assert err == "dryad: /dev/ttyS2 is in use by another process (the dryad service?)\n"


def test_a_bad_config_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert dryad.cli.main(["selftest", "--config", str(tmp_path / "none.toml")]) == 2
    assert "no such configuration file" in capsys.readouterr().err


def test_the_table_lines_up() -> None:
    results = [
        st.Result("stm", "version", Outcome.PASS, "v1"),
        st.Result("sd mux", "to DUT", Outcome.FAIL, "stuck"),
    ]
    lines = st.table(results).splitlines()
    assert lines[0].split() == ["PART", "CHECK", "RESULT", "DETAIL"]
    assert len({line.index(("PASS", "FAIL", "RESULT")[i]) for i, line in
                enumerate([lines[1], lines[2], lines[0]])}) == 1  # fmt: skip


def _led2_shows_only(board: Board, keep: tuple[bool, bool, bool]) -> None:
    """Make the simulated LED 2 show only some channels, as a plain LED would."""
    assert board.sim is not None
    firmware = board.sim.firmware
    real = firmware._table["led"]

    def led(args: list[str]) -> str:
        # As a generic board's plain LED reads back: the colour set while it is lit,
        # dark when the colour has none of its channels.
        out = real(args)
        shown = any(v and k for v, k in zip(firmware.state.leds[1], keep, strict=True))
        if not shown:
            firmware.state.leds[1] = (0, 0, 0)
        return out

    firmware._table["led"] = led


async def test_a_single_colour_led_skips_the_colours_it_lacks(board: Board) -> None:
    _led2_shows_only(board, (False, True, False))  # a plain green LED
    test = SelfTest(board, button=False, say=lambda _: None, led_show=0)
    await test.run()
    led2 = {r.check: r for r in test.results if r.part == "led 2"}
    assert led2["green"].outcome is Outcome.PASS
    assert led2["red"].outcome is Outcome.SKIP and "not a colour" in led2["red"].detail
    assert led2["blue"].outcome is Outcome.SKIP
    assert test.passed


async def test_an_led_dark_in_every_colour_fails(board: Board) -> None:
    _led2_shows_only(board, (False, False, False))
    test = SelfTest(board, button=False, say=lambda _: None, led_show=0)
    await test.run()
    led2 = [r for r in test.results if r.part == "led 2"]
    assert [r.outcome for r in led2] == [Outcome.FAIL] * 4
    assert led2[0].detail == "set (128, 0, 0), reads dark"
    assert not test.passed


def test_the_simulated_generic_board(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The farm's generic board (scripts/generic-sim.toml): its relay, USB-SD-Mux, RGB and
    plain LEDs and OLED go through the same checks; it has no current meter."""
    template = Path(__file__).parents[2] / "scripts/generic-sim.toml"
    text = template.read_text().replace('"../farm/', f'"{tmp_path}/')
    text = text.replace('enrol_token_file = "', f'enrol_token_file = "{tmp_path}/')
    config = tmp_path / "generic.toml"
    config.write_text(text)
    (tmp_path / "dryad-generic").mkdir()
    (tmp_path / "dryad-generic/usb-sd-mux").write_text("")
    report = tmp_path / "report.txt"
    args = ["--config", str(config), "selftest", "--no-button", "--show", "0"]
    assert dryad.cli.main([*args, "--report", str(report)]) == 0
    text = report.read_text()

    def outcome(part: str, check: str) -> str:
        row = rf"^{re.escape(part)} +{re.escape(check)}.*?\s(PASS|FAIL|SKIP)\b"
        found = re.search(row, text, re.M)
        assert found, (part, check, text)
        return found.group(1)

    assert outcome("dut power", "off, then on") == "PASS"
    assert outcome("sd mux", "to DUT, then to test server") == "PASS"
    assert outcome("current", "reading") == "SKIP"
    assert outcome("oled", "test pattern") == "PASS"
    assert outcome("led 2", "green") == "PASS"  # the farm's plain green LED
    assert outcome("led 2", "red") == "SKIP"
    assert "FAIL" not in report.read_text()
