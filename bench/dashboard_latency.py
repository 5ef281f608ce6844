"""Time from a worker state change (the admin's API call) to the dashboard showing it."""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the e2e farm: a real coordinator and a simulated dryad

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

from tests.e2e.coordinators import Coordinator  # noqa: E402
from tests.e2e.process_farm import ProcessFarm, eventually  # noqa: E402
from tests.e2e.test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS, VIEWPORT  # noqa: E402

GOAL_MS = 500.0  # a person sees the rack change "at once"

# Notes in window.shownAt the page's wall-clock time (ms) when the card first shows a state
# other than `from`.
WATCH = """([uuid, from]) => {
    window.shownAt = null;
    const state = document.querySelector(`#rack li[data-uuid="${uuid}"] .state`);
    const seen = new MutationObserver(() => {
        if (state.textContent !== from && window.shownAt === null) {
            window.shownAt = performance.timeOrigin + performance.now();
            seen.disconnect();
        }
    });
    seen.observe(state, {childList: true, characterData: true, subtree: true});
}"""


def one_change(page: Page, farm: ProcessFarm, uuid: str, target: str) -> float:
    """Milliseconds from the setstate call to the card showing a new state."""
    card = page.locator(f'#rack li[data-uuid="{uuid}"] .state')
    current = card.text_content() or ""
    page.evaluate(WATCH, [uuid, current])
    with farm.http() as http:
        start = time.time() * 1000
        answer = http.post(f"/api/v1/workers/{uuid}/setstate", json={"WorkerState": target})
        assert answer.status_code == 202, answer.text
    page.wait_for_function("() => window.shownAt !== null", timeout=30_000)
    shown: float = page.evaluate("() => window.shownAt")
    expect(card).to_have_text(target, timeout=30_000)  # settled before the next round
    return shown - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=20, help="state changes to time (default 20)")
    args = parser.parse_args()
    coordinators: list[Coordinator] = []
    with tempfile.TemporaryDirectory() as tmp:
        farm = ProcessFarm(Path(tmp), coordinators)
        try:
            farm.dryad(1, "rpi4")
            uuid: str = eventually(lambda: farm.workers().get("rpi4", {}).get("WorkerUUID"))
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
                page.goto(farm.coordinator.url)
                page.get_by_label("API token").fill(farm.token)
                page.get_by_role("button", name="Log in").click()
                expect(page.locator("#live")).to_have_text("live")
                card = page.locator(f'#rack li[data-uuid="{uuid}"] .state')
                expect(card).to_have_text("MAINTENANCE")
                times = [
                    one_change(page, farm, uuid, "IDLE" if i % 2 == 0 else "MAINTENANCE")
                    for i in range(args.n)
                ]
                browser.close()
        finally:
            for dryad in farm.dryads:
                dryad.send_signal(signal.SIGTERM)
                dryad.wait(20)
            for c in coordinators:
                c.process.terminate()
                c.process.wait(20)
    times.sort()
    median = statistics.median(times)
    print(f"state change (setstate API call) -> dashboard shows it, real Chromium, n={args.n}")
    print(f"  median {median:.1f} ms   min {times[0]:.1f} ms   max {times[-1]:.1f} ms")
    print(f"  goal: median <= {GOAL_MS:.0f} ms: {'met' if median <= GOAL_MS else 'NOT met'}")


if __name__ == "__main__":
    main()
