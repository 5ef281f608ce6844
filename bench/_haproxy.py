"""HAProxy for a bench, configured from docs/examples/haproxy.cfg as the e2e tests do (the
example is what is measured): start it in front of coordinators, wait, stop."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
from _common import BENCH, free_port

sys.path.insert(0, str(BENCH.parent))  # the repository: tests.e2e.haproxy renders the example
from tests.e2e.haproxy import HAPROXY, render

if not Path(HAPROXY).exists():
    raise SystemExit(f"{HAPROXY} not found: install the Debian package haproxy")


class Haproxy:
    """``haproxy -db`` with the example rendered for one listen address and ``servers``."""

    def __init__(self, tmp: Path, servers: list[str]) -> None:
        listen = f"127.0.0.1:{free_port()}"
        config = tmp / "haproxy.cfg"
        config.write_text(render(listen, servers))
        self.url = f"http://{listen}"
        with (tmp / "haproxy.log").open("ab") as sink:
            self.process = subprocess.Popen(
                [HAPROXY, "-f", str(config), "-db"], stdout=sink, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        while not self._answers():
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"haproxy did not come up; see {tmp / 'haproxy.log'}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)
