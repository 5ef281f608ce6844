"""The dashboard in Debian's headless Chromium, driven by Playwright, against real processes."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageChops
from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, expect, sync_playwright

from tests.e2e.coordinators import run_cli
from tests.e2e.process_farm import ProcessFarm, board, eventually

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"  # Debian's; Playwright never downloads a browser here
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
SLOW = 30_000  # ms: a real board's state change, over a real link


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def open_dashboard(browser: Browser, url: str, token: str) -> tuple[Page, list[str]]:
    """A logged-in page; the list collects the page's script errors."""
    page = browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: _console(m, errors))
    page.goto(url)
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Rack")).to_be_visible()
    return page, errors


def _console(message: ConsoleMessage, errors: list[str]) -> None:
    # Chromium logs every HTTP error answer (a panel not reported yet is 404, bob's admin
    # action 403); the page handles those, and the test checks what it shows for them.
    if message.type == "error" and "server responded with a status" not in message.text:
        errors.append(f"{message.text} ({message.location.get('url')})")


def card(page: Page, uuid: str) -> Locator:
    return page.locator(f'#rack li[data-uuid="{uuid}"]')


def mirror(page: Page, uuid: str) -> Image.Image | None:
    src = card(page, uuid).locator("img.oled").get_attribute("src") or ""
    if not src.startswith("data:image/png;base64,"):
        return None
    return Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))


def same_screen(page: Page, uuid: str, home: Path) -> bool:
    """The page's mirror shows exactly the pixels the simulated OLED shows (its PNG is x4)."""
    shown = mirror(page, uuid)
    try:
        oled = Image.open(home / "oled.png").convert("L")
    except OSError:
        return False
    if shown is None:
        return False
    big = shown.convert("L").resize(oled.size, Image.Resampling.NEAREST)
    return ImageChops.difference(big, oled).getbbox() is None


def shoot(target: Page | Locator, shots: Path, name: str) -> Path:
    path = shots / f"{name}.png"
    target.screenshot(path=path)
    return path


def record_states(page: Page, uuid: str) -> None:
    """Note every state the card shows, to check the page went through each without a reload."""
    page.evaluate(
        """uuid => {
            const state = document.querySelector(`#rack li[data-uuid="${uuid}"] .state`);
            window.seenStates = [state.textContent];
            new MutationObserver(() => {
                if (window.seenStates.at(-1) !== state.textContent)
                    window.seenStates.push(state.textContent);
            }).observe(state, {childList: true, characterData: true, subtree: true});
        }""",
        uuid,
    )


def test_log_in_watch_the_rack_live_and_act_as_admin(
    farm: ProcessFarm, browser: Browser, tmp_path: Path
) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"\ndashboard screenshots: {shots}")
    bob = run_cli(farm.db, "user", "add", "bob").splitlines()[-1]
    rpi_home = farm.dryad(1, "rpi4")
    odroid_home = farm.dryad(2, "odroid")
    rpi: str = eventually(lambda: farm.workers().get("rpi4", {}).get("WorkerUUID"))
    odroid: str = eventually(lambda: farm.workers().get("odroid", {}).get("WorkerUUID"))
    page, errors = open_dashboard(browser, farm.coordinator.url, farm.token)

    # Both boards are in the rack in MAINTENANCE, as new dryads are, with their OLED mirrored.
    rpi_card = card(page, rpi)
    expect(rpi_card.locator(".state")).to_have_text("MAINTENANCE")
    expect(card(page, odroid).locator(".state")).to_have_text("MAINTENANCE")
    expect(rpi_card.locator(".link")).to_have_text("connected")
    expect(page.locator("#live")).to_have_text("live")
    eventually(lambda: same_screen(page, rpi, rpi_home), 15)

    # Set IDLE from the page; the card goes through PREPARE to IDLE without a reload.
    page.evaluate("window.notReloaded = true")
    record_states(page, rpi)
    rpi_card.get_by_role("button", name="Idle").click()
    expect(rpi_card.locator(".state")).to_have_text("IDLE", timeout=SLOW)
    seen: list[str] = page.evaluate("window.seenStates")
    assert seen == ["MAINTENANCE", "PREPARE", "IDLE"], seen
    assert page.evaluate("window.notReloaded") is True
    # The mirror follows the board: its IDLE screen and two green LEDs.
    eventually(lambda: same_screen(page, rpi, rpi_home), 15)
    leds = rpi_card.locator(".led")
    eventually(lambda: board(rpi_home).get("leds") == [[0, 128, 0], [0, 128, 0]])
    expect(leds.nth(0)).to_have_attribute("data-rgb", "0,128,0")
    expect(leds.nth(1)).to_have_attribute("data-rgb", "0,128,0")
    expect(page.locator("#history li").first).to_contain_text("PREPARE → IDLE")

    # A job: the card shows its owner and a ticking time left; a second request waits.
    with farm.http() as http:
        http.post("/api/v1/reqs/", json={"Caps": {"device_type": "rpi4"}, "Priority": 4})
        waiting = http.post("/api/v1/reqs/", json={"Caps": {"device_type": "odroid"}})
        waiting_id = waiting.json()["ReqID"]
    expect(rpi_card.locator(".state")).to_have_text("RUNNING", timeout=SLOW)
    expect(rpi_card.locator(".owner")).to_have_text("admin")
    left = rpi_card.locator(".left")
    first = left.text_content()
    expect(left).not_to_have_text(first or "", timeout=3000)  # it ticks
    queue = page.locator("#queue tr")
    expect(queue).to_have_count(1)
    expect(queue.first).to_contain_text(f"#{waiting_id}")
    expect(queue.first).to_contain_text("odroid")
    eventually(lambda: board(rpi_home).get("leds", [None])[0] == [0, 0, 128])
    expect(leds.nth(0)).to_have_attribute("data-rgb", "0,0,128", timeout=SLOW)
    eventually(lambda: same_screen(page, rpi, rpi_home), 15)  # "admin / N min left"
    shoot(page, shots, "dashboard")
    shoot(page.locator("#rack-section"), shots, "rack")
    shoot(page.locator("#queue-section"), shots, "queue")
    shoot(page.locator("#history-section"), shots, "history")

    # An admin action: identify makes the board blink white, and the mirror shows it.
    odroid_card = card(page, odroid)
    odroid_card.get_by_role("button", name="Identify").click()
    expect(odroid_card.locator(".message")).to_contain_text("blinks for 30 s")
    eventually(lambda: same_screen(page, odroid, odroid_home), 15)  # ">> IDENTIFY <<"
    expect(odroid_card.locator('.led[data-rgb="255,255,255"]').first).to_be_attached(timeout=SLOW)
    shoot(odroid_card, shots, "identify")

    # Groups from the page.
    odroid_card.get_by_role("button", name="Groups…").click()
    odroid_card.get_by_label("Groups (comma-separated)").fill("lab, ci")
    odroid_card.get_by_role("button", name="Save").click()
    expect(odroid_card.locator(".groups .chip")).to_have_text(["ci", "lab"], timeout=SLOW)

    assert not errors, errors
    page.close()

    # A user who is not an admin sees the rack but gets a clear refusal for admin actions.
    page, errors = open_dashboard(browser, farm.coordinator.url, bob)
    bob_card = card(page, odroid)
    expect(bob_card.locator(".state")).to_have_text("MAINTENANCE")
    bob_card.get_by_role("button", name="Maintenance").click()
    message = bob_card.locator(".message")
    expect(message).to_contain_text("Refused: only an admin may do this")
    expect(message).to_have_class("message refused")
    shoot(bob_card, shots, "refused")
    assert not errors, errors


def test_a_wrong_token_is_refused_at_the_login_form(farm: ProcessFarm, browser: Browser) -> None:
    page = browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
    page.goto(farm.coordinator.url)
    page.get_by_label("API token").fill("not-a-token")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert").filter(has_text="not valid")).to_be_visible()
    expect(page.locator("#board-view")).to_be_hidden()
