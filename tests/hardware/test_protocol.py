"""Pure tests of the STM text protocol: encoding, line splitting, reply parsing."""

from __future__ import annotations

import pytest

from hardware.errors import BadArgument, StmCommandFailed, StmProtocolError, StmUnknownCommand
from hardware.stm import protocol as p
from hardware.stm.protocol import Color, LineSplitter, Mux, Press, Reply, Rgb


def lines_of(data: bytes) -> list[str | Press]:
    return LineSplitter().feed(data)


def reply_for(command: str, data: bytes) -> list[str]:
    reply = Reply(command)
    for item in lines_of(data):
        assert isinstance(item, str)
        if p.collect(reply, item):
            return p.check(reply)
    raise AssertionError(f"no terminator in {data!r}")


def test_encode_ends_with_a_single_newline() -> None:
    assert p.encode("power on") == b"power on\n"


@pytest.mark.parametrize(
    "command",
    ["", " power", "power  on", "power\ton", "led 1 2 3 4 5 6 7 8 9 10", "x" * 64, "mux é"],
)
def test_encode_refuses_lines_the_firmware_would_mangle(command: str) -> None:
    with pytest.raises(BadArgument):
        p.encode(command)


def test_text_of_sixteen_characters_is_accepted() -> None:
    assert p.text_command(0, 2, "0123456789abcdef") == "text 0 2 on 0123456789abcdef"


@pytest.mark.parametrize(
    ("x", "page", "text"),
    [(0, 0, "0123456789abcdefg"), (0, 0, " lead"), (0, 0, "a  b"), (121, 0, "a"), (0, 3, "a")],
)
def test_text_that_would_overflow_or_collapse_is_refused(x: int, page: int, text: str) -> None:
    with pytest.raises(BadArgument, match="OLED text"):
        p.text_command(x, page, text)


def test_rgb_refuses_values_outside_a_byte() -> None:
    with pytest.raises(BadArgument, match="green value 256"):
        Rgb(0, 256, 0)


def test_draw_refuses_clean_and_off_panel_points() -> None:
    with pytest.raises(BadArgument):
        p.draw_color(Color.CLEAN)
    with pytest.raises(BadArgument):
        p.check_point(128, 0)


def test_splitter_strips_the_echo_carriage_return_from_the_next_line() -> None:
    # docs/stm-protocol.md §framing: the value arrives as "\ron\r\n" after the "\n\r" echo end.
    assert lines_of(b"power\n\ron\r\nOK\r\n") == ["power", "on", "OK"]


def test_press_in_the_middle_of_an_echo_is_pulled_out_and_the_echo_rejoined() -> None:
    assert lines_of(b"pow" + b"pressed: 1\r\n" + b"er\n\roff\r\n") == [Press(1), "power", "off"]


def test_splitter_reports_a_half_written_line() -> None:
    splitter = LineSplitter()
    splitter.feed(b"current\n\r12")
    assert splitter.pending == "12"


def test_mux_value_glued_to_ok_is_split_off() -> None:
    assert reply_for("mux", b"mux\n\rtsOK\r\n") == ["ts"]


def test_reply_without_echo_is_accepted_too() -> None:
    assert reply_for("version", b"MuxPi firmware v1.0\r\nOK\r\n") == ["MuxPi firmware v1.0"]


def test_unknown_and_failed_terminators_raise() -> None:
    with pytest.raises(StmUnknownCommand):
        reply_for("bogus", b"bogus\n\rUnknown command\r\n")
    with pytest.raises(StmCommandFailed):
        reply_for("dyper 3 on", b"dyper 3 on\n\rError processing command\r\n")


def test_garbage_in_a_reply_is_a_protocol_error() -> None:
    with pytest.raises(StmProtocolError, match="garbled"):
        reply_for("power", b"power\n\r\xff\x00\r\nOK\r\n")


def test_value_parsers_reject_unexpected_shapes() -> None:
    with pytest.raises(StmProtocolError):
        p.one(["a", "b"], "power")
    with pytest.raises(StmProtocolError):
        p.integer("12mA", "current")
    with pytest.raises(StmProtocolError):
        p.labelled(["led1 0,0,0"], "led 1")
    with pytest.raises(StmProtocolError):
        p.rgb("1,2", "led 1")
    with pytest.raises(StmProtocolError):
        p.rgb("1,2,300", "led 1")
    with pytest.raises(StmProtocolError):
        p.choice(Mux, "sd", "mux")
    with pytest.raises(StmProtocolError):
        p.on_off("maybe", "power")


def test_help_lines_name_the_commands_and_skip_continuations() -> None:
    lines = [
        "      help --- This help",
        "      draw --- objects are:",
        "    - point x y",
        "  lthor --- x",
    ]
    assert p.commands_of(lines) == {"help", "draw", "lthor"}
