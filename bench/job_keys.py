"""RSA-2048 job keys made by threads and by processes (the key pool's two ways), side by side:
keys per second, and CPU of this process (the server's, in the product) per key; and what
an Ed25519 key costs."""

from __future__ import annotations

import argparse
import os
import time

import anyio

from coordinator.domain.model import KeyType
from coordinator.service.keys import KeyPool


async def _measure(processes: bool, keys: int, makers: int) -> tuple[float, float]:
    """Keys per second and this process's CPU seconds per key, the makers already started."""
    pool = KeyPool(keys, makers, processes=processes)
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        await pool.get()  # the makers are up (processes are spawned on first use)
        while pool.level:  # an empty stock: every key below is made while measured
            await pool.get()
        cpu, start = time.process_time(), time.perf_counter()
        for _ in range(keys):
            await pool.get()
        wall = time.perf_counter() - start
        cpu = time.process_time() - cpu
        tg.cancel_scope.cancel()
    return keys / wall, cpu / keys


async def _ed25519(count: int) -> float:
    pool = KeyPool(1, processes=False)
    start = time.perf_counter()
    for _ in range(count):
        await pool.get(KeyType.ED25519)
    return (time.perf_counter() - start) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=40, help="RSA keys measured per way")
    parser.add_argument("--makers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=2, help="threads, processes, repeated")
    args = parser.parse_args()
    print(f"RSA-2048 job keys: {args.keys} per way and round, {args.makers} makers")
    for n in range(args.rounds):
        for processes in (False, True):
            rate, cpu = anyio.run(_measure, processes, args.keys, args.makers)
            way = "processes" if processes else "threads"
            print(
                f"round {n + 1} {way:<10} {rate:6.1f} keys/s   "
                f"server-process CPU {cpu * 1000:6.2f} ms/key"
            )
    print(f"Ed25519, made on demand: {anyio.run(_ed25519, 1000) * 1000:.3f} ms/key")


if __name__ == "__main__":
    main()
