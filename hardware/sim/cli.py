"""The ``stm-sim`` program: a simulated MuxPi STM on a pty, steered from stdin."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio

from hardware.sim.firmware import Firmware
from hardware.sim.pty import PtyStm

logger = logging.getLogger(__name__)

CONTROL_HELP = (
    "stdin commands: press N | reboot | mute | unmute | garble | half | drop | "
    "baud N | current MA | key N up|down"
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="stm-sim",
        description="Simulate the MuxPi STM32 console on a pty. The first line printed "
        "is the pty path; point SerialStm or the tests at it. " + CONTROL_HELP,
    )
    parser.add_argument("--state", type=Path, help="write the board state here as JSON")
    parser.add_argument("--png", type=Path, help="write the OLED here as PNG on change")
    parser.add_argument("--link", type=Path, help="keep this symlink pointing at the pty")
    parser.add_argument("--baud", type=int, default=115200, help="pace output (0: no limit)")
    parser.add_argument("--lthor", action="store_true", help="offer the lthor command")
    parser.add_argument("--no-draw", action="store_true", help="firmware without draw")
    parser.add_argument("--current", type=int, default=250, help="DUT draw in mA when on")
    return parser.parse_args(argv)


async def control(sim: PtyStm, line: str) -> str:
    """Apply one stdin control command; returns a short acknowledgement."""
    words = line.split()
    match words:
        case ["press", key]:
            await sim.press(int(key))
        case ["reboot"]:
            sim.reboot()
        case ["mute"]:
            sim.mute()
        case ["unmute"]:
            sim.mute(False)
        case ["garble"]:
            sim.garble_next_reply()
        case ["half"]:
            sim.half_next_reply()
        case ["drop"]:
            sim.drop()
            return f"dropped; now {sim.path}"
        case ["baud", rate]:
            sim.baud = int(rate) or None
        case ["current", ma]:
            sim.firmware.state.dut_current_ma = int(ma)
        case ["key", key, ("up" | "down") as how]:
            sim.firmware.state.keys[int(key) - 1] = how == "down"
        case _:
            return f"? {CONTROL_HELP}"
    return "ok"


async def _read_controls(sim: PtyStm) -> None:
    fd = sys.stdin.fileno()
    pending = b""
    while True:
        try:
            await anyio.wait_readable(fd)
        except OSError:
            return  # stdin is a file or /dev/null, which epoll cannot watch: no controls
        data = os.read(fd, 1024)
        if not data:
            return  # stdin closed: keep serving, stop listening
        pending += data
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            try:
                reply = await control(sim, raw.decode())
            except (ValueError, IndexError) as exc:
                reply = f"error: {exc}"
            logger.info("control %r: %s", raw.decode(), reply)


async def run(args: argparse.Namespace) -> None:
    firmware = Firmware(lthor=args.lthor, draw=not args.no_draw)
    firmware.state.dut_current_ma = args.current
    sim = PtyStm(
        firmware, baud=args.baud or None, link=args.link, state_file=args.state, png_file=args.png
    )
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with sim, anyio.create_task_group() as tg:
            sys.stdout.write(sim.path + "\n")
            sys.stdout.flush()
            tg.start_soon(_read_controls, sim)
            async for _ in signals:
                tg.cancel_scope.cancel()
                return


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``stm-sim``."""
    logging.basicConfig(level=logging.INFO, format="stm-sim: %(message)s", stream=sys.stderr)
    anyio.run(run, parse_args(argv))
