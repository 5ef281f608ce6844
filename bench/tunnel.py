"""Job tunnels: scp throughput and connect latency through the tunnel vs direct to the same
sshd, and the time from POST /api/v1/reqs/ to a working shell on an idle simulated worker."""

from __future__ import annotations

import argparse
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the e2e helpers start the real parts the same way

from tests.e2e.process_farm import ProcessFarm, eventually  # noqa: E402
from tests.e2e.test_job_access import (  # noqa: E402
    Access,
    Sshd,
    acquire,
    close,
    new_request,
    remove_user,
    ssh,
    ssh_argv,
    start_sshd,
)

MIB = 1 << 20


def scp_seconds(access: Access, source: Path, port: int) -> float:
    """One scp of ``source`` to /dev/null on the board (SFTP mode, as scp uses today)."""
    options = ssh_argv(access, "", port)[1:-2]
    options[options.index("-p")] = "-P"  # scp's port flag
    argv = ["scp", "-q", *options, str(source)]
    argv.append(f"{access.user}@{access.host}:/dev/null")
    started = time.perf_counter()
    subprocess.run(argv, check=True, timeout=600)
    return time.perf_counter() - started


def banner_ms(host: str, port: int) -> float:
    """TCP connect to the SSH banner's first bytes: the path's own latency, in ms."""
    started = time.perf_counter()
    with socket.create_connection((host, port), timeout=10) as sock:
        assert sock.recv(64).startswith(b"SSH-")
    return (time.perf_counter() - started) * 1000


def login_ms(access: Access, port: int) -> float:
    started = time.perf_counter()
    done = ssh(access, "true", port=port)
    assert done.returncode == 0, done.stderr
    return (time.perf_counter() - started) * 1000


def post_to_shell(farm: ProcessFarm, tmp: Path, runs: int) -> list[float]:
    """Seconds from POST /api/v1/reqs/ to `ssh … true` succeeding, worker IDLE before."""
    times = []
    for _ in range(runs):
        eventually(lambda: farm.workers()["rpi4"]["State"] == "IDLE")
        started = time.perf_counter()
        rid = new_request(farm, "rpi4")
        access = acquire(farm, rid, tmp)
        assert ssh(access, "true").returncode == 0
        times.append(time.perf_counter() - started)
        close(farm, rid)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=1024, help="file size for scp (MiB)")
    parser.add_argument("--runs", type=int, default=3, help="scp runs per path")
    args = parser.parse_args()
    user = f"brt-bench-{secrets.token_hex(4)}"
    coordinators: list = []  # type: ignore[type-arg]
    sshd: Sshd | None = None
    farm: ProcessFarm | None = None
    with tempfile.TemporaryDirectory(prefix="tunnel-bench-") as name:
        tmp = Path(name)
        try:
            sshd = start_sshd(tmp / "sshd", user)
            farm = ProcessFarm(tmp, coordinators, f'job_username = "{user}"\n')
            farm.dryad(1, "rpi4", sshd.port, user)
            farm.idle("rpi4")
            shell = post_to_shell(farm, tmp, 5)

            access = acquire(farm, new_request(farm, "rpi4"), tmp)
            source = tmp / "payload"
            with source.open("wb") as f:
                for _ in range(args.mib):
                    f.write(secrets.token_bytes(MIB))  # incompressible, like an image
            through, direct = [], []
            for _ in range(args.runs):  # interleaved, so drift hits both alike
                through.append(args.mib / scp_seconds(access, source, access.port))
                direct.append(args.mib / scp_seconds(access, source, sshd.port))
            banner_t = [banner_ms(access.host, access.port) for _ in range(20)]
            banner_d = [banner_ms(access.host, sshd.port) for _ in range(20)]
            login_t = [login_ms(access, access.port) for _ in range(10)]
            login_d = [login_ms(access, sshd.port) for _ in range(10)]
        finally:
            if farm is not None:
                farm.stop_dryads()
            for c in coordinators:
                c.process.terminate()
                c.process.wait(20)
            if sshd is not None:
                sshd.stop()
            remove_user(user)

    med = statistics.median
    ratio = med(through) / med(direct)
    added_banner = med(banner_t) - med(banner_d)
    added_login = med(login_t) - med(login_d)
    print(f"scp {args.mib} MiB to /dev/null, median of {args.runs} (MiB/s):")
    print(f"  through the tunnel {med(through):8.1f}   {[round(x) for x in through]}")
    print(f"  direct to sshd     {med(direct):8.1f}   {[round(x) for x in direct]}")
    print(f"  ratio {ratio:.0%} (goal >= 70%: {'met' if ratio >= 0.7 else 'NOT met'})")
    print("connect latency, medians (ms):")
    print(f"  TCP connect to SSH banner: tunnel {med(banner_t):.2f}, direct {med(banner_d):.2f}")
    print(f"  ssh login + `true`:        tunnel {med(login_t):.1f}, direct {med(login_d):.1f}")
    print(
        f"  added: {added_banner:.2f} ms to the banner, {added_login:.1f} ms to a login "
        f"(goal <= 5 ms: {'met' if max(added_banner, added_login) <= 5 else 'NOT met'})"
    )
    print(
        f"POST /api/v1/reqs/ to a working shell, idle worker: median {med(shell):.3f} s, "
        f"max {max(shell):.3f} s (goal <= 1 s: {'met' if med(shell) <= 1 else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
