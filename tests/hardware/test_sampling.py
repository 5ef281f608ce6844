"""Client-side current sampling, as the Go stm package does it."""

from __future__ import annotations

import anyio
import pytest

from hardware.errors import BadArgument, StmTimeout
from hardware.stm.client import SerialStm
from hardware.stm.sampling import CurrentRecorder

pytestmark = pytest.mark.anyio


async def test_recorder_takes_the_requested_samples(stm: SerialStm) -> None:
    await stm.power_on()
    recorder = CurrentRecorder(stm, samples=5, interval=0.05)
    await recorder.run()
    assert recorder.record() == [250] * 5


class Broken:
    async def current(self) -> int:
        raise StmTimeout("no answer")


async def test_failed_reads_are_stored_as_minus_one() -> None:
    recorder = CurrentRecorder(Broken(), samples=2, interval=0.01)
    with anyio.fail_after(2):
        await recorder.run()
    assert recorder.record() == [-1, -1]


@pytest.mark.parametrize(("samples", "interval"), [(0, 1.0), (200_000_000, 1e9), (1000, 1.0)])
def test_limits_of_the_go_package_are_kept(samples: int, interval: float) -> None:
    with pytest.raises(BadArgument):
        CurrentRecorder(Broken(), samples=samples, interval=interval)
