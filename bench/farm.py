"""The local farm as a new user meets it: scripts/farm.sh start, reserve --ssh, restart.

Runs scripts/farm.sh on free ports in a temporary folder with this venv's tools (nothing
is installed) and prints: the first start (empty folder) to its "ready" table; ``boruta
reserve --ssh`` to the first line a shell prints, median of 5; a restart of the farm with
a job running, to its table, median of 3.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import free_port, median

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
READY = "Ctrl-C stops the farm."
SHELL_GOAL = 2.0  # seconds from reserve --ssh to a shell's first output
RESTART_GOAL = 10.0  # seconds from farm.sh to its table, a job running


class Farm:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        first = free_port()
        self.env = {
            **os.environ,
            "BORUTA_BIN": str(BIN),
            "BORUTA_FARM_DIR": str(folder / "farm"),
            "BORUTA_HTTP": f"127.0.0.1:{free_port()}",
            "BORUTA_LINK": f"127.0.0.1:{free_port()}",
            "BORUTA_TUNNEL_PORTS": f"{first}-{first}",  # one job at a time here
            "XDG_CONFIG_HOME": str(folder / "config"),
            "XDG_CACHE_HOME": str(folder / "cache"),
            "PYTHONPATH": str(ROOT),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> float:
        """Run farm.sh; seconds until its table is printed."""
        begun = time.monotonic()
        with (self.folder / "farm.out").open("ab") as out:
            self.process = subprocess.Popen(
                ["bash", str(ROOT / "scripts/farm.sh")],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        self.starts += 1
        while (self.folder / "farm.out").read_text().count(READY) < self.starts:
            if self.process.poll() is not None:
                sys.exit((self.folder / "farm.out").read_text())
            time.sleep(0.05)
        return time.monotonic() - begun

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(60)

    def boruta(self, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [str(BIN / "boruta"), *args], input=stdin, capture_output=True, env=self.env
        )


def to_shell(farm: Farm) -> float:
    """Seconds from ``boruta reserve --ssh`` to the first line its shell prints."""
    begun = time.monotonic()
    with subprocess.Popen(
        [str(BIN / "boruta"), "reserve", "--caps", "device_type=rpi4", "--ssh"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=farm.env,
    ) as reserve:
        assert reserve.stdin is not None and reserve.stdout is not None
        reserve.stdin.write(b"echo prompt\nexit\n")
        reserve.stdin.close()
        line = reserve.stdout.readline()
        seconds = time.monotonic() - begun
        reserve.wait(60)
    if line != b"prompt\n":
        sys.exit(f"no shell: {line!r}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shells", type=int, default=5)
    parser.add_argument("--restarts", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        farm = Farm(Path(tmp))
        try:
            first = farm.start()
            print(f"first start (empty folder, nothing to install): {first:.1f} s")
            shells = [to_shell(farm) for _ in range(args.shells)]
            shell = median(shells)
            print(
                f"reserve --ssh to a shell: median {shell:.2f} s of {len(shells)} "
                f"(goal ≤ {SHELL_GOAL:g} s: {'met' if shell <= SHELL_GOAL else 'NOT met'})"
            )
            held = farm.boruta("reserve", "--caps", "device_type=odroid-xu4", "--wait")
            if held.returncode:
                sys.exit(held.stderr.decode())
            restarts = []
            for _ in range(args.restarts):
                farm.stop()
                restarts.append(farm.start())
            table = (farm.folder / "farm.out").read_text().split(READY)[-2]
            if not re.search(r"RUNNING +up .*odroid-xu4", table):
                sys.exit(f"the job did not survive the restart:\n{table}")
            restart = median(restarts)
            print(
                f"restart with a running job: median {restart:.1f} s of {len(restarts)} "
                f"(goal ≤ {RESTART_GOAL:g} s: {'met' if restart <= RESTART_GOAL else 'NOT met'})"
            )
        finally:
            farm.stop()


if __name__ == "__main__":
    main()
