"""labgrid's half of the job-cycle bench; runs in labgrid's own venv (bench/.cache)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import time
from typing import Any

from _proc_cpu import own_cpu, tree_cpu, used_since

# Imported by name: labgrid lives only in its own venv, never in the project's.
client: Any = importlib.import_module("labgrid.remote.client")
common: Any = importlib.import_module("labgrid.remote.common")
pb2: Any = importlib.import_module("labgrid.remote.generated.labgrid_coordinator_pb2")

TAGS = {"board": "bench"}


async def setup_places(session: Any, count: int) -> None:
    """Exporter-free places with the tags the reservations filter on (labgrid-client
    ``create``/``set-tags`` send exactly these RPCs)."""
    for n in range(count):
        name = f"bench-{n}"
        await session.stub.AddPlace(pb2.AddPlaceRequest(name=name))
        await session.stub.SetPlaceTags(pb2.SetPlaceTagsRequest(placename=name, tags=TAGS))
    await session.sync_with_coordinator()


async def cycle(session: Any, polls: list[int]) -> float:
    """reserve → allocated → lock → unlock → cancel, RPC for RPC as ``labgrid-client
    reserve --wait``, ``lock``, ``unlock`` and ``cancel-reservation`` do (minus printing)."""
    start = time.perf_counter()
    fltr = {"main": pb2.Reservation.Filter(filter=TAGS)}
    response = await session.stub.CreateReservation(
        pb2.CreateReservationRequest(filters=fltr, prio=0)
    )
    res = common.Reservation.from_pb2(response.reservation)
    while res.state is common.ReservationState.waiting:
        # labgrid-client polls once a second; a short sleep favours labgrid here.
        polls[0] += 1
        await asyncio.sleep(0.005)
        response = await session.stub.PollReservation(pb2.PollReservationRequest(token=res.token))
        res = common.Reservation.from_pb2(response.reservation)
    if res.state is not common.ReservationState.allocated:
        raise RuntimeError(f"reservation {res.token} is {res.state.name}")
    place = res.allocations["main"][0]
    await session.stub.AcquirePlace(pb2.AcquirePlaceRequest(placename=place))
    await session.sync_with_coordinator()
    await session.stub.ReleasePlace(pb2.ReleasePlaceRequest(placename=place))
    await session.sync_with_coordinator()
    await session.stub.CancelReservation(pb2.CancelReservationRequest(token=res.token))
    return time.perf_counter() - start


async def run(
    address: str, places: int, cycles: int, concurrency: int, server_pid: int
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    session = client.ClientSession(address, loop)
    await session.start()
    try:
        await setup_places(session, places)
        for _ in range(min(20, cycles)):  # warm-up, not measured
            await cycle(session, [0])
        latencies: list[float] = []
        polls = [0]
        todo = iter(range(cycles))

        async def lane() -> None:
            latencies.extend([await cycle(session, polls) for _ in todo])

        cpu_before = tree_cpu(server_pid) if server_pid else {}
        client_before = own_cpu(os.getpid())
        start = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        client_cpu = own_cpu(os.getpid()) - client_before
        server_cpu = used_since(cpu_before, tree_cpu(server_pid)) if server_pid else 0.0
    finally:
        await session.stop()
        await session.close()
    return {
        "elapsed": elapsed,
        "latencies": latencies,
        "polls": polls[0],
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--places", type=int, default=8)
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--server-pid", type=int, default=0, help="the coordinator's, for CPU")
    args = parser.parse_args()
    os.environ.setdefault("LG_USERNAME", "bench")
    result = asyncio.run(
        run(args.address, args.places, args.cycles, args.concurrency, args.server_pid)
    )
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
