"""A real browser (Debian's chromium, headless, via Playwright) on the live run page."""

from __future__ import annotations

from pathlib import Path

from playwright import sync_api

from tests.daemon_process import DaemonProcess
from tests.orchestrator.test_daemon import write_plan

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def test_the_live_run_page_in_chromium(web: tuple[DaemonProcess, int, str], tmp_path: Path) -> None:
    assert CHROMIUM.exists(), "install chromium: scripts/ensure-servers"
    process, port, token = web
    plan, _, go = write_plan(tmp_path)
    run_id = process.cli("submit", str(plan)).stdout.strip()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/runs/{run_id}?token={token}")
        assert "token=" not in page.url  # the cookie took over
        page.wait_for_selector("rect.bar.status-running", timeout=30_000)
        assert page.locator("svg.gantt g.lane").count() == 2
        assert page.locator("#streams th", has_text="held by").count() == 1
        page.screenshot(path=str(tmp_path / "live.png"))
        page.evaluate("window.notReloaded = true")
        go.touch()
        page.wait_for_function(
            "document.querySelectorAll('rect.bar.status-succeeded').length === 4",
            timeout=30_000,
        )
        assert page.evaluate("window.notReloaded") is True  # patched in place, never reloaded
        assert page.locator("rect.bar.status-running").count() == 0
        page.wait_for_function(
            "document.getElementById('summary').textContent.includes('4/4 steps done')",
            timeout=30_000,
        )
        assert page.locator("rect.critical-mark").count() >= 1
        assert "Critical path: main/first" in page.inner_text("#critical")
        page.screenshot(path=str(tmp_path / "done.png"), full_page=True)
        browser.close()
    assert (tmp_path / "done.png").stat().st_size > 0
    shots = Path(__file__).resolve().parents[3] / ".pytest-screens"
    if shots.is_dir():  # keep them for a look by eye when asked (mkdir .pytest-screens)
        for name in ("live.png", "done.png"):
            (shots / name).write_bytes((tmp_path / name).read_bytes())
