"""Commands per second through SerialStm against the simulator paced at 115200 baud.

Run: .venv/bin/python bench/bench_stm.py [--baud 115200] [--count 300]
Compares with the line-rate limit for the same bytes (echo + reply, 10 bits per byte).
"""

from __future__ import annotations

import argparse
import time

import anyio

from hardware.sim.firmware import Firmware
from hardware.sim.pty import PtyStm
from hardware.stm.client import SerialStm

COMMANDS = {"power": "power", "led set": "led 1 96 144 0", "text": "text 0 0 on MAINTENANCE"}


async def measure(baud: int | None, count: int) -> None:
    async with PtyStm(Firmware(), baud=baud) as sim, SerialStm(sim.path) as stm:
        for name, command in COMMANDS.items():
            start = time.perf_counter()
            for _ in range(count):
                await stm.raw(command)
            rate = count / (time.perf_counter() - start)
            sent = len(command) + 1
            # The firmware's output: echo of each byte plus "\n\r", then value and terminator.
            reply = {"power": b"off\r\nOK\r\n"}.get(name, b"OK\r\n")
            received = len(command) + 2 + len(reply)
            limit = (baud or 115200) / 10 / max(sent, received)
            print(
                f"{name:8} {rate:8.1f} cmd/s   line-rate limit {limit:6.1f} cmd/s "
                f"({received} bytes back per command)   {rate / limit:5.1%} of the line"
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baud", type=int, default=115200, help="0: unpaced pty")
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args()
    anyio.run(measure, args.baud or None, args.count)


if __name__ == "__main__":
    main()
