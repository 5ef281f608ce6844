"""The dial-back listener against hostile input: garbage is closed, real secrets still match."""

from __future__ import annotations

import asyncio
import logging

import anyio
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from coordinator import wire
from coordinator.errors import TunnelUnavailable
from coordinator.link.attempts import FailedAttempts
from coordinator.tunnels.dialback import DialBackListener

pytestmark = pytest.mark.anyio


async def closed_by_listener(port: int, data: bytes, half_close: bool) -> bool:
    """Send ``data``; True when the listener closes the connection (end or reset)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        if half_close:
            writer.write_eof()
        with anyio.fail_after(10):
            return await reader.read() == b""
    except ConnectionResetError:
        return True
    finally:
        writer.close()


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.binary(max_size=200), half_close=st.booleans())
async def test_garbage_on_the_dial_back_port_is_closed_and_harms_no_awaited_secret(
    garbage: bytes, half_close: bool
) -> None:
    listener = DialBackListener("127.0.0.1", 0, secret_timeout=0.2)
    await listener.start()
    try:
        with listener.expect() as awaited:
            assert await closed_by_listener(listener.port, garbage, half_close)
            assert not awaited.arrived.done()
            # The dryad's own dial-back still matches, and keeps what follows the secret.
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            writer.write(awaited.secret + b"SSH-2.0-after")
            with anyio.fail_after(10):
                sock = await awaited.arrived
            awaited.taken = True
            with anyio.fail_after(10):
                assert await asyncio.get_running_loop().sock_recv(sock, 64) == b"SSH-2.0-after"
            sock.close()
            writer.close()
    finally:
        await listener.stop()


async def test_failures_are_logged_once_per_source_then_summed_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    attempts = FailedAttempts(clock=lambda: now[0], name="dial-back", pauses=False, limit=2)
    listener = DialBackListener("127.0.0.1", 0, attempts=attempts)
    await listener.start()
    try:
        for _ in range(5):
            assert await closed_by_listener(listener.port, bytes(wire.SECRET_SIZE), False)
        assert caplog.text.count("dial-back port was closed") == 1
        now[0] = attempts.window  # the window ends: one line sums it up
        attempts.sweep()
        summary = [r.getMessage() for r in caplog.records if "failed attempts" in r.getMessage()]
        assert summary == [
            "dial-back: 5 failed attempts from 127.0.0.1 within 60 s"
            " (5 dial-backs with a wrong, used or expired secret)"
        ]  # and no "paused": nothing is paused for dial-backs
        assert all(r.levelno == logging.WARNING for r in caplog.records)
    finally:
        await listener.stop()


async def test_a_taken_port_is_a_clear_error() -> None:
    first = DialBackListener("127.0.0.1", 0)
    await first.start()
    try:
        with pytest.raises(TunnelUnavailable, match="cannot listen for dial-backs on 127.0.0.1"):
            await DialBackListener("127.0.0.1", first.port).start()
    finally:
        await first.stop()
