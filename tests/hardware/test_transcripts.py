"""SerialStm against transcripts of the real firmware (docs/stm-protocol.md §framing, §transcript).

A tiny replayer on a pty answers each command with the recorded bytes, so the
client is checked against what the board sent, not against our own simulator.
"""

from __future__ import annotations

import os
import tty
from collections.abc import AsyncIterator

import anyio
import pytest

from hardware.stm.client import SerialStm
from hardware.stm.protocol import Mux, Rgb

pytestmark = pytest.mark.anyio

# Recorded replies: echo (always on in the published firmware) ends "\n\r",
# firmware lines end "\r\n"; mux prints its value with no newline.
TRANSCRIPT = {
    b"power\n": b"power\n\roff\r\nOK\r\n",
    b"mux\n": b"mux\n\rdutOK\r\n",
    b"version\n": b"version\n\rMuxPi firmware v1.0\r\nOK\r\n",
    b"led 1\n": b"led 1\n\rled1: 96,144,0\r\nOK\r\n",
    b"current\n": b"current\n\r123\r\nOK\r\n",
    b"echo off\n": b"echo off\n\r\rEcho is off now.\r\nOK\r\n",
    b"key 2\n": b"key 2\n\rpressed: 2\r\nreleased\r\nOK\r\n",
}


@pytest.fixture
async def replayed() -> AsyncIterator[SerialStm]:
    master, slave = os.openpty()
    tty.setraw(slave)

    async def replay() -> None:
        pending = b""
        while True:
            await anyio.wait_readable(master)
            pending += os.read(master, 1024)
            while b"\n" in pending:
                line, _, pending = pending.partition(b"\n")
                os.write(master, TRANSCRIPT[line + b"\n"])

    async with anyio.create_task_group() as tg:
        tg.start_soon(replay)
        async with SerialStm(os.ttyname(slave)) as stm:
            yield stm
        tg.cancel_scope.cancel()
    for fd in (master, slave):
        anyio.notify_closing(fd)
        os.close(fd)


async def test_recorded_getters_parse(replayed: SerialStm) -> None:
    assert await replayed.power() is False
    assert await replayed.mux() is Mux.DUT
    assert await replayed.version() == "MuxPi firmware v1.0"
    assert await replayed.led(1) == Rgb(96, 144, 0)
    assert await replayed.current() == 123


async def test_recorded_echo_off_reply_is_accepted(replayed: SerialStm) -> None:
    await replayed.set_echo(False)


async def test_press_between_echo_and_reply_is_not_the_key_state(replayed: SerialStm) -> None:
    with replayed.presses() as presses:
        assert await replayed.key(2) is False
        assert presses.receive_nowait() == 2
