"""What forwarding costs: the API's latency asked of the leader directly and through a
follower, and the follower's CPU per forwarded request (docs/failover.md §scale-out).

Two coordinators on one private PostgreSQL database; one client, one request at a time
(latency, not throughput: this machine's cores are shared), over kept-alive connections;
the leader's CPU per request too, asked directly and forwarded.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the e2e helpers start the real parts the same way

from _proc_cpu import own_cpu  # noqa: E402

from tests.e2e.several import Group  # noqa: E402
from tests.pg_cluster import private_cluster  # noqa: E402

BODY = {"Caps": {"board": "none"}}  # matches no board: each stays WAITING


def timed(call: Callable[[], httpx.Response], rounds: int) -> list[float]:
    took = []
    for _ in range(rounds):
        started = time.perf_counter()
        answer = call()
        took.append(time.perf_counter() - started)
        assert answer.status_code < 300, answer.text
    return took


def figures(name: str, took: list[float]) -> str:
    took = sorted(took)
    p99 = took[min(len(took) - 1, int(len(took) * 0.99))]
    return f"{name:<34} p50 {statistics.median(took) * 1e3:6.2f} ms   p99 {p99 * 1e3:6.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=1000, help="requests per figure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, private_cluster() as pg:
        group = Group(Path(tmp), pg.url(pg.create_database()), count=2)
        try:
            leader = group.start_all()
            follower = group.members[1]
            with group.http(leader) as direct, group.http(follower) as forwarded:
                made = direct.post("/api/v1/reqs/", json=BODY)
                rid = made.json()["ReqID"]
                print(f"{args.rounds} requests each, one at a time, kept-alive connections")
                assert follower.process is not None and leader.process is not None
                pids = {"follower": follower.process.pid, "leader": leader.process.pid}
                for name, client in (("leader", direct), ("through the follower", forwarded)):
                    cpu = {who: own_cpu(pid) for who, pid in pids.items()}
                    get = timed(partial(client.get, f"/api/v1/reqs/{rid}"), args.rounds)
                    post = timed(partial(client.post, "/api/v1/reqs/", json=BODY), args.rounds)
                    print(figures(f"GET /api/v1/reqs/ID, {name}", get))
                    print(figures(f"POST /api/v1/reqs/, {name}", post))
                    # The leader's too: what a forwarded request costs it against a direct one.
                    per = {
                        who: (own_cpu(pid) - cpu[who]) / (2 * args.rounds) * 1e6
                        for who, pid in pids.items()
                    }
                    print(
                        f"{'':<34} CPU per request: leader {per['leader']:4.0f} µs, "
                        f"follower {per['follower']:4.0f} µs"
                    )
        finally:
            group.stop()


if __name__ == "__main__":
    main()
