"""Job keys for PREPARE: RSA-2048 made ahead on every core, Ed25519 made when asked.

The formats are in ``keymaking`` (docs/boruta-api.md §keys); this module keeps the stock.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import anyio
from anyio.abc import TaskStatus

from coordinator.domain.model import KeyType
from coordinator.service.keymaking import (
    JobKey,
    generate,
    generate_ed25519,
    kind_of,
    maker_started,
    public_of,
    rsa_parts,
)

__all__ = ["JobKey", "KeyPool", "generate", "generate_ed25519", "kind_of", "public_of"]

logger = logging.getLogger(__name__)

RATE_WINDOW = 60.0  # seconds over which the refill rate is measured
RETRY_AFTER_FAILURE = 1.0  # seconds a maker waits after a failed key before the next


class KeyPool:
    """A stock of RSA keys refilled in the background; Ed25519 keys made on demand.

    RSA generation costs tens of milliseconds of CPU, so ``size`` keys are made ahead by
    ``makers`` processes (one per core by default) at a lower priority, and a PREPARE
    waits only when the stock is empty. Processes rather than threads: the rate is the
    same, but the server process is not charged for the primes and keeps the GIL
    (docs/boruta-api.md §keys). Each key leaves the stock once: one key, one job.

    The makers are spawned, so the program's main module must start nothing on import
    (the ``if __name__ == "__main__"`` idiom, as console scripts and ``-m`` have).
    """

    def __init__(
        self,
        size: int = 32,
        makers: int | None = None,
        *,
        processes: bool = True,
        clock: Callable[[], float] = time.monotonic,
        make: Callable[[], tuple[bytes, str]] = rsa_parts,
    ) -> None:
        if size < 1:
            raise ValueError("the key stock must hold at least one key")
        self.size = size
        self.makers = makers or os.cpu_count() or 1
        self._processes = processes
        self._clock = clock
        self._make_one = make  # a module-level function: processes are handed it by name
        self._stock: deque[JobKey] = deque()
        self._made: deque[float] = deque()  # when each key of the last RATE_WINDOW was made
        self._busy = 0  # keys being made now
        self._arrived = anyio.Event()  # set (and replaced) when a key joins the stock
        self._taken = anyio.Event()  # set (and replaced) when a key leaves it
        self._executor: Executor | None = None

    @property
    def level(self) -> int:
        """RSA keys in stock now."""
        return len(self._stock)

    def rate(self) -> float:
        """RSA keys made per second over the last minute."""
        self._forget_old()
        return len(self._made) / RATE_WINDOW

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Keep the stock full until cancelled; ``get`` works while this runs."""
        self._executor = self._new_executor()
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(self.makers):
                    tg.start_soon(self._make)
                task_status.started()
        finally:
            executor, self._executor = self._executor, None
            executor.shutdown(wait=False, cancel_futures=True)

    async def get(self, kind: KeyType = KeyType.RSA) -> JobKey:
        """A key of ``kind`` that nobody else gets; RSA waits only for an empty stock."""
        if kind is KeyType.ED25519:
            return generate_ed25519()
        if self._executor is None:
            raise RuntimeError("the key pool is not running")
        while not self._stock:
            await self._arrived.wait()
        key = self._stock.popleft()
        self._taken.set()
        self._taken = anyio.Event()
        return key

    def _new_executor(self) -> Executor:
        if not self._processes:
            return ThreadPoolExecutor(self.makers, thread_name_prefix="job-keys")
        # Spawned, not forked: forking a process that runs threads can copy a held lock.
        context = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(
            self.makers, mp_context=context, initializer=maker_started, initargs=(os.getpid(),)
        )

    async def _make(self) -> None:
        while True:
            while len(self._stock) + self._busy >= self.size:
                await self._taken.wait()
            self._busy += 1
            try:
                private, public = await self._one()
            except Exception as exc:  # a maker that failed must not end the service
                logger.error("job keys: making an RSA key failed: %s", exc)
                await anyio.sleep(RETRY_AFTER_FAILURE)
                continue
            finally:
                self._busy -= 1
            self._stock.append(JobKey(private, public, KeyType.RSA))
            self._made.append(self._clock())
            self._forget_old()
            self._arrived.set()
            self._arrived = anyio.Event()

    async def _one(self) -> tuple[bytes, str]:
        executor = self._executor
        assert executor is not None  # set for as long as the makers run
        try:
            future = executor.submit(self._make_one)
        except BrokenProcessPool:
            # A maker process died (killed, out of memory): start a fresh set of them.
            if self._executor is executor:
                self._executor = self._new_executor()
                executor.shutdown(wait=False, cancel_futures=True)
            raise
        return await anyio.to_thread.run_sync(future.result, abandon_on_cancel=True)

    def _forget_old(self) -> None:
        horizon = self._clock() - RATE_WINDOW
        while self._made and self._made[0] < horizon:
            self._made.popleft()
